#include "chat/broker/router.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "fake_port.h"

namespace chat::broker {
namespace {

using json = nlohmann::json;

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("router-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    store::ArchiveOptions o;
    o.path = dir_.string();
    auto a = store::Archive::open(o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    archive_ = std::move(*a);
    ASSERT_TRUE(archive_->add_user("alice").is_ok());
    ASSERT_TRUE(archive_->add_user("bob").is_ok());
    RouterOptions ro;
    ro.rate_msgs = 2;
    ro.rate_burst = 3;
    directory_ = std::make_unique<Directory>(*archive_);
    ASSERT_TRUE(directory_->load().is_ok());
    router_ = std::make_unique<Router>(clock_, *archive_, *directory_, port_, ro);
    ASSERT_TRUE(router_->init().is_ok());
    alice_.user = "alice";
    alice_.device = "phone";
    alice_.client_id = "alice:phone";
  }
  void TearDown() override {
    router_.reset();
    directory_.reset();
    archive_.reset();
    std::filesystem::remove_all(dir_);
  }
  static std::string msg(const std::string& cid, const std::string& body = "hi") {
    return json({{"cid", cid}, {"type", "text"}, {"body", body}}).dump();
  }
  size_t archived_for(const std::string& user) {
    auto p = archive_->sync(user, "", 1000);
    return p.is_ok() ? p->envelopes.size() : 0;
  }
  json last_event() { return json::parse(port_.published.back().payload); }

  FakeClock clock_{1'700'000'000'000};
  std::filesystem::path dir_;
  std::unique_ptr<store::Archive> archive_;
  FakePort port_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<Router> router_;
  DeviceSession alice_;
};

TEST_F(RouterTest, DirectMessageIsArchivedRewrittenAndCopiedToTheSender) {
  auto out = router_->on_message(alice_, "dm/bob", msg("c1"), 1);
  ASSERT_EQ(out.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(out.topic, "u/bob/msg");
  auto env = json::parse(out.payload);
  EXPECT_EQ(env["from"], "alice");
  EXPECT_EQ(env["to"], "bob");
  EXPECT_EQ(env["dev"], "phone");
  EXPECT_EQ(env["ts"], clock_.now_ms());
  ASSERT_EQ(port_.published.size(), 1u);
  EXPECT_EQ(port_.published[0].topic, "u/alice/msg");
  EXPECT_EQ(port_.published[0].client_id, "");
  EXPECT_EQ(port_.published[0].payload, out.payload);
  EXPECT_EQ(archived_for("bob"), 1u);
  EXPECT_EQ(archived_for("alice"), 1u);
}

TEST_F(RouterTest, DuplicateCidResendsTheOriginalAndArchivesNothing) {
  auto first = router_->on_message(alice_, "dm/bob", msg("c1"), 1);
  clock_.advance_ms(10);
  auto again = router_->on_message(alice_, "dm/bob", msg("c1", "changed"), 1);
  ASSERT_EQ(again.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(again.topic, "$chat/discard");
  EXPECT_EQ(port_.published.back().topic, "u/alice/msg");
  EXPECT_EQ(port_.published.back().payload, first.payload);
  EXPECT_EQ(archived_for("bob"), 1u);
  // The same cid from another device of the same user is a new message.
  DeviceSession tablet = alice_;
  tablet.device = "tablet";
  tablet.client_id = "alice:tablet";
  EXPECT_EQ(router_->on_message(tablet, "dm/bob", msg("c1"), 1).action,
            MessageOutcome::Action::kAccept);
  EXPECT_EQ(archived_for("bob"), 2u);
}

TEST_F(RouterTest, Qos2ResendLooksExactlyLikeTheFirstPass) {
  auto first = router_->on_message(alice_, "dm/bob", msg("q2"), 2);
  auto again = router_->on_message(alice_, "dm/bob", msg("q2"), 2);
  ASSERT_EQ(again.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(again.topic, first.topic);
  EXPECT_EQ(again.payload, first.payload);
  EXPECT_EQ(archived_for("bob"), 1u);
}

TEST_F(RouterTest, RefusalsSendAnErrorEventToTheSendingDeviceOnly) {
  struct Case {
    std::string topic, payload, code;
  };
  std::vector<Case> cases = {
      {"dm/carol", msg("c1"), "unknown_peer"},
      {"dm/alice", msg("c2"), "unknown_peer"},
      {"dm/bob", "{", "invalid_payload"},
      {"dm/bob", msg("c3", std::string(70000, 'x')), "too_large"},
      {"g/G1", msg("c4"), "not_authorized"},  // no such group / not a member
  };
  for (auto& c : cases) {
    auto out = router_->on_message(alice_, c.topic, c.payload, 1);
    EXPECT_EQ(out.action, MessageOutcome::Action::kRefuse) << c.topic;
    auto ev = last_event();
    EXPECT_EQ(port_.published.back().client_id, "alice:phone");
    EXPECT_EQ(port_.published.back().topic, "u/alice/event");
    EXPECT_EQ(ev["code"], c.code) << c.topic;
  }
  EXPECT_EQ(archived_for("bob"), 0u);
  EXPECT_EQ(archived_for("alice"), 0u);
}

TEST_F(RouterTest, RateLimitRefusesBeyondTheBurstAndRefills) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(router_->on_message(alice_, "dm/bob", msg("r" + std::to_string(i)), 1).action,
              MessageOutcome::Action::kAccept);
  }
  EXPECT_EQ(router_->on_message(alice_, "dm/bob", msg("r3"), 1).action,
            MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "rate_limited");
  clock_.advance_ms(1000);  // 2 tokens per second
  EXPECT_EQ(router_->on_message(alice_, "dm/bob", msg("r4"), 1).action,
            MessageOutcome::Action::kAccept);
}

TEST_F(RouterTest, MessagesOverTheLimitAreNeverArchivedOrDelivered) {
  size_t accepted = 0, refused = 0;
  for (int i = 0; i < 10; ++i) {
    size_t before = port_.published.size();
    auto out = router_->on_message(alice_, "dm/bob", msg("b" + std::to_string(i)), 1);
    if (out.action == MessageOutcome::Action::kAccept) {
      ++accepted;
      continue;
    }
    ++refused;
    EXPECT_EQ(out.action, MessageOutcome::Action::kRefuse);
    // Exactly one thing published: the event to the sending device.
    ASSERT_EQ(port_.published.size(), before + 1);
    EXPECT_EQ(port_.published.back().client_id, "alice:phone");
    EXPECT_EQ(last_event()["code"], "rate_limited");
    EXPECT_EQ(last_event()["cid"], "b" + std::to_string(i));
  }
  EXPECT_EQ(accepted, 3u);  // the burst
  EXPECT_EQ(refused, 7u);
  EXPECT_EQ(archived_for("bob"), 3u);
  EXPECT_EQ(archived_for("alice"), 3u);
}

TEST_F(RouterTest, ReceiptsOverTheLimitAreRefusedWithAnEvent) {
  RouterOptions ro;
  ro.rate_receipts = 1;
  ro.rate_receipts_burst = 2;
  Router router(clock_, *archive_, *directory_, port_, ro);
  ASSERT_TRUE(router.init().is_ok());
  const std::string receipt = R"({"ids":["0000000000000001"],"status":"delivered"})";
  EXPECT_EQ(router.on_message(alice_, "dm/bob/receipt", receipt, 1).action,
            MessageOutcome::Action::kAccept);
  EXPECT_EQ(router.on_message(alice_, "dm/bob/receipt", receipt, 1).action,
            MessageOutcome::Action::kAccept);
  size_t before = port_.published.size();
  EXPECT_EQ(router.on_message(alice_, "dm/bob/receipt", receipt, 1).action,
            MessageOutcome::Action::kRefuse);
  ASSERT_EQ(port_.published.size(), before + 1);  // the event only: nothing relayed
  EXPECT_EQ(port_.published.back().topic, "u/alice/event");
  EXPECT_EQ(last_event()["code"], "rate_limited");
  // Group receipts draw from the same bucket.
  EXPECT_EQ(router.on_message(alice_, "g/G1/receipt", receipt, 1).action,
            MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "rate_limited");
  clock_.advance_ms(1000);
  EXPECT_EQ(router.on_message(alice_, "dm/bob/receipt", receipt, 1).action,
            MessageOutcome::Action::kAccept);
  // Receipts do not use up the message budget (and the other way round).
  EXPECT_EQ(router.on_message(alice_, "dm/bob", msg("m1"), 1).action,
            MessageOutcome::Action::kAccept);
}

TEST_F(RouterTest, TypingOverTheLimitIsDroppedAndToldAtMostOncePerSecond) {
  RouterOptions ro;
  ro.rate_typing = 2;
  ro.rate_typing_burst = 3;
  Router router(clock_, *archive_, *directory_, port_, ro);
  ASSERT_TRUE(router.init().is_ok());
  const std::string typing = R"({"state":"composing"})";
  for (int i = 0; i < 3; ++i) {
    auto t = router.on_message(alice_, "dm/bob/typing", typing, 0);
    ASSERT_EQ(t.action, MessageOutcome::Action::kAccept) << i;
    EXPECT_EQ(t.topic, "u/bob/typing");
  }
  size_t before = port_.published.size();
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(router.on_message(alice_, "dm/bob/typing", typing, 0).action,
              MessageOutcome::Action::kRefuse);
  }
  // Fifty refusals, one event, to the sending device.
  ASSERT_EQ(port_.published.size(), before + 1);
  EXPECT_EQ(port_.published.back().client_id, "alice:phone");
  EXPECT_EQ(port_.published.back().topic, "u/alice/event");
  EXPECT_EQ(last_event()["code"], "rate_limited");
  // Another device of the same user shares the bucket but has its own notice.
  DeviceSession tablet = alice_;
  tablet.device = "tablet";
  tablet.client_id = "alice:tablet";
  EXPECT_EQ(router.on_message(tablet, "dm/bob/typing", typing, 0).action,
            MessageOutcome::Action::kRefuse);
  ASSERT_EQ(port_.published.size(), before + 2);
  EXPECT_EQ(port_.published.back().client_id, "alice:tablet");
  // A second later: a token (2/s -> 2) again, and the notice allowance too.
  clock_.advance_ms(1000);
  EXPECT_EQ(router.on_message(alice_, "dm/bob/typing", typing, 0).action,
            MessageOutcome::Action::kAccept);
  EXPECT_EQ(router.on_message(alice_, "dm/bob/typing", typing, 0).action,
            MessageOutcome::Action::kAccept);
  before = port_.published.size();
  EXPECT_EQ(router.on_message(alice_, "dm/bob/typing", typing, 0).action,
            MessageOutcome::Action::kRefuse);
  EXPECT_EQ(port_.published.size(), before + 1);
}

TEST_F(RouterTest, ZeroTurnsEachLimitOff) {
  RouterOptions ro;
  ro.rate_msgs = 0;
  ro.rate_typing = 0;
  ro.rate_receipts = 0;
  ro.rate_burst = ro.rate_typing_burst = ro.rate_receipts_burst = 1;
  Router router(clock_, *archive_, *directory_, port_, ro);
  ASSERT_TRUE(router.init().is_ok());
  for (int i = 0; i < 300; ++i) {
    ASSERT_EQ(router.on_message(alice_, "dm/bob", msg("z" + std::to_string(i)), 1).action,
              MessageOutcome::Action::kAccept);
    ASSERT_EQ(router.on_message(alice_, "dm/bob/typing", R"({"state":"paused"})", 0).action,
              MessageOutcome::Action::kAccept);
    ASSERT_EQ(router
                  .on_message(alice_, "dm/bob/receipt",
                              R"({"ids":["0000000000000001"],"status":"read"})", 1)
                  .action,
              MessageOutcome::Action::kAccept);
  }
  EXPECT_EQ(archived_for("bob"), 300u);
}

TEST_F(RouterTest, IdsKeepIncreasingAcrossRestartWithClockBehind) {
  auto a = json::parse(router_->on_message(alice_, "dm/bob", msg("c1"), 1).payload)["id"]
               .get<std::string>();
  FakeClock behind{1'600'000'000'000};
  Router restarted(behind, *archive_, *directory_, port_, RouterOptions{});
  ASSERT_TRUE(restarted.init().is_ok());
  auto b = json::parse(restarted.on_message(alice_, "dm/bob", msg("c2"), 1).payload)["id"]
               .get<std::string>();
  EXPECT_LT(a, b);
}

TEST_F(RouterTest, ReceiptsAndTypingAreRelayed) {
  auto r = router_->on_message(alice_, "dm/bob/receipt",
                               R"({"ids":["0000000000000001"],"status":"read"})", 1);
  ASSERT_EQ(r.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(r.topic, "u/bob/receipt");
  EXPECT_EQ(json::parse(r.payload)["from"], "alice");
  EXPECT_EQ(
      router_->on_message(alice_, "dm/bob/receipt", R"({"ids":["x"],"status":"read"})", 1).action,
      MessageOutcome::Action::kRefuse);
  auto t = router_->on_message(alice_, "dm/bob/typing", R"({"state":"composing"})", 0);
  ASSERT_EQ(t.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(t.topic, "u/bob/typing");
  EXPECT_EQ(archived_for("bob"), 0u);
}

TEST_F(RouterTest, ControlAddsUsersAndReplies) {
  DeviceSession svc;
  svc.user = "svc.api";
  svc.client_id = "svc.api:1";
  svc.service = true;
  router_->on_control(svc, R"({"op":"user.add","user":"carol","req":"7"})");
  auto reply = json::parse(port_.published.back().payload);
  EXPECT_EQ(port_.published.back().client_id, "svc.api:1");
  EXPECT_EQ(reply["req"], "7");
  EXPECT_EQ(reply["ok"], true);
  EXPECT_TRUE(*archive_->user_exists("carol"));
  router_->on_control(svc, R"({"op":"nope","req":"8"})");
  EXPECT_EQ(json::parse(port_.published.back().payload)["ok"], false);
  router_->on_control(svc, "garbage");
  EXPECT_EQ(json::parse(port_.published.back().payload)["ok"], false);
}

TEST_F(RouterTest, GroupsFanOutToMembersAndRefuseOthers) {
  ASSERT_TRUE(archive_->add_user("carol").is_ok());
  ASSERT_TRUE(archive_->add_user("dave").is_ok());
  DeviceSession svc;
  svc.user = "svc.api";
  svc.client_id = "svc.api:1";
  svc.service = true;
  router_->on_control(
      svc,
      R"({"op":"group.create","req":"1","by":"alice","name":"Climbing","members":["bob","carol"]})");
  auto reply = json::parse(port_.published.back().payload);
  ASSERT_EQ(reply["ok"], true) << reply.dump();
  std::string gid = reply["result"]["id"];
  EXPECT_EQ(reply["result"]["admins"], json::array({"alice"}));
  port_.published.clear();

  auto out = router_->on_message(alice_, "g/" + gid, msg("g1"), 1);
  ASSERT_EQ(out.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(out.topic, "$chat/discard");
  std::set<std::string> topics;
  for (auto& p : port_.published) topics.insert(p.topic);
  EXPECT_EQ(topics, (std::set<std::string>{"u/alice/msg", "u/bob/msg", "u/carol/msg"}));
  EXPECT_EQ(json::parse(port_.published[0].payload)["to"], "g:" + gid);
  EXPECT_EQ(archived_for("carol"), 1u);

  DeviceSession dave;
  dave.user = "dave";
  dave.device = "d";
  dave.client_id = "dave:d";
  EXPECT_EQ(router_->on_message(dave, "g/" + gid, msg("x"), 1).action,
            MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "not_authorized");
  EXPECT_EQ(archived_for("dave"), 0u);

  // Removal: carol gets nothing after it; only admins remove others.
  DeviceSession bob;
  bob.user = "bob";
  bob.device = "b";
  bob.client_id = "bob:b";
  router_->on_control(
      svc, R"({"op":"group.remove","req":"2","by":"bob","gid":")" + gid + R"(","user":"carol"})");
  EXPECT_EQ(json::parse(port_.published.back().payload)["error"], "permission_denied");
  router_->on_control(
      svc, R"({"op":"group.remove","req":"3","by":"alice","gid":")" + gid + R"(","user":"carol"})");
  EXPECT_EQ(json::parse(port_.published.back().payload)["ok"], true);
  port_.published.clear();
  ASSERT_EQ(router_->on_message(bob, "g/" + gid, msg("g2"), 1).action,
            MessageOutcome::Action::kAccept);
  for (auto& p : port_.published) EXPECT_NE(p.topic, "u/carol/msg");
  EXPECT_EQ(archived_for("carol"), 1u);
}

TEST_F(RouterTest, OnlyTheSenderEditsOrDeletes) {
  auto first = json::parse(router_->on_message(alice_, "dm/bob", msg("m1"), 1).payload);
  std::string id = first["id"];
  DeviceSession bob;
  bob.user = "bob";
  bob.device = "b";
  bob.client_id = "bob:b";
  auto edit =
      json({{"cid", "e1"}, {"type", "edit"}, {"body", {{"id", id}, {"text", "fixed"}}}}).dump();
  EXPECT_EQ(router_->on_message(bob, "dm/alice", edit, 1).action, MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "not_authorized");
  EXPECT_EQ(router_->on_message(alice_, "dm/bob", edit, 1).action, MessageOutcome::Action::kAccept);
  auto del = json({{"cid", "d1"}, {"type", "delete"}, {"body", "0000000000000001"}}).dump();
  EXPECT_EQ(router_->on_message(alice_, "dm/bob", del, 1).action, MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "invalid_payload");
  auto react =
      json({{"cid", "r1"}, {"type", "reaction"}, {"body", {{"id", id}, {"emoji", "+1"}}}}).dump();
  EXPECT_EQ(router_->on_message(bob, "dm/alice", react, 1).action, MessageOutcome::Action::kAccept);
}

TEST_F(RouterTest, BlockedSendersAreRefusedAndTheirTypingDropped) {
  DeviceSession svc;
  svc.user = "svc.api";
  svc.client_id = "svc.api:1";
  svc.service = true;
  router_->on_control(svc,
                      R"({"op":"block.set","req":"1","user":"bob","peer":"alice","blocked":true})");
  ASSERT_EQ(json::parse(port_.published.back().payload)["ok"], true);
  EXPECT_EQ(router_->on_message(alice_, "dm/bob", msg("b1"), 1).action,
            MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "not_authorized");
  EXPECT_EQ(router_->on_message(alice_, "dm/bob/typing", R"({"state":"composing"})", 0).topic,
            "$chat/discard");
  router_->on_control(
      svc, R"({"op":"block.set","req":"2","user":"bob","peer":"alice","blocked":false})");
  EXPECT_EQ(router_->on_message(alice_, "dm/bob", msg("b2"), 1).action,
            MessageOutcome::Action::kAccept);
}

TEST_F(RouterTest, ReadReceiptsMoveTheReadMarker) {
  auto m = json::parse(router_->on_message(alice_, "dm/bob", msg("m1"), 1).payload);
  DeviceSession bob;
  bob.user = "bob";
  bob.device = "b";
  bob.client_id = "bob:b";
  auto convs = archive_->conversations("bob", 10);
  ASSERT_TRUE(convs.is_ok());
  EXPECT_EQ((*convs)[0].unread, 1);
  auto r = router_->on_message(bob, "dm/alice/receipt",
                               json({{"ids", {m["id"]}}, {"status", "read"}}).dump(), 1);
  ASSERT_EQ(r.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(r.topic, "u/alice/receipt");
  EXPECT_EQ(*archive_->read_marker("bob", "dm:alice:bob"), m["id"]);
  EXPECT_EQ((*archive_->conversations("bob", 10))[0].unread, 0);
}

}  // namespace
}  // namespace chat::broker

namespace chat::broker {
namespace {

TEST_F(RouterTest, StatsCountRoutedRefusedAndAppendLatency) {
  BrokerStats stats;
  router_->set_stats(&stats);
  ASSERT_EQ(router_->on_message(alice_, "dm/bob", msg("s1"), 1).action,
            MessageOutcome::Action::kAccept);
  ASSERT_EQ(router_->on_message(alice_, "dm/nobody", msg("s2"), 1).action,
            MessageOutcome::Action::kRefuse);
  ASSERT_EQ(router_->on_message(alice_, "dm/bob", "not json", 1).action,
            MessageOutcome::Action::kRefuse);
  // A retry of s1: acknowledged, not routed again.
  router_->on_message(alice_, "dm/bob", msg("s1"), 1);
  ASSERT_EQ(router_->on_message(alice_, "dm/bob/typing", R"({"state":"composing"})", 0).action,
            MessageOutcome::Action::kAccept);

  EXPECT_EQ(stats.routed[static_cast<size_t>(RoutedKind::kDirect)], 1u);
  EXPECT_EQ(stats.routed[static_cast<size_t>(RoutedKind::kTyping)], 1u);
  EXPECT_EQ(stats.routed[static_cast<size_t>(RoutedKind::kGroup)], 0u);
  EXPECT_EQ(stats.refused[static_cast<size_t>(RefusalCode::kUnknownPeer)], 1u);
  EXPECT_EQ(stats.refused[static_cast<size_t>(RefusalCode::kInvalidPayload)], 1u);
  EXPECT_EQ(stats.refused[static_cast<size_t>(RefusalCode::kNotAuthorized)], 0u);
  EXPECT_EQ(stats.duplicates, 1u);
  EXPECT_EQ(stats.append_seconds.count, 1u);
  EXPECT_GT(stats.append_seconds.sum, 0.0);
}

}  // namespace
}  // namespace chat::broker

// End-to-end encrypted messages (docs/e2e.md): per-user delivery, the archive
// keeps the whole body, participant checks, and key-change events.
namespace chat::broker {
namespace {

class RouterE2eTest : public RouterTest {
 protected:
  void SetUp() override {
    RouterTest::SetUp();
    svc_.user = "svc.api";
    svc_.client_id = "svc.api:1";
    svc_.service = true;
    for (const char* u : {"carol", "dave"}) ASSERT_TRUE(archive_->add_user(u).is_ok());
  }
  static json entry(int type, const std::string& b64) { return {{"type", type}, {"body", b64}}; }
  static std::string e2e(const std::string& cid, const json& body) {
    return json({{"cid", cid}, {"type", "e2e"}, {"body", body}}).dump();
  }
  json control(const json& request) {
    router_->on_control(svc_, request.dump());
    return json::parse(port_.published.back().payload);
  }
  std::string make_group(const std::vector<std::string>& members) {
    auto r = control({{"op", "group.create"},
                      {"req", "g"},
                      {"by", "alice"},
                      {"name", "Crypto"},
                      {"members", members}});
    EXPECT_EQ(r["ok"], true) << r.dump();
    return r["result"]["id"];
  }
  // The body of what was published on `topic` since `from` (exactly once).
  json body_on(const std::string& topic, size_t from = 0) {
    json found;
    int n = 0;
    for (size_t i = from; i < port_.published.size(); ++i) {
      if (port_.published[i].topic != topic) continue;
      found = json::parse(port_.published[i].payload)["body"];
      ++n;
    }
    EXPECT_EQ(n, 1) << topic;
    return found;
  }
  json archived(const std::string& conv, const std::string& id) {
    auto env = archive_->envelope(conv, id);
    EXPECT_TRUE(env.is_ok() && env->has_value());
    return json::parse(**env);
  }

  DeviceSession svc_;
  const json bob_web1_ = entry(3, "Qk9CMQ==");
  const json bob_phone_ = entry(1, "Qk9CMg==");
  const json alice_laptop_ = entry(1, "QUxJQ0U=");
};

TEST_F(RouterE2eTest, DirectMessageGoesOutPerUserAndIsArchivedWhole) {
  const json body = {
      {"to",
       {{"bob:web1", bob_web1_}, {"bob:phone", bob_phone_}, {"alice:laptop", alice_laptop_}}}};
  auto out = router_->on_message(alice_, "dm/bob", e2e("c1", body), 1);
  ASSERT_EQ(out.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(out.topic, "u/bob/msg");
  auto to_bob = json::parse(out.payload);
  EXPECT_EQ(to_bob["body"], json({{"to", {{"bob:web1", bob_web1_}, {"bob:phone", bob_phone_}}}}));
  EXPECT_EQ(to_bob["type"], "e2e");
  // The sender's other devices get their own entries only.
  EXPECT_EQ(body_on("u/alice/msg"), json({{"to", {{"alice:laptop", alice_laptop_}}}}));
  // History and sync return the body exactly as sent.
  auto whole = archived("dm:alice:bob", to_bob["id"]);
  EXPECT_EQ(whole["body"], body);
  auto synced = archive_->sync("bob", "", 10);
  ASSERT_TRUE(synced.is_ok());
  ASSERT_EQ(synced->envelopes.size(), 1u);
  EXPECT_EQ(json::parse(synced->envelopes[0])["body"], body);
  // Apart from the body, the envelope is the archived one.
  to_bob.erase("body");
  whole.erase("body");
  EXPECT_EQ(to_bob, whole);
}

TEST_F(RouterE2eTest, EveryRecipientMustTakePartAndGroupIsForGroupsOnly) {
  struct Bad {
    json body;
    std::string reason_has;
  };
  const std::vector<Bad> cases = {
      {{{"to", {{"bob:web1", bob_web1_}, {"carol:x", bob_web1_}}}}, "carol:x"},
      {{{"group", "R1JPVVA="}}, "group"},
      {{{"group", "R1JPVVA="}, {"to", {{"bob:web1", bob_web1_}}}}, "group"},
      {{{"to", {{"bob:web1", entry(2, "AAAA")}}}}, "bob:web1"},
      {{{"to", json::object()}}, "to"},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string cid = "bad" + std::to_string(i++);
    size_t before = port_.published.size();
    EXPECT_EQ(router_->on_message(alice_, "dm/bob", e2e(cid, c.body), 1).action,
              MessageOutcome::Action::kRefuse)
        << c.body.dump();
    ASSERT_EQ(port_.published.size(), before + 1);  // the error event only
    EXPECT_EQ(port_.published.back().client_id, "alice:phone");
    EXPECT_EQ(last_event()["code"], "invalid_payload");
    EXPECT_EQ(last_event()["cid"], cid);
    EXPECT_NE(last_event()["reason"].get<std::string>().find(c.reason_has), std::string::npos)
        << last_event().dump();
  }
  EXPECT_EQ(archived_for("bob"), 0u);
  // The sender alone (its own other devices) is a participant too.
  EXPECT_EQ(
      router_
          ->on_message(alice_, "dm/bob", e2e("ok", {{"to", {{"alice:laptop", alice_laptop_}}}}), 1)
          .action,
      MessageOutcome::Action::kAccept);
}

TEST_F(RouterE2eTest, GroupMessageGoesOutPerMemberAndRefusesOutsiders) {
  const std::string gid = make_group({"bob", "carol"});
  port_.published.clear();
  const json body = {{"group", "R1JPVVA="},
                     {"to",
                      {{"bob:web1", bob_web1_},
                       {"bob:phone", bob_phone_},
                       {"alice:laptop", alice_laptop_},
                       {"carol:c", entry(3, "Q0FST0w=")}}}};
  auto out = router_->on_message(alice_, "g/" + gid, e2e("g1", body), 1);
  ASSERT_EQ(out.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(out.topic, "$chat/discard");
  EXPECT_EQ(
      body_on("u/bob/msg"),
      json({{"group", "R1JPVVA="}, {"to", {{"bob:web1", bob_web1_}, {"bob:phone", bob_phone_}}}}));
  EXPECT_EQ(body_on("u/carol/msg"),
            json({{"group", "R1JPVVA="}, {"to", {{"carol:c", entry(3, "Q0FST0w=")}}}}));
  EXPECT_EQ(body_on("u/alice/msg"),
            json({{"group", "R1JPVVA="}, {"to", {{"alice:laptop", alice_laptop_}}}}));
  auto id = json::parse(port_.published[0].payload)["id"].get<std::string>();
  EXPECT_EQ(archived("g:" + gid, id)["body"], body);

  // Only the sender-key message: every member gets the same body.
  port_.published.clear();
  ASSERT_EQ(router_->on_message(alice_, "g/" + gid, e2e("g2", {{"group", "AAEC"}}), 1).action,
            MessageOutcome::Action::kAccept);
  EXPECT_EQ(body_on("u/carol/msg"), json({{"group", "AAEC"}}));

  // dave is no member; carol, once removed, is none either.
  EXPECT_EQ(
      router_
          ->on_message(alice_, "g/" + gid,
                       e2e("g3", {{"to", {{"bob:web1", bob_web1_}, {"dave:d", bob_web1_}}}}), 1)
          .action,
      MessageOutcome::Action::kRefuse);
  EXPECT_NE(last_event()["reason"].get<std::string>().find("dave:d"), std::string::npos);
  ASSERT_EQ(control({{"op", "group.remove"},
                     {"req", "r"},
                     {"by", "alice"},
                     {"gid", gid},
                     {"user", "carol"}})["ok"],
            true);
  EXPECT_EQ(
      router_->on_message(alice_, "g/" + gid, e2e("g4", {{"to", {{"carol:c", bob_web1_}}}}), 1)
          .action,
      MessageOutcome::Action::kRefuse);
  EXPECT_EQ(last_event()["code"], "invalid_payload");
}

TEST_F(RouterE2eTest, DuplicateCidIsSentAgainPerUser) {
  const json body = {{"to", {{"bob:web1", bob_web1_}, {"alice:laptop", alice_laptop_}}}};
  auto first = router_->on_message(alice_, "dm/bob", e2e("d1", body), 1);
  ASSERT_EQ(first.action, MessageOutcome::Action::kAccept);
  const std::string sender_copy = port_.published.back().payload;
  ASSERT_EQ(json::parse(sender_copy)["body"]["to"].size(), 1u);
  auto again = router_->on_message(alice_, "dm/bob", e2e("d1", body), 1);
  ASSERT_EQ(again.action, MessageOutcome::Action::kAccept);
  EXPECT_EQ(again.topic, "$chat/discard");
  EXPECT_EQ(port_.published.back().topic, "u/alice/msg");
  EXPECT_EQ(port_.published.back().payload, sender_copy);
  EXPECT_EQ(archived_for("bob"), 1u);

  // QoS 2: the resend must look exactly like the first pass (bob's cut).
  auto q2 = router_->on_message(alice_, "dm/bob", e2e("d2", body), 2);
  auto q2_again = router_->on_message(alice_, "dm/bob", e2e("d2", body), 2);
  EXPECT_EQ(q2_again.topic, q2.topic);
  EXPECT_EQ(q2_again.payload, q2.payload);
  EXPECT_EQ(json::parse(q2.payload)["body"], json({{"to", {{"bob:web1", bob_web1_}}}}));
}

// CONTRACT §3: an e2e body that is not the Signal form (no "to", no "group")
// is opaque: accepted, archived and delivered unchanged to everyone, as before
// docs/e2e.md; no structure or participant check applies to it.
TEST_F(RouterE2eTest, OpaqueBodiesAreDeliveredAndArchivedUnchanged) {
  const std::string gid = make_group({"bob", "carol"});
  const std::vector<json> bodies = {
      json(),  json("c2VhbGVk"), json::array({1, "x"}),
      json(7), json::object(),   json{{"ct", "opaque"}, {"carol:x", 1}}};
  const size_t before = archived_for("bob");
  int i = 0;
  for (const auto& body : bodies) {
    const std::string cid = "o" + std::to_string(i++);
    clock_.advance_ms(10'000);  // below the message rate limit
    port_.published.clear();
    auto out = router_->on_message(alice_, "dm/bob", e2e(cid, body), 1);
    ASSERT_EQ(out.action, MessageOutcome::Action::kAccept) << body.dump();
    EXPECT_EQ(out.topic, "u/bob/msg");
    const json to_bob = json::parse(out.payload);
    EXPECT_EQ(to_bob["body"], body);
    EXPECT_EQ(body_on("u/alice/msg"), body);
    EXPECT_EQ(archived("dm:alice:bob", to_bob["id"])["body"], body);
    // A duplicate goes out again unchanged.
    auto again = router_->on_message(alice_, "dm/bob", e2e(cid, body), 2);
    ASSERT_EQ(again.action, MessageOutcome::Action::kAccept);
    EXPECT_EQ(json::parse(port_.published.back().payload)["body"], body);

    port_.published.clear();
    ASSERT_EQ(router_->on_message(alice_, "g/" + gid, e2e("g" + cid, body), 1).action,
              MessageOutcome::Action::kAccept)
        << body.dump() << " " << port_.published.back().payload;
    for (const char* m : {"u/alice/msg", "u/bob/msg", "u/carol/msg"}) {
      EXPECT_EQ(body_on(m), body) << m;
    }
  }
  EXPECT_EQ(archived_for("bob"), before + 2 * bodies.size());
}

TEST_F(RouterE2eTest, KeyChangesReachTheOwnerGroupCoMembersAndDirectPeersOnly) {
  const std::string key = "BQ" + std::string(42, 'A');  // 33 bytes: 0x05 + 32
  // alice and bob have a direct conversation; alice and carol share a group;
  // dave shares nothing with alice (a group without her does not count).
  ASSERT_EQ(router_->on_message(alice_, "dm/bob", msg("hello"), 1).action,
            MessageOutcome::Action::kAccept);
  make_group({"carol"});
  ASSERT_EQ(control({{"op", "group.create"},
                     {"req", "g2"},
                     {"by", "dave"},
                     {"name", "Other"},
                     {"members", {"bob"}}})["ok"],
            true);
  port_.published.clear();
  auto reply = control({{"op", "keys.changed"},
                        {"req", "k1"},
                        {"user", "alice"},
                        {"device", "web1"},
                        {"action", "device_added"},
                        {"identity_key", key}});
  ASSERT_EQ(reply["ok"], true) << reply.dump();
  EXPECT_EQ(reply["req"], "k1");
  EXPECT_EQ(reply["result"]["notified"], 3);
  std::set<std::string> told;
  for (const auto& p : port_.published) {
    if (p.topic == "$CONTROL/chat/v1/response") continue;
    EXPECT_EQ(p.qos, 1);
    EXPECT_EQ(p.client_id, "");
    told.insert(p.topic);
    auto ev = json::parse(p.payload);
    EXPECT_EQ(ev, json({{"v", 1},
                        {"type", "keys"},
                        {"action", "device_added"},
                        {"user", "alice"},
                        {"device", "web1"},
                        {"identity_key", key},
                        {"ts", clock_.now_ms()}}));
  }
  EXPECT_EQ(told, (std::set<std::string>{"u/alice/event", "u/bob/event", "u/carol/event"}));

  // bob's change reaches alice (a direct peer: the relation goes both ways)
  // and dave (a co-member of another group), not carol.
  port_.published.clear();
  reply = control({{"op", "keys.changed"},
                   {"req", "k2"},
                   {"user", "bob"},
                   {"device", "p"},
                   {"action", "device_removed"},
                   {"identity_key", key}});
  ASSERT_EQ(reply["ok"], true);
  told.clear();
  for (const auto& p : port_.published) told.insert(p.topic);
  EXPECT_EQ(told, (std::set<std::string>{"u/alice/event", "u/bob/event", "u/dave/event",
                                         "$CONTROL/chat/v1/response"}));

  // Someone who blocked the owner is not told.
  ASSERT_EQ(control({{"op", "block.set"},
                     {"req", "b"},
                     {"user", "bob"},
                     {"peer", "alice"},
                     {"blocked", true}})["ok"],
            true);
  reply = control({{"op", "keys.changed"},
                   {"req", "k3"},
                   {"user", "alice"},
                   {"device", "web1"},
                   {"action", "device_removed"},
                   {"identity_key", key}});
  EXPECT_EQ(reply["result"]["notified"], 2);
}

TEST_F(RouterE2eTest, KeyChangesAreValidatedAndForTheServiceRoleOnly) {
  const std::string key = "BQ" + std::string(42, 'A');  // 33 bytes: 0x05 + 32
  const json good = {{"op", "keys.changed"},     {"req", "k"},
                     {"user", "alice"},          {"device", "web1"},
                     {"action", "device_added"}, {"identity_key", key}};
  const std::vector<std::pair<std::string, json>> bad = {
      {"user", "Alice"},
      {"user", 5},
      {"device", "web.1"},
      {"device", ""},
      {"action", "added"},
      {"identity_key", "BQ=="},
      {"identity_key", "AQ" + std::string(42, 'A')},        // not 0x05
      {"identity_key", "BQ" + std::string(41, 'A') + "="},  // 32 bytes
      {"identity_key", nullptr},
  };
  for (const auto& [field, value] : bad) {
    json r = good;
    r[field] = value;
    port_.published.clear();
    auto reply = control(r);
    EXPECT_EQ(reply["ok"], false) << r.dump();
    EXPECT_EQ(reply["error"], "invalid_argument") << r.dump();
    EXPECT_EQ(port_.published.size(), 1u);  // the reply, no event
  }
  // A device session is no service client, whatever it sends.
  port_.published.clear();
  router_->on_control(alice_, good.dump());
  ASSERT_EQ(port_.published.size(), 1u);
  auto reply = json::parse(port_.published.back().payload);
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["error"], "permission_denied");
  EXPECT_EQ(control(good)["ok"], true);
}

}  // namespace
}  // namespace chat::broker
