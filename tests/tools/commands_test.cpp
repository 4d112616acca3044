// The REST-only commands through run_chatctl(), against FakeApi. (send and
// listen need the broker: the lead's end-to-end tests cover them.)
#include "chatctl/commands.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <map>

#include "chatctl/profile.h"
#include "fake_api.h"
#include "test_dir.h"

namespace chat::tools {
namespace {

using testing::FakeApi;
using testing::TestDir;

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return out;
}

struct Outcome {
  int status;
  std::string out;
  std::string err;
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }

  Outcome run(std::vector<std::string> args, std::map<std::string, std::string> extra_env = {}) {
    args.insert(args.begin(), {"--api", fake_.url()});
    return run_plain(std::move(args), std::move(extra_env));
  }
  // Without the --api that run() adds.
  Outcome run_plain(std::vector<std::string> args,
                    std::map<std::string, std::string> extra_env = {}) {
    std::map<std::string, std::string> env = {{"CHATCTL_HOME", dir_.path() + "/home"}};
    for (auto& [k, v] : extra_env) env[k] = v;
    EnvLookup lookup = [env](std::string_view name) -> std::optional<std::string> {
      auto it = env.find(std::string(name));
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    int status = run_chatctl(args, lookup, out, err, clock_);
    Outcome r{status, read_all(out), read_all(err)};
    std::fclose(out);
    std::fclose(err);
    return r;
  }

  void register_and_login(const std::string& user) {
    ASSERT_EQ(run({"register", user, "--password", "correct horse"}).status, 0);
    Outcome login = run({"login", user, "--password", "correct horse"});
    ASSERT_EQ(login.status, 0) << login.err;
  }

  ProfileStore store() { return ProfileStore(dir_.path() + "/home"); }

  FakeApi fake_;
  TestDir dir_;
  FakeClock clock_;
};

TEST_F(CommandsTest, HelpAndUsage) {
  Outcome help = run({"help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("Examples"), std::string::npos);
  EXPECT_EQ(run({}).status, 0);

  Outcome unknown = run({"fly"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(unknown.out.empty());
  EXPECT_NE(unknown.err.find("unknown command 'fly'"), std::string::npos);
  EXPECT_NE(unknown.err.find("Usage:"), std::string::npos);

  EXPECT_EQ(run({"send", "Bob!", "hi"}).status, 2);
  EXPECT_EQ(run({"register", "-bad-"}).status, 2);
}

TEST_F(CommandsTest, Register) {
  Outcome ok = run({"register", "alice", "--password", "correct horse"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("registered alice"), std::string::npos);
  // The hint repeats the servers, shell-quoted (an empty --ca stays an argument).
  Outcome hinted = run({"register", "dave", "--ca", "", "--password", "correct horse"});
  ASSERT_EQ(hinted.status, 0) << hinted.err;
  EXPECT_NE(hinted.out.find("next: chatctl --api '" + fake_.url() + "' --ca '' login dave"),
            std::string::npos)
      << hinted.out;

  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    fake_.locked.insert("dave");
  }
  Outcome locked = run({"login", "dave", "--password", "correct horse"});
  EXPECT_EQ(locked.status, 1);
  EXPECT_NE(locked.err.find("login refused for now: too many failed logins for this account; "
                            "retry after 4 s"),
            std::string::npos)
      << locked.err;
  EXPECT_EQ(locked.err.find("wrong user name"), std::string::npos) << locked.err;

  Outcome taken = run({"register", "alice"}, {{"CHATCTL_PASSWORD", "another one"}});
  EXPECT_EQ(taken.status, 1);
  EXPECT_NE(taken.err.find("already taken"), std::string::npos) << taken.err;

  Outcome short_password = run({"register", "bob", "--password", "short"});
  EXPECT_EQ(short_password.status, 1);
  EXPECT_NE(short_password.err.find("at least 8"), std::string::npos) << short_password.err;

  Outcome json = run({"--json", "register", "carol", "--password", "correct horse"});
  EXPECT_EQ(json.status, 0);
  EXPECT_EQ(nlohmann::json::parse(json.out)["user"], "carol");
  Outcome json_error = run({"--json", "register", "carol", "--password", "correct horse"});
  EXPECT_EQ(json_error.status, 1);
  EXPECT_EQ(nlohmann::json::parse(json_error.err)["error"], "already_exists");
}

TEST_F(CommandsTest, LoginSavesAPrivateProfileAndMakesItCurrent) {
  ASSERT_EQ(run({"register", "alice", "--password", "correct horse"}).status, 0);
  Outcome wrong = run({"login", "alice", "--password", "wrong password"});
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.err.find("wrong user name or password"), std::string::npos) << wrong.err;

  Outcome login = run({"login", "alice", "--password", "correct horse"});
  ASSERT_EQ(login.status, 0) << login.err;
  EXPECT_NE(login.out.find("logged in as alice"), std::string::npos);

  auto profile = store().load("alice");
  ASSERT_TRUE(profile.is_ok());
  EXPECT_FALSE(profile->access_token.empty());
  EXPECT_FALSE(profile->refresh_token.empty());
  EXPECT_EQ(profile->access_expires_at, clock_.now_s() + 3600);
  EXPECT_EQ(profile->device.rfind("cli-", 0), 0u);
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    EXPECT_EQ(fake_.last_device, profile->device);
  }
  EXPECT_EQ(*store().current_user(), "alice");
  struct stat st {};
  ASSERT_EQ(::stat(store().path_for("alice").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // Logging in again keeps the device id.
  std::string device = profile->device;
  ASSERT_EQ(run({"login", "alice", "--password", "correct horse"}).status, 0);
  EXPECT_EQ(store().load("alice")->device, device);
}

TEST_F(CommandsTest, TokenRefreshesWhenAboutToExpire) {
  register_and_login("alice");
  std::string first = store().load("alice")->access_token;
  Outcome token = run({"token"});
  ASSERT_EQ(token.status, 0) << token.err;
  EXPECT_EQ(token.out, first + "\n");

  clock_.advance_ms((3600 - 59) * 1000);
  token = run({"token"});
  ASSERT_EQ(token.status, 0) << token.err;
  EXPECT_NE(token.out, first + "\n");
  EXPECT_EQ(token.out, store().load("alice")->access_token + "\n");

  Outcome json = run({"--json", "token"});
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["user"], "alice");
  EXPECT_EQ(j["access_token"].get<std::string>() + "\n", token.out);
}

TEST_F(CommandsTest, AsSelectsAProfile) {
  register_and_login("alice");
  register_and_login("bob");
  Outcome alice = run({"--as", "alice", "token"});
  EXPECT_EQ(alice.out, store().load("alice")->access_token + "\n");
  Outcome nobody = run({"--as", "carol", "token"});
  EXPECT_EQ(nobody.status, 1);
  EXPECT_NE(nobody.err.find("chatctl login carol"), std::string::npos) << nobody.err;
}

TEST_F(CommandsTest, NoProfileYet) {
  Outcome r = run({"conversations"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("chatctl login USER"), std::string::npos) << r.err;
}

TEST_F(CommandsTest, HistoryAndConversations) {
  register_and_login("alice");
  fake_.add_message("0000000000000001", "alice", "bob", "hi bob");
  fake_.add_message("0000000000000002", "bob", "alice", "hi\x1b[2J alice");

  Outcome history = run({"history", "bob", "--limit", "10"});
  ASSERT_EQ(history.status, 0) << history.err;
  EXPECT_EQ(history.out,
            "[2023-11-14 22:13:20] alice -> bob: hi bob\n"
            "[2023-11-14 22:13:20] bob -> alice: hi\\x1b[2J alice\n");
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    // The history request (a token refresh may come before it).
    EXPECT_NE(std::find(fake_.requests.begin(), fake_.requests.end(),
                        "GET /v1/conversations/dm:alice:bob/messages?limit=10"),
              fake_.requests.end());
  }

  Outcome json = run({"--json", "history", "bob"});
  ASSERT_EQ(json.status, 0);
  auto first_line = json.out.substr(0, json.out.find('\n'));
  EXPECT_EQ(nlohmann::json::parse(first_line)["id"], "0000000000000001");

  Outcome forbidden = run({"history", "g:team"});
  EXPECT_EQ(forbidden.status, 1);
  EXPECT_NE(forbidden.err.find("not a participant of g:team"), std::string::npos) << forbidden.err;

  Outcome conversations = run({"conversations"});
  ASSERT_EQ(conversations.status, 0) << conversations.err;
  EXPECT_EQ(conversations.out,
            "dm:alice:bob  1 unread  [2023-11-14 22:13:20] bob -> alice: hi\\x1b[2J alice\n");
}

TEST_F(CommandsTest, ExpiredTokenOnTheServerIsRefreshedOnce) {
  register_and_login("alice");
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    fake_.access.clear();  // e.g. the signing key rotated
  }
  Outcome r = run({"conversations"});
  EXPECT_EQ(r.status, 0) << r.err;
  std::lock_guard<std::mutex> lock(fake_.mu());
  EXPECT_EQ(fake_.refresh_calls, 1);
}

TEST_F(CommandsTest, LogoutRevokesAndForgets) {
  register_and_login("alice");
  std::string refresh = store().load("alice")->refresh_token;
  std::string device = store().load("alice")->device;
  Outcome out = run({"logout"});
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_NE(out.out.find("logged out alice"), std::string::npos);
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    ASSERT_EQ(fake_.revoked.size(), 1u);
    EXPECT_EQ(fake_.revoked[0], refresh);
  }
  auto profile = store().load("alice");
  ASSERT_TRUE(profile.is_ok());
  EXPECT_FALSE(profile->logged_in());
  EXPECT_EQ(profile->device, device);

  Outcome token = run({"token"});
  EXPECT_EQ(token.status, 1);
  EXPECT_NE(token.err.find("chatctl login alice"), std::string::npos) << token.err;
  EXPECT_EQ(run({"logout"}).status, 0);  // already out: nothing to do
}

TEST_F(CommandsTest, Groups) {
  register_and_login("bob");
  register_and_login("carol");
  register_and_login("alice");

  Outcome created = run({"group", "create", "Climbing", "club", "--members", "bob"});
  ASSERT_EQ(created.status, 0) << created.err;
  EXPECT_EQ(created.out, "G1\n");  // the id alone, for GID=$(...)
  EXPECT_NE(created.err.find("created g:G1  Climbing club  (2 members, admin)"), std::string::npos)
      << created.err;
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    EXPECT_EQ(fake_.groups["G1"]["members"], nlohmann::json({"alice", "bob"}));
  }
  Outcome unknown_member = run({"group", "create", "X", "--members", "zed"});
  EXPECT_EQ(unknown_member.status, 1);
  EXPECT_NE(unknown_member.err.find("no such user: zed"), std::string::npos) << unknown_member.err;

  Outcome added = run({"group", "add", "g:G1", "carol"});
  ASSERT_EQ(added.status, 0) << added.err;
  EXPECT_EQ(added.out, "added carol to g:G1\n");
  Outcome promoted = run({"group", "admin", "G1", "bob"});
  ASSERT_EQ(promoted.status, 0) << promoted.err;
  EXPECT_EQ(promoted.out, "bob is now an admin of g:G1\n");

  Outcome list = run({"group", "list"});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(list.out, "g:G1  Climbing club  (3 members, admin)\n");
  Outcome show = run({"group", "show", "G1"});
  ASSERT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.out,
            "g:G1  Climbing club  (3 members, admin)\n  alice (admin)\n  bob (admin)\n  carol\n");
  Outcome json_show = run({"--json", "group", "show", "G1"});
  EXPECT_EQ(nlohmann::json::parse(json_show.out)["name"], "Climbing club");

  // carol is no admin: refused with the server's reason.
  Outcome refused = run({"--as", "carol", "group", "remove", "G1", "bob"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.err.find("only group admins"), std::string::npos) << refused.err;
  Outcome left = run({"--as", "carol", "group", "leave", "G1"});
  ASSERT_EQ(left.status, 0) << left.err;
  EXPECT_EQ(left.out, "left g:G1\n");
  Outcome gone = run({"--as", "carol", "group", "show", "G1"});
  EXPECT_EQ(gone.status, 1);
  EXPECT_NE(gone.err.find("members only"), std::string::npos) << gone.err;
  Outcome none = run({"--as", "carol", "group", "list"});
  EXPECT_EQ(none.status, 0);
  EXPECT_EQ(none.out, "");

  Outcome removed = run({"--json", "group", "remove", "G1", "bob"});
  ASSERT_EQ(removed.status, 0) << removed.err;
  auto j = nlohmann::json::parse(removed.out);
  EXPECT_EQ(j["action"], "member_removed");
  EXPECT_EQ(j["user"], "bob");
  EXPECT_EQ(j["group"], "G1");
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    auto it =
        std::find(fake_.requests.begin(), fake_.requests.end(), "DELETE /v1/groups/G1/members/bob");
    EXPECT_NE(it, fake_.requests.end());
  }
  Outcome missing = run({"group", "show", "nope"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("no such group"), std::string::npos) << missing.err;
}

TEST_F(CommandsTest, Blocks) {
  register_and_login("bob");
  register_and_login("alice");
  Outcome blocked = run({"block", "bob"});
  ASSERT_EQ(blocked.status, 0) << blocked.err;
  EXPECT_EQ(blocked.out, "blocked bob\n");
  EXPECT_EQ(run({"blocks"}).out, "bob\n");
  Outcome json = run({"--json", "blocks"});
  EXPECT_EQ(nlohmann::json::parse(json.out), nlohmann::json({{"user", "bob"}, {"blocked", true}}));
  EXPECT_EQ(run({"unblock", "bob"}).out, "unblocked bob\n");
  Outcome empty = run({"blocks"});
  EXPECT_EQ(empty.status, 0);
  EXPECT_EQ(empty.out, "");
  EXPECT_NE(empty.err.find("you block nobody"), std::string::npos);
  Outcome unknown = run({"block", "zed"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("no such user: zed"), std::string::npos) << unknown.err;
}

TEST_F(CommandsTest, Admin) {
  register_and_login("bob");
  register_and_login("root");
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    fake_.admins.insert("root");
  }
  Outcome ban = run({"admin", "ban", "bob"});
  ASSERT_EQ(ban.status, 0) << ban.err;
  EXPECT_EQ(ban.out, "banned bob\n");
  EXPECT_EQ(run({"admin", "users"}).out, "bob  banned\nroot  admin\n");
  Outcome users_json = run({"--json", "admin", "users"});
  EXPECT_EQ(nlohmann::json::parse(users_json.out.substr(0, users_json.out.find('\n')))["banned"],
            true);
  EXPECT_EQ(run({"admin", "unban", "bob"}).out, "unbanned bob\n");
  EXPECT_EQ(run({"admin", "stats"}).out, "users 2\nbanned 0\nconnected_clients 2\n");
  EXPECT_EQ(run({"admin", "clients"}).out,
            "bob:laptop  since 1700000000000\nbob:phone  since 1700000000000\n");
  Outcome kick = run({"--json", "admin", "kick", "bob:phone"});
  ASSERT_EQ(kick.status, 0) << kick.err;
  EXPECT_EQ(nlohmann::json::parse(kick.out),
            nlohmann::json({{"action", "kick"}, {"target", "bob:phone"}}));
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    EXPECT_EQ(fake_.connected, std::set<std::string>{"bob:laptop"});
  }

  Outcome revoke = run({"admin", "revoke", "jti-bob-laptop"});
  ASSERT_EQ(revoke.status, 0) << revoke.err;
  EXPECT_EQ(revoke.out, "revoked token jti-bob-laptop; connections closed: 1\n");
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    EXPECT_TRUE(fake_.connected.empty());
    EXPECT_EQ(fake_.revoked_jtis, std::set<std::string>{"jti-bob-laptop"});
  }
  EXPECT_EQ(run({"admin", "revoke"}).status, 2);

  // Failures: not connected, unknown user, not an admin, usage.
  Outcome gone = run({"admin", "kick", "bob:phone"});
  EXPECT_EQ(gone.status, 1);
  EXPECT_NE(gone.err.find("not connected"), std::string::npos) << gone.err;
  EXPECT_EQ(run({"admin", "ban", "zed"}).status, 1);
  Outcome forbidden = run({"--as", "bob", "admin", "stats"});
  EXPECT_EQ(forbidden.status, 1);
  EXPECT_NE(forbidden.err.find("admin role"), std::string::npos) << forbidden.err;
  EXPECT_EQ(run({"admin"}).status, 2);
  EXPECT_EQ(run({"admin", "nope"}).status, 2);
  EXPECT_EQ(run({"admin", "ban"}).status, 2);
  EXPECT_EQ(run({"admin", "ban", "NOT VALID"}).status, 2);
  EXPECT_EQ(run({"admin", "kick", "nocolon"}).status, 2);
  EXPECT_EQ(run({"admin", "stats", "--limit", "3"}).status, 2);
  EXPECT_EQ(run({"admin", "users", "--limit", "3"}).status, 0);
}

TEST_F(CommandsTest, ReadWithNothingFromOthersNeedsNoBroker) {
  register_and_login("alice");
  fake_.add_message("0000000000000001", "alice", "bob", "hi bob");
  Outcome r = run({"read", "bob"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "nothing to mark in dm:alice:bob: no messages from others\n");
  Outcome j = run({"--json", "read", "dm:alice:bob"});
  ASSERT_EQ(j.status, 0) << j.err;
  EXPECT_EQ(nlohmann::json::parse(j.out)["ids"], nlohmann::json::array());

  EXPECT_EQ(run({"read", "alice"}).status, 2);         // yourself
  EXPECT_EQ(run({"read", "dm:bob:carol"}).status, 2);  // not mine
}

TEST_F(CommandsTest, ReadWithoutABrokerFailsClearly) {
  register_and_login("alice");
  fake_.add_message("0000000000000001", "bob", "alice", "hi alice");
  Outcome r = run({"--mqtt", "127.0.0.1:1", "read", "bob"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("read receipt for dm:alice:bob not sent"), std::string::npos) << r.err;
  std::lock_guard<std::mutex> lock(fake_.mu());
  EXPECT_NE(std::find(fake_.requests.begin(), fake_.requests.end(),
                      "GET /v1/conversations/dm:alice:bob/messages"),
            fake_.requests.end());
}

TEST_F(CommandsTest, UnreachableApiIsAClearFailure) {
  Outcome r =
      run({"--api", "http://127.0.0.1:1", "register", "alice", "--password", "correct horse"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot reach the API at http://127.0.0.1:1"), std::string::npos) << r.err;
}

// Logging in with --api/--mqtt/--ca remembers them in the profile.
class RememberedServersTest : public CommandsTest {
 protected:
  void SetUp() override {
    CommandsTest::SetUp();
    ca_ = dir_.path() + "/ca.pem";
    std::FILE* f = std::fopen(ca_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
    // Nothing listens on port 1: a command that ignored the profile and used
    // a default would not reach the fake API.
    ASSERT_EQ(run({"register", "alice", "--password", "correct horse"}).status, 0);
    Outcome login = run_plain({"--api", fake_.url(), "--mqtt", "mqtts://127.0.0.1:1", "--ca", ca_,
                               "login", "alice", "--password", "correct horse"});
    ASSERT_EQ(login.status, 0) << login.err;
    EXPECT_NE(login.out.find("logged in as alice at " + fake_.url()), std::string::npos)
        << login.out;
  }

  size_t requests_for(const std::string& request) {
    std::lock_guard<std::mutex> lock(fake_.mu());
    return std::count(fake_.requests.begin(), fake_.requests.end(), request);
  }

  void write_profile(const std::string& user, const nlohmann::json& j) {
    std::FILE* f = std::fopen(store().path_for(user).c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::string text = j.dump();
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }

  std::string ca_;
};

TEST_F(RememberedServersTest, LoginSavesTheServersAndLaterCommandsUseThem) {
  auto profile = store().load("alice");
  ASSERT_TRUE(profile.is_ok());
  EXPECT_EQ(profile->api, fake_.url());
  EXPECT_EQ(profile->mqtt, "ssl://127.0.0.1:1");
  EXPECT_EQ(profile->ca_file, ca_);

  Outcome plain = run_plain({"conversations"});
  EXPECT_EQ(plain.status, 0) << plain.err;
  EXPECT_EQ(requests_for("GET /v1/conversations"), 1u);
  Outcome as = run_plain({"--as", "alice", "conversations"});
  EXPECT_EQ(as.status, 0) << as.err;
  EXPECT_EQ(requests_for("GET /v1/conversations"), 2u);

  // The remembered MQTT address is used too: a message from bob to mark as
  // read needs the broker, and port 1 has none.
  fake_.add_message("0000000000000001", "bob", "alice", "hi alice");
  Outcome read = run_plain({"read", "bob"});
  EXPECT_EQ(read.status, 1);
  EXPECT_NE(read.err.find("read receipt for dm:alice:bob not sent"), std::string::npos) << read.err;

  // Logging out keeps them; the next login (here without options) uses and
  // keeps them.
  Outcome logout = run_plain({"logout"});
  ASSERT_EQ(logout.status, 0) << logout.err;
  EXPECT_EQ(store().load("alice")->api, fake_.url());
  Outcome again = run_plain({"--json", "login", "alice", "--password", "correct horse"});
  ASSERT_EQ(again.status, 0) << again.err;
  auto j = nlohmann::json::parse(again.out);
  EXPECT_EQ(j["api"], fake_.url());
  EXPECT_EQ(j["mqtt"], "ssl://127.0.0.1:1");
  EXPECT_EQ(j["ca"], ca_);
}

TEST_F(RememberedServersTest, ANewUserOnTheSameServerNeedsNoOptions) {
  // register and login of another user fall back to the current profile's servers.
  Outcome reg = run_plain({"register", "bob", "--password", "correct horse"});
  ASSERT_EQ(reg.status, 0) << reg.err;
  Outcome login = run_plain({"login", "bob", "--password", "correct horse"});
  ASSERT_EQ(login.status, 0) << login.err;
  EXPECT_EQ(store().load("bob")->api, fake_.url());
  EXPECT_EQ(store().load("bob")->ca_file, ca_);
}

TEST_F(RememberedServersTest, OptionsAndEnvironmentWinOverTheProfile) {
  Outcome flag = run_plain({"--api", "http://127.0.0.1:1", "conversations"});
  EXPECT_EQ(flag.status, 1);
  EXPECT_NE(flag.err.find("cannot reach the API at http://127.0.0.1:1"), std::string::npos)
      << flag.err;
  Outcome env = run_plain({"conversations"}, {{"CHAT_HTTP_PORT", "1"}});
  EXPECT_EQ(env.status, 1);
  EXPECT_NE(env.err.find("cannot reach the API at http://127.0.0.1:1"), std::string::npos)
      << env.err;
  EXPECT_EQ(requests_for("GET /v1/conversations"), 0u);

  // A remembered CA file that is gone is an error, unless an option or
  // variable names another one.
  ASSERT_EQ(std::remove(ca_.c_str()), 0);
  Outcome gone = run_plain({"conversations"});
  EXPECT_EQ(gone.status, 1);
  EXPECT_NE(gone.err.find(store().path_for("alice") + ": the remembered CA file " + ca_),
            std::string::npos)
      << gone.err;
  EXPECT_EQ(run_plain({"conversations"}, {{"CHATCTL_CA", "/etc/hostname"}}).status, 0);
  EXPECT_EQ(run_plain({"--ca", "", "conversations"}).status, 0);

  // Logging in with other options replaces what they name; the rest stays.
  ASSERT_EQ(run({"--ca", "", "login", "alice", "--password", "correct horse"}).status, 0);
  auto profile = store().load("alice");
  EXPECT_EQ(profile->api, fake_.url());
  EXPECT_EQ(profile->mqtt, "ssl://127.0.0.1:1");
  EXPECT_EQ(profile->ca_file, "");
}

TEST_F(RememberedServersTest, AProfileWithoutServersKeepsWorking) {
  auto profile = store().load("alice");
  ASSERT_TRUE(profile.is_ok());
  nlohmann::json old = profile_to_json(*profile);
  old.erase("api");
  old.erase("mqtt");
  old.erase("ca");
  write_profile("alice", old);

  EXPECT_EQ(run({"conversations"}).status, 0);  // with --api, as before
  Outcome by_env = run_plain({"conversations"}, {{"CHAT_HTTP_PORT", std::to_string(fake_.port())}});
  EXPECT_EQ(by_env.status, 0) << by_env.err;
  EXPECT_EQ(requests_for("GET /v1/conversations"), 2u);
  EXPECT_TRUE(store().load("alice")->logged_in());
}

TEST_F(RememberedServersTest, ACorruptRememberedValueIsAClearError) {
  auto profile = store().load("alice");
  ASSERT_TRUE(profile.is_ok());
  const std::string path = store().path_for("alice");
  nlohmann::json j = profile_to_json(*profile);

  j["api"] = "ftp://127.0.0.1:1";
  write_profile("alice", j);
  Outcome bad_api = run_plain({"conversations"});
  EXPECT_EQ(bad_api.status, 1);
  EXPECT_NE(bad_api.err.find(path + ": the remembered \"api\" value 'ftp://127.0.0.1:1'"),
            std::string::npos)
      << bad_api.err;
  // --api bypasses it, and logging in with it repairs the profile.
  EXPECT_EQ(run({"conversations"}).status, 0);
  ASSERT_EQ(run({"login", "alice", "--password", "correct horse"}).status, 0);
  EXPECT_EQ(run_plain({"conversations"}).status, 0);

  j = profile_to_json(*store().load("alice"));
  j["mqtt"] = "tcp://[::1";
  write_profile("alice", j);
  Outcome bad_mqtt = run_plain({"--json", "conversations"});
  EXPECT_EQ(bad_mqtt.status, 1);
  auto error = nlohmann::json::parse(bad_mqtt.err);
  EXPECT_EQ(error["error"], "invalid_argument");
  EXPECT_NE(error["message"].get<std::string>().find(path + ": the remembered \"mqtt\""),
            std::string::npos)
      << bad_mqtt.err;

  j["mqtt"] = nlohmann::json::array();
  write_profile("alice", j);
  Outcome wrong_type = run_plain({"conversations"});
  EXPECT_EQ(wrong_type.status, 1);
  EXPECT_NE(wrong_type.err.find(path), std::string::npos) << wrong_type.err;
  EXPECT_NE(wrong_type.err.find("\"mqtt\" is not a string"), std::string::npos) << wrong_type.err;
  EXPECT_EQ(requests_for("GET /v1/conversations"), 2u);
}

}  // namespace
}  // namespace chat::tools

namespace chat::tools {
namespace {

class DevicesCommandTest : public CommandsTest {};

TEST_F(DevicesCommandTest, RegisterListAndUnregisterThisDevice) {
  register_and_login("bob");
  Outcome none = run({"devices"});
  ASSERT_EQ(none.status, 0) << none.err;
  EXPECT_EQ(none.out, "");
  EXPECT_NE(none.err.find("no devices with push"), std::string::npos) << none.err;

  Outcome reg =
      run({"devices", "register", "--platform", "fcm", "--token", "tok-abc", "--device", "phone"});
  ASSERT_EQ(reg.status, 0) << reg.err;
  EXPECT_EQ(reg.out, "registered phone  fcm  token ...abc\n");
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    EXPECT_EQ(fake_.last_push_token, "tok-abc");
    EXPECT_EQ(fake_.devices["bob"].count("phone"), 1u);
  }
  // Without --device: the profile's own device id.
  Outcome own = run({"devices", "register", "--platform", "apns", "--token", "tok-xyz"});
  ASSERT_EQ(own.status, 0) << own.err;
  Outcome list = run({"devices", "list"});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find("phone  fcm  token ...abc\n"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("apns  token ...xyz\n"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("tok-abc"), std::string::npos);

  Outcome gone = run({"devices", "unregister", "phone"});
  ASSERT_EQ(gone.status, 0) << gone.err;
  EXPECT_EQ(gone.out, "unregistered phone\n");
  Outcome again = run({"devices", "unregister", "phone"});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.err.find("no push target"), std::string::npos) << again.err;
}

TEST_F(DevicesCommandTest, UsageErrors) {
  EXPECT_EQ(run({"devices", "register", "--platform", "fcm"}).status, kExitUsage);
  EXPECT_EQ(run({"devices", "register", "--platform", "gcm", "--token", "t"}).status, kExitUsage);
  EXPECT_EQ(run({"devices", "list", "--token", "t"}).status, kExitUsage);
  EXPECT_EQ(run({"devices", "frobnicate"}).status, kExitUsage);
  EXPECT_EQ(run({"devices", "unregister", "bob:phone"}).status, kExitUsage);
  EXPECT_EQ(run({"send", "bob", "hi", "--platform", "fcm"}).status, kExitUsage);
}

}  // namespace
}  // namespace chat::tools
