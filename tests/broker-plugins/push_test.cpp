// The broker's half of push (docs/push.md): push records written with the
// message for recipient devices that have a push target and are not
// connected, the wake-up, and the push.devices / push.done control ops.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "chat/broker/push_devices.h"
#include "chat/broker/router.h"
#include "chat/common/topics.h"
#include "fake_port.h"

namespace chat::broker {
namespace {

using json = nlohmann::json;

class PushRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("push-router-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    open();
    for (const char* u : {"alice", "bob", "carol"}) ASSERT_TRUE(archive_->add_user(u).is_ok());
    alice_ = session("alice", "phone");
    service_ = session("svc.chat-api", "api-1");
    service_.service = true;
  }
  void open() {
    router_.reset();
    push_.reset();
    directory_.reset();
    archive_.reset();
    store::ArchiveOptions o;
    o.path = dir_.string();
    auto a = store::Archive::open(o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    archive_ = std::move(*a);
    directory_ = std::make_unique<Directory>(*archive_);
    ASSERT_TRUE(directory_->load().is_ok());
    push_ = std::make_unique<PushDevices>(*archive_);
    ASSERT_TRUE(push_->load().is_ok());
    RouterOptions ro;
    router_ = std::make_unique<Router>(clock_, *archive_, *directory_, port_, ro);
    ASSERT_TRUE(router_->init().is_ok());
    router_->set_push(push_.get(),
                      [this](const std::string& client_id) { return connected_.count(client_id); });
  }
  void TearDown() override {
    router_.reset();
    push_.reset();
    directory_.reset();
    archive_.reset();
    std::filesystem::remove_all(dir_);
  }
  static DeviceSession session(const std::string& user, const std::string& device) {
    DeviceSession s;
    s.user = user;
    s.device = device;
    s.client_id = user + ":" + device;
    return s;
  }
  static std::string msg(const std::string& cid, const std::string& type = "text",
                         const json& body = "hi") {
    return json({{"cid", cid}, {"type", type}, {"body", body}}).dump();
  }
  // The control op's reply (the service client's last publish).
  json control(const json& request) {
    json r = request;
    r["req"] = "r1";
    router_->on_control(service_, r.dump());
    EXPECT_FALSE(port_.published.empty());
    EXPECT_EQ(port_.published.back().topic, topics::kControlResponse);
    return json::parse(port_.published.back().payload);
  }
  void set_devices(const std::string& user, const std::vector<std::string>& devices) {
    json reply = control({{"op", "push.devices"}, {"user", user}, {"devices", devices}});
    ASSERT_TRUE(reply["ok"].get<bool>()) << reply.dump();
  }
  std::vector<store::PushRecord> records() {
    auto r = archive_->push_records("", 100);
    EXPECT_TRUE(r.is_ok());
    return r.is_ok() ? *r : std::vector<store::PushRecord>{};
  }
  size_t wakeups() {
    size_t n = 0;
    for (const auto& p : port_.published) n += p.topic == topics::kControlPush ? 1 : 0;
    return n;
  }

  FakeClock clock_{1'700'000'000'000};
  std::filesystem::path dir_;
  std::unique_ptr<store::Archive> archive_;
  FakePort port_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<PushDevices> push_;
  std::unique_ptr<Router> router_;
  std::set<std::string> connected_;
  DeviceSession alice_;
  DeviceSession service_;
};

TEST_F(PushRouterTest, ARecordNamesEachOfflineRecipientDeviceWithATarget) {
  set_devices("bob", {"phone", "web"});
  set_devices("alice", {"phone", "tablet"});  // the sender: never pushed
  connected_ = {"bob:web"};                   // an open web tab does not silence the phone
  auto out = router_->on_message(alice_, "dm/bob", msg("c1"), 1);
  ASSERT_EQ(out.action, MessageOutcome::Action::kAccept);
  const std::string id = json::parse(out.payload)["id"];
  auto stored = records();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].id, id);
  json record = json::parse(stored[0].json);
  EXPECT_EQ(record["id"], id);
  EXPECT_EQ(record["conv"], "dm:alice:bob");
  EXPECT_EQ(record["from"], "alice");
  EXPECT_EQ(record["type"], "text");
  // The message's time: chat-api's push age limit runs from it.
  EXPECT_EQ(record["ts"], json::parse(out.payload)["ts"]);
  EXPECT_EQ(record["ts"], clock_.now_ms());
  EXPECT_EQ(record["targets"], json::array({"bob:phone"}));
  EXPECT_FALSE(record.contains("body"));  // content-free
  ASSERT_EQ(wakeups(), 1u);
  for (const auto& p : port_.published) {
    if (p.topic != topics::kControlPush) continue;
    EXPECT_EQ(json::parse(p.payload), json({{"id", id}}));  // nothing else
    EXPECT_EQ(p.qos, 0);
    EXPECT_EQ(p.client_id, "");  // to subscribers: the service role alone may subscribe
  }
}

TEST_F(PushRouterTest, NoRecordWhenEveryDeviceIsConnectedOrHasNoTarget) {
  set_devices("bob", {"phone"});
  connected_ = {"bob:phone"};
  router_->on_message(alice_, "dm/bob", msg("c1"), 1);
  connected_.clear();
  router_->on_message(alice_, "dm/carol", msg("c2"), 1);  // carol has no target
  EXPECT_TRUE(records().empty());
  EXPECT_EQ(wakeups(), 0u);
}

TEST_F(PushRouterTest, OnlyTextMediaAndE2eMessagesPush) {
  set_devices("bob", {"phone"});
  auto first = router_->on_message(alice_, "dm/bob", msg("c1"), 1);
  const std::string id = json::parse(first.payload)["id"];
  // An opaque e2e body (CONTRACT §3) and one in the Signal form (docs/e2e.md).
  router_->on_message(alice_, "dm/bob", msg("c2", "e2e", json{{"ct", "opaque"}}), 1);
  router_->on_message(
      alice_, "dm/bob",
      msg("c2s", "e2e", json{{"to", {{"bob:phone", {{"type", 3}, {"body", "b3BhcXVl"}}}}}}), 1);
  router_->on_message(alice_, "dm/bob", msg("c3", "reaction", json{{"id", id}, {"emoji", "+1"}}),
                      1);
  router_->on_message(alice_, "dm/bob", msg("c4", "edit", json{{"id", id}, {"text", "x"}}), 1);
  router_->on_message(alice_, "dm/bob", msg("c5", "x-custom"), 1);
  auto stored = records();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(json::parse(stored[0].json)["type"], "text");
  EXPECT_EQ(json::parse(stored[1].json)["type"], "e2e");
  EXPECT_EQ(json::parse(stored[2].json)["type"], "e2e");
  // A duplicate (same cid) is acknowledged again but not pushed again.
  router_->on_message(alice_, "dm/bob", msg("c1"), 1);
  EXPECT_EQ(records().size(), 3u);
  // Receipts and typing never push.
  DeviceSession bob = session("bob", "phone");
  set_devices("alice", {"phone"});
  router_->on_message(bob, "dm/alice/receipt", json({{"ids", {id}}, {"status", "read"}}).dump(), 1);
  router_->on_message(bob, "dm/alice/typing", json({{"state", "composing"}}).dump(), 0);
  EXPECT_EQ(records().size(), 3u);
}

TEST_F(PushRouterTest, GroupRecipientsWhoBlockedTheSenderAreNotPushed) {
  set_devices("bob", {"phone"});
  set_devices("carol", {"phone"});
  json created = control(
      {{"op", "group.create"}, {"name", "team"}, {"members", {"bob", "carol"}}, {"by", "alice"}});
  ASSERT_TRUE(created["ok"].get<bool>()) << created.dump();
  const std::string gid = created["result"]["id"];
  ASSERT_TRUE(
      control({{"op", "block.set"}, {"user", "carol"}, {"peer", "alice"}, {"blocked", true}})["ok"]
          .get<bool>());
  router_->on_message(alice_, "g/" + gid, msg("g1"), 1);
  auto stored = records();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(json::parse(stored[0].json)["targets"], json::array({"bob:phone"}));
  EXPECT_EQ(json::parse(stored[0].json)["conv"], "g:" + gid);
}

TEST_F(PushRouterTest, PushDevicesOpValidatesPersistsAndIsForgottenWithTheUser) {
  json bad = control({{"op", "push.devices"}, {"user", "bob"}, {"devices", {"no spaces"}}});
  EXPECT_FALSE(bad["ok"].get<bool>());
  EXPECT_EQ(bad["error"], "invalid_argument");
  bad = control({{"op", "push.devices"}, {"user", "bob"}, {"devices", "phone"}});
  EXPECT_EQ(bad["error"], "invalid_argument");
  bad = control({{"op", "push.devices"}, {"user", "nobody"}, {"devices", {"phone"}}});
  EXPECT_EQ(bad["error"], "not_found");
  // Forgetting works for any user id.
  EXPECT_TRUE(
      control({{"op", "push.devices"}, {"user", "nobody"}, {"devices", json::array()}})["ok"]
          .get<bool>());

  json ok =
      control({{"op", "push.devices"}, {"user", "bob"}, {"devices", {"tablet", "phone", "phone"}}});
  ASSERT_TRUE(ok["ok"].get<bool>());
  EXPECT_EQ(ok["result"]["devices"], json::array({"phone", "tablet"}));
  // Survives a broker restart (the archive is the truth).
  open();
  ASSERT_NE(push_->devices_of("bob"), nullptr);
  EXPECT_EQ(*push_->devices_of("bob"), (std::vector<std::string>{"phone", "tablet"}));
  // user.remove forgets them.
  ASSERT_TRUE(control({{"op", "user.remove"}, {"user", "bob"}})["ok"].get<bool>());
  EXPECT_EQ(push_->devices_of("bob"), nullptr);
  open();
  EXPECT_EQ(push_->devices_of("bob"), nullptr);
}

TEST_F(PushRouterTest, PushDoneDeletesRecordsUpToTheGivenId) {
  set_devices("bob", {"phone"});
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    auto out = router_->on_message(alice_, "dm/bob", msg("c" + std::to_string(i)), 1);
    ids.push_back(json::parse(out.payload)["id"]);
  }
  json done = control({{"op", "push.done"}, {"upto", ids[1]}});
  ASSERT_TRUE(done["ok"].get<bool>()) << done.dump();
  EXPECT_EQ(done["result"]["deleted"], 2);
  auto left = records();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].id, ids[2]);
  EXPECT_EQ(control({{"op", "push.done"}, {"upto", "bogus"}})["error"], "invalid_argument");
  // The messages themselves stay.
  EXPECT_EQ(archive_->sync("bob", "", 10)->envelopes.size(), 3u);
}

TEST_F(PushRouterTest, WithoutPushSetUpNothingIsRecordedAndTheOpsAreUnavailable) {
  Router plain(clock_, *archive_, *directory_, port_, RouterOptions{});
  ASSERT_TRUE(plain.init().is_ok());
  ASSERT_TRUE(archive_->set_push_devices("bob", {"phone"}).is_ok());
  plain.on_message(alice_, "dm/bob", msg("c1"), 1);
  EXPECT_TRUE(records().empty());
  plain.on_control(service_, R"({"op":"push.done","req":"r","upto":"0000000000000001"})");
  EXPECT_EQ(json::parse(port_.published.back().payload)["error"], "unavailable");
}

}  // namespace
}  // namespace chat::broker
