// End-to-end encryption with chatctl on the real stack (docs/e2e.md): the
// built chatctl binary as separate processes per device, chat-api's key
// directory, the broker's e2e routing. Two users both ways (also offline),
// a user's other devices, a group on sender keys, the session reset, prekey
// exhaustion, and no plaintext anywhere under CHAT_DATA_DIR.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "stack.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The JSON objects among the output lines (chatctl --json; diagnostics are
// "chatctl: ..." lines).
std::vector<json> json_lines(const std::string& output) {
  std::vector<json> out;
  std::istringstream in(output);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    auto j = json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  return out;
}

// The e2e messages of a --json listen/history output.
std::vector<json> e2e_messages(const std::string& output) {
  std::vector<json> out;
  for (auto& j : json_lines(output)) {
    if (j.value("type", "") == "e2e" && j.contains("e2e")) out.push_back(std::move(j));
  }
  return out;
}

const json* with_text(const std::vector<json>& messages, const std::string& text) {
  for (const auto& m : messages) {
    if (m["e2e"].value("text", "") == text) return &m;
  }
  return nullptr;
}

class E2eChatctl : public ::testing::Test {
 protected:
  E2eChatctl() : stack(options()) {
    // The chatctl homes (private keys, the plaintext cache) live outside
    // CHAT_DATA_DIR, as on a real client machine.
    char tmpl[] = "/tmp/chat-e2e-chatctl-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    homes_ = tmpl;
  }
  ~E2eChatctl() override {
    std::error_code ec;
    fs::remove_all(homes_, ec);
  }
  static StackOptions options() {
    StackOptions o;
    // The exhaustion test drains 100 prekeys by claims.
    o.env["CHAT_KEY_CLAIM_RATE"] = "100000";
    o.env["CHAT_KEY_CLAIM_BURST"] = "100000";
    return o;
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << stack.logs();
  }

  std::string home(const std::string& name) { return homes_ + "/" + name; }

  std::vector<std::string> argv(const std::string& home_name, std::vector<std::string> args) {
    std::vector<std::string> a = {CHAT_BIN_DIR "/chatctl",
                                  "--home",
                                  home(home_name),
                                  "--api",
                                  stack.base_url(),
                                  "--mqtt",
                                  "127.0.0.1:" + std::to_string(stack.mqtt_port())};
    a.insert(a.end(), args.begin(), args.end());
    return a;
  }

  // Runs chatctl to the end: {exit status, stdout and stderr}.
  std::pair<int, std::string> chatctl(const std::string& home_name, std::vector<std::string> args) {
    const std::string log = homes_ + "/run-" + std::to_string(++runs_) + ".log";
    Process p;
    p.start(argv(home_name, std::move(args)), {}, log);
    int rc = p.wait(30s);
    return {rc, read_file(log)};
  }

  // Starts chatctl in the background; its output goes to *log.
  std::unique_ptr<Process> start(const std::string& home_name, std::vector<std::string> args,
                                 std::string* log) {
    *log = homes_ + "/run-" + std::to_string(++runs_) + ".log";
    auto p = std::make_unique<Process>();
    p->start(argv(home_name, std::move(args)), {}, *log);
    return p;
  }

  // A registered user logged in on `device` in `home_name`, with keys.
  void device(const std::string& home_name, const std::string& user, const std::string& dev,
              bool registered = false) {
    if (!registered) stack.register_user(user);
    auto login =
        chatctl(home_name, {"login", user, "--password", "correct horse", "--device", dev});
    ASSERT_EQ(login.first, 0) << login.second;
    auto keys = chatctl(home_name, {"--as", user, "keys", "init"});
    ASSERT_EQ(keys.first, 0) << keys.second;
  }

  // The body of message `id` as archived (history returns it whole; the
  // sender's own echo carries only the entries of its own devices).
  json archived_body(const std::string& home_name, const std::string& user, const std::string& peer,
                     const std::string& id) {
    auto history = chatctl(home_name, {"--as", user, "--json", "history", peer});
    EXPECT_EQ(history.first, 0) << history.second;
    for (const auto& m : json_lines(history.second)) {
      if (m.value("id", "") == id) return m["body"];
    }
    ADD_FAILURE() << id << " not in the history of " << user << ": " << history.second;
    return json();
  }

  // Reads every file under CHAT_DATA_DIR (archive and key RocksDB files,
  // WALs, logs, media) and fails on any of `secrets`; `control` (sent in the
  // clear) must be found, so the scan can see message text at all.
  void expect_no_plaintext(const std::vector<std::string>& secrets, const std::string& control) {
    bool control_seen = false;
    size_t files = 0;
    for (const auto& entry : fs::recursive_directory_iterator(stack.data_dir())) {
      if (!entry.is_regular_file()) continue;
      ++files;
      const std::string bytes = read_file(entry.path().string());
      control_seen = control_seen || bytes.find(control) != std::string::npos;
      for (const auto& s : secrets) {
        EXPECT_EQ(bytes.find(s), std::string::npos) << "\"" << s << "\" in " << entry.path();
      }
    }
    EXPECT_GT(files, 5u);
    EXPECT_TRUE(control_seen) << "the clear-text control message is nowhere under "
                              << stack.data_dir();
  }

  Stack stack;
  std::string homes_;
  int runs_ = 0;
};

TEST_F(E2eChatctl, TwoUsersBothWaysWhileOfflineAndNoPlaintextOnTheServer) {
  device("main", "alice", "a1");
  device("main", "bob", "b1");

  // bob is offline: he reads it later, from sync.
  auto sent =
      chatctl("main", {"--as", "alice", "--json", "send", "--e2e", "bob", "rosebud at noon"});
  ASSERT_EQ(sent.first, 0) << sent.second;
  auto envelope = json_lines(sent.second).at(0);
  EXPECT_EQ(envelope["type"], "e2e");
  EXPECT_EQ(envelope["dev"], "a1-tx");
  EXPECT_EQ(envelope.dump().find("rosebud"), std::string::npos);

  auto read =
      chatctl("main", {"--as", "bob", "--json", "listen", "--count", "1", "--timeout", "10"});
  ASSERT_EQ(read.first, 0) << read.second;
  auto got = e2e_messages(read.second);
  ASSERT_EQ(got.size(), 1u) << read.second;
  EXPECT_EQ(got[0]["e2e"]["text"], "rosebud at noon");
  EXPECT_EQ(got[0]["e2e"]["from"], "alice:a1-tx");
  EXPECT_EQ(got[0]["e2e"]["verified"], false);
  EXPECT_EQ(got[0]["body"]["to"]["bob:b1-tx"]["type"], 3);  // it started the session

  // And back: alice reads it, after her own message (from her cache).
  auto reply = chatctl("main", {"--as", "bob", "send", "--e2e", "alice", "the eagle has landed"});
  ASSERT_EQ(reply.first, 0) << reply.second;
  auto back =
      chatctl("main", {"--as", "alice", "--json", "listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(back.first, 0) << back.second;
  auto alice_got = e2e_messages(back.second);
  ASSERT_NE(with_text(alice_got, "rosebud at noon"), nullptr) << back.second;
  const json* answer = with_text(alice_got, "the eagle has landed");
  ASSERT_NE(answer, nullptr) << back.second;
  EXPECT_EQ((*answer)["e2e"]["from"], "bob:b1-tx");
  EXPECT_EQ((*answer)["body"]["to"]["alice:a1-tx"]["type"], 1);  // bob had the session

  // history shows both, again, without decrypting twice.
  auto history = chatctl("main", {"--as", "bob", "history", "alice"});
  ASSERT_EQ(history.first, 0) << history.second;
  EXPECT_NE(history.second.find("rosebud at noon"), std::string::npos) << history.second;
  EXPECT_NE(history.second.find("the eagle has landed"), std::string::npos) << history.second;
  EXPECT_NE(history.second.find("alice:a1-tx -> bob [e2e, unverified]"), std::string::npos);

  // verify: the same safety number on both sides; --confirm marks alice's device.
  auto v1 = chatctl("main", {"--as", "bob", "--json", "verify", "alice", "--confirm"});
  auto v2 = chatctl("main", {"--as", "alice", "--json", "verify", "bob"});
  ASSERT_EQ(v1.first, 0) << v1.second;
  ASSERT_EQ(v2.first, 0) << v2.second;
  auto n1 = json_lines(v1.second).at(0)["safety_number"].get<std::string>();
  EXPECT_EQ(n1.size(), 71u);
  EXPECT_EQ(n1, json_lines(v2.second).at(0)["safety_number"]);
  auto again = chatctl("main", {"--as", "bob", "history", "alice"});
  EXPECT_NE(again.second.find("alice:a1-tx -> bob [e2e, verified]"), std::string::npos)
      << again.second;

  auto clear = chatctl("main", {"--as", "alice", "send", "bob", "plain control words"});
  ASSERT_EQ(clear.first, 0) << clear.second;
  expect_no_plaintext({"rosebud at noon", "the eagle has landed"}, "plain control words");
}

TEST_F(E2eChatctl, OtherDevicesOfTheSenderReadItsMessages) {
  device("main", "alice", "a1");
  device("phone", "alice", "a2", /*registered=*/true);
  device("tablet", "alice", "a3", /*registered=*/true);
  device("main", "bob", "b1");

  auto sent =
      chatctl("main", {"--as", "alice", "--json", "send", "--e2e", "bob", "from the laptop"});
  ASSERT_EQ(sent.first, 0) << sent.second;
  const json to = archived_body("main", "alice", "bob", json_lines(sent.second).at(0)["id"])["to"];
  EXPECT_TRUE(to.contains("alice:a2-tx") && to.contains("alice:a3-tx") && to.contains("bob:b1-tx"))
      << to.dump();
  EXPECT_FALSE(to.contains("alice:a1-tx"));  // not to itself

  auto phone =
      chatctl("phone", {"--as", "alice", "--json", "listen", "--count", "1", "--timeout", "10"});
  ASSERT_EQ(phone.first, 0) << phone.second;
  auto got = e2e_messages(phone.second);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["e2e"]["text"], "from the laptop");
  EXPECT_EQ(got[0]["e2e"]["from"], "alice:a1-tx");

  auto tablet = chatctl("tablet", {"--as", "alice", "history", "bob"});
  ASSERT_EQ(tablet.first, 0) << tablet.second;
  EXPECT_NE(tablet.second.find("alice:a1-tx -> bob [e2e, unverified]: from the laptop"),
            std::string::npos)
      << tablet.second;
}

TEST_F(E2eChatctl, AGroupOfThreeOnSenderKeys) {
  device("main", "alice", "a1");
  device("main", "bob", "b1");
  device("main", "carol", "c1");
  auto created =
      chatctl("main", {"--as", "alice", "group", "create", "Cabal", "--members", "bob,carol"});
  ASSERT_EQ(created.first, 0) << created.second;
  std::string gid = created.second.substr(0, created.second.find('\n'));

  auto first = chatctl(
      "main", {"--as", "alice", "--json", "send", "--e2e", "g:" + gid, "meet at the bridge"});
  ASSERT_EQ(first.first, 0) << first.second;
  json body = archived_body("main", "alice", "g:" + gid, json_lines(first.second).at(0)["id"]);
  ASSERT_TRUE(body.contains("group")) << body.dump();  // one sender-key ciphertext
  EXPECT_TRUE(body["to"].contains("bob:b1-tx") && body["to"].contains("carol:c1-tx"));
  auto second =
      chatctl("main", {"--as", "alice", "--json", "send", "--e2e", "g:" + gid, "bring rope"});
  ASSERT_EQ(second.first, 0) << second.second;
  body = archived_body("main", "alice", "g:" + gid, json_lines(second.second).at(0)["id"]);
  ASSERT_TRUE(body.contains("group"));
  EXPECT_FALSE(body.contains("to") && body["to"].contains("bob:b1-tx"))  // has the key already
      << body.dump();

  auto bob =
      chatctl("main", {"--as", "bob", "--json", "listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(bob.first, 0) << bob.second;
  auto got = e2e_messages(bob.second);
  ASSERT_NE(with_text(got, "meet at the bridge"), nullptr) << bob.second;
  ASSERT_NE(with_text(got, "bring rope"), nullptr) << bob.second;
  EXPECT_EQ(with_text(got, "bring rope")->at("e2e")["from"], "alice:a1-tx");

  // carol answers: her own sender key.
  auto answer = chatctl("main", {"--as", "carol", "send", "--e2e", "g:" + gid, "rope packed"});
  ASSERT_EQ(answer.first, 0) << answer.second;
  auto carol = chatctl("main", {"--as", "carol", "history", "g:" + gid});
  EXPECT_NE(carol.second.find("bring rope"), std::string::npos) << carol.second;
  auto alice = chatctl("main", {"--as", "alice", "history", "g:" + gid});
  EXPECT_NE(alice.second.find("carol:c1-tx -> g:" + gid + " [e2e, unverified]: rope packed"),
            std::string::npos)
      << alice.second;

  auto clear = chatctl("main", {"--as", "alice", "send", "g:" + gid, "plain group control"});
  ASSERT_EQ(clear.first, 0) << clear.second;
  expect_no_plaintext({"meet at the bridge", "bring rope", "rope packed"}, "plain group control");
}

TEST_F(E2eChatctl, ALostSessionIsResetAndTheMessageSentAgain) {
  device("main", "alice", "a1");
  device("main", "bob", "b1");
  ASSERT_EQ(chatctl("main", {"--as", "alice", "send", "--e2e", "bob", "one"}).first, 0);
  ASSERT_EQ(chatctl("main", {"--as", "bob", "send", "--e2e", "alice", "two"}).first, 0);
  auto settle = chatctl("main", {"--as", "alice", "listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(settle.first, 0) << settle.second;
  auto bob_settle = chatctl("main", {"--as", "bob", "listen", "--count", "2", "--timeout", "10"});
  ASSERT_EQ(bob_settle.first, 0) << bob_settle.second;

  // bob loses his sessions; alice's next message (a SignalMessage) cannot
  // be decrypted by him.
  fs::remove_all(home("main") + "/e2e/bob/b1-tx/sessions");
  auto lost = chatctl("main", {"--as", "alice", "--json", "send", "--e2e", "bob", "three"});
  ASSERT_EQ(lost.first, 0) << lost.second;
  const std::string lost_id = json_lines(lost.second).at(0)["id"];
  EXPECT_EQ(archived_body("main", "alice", "bob", lost_id)["to"]["bob:b1-tx"]["type"], 1);

  // bob's listen fails on it and asks alice's device for a new session;
  // alice's listen answers by sending it again; bob reads it.
  std::string bob_log;
  auto bob = start("main", {"--as", "bob", "--json", "listen", "--count", "2", "--timeout", "20"},
                   &bob_log);
  ASSERT_TRUE(eventually(
      [&] { return read_file(bob_log).find("could not decrypt") != std::string::npos; }, 15s))
      << read_file(bob_log);
  // Its own "three", then (not counted) bob's request, then its own resend.
  auto alice = chatctl("main", {"--as", "alice", "listen", "--count", "2", "--timeout", "15"});
  EXPECT_EQ(alice.first, 0) << alice.second;
  EXPECT_EQ(bob->wait(20s), 0) << read_file(bob_log);
  auto got = e2e_messages(read_file(bob_log));
  const json* resent = with_text(got, "three");
  ASSERT_NE(resent, nullptr) << read_file(bob_log);
  EXPECT_EQ((*resent)["e2e"]["resend_of"], lost_id);

  auto history = chatctl("main", {"--as", "bob", "--json", "history", "alice"});
  bool original_readable = false;
  for (const auto& m : e2e_messages(history.second)) {
    original_readable =
        original_readable || (m["id"] == lost_id && m["e2e"].value("text", "") == "three");
  }
  EXPECT_TRUE(original_readable) << history.second;
}

// alice's listen sees carol leave (and come back) and carol's device get a
// new identity: each time alice's next group message has a new sender key,
// so bob gets a fresh distribution message (it would not, were the old key
// kept, which the gone member or identity holds).
TEST_F(E2eChatctl, ALeavingMemberOrAReplacedDeviceGetsANewSenderKeyMade) {
  device("main", "alice", "a1");
  device("main", "bob", "b1");
  device("carol", "carol", "c1");
  auto created =
      chatctl("main", {"--as", "alice", "group", "create", "Cabal", "--members", "bob,carol"});
  ASSERT_EQ(created.first, 0) << created.second;
  const std::string gid = created.second.substr(0, created.second.find('\n'));
  const std::string g = "g:" + gid;
  auto send = [&](const std::string& text) {
    auto sent = chatctl("main", {"--as", "alice", "--json", "send", "--e2e", g, text});
    EXPECT_EQ(sent.first, 0) << sent.second;
    return archived_body("main", "alice", g, json_lines(sent.second).at(0)["id"]);
  };
  std::string log;
  auto listen = start("main", {"--as", "alice", "listen", "--timeout", "25"}, &log);
  ASSERT_TRUE(eventually(
      [&] { return read_file(log).find("listening as alice") != std::string::npos; }, 10s))
      << read_file(log);

  json one = send("one");
  ASSERT_TRUE(one["to"].contains("bob:b1-tx") && one["to"].contains("carol:c1-tx")) << one.dump();

  ASSERT_EQ(chatctl("carol", {"--as", "carol", "group", "leave", gid}).first, 0);
  ASSERT_TRUE(
      eventually([&] { return read_file(log).find("carol left Cabal") != std::string::npos; }, 10s))
      << read_file(log);
  ASSERT_EQ(chatctl("main", {"--as", "alice", "group", "add", gid, "carol"}).first, 0);
  json two = send("two");
  EXPECT_TRUE(two["to"].contains("bob:b1-tx")) << two.dump();  // a new key for bob too

  auto forced = chatctl("carol", {"--as", "carol", "keys", "init", "--force"});
  ASSERT_EQ(forced.first, 0) << forced.second;
  ASSERT_TRUE(eventually(
      [&] { return read_file(log).find("carol has a new device") != std::string::npos; }, 10s))
      << read_file(log);
  json three = send("three");
  EXPECT_TRUE(three["to"].contains("bob:b1-tx")) << three.dump();
  EXPECT_TRUE(three["to"].contains("carol:c1-tx")) << three.dump();
  listen->kill(SIGTERM);
  listen->wait(5s);

  auto bob = chatctl("main", {"--as", "bob", "--json", "history", g});
  auto got = e2e_messages(bob.second);
  for (const char* text : {"one", "two", "three"}) {
    EXPECT_NE(with_text(got, text), nullptr) << text << ": " << bob.second;
  }
  auto carol = chatctl("carol", {"--as", "carol", "--json", "history", g});
  EXPECT_NE(with_text(e2e_messages(carol.second), "three"), nullptr) << carol.second;
}

TEST_F(E2eChatctl, ExhaustedPrekeysFallBackToTheSignedPrekeyAndRefill) {
  device("main", "bob", "b1");
  const std::string carol = stack.register_user("carol");
  for (int i = 0; i < 100; ++i) {
    auto [status, answer] = stack.get("/v1/keys/bob", carol);
    ASSERT_EQ(status, 200) << answer.dump();
  }
  auto [status, drained] = stack.get("/v1/keys/bob", carol);
  ASSERT_EQ(status, 200);
  EXPECT_TRUE(drained["devices"][0]["prekey"].is_null()) << drained.dump();
  auto count = chatctl("main", {"--as", "bob", "--json", "keys", "status"});
  ASSERT_EQ(count.first, 0) << count.second;
  EXPECT_EQ(json_lines(count.second).at(0)["count"], 0);

  device("main", "dave", "d1");
  auto sent = chatctl("main", {"--as", "dave", "send", "--e2e", "bob", "no prekey left"});
  ASSERT_EQ(sent.first, 0) << sent.second;

  auto refill = chatctl("main", {"--as", "bob", "--json", "keys", "refill"});
  ASSERT_EQ(refill.first, 0) << refill.second;
  EXPECT_EQ(json_lines(refill.second).at(0)["uploaded"], 100);
  EXPECT_EQ(json_lines(refill.second).at(0)["count"], 100);

  auto read =
      chatctl("main", {"--as", "bob", "--json", "listen", "--count", "1", "--timeout", "10"});
  ASSERT_EQ(read.first, 0) << read.second;
  auto got = e2e_messages(read.second);
  ASSERT_EQ(got.size(), 1u) << read.second;
  EXPECT_EQ(got[0]["e2e"]["text"], "no prekey left");

  // keys init again is refused; --force makes a new identity.
  auto twice = chatctl("main", {"--as", "bob", "keys", "init"});
  EXPECT_EQ(twice.first, 1);
  EXPECT_NE(twice.second.find("--force"), std::string::npos) << twice.second;
}

}  // namespace
}  // namespace chat::testing
