// E2eClient (chatctl's Signal client) against FakeApi's key directory, with
// the MQTT publish replaced by a fake "wire": what a device may make another
// one send (reset requests, resends), sender-key rotation when a device or a
// member goes, and verified marks when a verified user's devices change.
#include "chatctl/e2e_client.h"

#include <gtest/gtest.h>

#include <memory>

#include "chat/common/base64.h"
#include "chatctl/commands.h"
#include "chatctl/e2e.h"
#include "fake_api.h"
#include "test_dir.h"

namespace chat::tools {
namespace {

using nlohmann::json;
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

EnvLookup no_env() {
  return [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
}

// One chatctl device: its own home, profile and E2eClient ("<dev>-tx").
struct Device {
  std::string user, dev, home;
  std::FILE* out = nullptr;
  std::FILE* err = nullptr;
  std::unique_ptr<Output> output;
  std::unique_ptr<Context> ctx;
  std::unique_ptr<Credentials> credentials;
  std::unique_ptr<E2eClient> e2e;

  ~Device() {
    e2e.reset();
    credentials.reset();
    ctx.reset();
    if (out) std::fclose(out);
    if (err) std::fclose(err);
  }
  std::string name() const { return user + ":" + dev + "-tx"; }
  // What it said on stderr since the last call.
  std::string said() {
    std::string all = read_all(err);
    std::string fresh = all.substr(std::min(all.size(), seen_err));
    seen_err = all.size();
    return fresh;
  }
  size_t seen_err = 0;
};

class E2eClientTest : public ::testing::Test {
 protected:
  // Registers `user` (once), logs in as `dev` in a home of its own, makes keys.
  std::unique_ptr<Device> device(const std::string& user, const std::string& dev) {
    auto d = std::make_unique<Device>();
    d->user = user;
    d->dev = dev;
    d->home = dir_.path() + "/" + user + "-" + dev;
    if (!registered_.count(user)) {
      EXPECT_EQ(chatctl(d->home, {"register", user, "--password", "correct horse"}).first, 0);
      registered_.insert(user);
    }
    auto login = chatctl(d->home, {"login", user, "--password", "correct horse", "--device", dev});
    EXPECT_EQ(login.first, 0) << login.second;
    d->out = std::tmpfile();
    d->err = std::tmpfile();
    d->output = std::make_unique<Output>(d->out, d->err, false);
    Settings settings;
    settings.api = *parse_api_url(fake_.url());
    settings.home = d->home;
    d->ctx = std::make_unique<Context>(CommandLine{}, settings, clock_, *d->output, no_env());
    d->credentials = std::make_unique<Credentials>(d->ctx->store, d->ctx->api, d->ctx->clock, user);
    d->e2e = std::make_unique<E2eClient>(*d->ctx, *d->credentials, dev + "-tx");
    Device* raw = d.get();
    d->e2e->set_publisher([this, raw](const std::string& topic, const json& body,
                                      const std::string& cid) -> Result<json> {
      return envelope(*raw, topic, body, cid);
    });
    Status made = d->e2e->init_keys(false);
    EXPECT_TRUE(made.is_ok()) << made.message();
    return d;
  }

  // chatctl as a program against FakeApi: {status, stdout + stderr}.
  std::pair<int, std::string> chatctl(const std::string& home, std::vector<std::string> args) {
    args.insert(args.begin(), {"--api", fake_.url(), "--home", home});
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    int status = run_chatctl(args, no_env(), out, err, clock_);
    std::string text = read_all(out) + read_all(err);
    std::fclose(out);
    std::fclose(err);
    return {status, text};
  }

  // The envelope the broker would make of `body` published by `from` on
  // `topic`; it goes on the wire.
  json envelope(const Device& from, const std::string& topic, const json& body,
                const std::string& cid) {
    std::string conv, to;
    if (topic.rfind("g/", 0) == 0) {
      conv = to = "g:" + topic.substr(2);
    } else {
      to = topic.substr(3);
      conv = "dm:" + std::min(from.user, to) + ":" + std::max(from.user, to);
    }
    char id[17];
    std::snprintf(id, sizeof id, "%016x", ++ids_);
    json e = {{"v", 1},       {"id", id},          {"ts", clock_.now_ms()},
              {"conv", conv}, {"from", from.user}, {"dev", from.dev + "-tx"},
              {"to", to},     {"cid", cid},        {"type", "e2e"},
              {"body", body}};
    wire_.push_back(e);
    return e;
  }

  // send --e2e without the broker: sealed, "published", kept under its id.
  json send(Device& from, const std::string& peer, const std::string& text) {
    const std::string cid = "cid-" + std::to_string(++cids_);
    auto body = from.e2e->seal_text(peer, text, cid);
    EXPECT_TRUE(body) << body.status().message();
    if (!body) return json();
    std::string topic = peer.rfind("g:", 0) == 0 ? "g/" + peer.substr(2) : "dm/" + peer;
    json e = envelope(from, topic, *body, cid);
    from.e2e->sent(cid, e);
    return e;
  }

  // A payload of `from`'s choosing, encrypted to the device `to_name` on the
  // session it has, published in the conversation with `peer`: what a
  // misbehaving client could send.
  json forge(Device& from, const std::string& to_name, const std::string& peer,
             const json& plaintext) {
    json body;
    Status s = from.e2e->store().transact([&](E2eState& state) -> Status {
      auto ct = encrypt_to(state, to_name, plaintext.dump());
      if (!ct) return ct.status();
      body = {{"to", {{to_name, {{"type", ct->type}, {"body", base64_encode(ct->body)}}}}}};
      return Status::ok();
    });
    EXPECT_TRUE(s.is_ok()) << s.message();
    std::string topic = peer.rfind("g:", 0) == 0 ? "g/" + peer.substr(2) : "dm/" + peer;
    return envelope(from, topic, body, "forged-" + std::to_string(++cids_));
  }

  json shown(Device& d, const json& env, bool live = true) {
    return d.e2e->show(env, false, live).json["e2e"];
  }

  std::string group(const std::string& owner, std::vector<std::string> members) {
    std::lock_guard<std::mutex> lock(fake_.mu());
    std::string gid = "G" + std::to_string(fake_.groups.size() + 1);
    members.insert(members.begin(), owner);
    fake_.groups[gid] = {{"id", gid}, {"name", "g"}, {"members", members}, {"admins", {owner}}};
    return gid;
  }
  void set_members(const std::string& gid, std::vector<std::string> members) {
    std::lock_guard<std::mutex> lock(fake_.mu());
    fake_.groups[gid]["members"] = members;
  }
  std::string identity_key_of(const std::string& user, const std::string& device) {
    std::lock_guard<std::mutex> lock(fake_.mu());
    return fake_.keys[user][device]["identity_key"];
  }
  bool verified(Device& d, const std::string& name) {
    bool v = false;
    EXPECT_TRUE(d.e2e->store()
                    .transact([&](E2eState& state) {
                      auto it = state.identities.find(name);
                      v = it != state.identities.end() && it->second.verified;
                      return Status::ok();
                    })
                    .is_ok());
    return v;
  }

  FakeApi fake_;
  TestDir dir_;
  FakeClock clock_;
  std::set<std::string> registered_;
  std::vector<json> wire_;
  unsigned ids_ = 0x100;
  int cids_ = 0;
};

TEST_F(E2eClientTest, AResetIsAnsweredOnlyForARecipientInTheSameConversationOnceAndLive) {
  auto alice = device("alice", "a1");
  auto bob = device("bob", "b1");
  auto carol = device("carol", "c1");
  json secret = send(*alice, "bob", "for bob only");
  ASSERT_EQ(shown(*bob, secret)["text"], "for bob only");
  // carol has a session with alice (she wrote to her).
  ASSERT_EQ(shown(*alice, send(*carol, "alice", "hi alice"))["text"], "hi alice");

  // carol asks for bob's message, in her own conversation: nothing sent.
  const std::string secret_id = secret["id"];
  json from_carol = forge(*carol, "alice:a1-tx", "alice", {{"t", "reset"}, {"failed", secret_id}});
  size_t before = wire_.size();
  EXPECT_EQ(shown(*alice, from_carol)["control"], "reset");
  EXPECT_EQ(wire_.size(), before) << wire_.back().dump();
  EXPECT_NE(alice->said().find("not sent again"), std::string::npos);

  // bob (a recipient) asks in another conversation (a group with alice): no.
  std::string gid = group("alice", {"bob"});
  json elsewhere = forge(*bob, "alice:a1-tx", "g:" + gid, {{"t", "reset"}, {"failed", secret_id}});
  before = wire_.size();
  shown(*alice, elsewhere);
  EXPECT_EQ(wire_.size(), before);

  // bob asks in their conversation: history does not answer, listen does, once.
  json ask = forge(*bob, "alice:a1-tx", "alice", {{"t", "reset"}, {"failed", secret_id}});
  size_t asked = wire_.size();
  shown(*alice, ask, /*live=*/false);
  EXPECT_EQ(wire_.size(), asked);
  shown(*alice, ask, /*live=*/true);
  ASSERT_EQ(wire_.size(), asked + 1);
  json resend = wire_.back();
  EXPECT_EQ(resend["conv"], "dm:alice:bob");
  EXPECT_EQ(resend["body"]["to"].size(), 1u);
  EXPECT_TRUE(resend["body"]["to"].contains("bob:b1-tx"));
  EXPECT_EQ(shown(*bob, resend)["text"], "for bob only");
  shown(*alice, ask, /*live=*/true);  // again (listen restarted, sync): answered already
  EXPECT_EQ(wire_.size(), asked + 1);
}

TEST_F(E2eClientTest, AResetForASenderKeyMessageIsAnsweredOnlyForAHolderOfThatKey) {
  auto alice = device("alice", "a1");
  auto bob = device("bob", "b1");
  auto carol = device("carol", "c1");
  std::string gid = group("alice", {"bob"});
  json first = send(*alice, "g:" + gid, "before carol");
  ASSERT_TRUE(first["body"].contains("group"));
  ASSERT_EQ(shown(*bob, first)["text"], "before carol");
  set_members(gid, {"alice", "bob", "carol"});  // carol joins later
  ASSERT_EQ(shown(*alice, send(*carol, "g:" + gid, "hello all"))["text"], "hello all");

  const json reset = {{"t", "reset"}, {"failed", first["id"].get<std::string>()}};
  json from_carol = forge(*carol, "alice:a1-tx", "g:" + gid, reset);
  size_t before = wire_.size();
  shown(*alice, from_carol);
  EXPECT_EQ(wire_.size(), before);
  json from_bob = forge(*bob, "alice:a1-tx", "g:" + gid, reset);
  before = wire_.size();
  shown(*alice, from_bob);
  ASSERT_EQ(wire_.size(), before + 1);
  EXPECT_TRUE(wire_.back()["body"]["to"].contains("bob:b1-tx"));
}

TEST_F(E2eClientTest, AResendReplacesOnlyAFailedMessageOfTheSameDeviceAndConversation) {
  auto alice = device("alice", "a1");
  auto bob = device("bob", "b1");
  auto carol = device("carol", "c1");
  json original = send(*alice, "bob", "the real text");
  const std::string original_id = original["id"];
  ASSERT_EQ(shown(*bob, original)["text"], "the real text");
  ASSERT_EQ(shown(*bob, send(*carol, "bob", "hi bob"))["text"], "hi bob");

  // carol claims to resend alice's message; alice claims it of a message
  // bob read fine: both are new messages, the original stays.
  json forged = forge(*carol, "bob:b1-tx", "bob",
                      {{"t", "text"}, {"text", "forged"}, {"resend_of", original_id}});
  json got = shown(*bob, forged);
  EXPECT_EQ(got["text"], "forged");
  EXPECT_FALSE(got.contains("resend_of")) << got.dump();
  json again = forge(*alice, "bob:b1-tx", "bob",
                     {{"t", "text"}, {"text", "rewritten"}, {"resend_of", original_id}});
  EXPECT_FALSE(shown(*bob, again).contains("resend_of"));
  EXPECT_EQ(shown(*bob, original, false)["text"], "the real text");

  // A message bob could not read (his session with alice is gone), sent
  // again by alice: it replaces it; the same from carol would not have.
  ASSERT_TRUE(bob->e2e->store()
                  .transact([](E2eState& state) {
                    state.delete_session(session_key("alice:a1-tx", 1));
                    return Status::ok();
                  })
                  .is_ok());
  json lost = send(*alice, "bob", "lost one");
  const std::string lost_id = lost["id"];
  EXPECT_EQ(shown(*bob, lost)["status"], "failed");
  // bob's reset request went out; alice answers it (live).
  json reset = wire_.back();
  ASSERT_EQ(reset["from"], "bob");
  shown(*alice, reset);
  json resend = wire_.back();
  ASSERT_EQ(resend["from"], "alice");
  // carol's claim first: refused.
  json claim = forge(*carol, "bob:b1-tx", "bob",
                     {{"t", "text"}, {"text", "carol's version"}, {"resend_of", lost_id}});
  EXPECT_FALSE(shown(*bob, claim).contains("resend_of"));
  EXPECT_EQ(shown(*bob, lost, false)["status"], "failed");
  json real = shown(*bob, resend);
  EXPECT_EQ(real["resend_of"], lost_id);
  EXPECT_EQ(shown(*bob, lost, false)["text"], "lost one");
}

TEST_F(E2eClientTest, ARemovedOrReplacedDeviceOrALeavingMemberRotatesTheSenderKey) {
  auto alice = device("alice", "a1");
  auto bob = device("bob", "b1");
  auto carol = device("carol", "c1");
  std::string gid = group("alice", {"bob", "carol"});
  json first = send(*alice, "g:" + gid, "one");
  ASSERT_TRUE(first["body"]["to"].contains("bob:b1-tx"));
  ASSERT_TRUE(first["body"]["to"].contains("carol:c1-tx"));
  EXPECT_FALSE(send(*alice, "g:" + gid, "two")["body"].contains("to"));  // all have the key

  // carol's device gets a new identity (keys init --force); alice's listen
  // sees it go and come back.
  ASSERT_TRUE(carol->e2e->init_keys(/*force=*/true).is_ok());
  alice->e2e->on_keys_event({{"type", "keys"},
                             {"action", "device_removed"},
                             {"user", "carol"},
                             {"device", "c1-tx"},
                             {"identity_key", ""}},
                            1);
  alice->e2e->on_keys_event({{"type", "keys"},
                             {"action", "device_added"},
                             {"user", "carol"},
                             {"device", "c1-tx"},
                             {"identity_key", identity_key_of("carol", "c1-tx")}},
                            1);
  json third = send(*alice, "g:" + gid, "three");
  EXPECT_TRUE(third["body"]["to"].contains("bob:b1-tx")) << third["body"].dump();  // a new key
  EXPECT_TRUE(third["body"]["to"].contains("carol:c1-tx"));
  EXPECT_EQ(shown(*bob, first)["text"], "one");
  EXPECT_EQ(shown(*bob, third)["text"], "three");
  EXPECT_EQ(shown(*carol, third)["text"], "three");

  // The same without the events (no listen ran): send sees the new identity.
  ASSERT_TRUE(carol->e2e->init_keys(/*force=*/true).is_ok());
  json fourth = send(*alice, "g:" + gid, "four");
  EXPECT_TRUE(fourth["body"]["to"].contains("bob:b1-tx")) << fourth["body"].dump();
  EXPECT_EQ(shown(*bob, fourth)["text"], "four");

  // carol leaves and is added back before alice writes again: the group
  // event makes a new key all the same.
  alice->e2e->on_group_event({{"type", "group"},
                              {"action", "member_removed"},
                              {"group", gid},
                              {"user", "carol"},
                              {"by", "carol"}});
  json fifth = send(*alice, "g:" + gid, "five");
  EXPECT_TRUE(fifth["body"]["to"].contains("bob:b1-tx")) << fifth["body"].dump();
  EXPECT_EQ(shown(*bob, fifth)["text"], "five");
  EXPECT_FALSE(send(*alice, "g:" + gid, "six")["body"].contains("to"));
}

TEST_F(E2eClientTest, ANewDeviceOfAVerifiedUserClearsTheMarkAndWarns) {
  auto alice = device("alice", "a1");
  auto bob = device("bob", "b1");
  send(*alice, "bob", "hello");
  auto confirmed = chatctl(alice->home, {"--as", "alice", "verify", "bob", "--confirm"});
  ASSERT_EQ(confirmed.first, 0) << confirmed.second;
  ASSERT_TRUE(verified(*alice, "bob:b1-tx"));

  // Seen by listen: a keys event.
  auto phone = device("bob", "b2");
  alice->said();
  alice->e2e->on_keys_event({{"type", "keys"},
                             {"action", "device_added"},
                             {"user", "bob"},
                             {"device", "b2-tx"},
                             {"identity_key", identity_key_of("bob", "b2-tx")}},
                            1);
  EXPECT_FALSE(verified(*alice, "bob:b1-tx"));
  EXPECT_NE(alice->said().find("bob's devices changed since you verified them; compare safety "
                               "numbers again: chatctl verify bob"),
            std::string::npos);

  // Seen by send: the directory has a device this one never saw.
  ASSERT_EQ(chatctl(alice->home, {"--as", "alice", "verify", "bob"}).first, 0);
  confirmed = chatctl(alice->home, {"--as", "alice", "verify", "bob", "--confirm"});
  ASSERT_EQ(confirmed.first, 0) << confirmed.second;
  ASSERT_TRUE(verified(*alice, "bob:b1-tx"));
  auto tablet = device("bob", "b3");
  send(*alice, "bob", "hello again");
  EXPECT_FALSE(verified(*alice, "bob:b1-tx"));
  EXPECT_FALSE(verified(*alice, "bob:b2-tx"));
  EXPECT_NE(alice->said().find("bob's devices changed since you verified them"), std::string::npos);
}

TEST_F(E2eClientTest, ConfirmMarksOnlyTheNumberThatWasShown) {
  auto alice = device("alice", "a1");
  auto bob = device("bob", "b1");
  auto shown_first = chatctl(alice->home, {"--as", "alice", "--json", "verify", "bob"});
  ASSERT_EQ(shown_first.first, 0) << shown_first.second;
  auto phone = device("bob", "b2");  // after alice compared the number
  auto refused = chatctl(alice->home, {"--as", "alice", "--json", "verify", "bob", "--confirm"});
  EXPECT_EQ(refused.first, 1) << refused.second;
  EXPECT_NE(refused.second.find("changed since"), std::string::npos) << refused.second;
  EXPECT_NE(refused.second.find("\"confirmed\":false"), std::string::npos) << refused.second;
  EXPECT_FALSE(verified(*alice, "bob:b1-tx"));
  EXPECT_FALSE(verified(*alice, "bob:b2-tx"));
  // The new number was shown by the refusal: confirming it now marks both.
  auto ok = chatctl(alice->home, {"--as", "alice", "verify", "bob", "--confirm"});
  EXPECT_EQ(ok.first, 0) << ok.second;
  EXPECT_TRUE(verified(*alice, "bob:b1-tx"));
  EXPECT_TRUE(verified(*alice, "bob:b2-tx"));
}

}  // namespace
}  // namespace chat::tools
