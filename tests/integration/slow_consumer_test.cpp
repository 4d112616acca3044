// Issue 7, fault 3: a device stops reading (its socket stays open, its MQTT
// loop is frozen) while others chat (docs/operations.md "Slow consumers").
// Required: the other users' messages all arrive, the broker's memory stays
// within what the configured queue limit allows, the overflow is counted
// (chat_broker_messages_dropped_total) and logged, and the slow device gets
// everything it missed from GET /v1/sync.
#include <gtest/gtest.h>
#include <sys/types.h>

#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "stack.h"

namespace chat::testing {
namespace {

constexpr const char* kMetricsToken = "slow-consumer-metrics-token";
// The stalled session's limit (max_queued_bytes; in 2.0.11 it counts the
// in-flight messages' payload too): small, so the test overflows it fast.
constexpr int64_t kQueuedBytes = 4 << 20;
constexpr size_t kBody = 32 << 10;  // bytes of each message body
constexpr int kToSlow = 1000;       // messages to the stalled device: ~32 MiB
constexpr int kWarmup = 1000;       // the same volume to a reading device first
constexpr int kOthersEvery = 20;    // one carol -> dave message per this many

// VmRSS of a process in bytes (-1 when unreadable).
int64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

std::set<std::string> cids_on(const std::vector<Received>& msgs, const std::string& topic) {
  std::set<std::string> out;
  for (const auto& m : on_topic(msgs, topic)) out.insert(m.body().value("cid", ""));
  return out;
}

TEST(SlowConsumer, OthersAreServedMemoryIsBoundedAndSyncFillsTheGap) {
  StackOptions options;
  options.env = {{"CHAT_METRICS_TOKEN", kMetricsToken},
                 {"CHAT_MAX_QUEUED_BYTES", std::to_string(kQueuedBytes)}};
  Stack s(options);
  const std::string alice = s.register_user("alice");
  const std::string bob = s.register_user("bob");
  const std::string carol = s.register_user("carol");
  const std::string dave = s.register_user("dave");
  const std::string body(kBody, 'x');

  MqttClient a(s.mqtt_port(), device("alice", "phone", alice));
  MqttClient c(s.mqtt_port(), device("carol", "phone", carol));
  MqttClient d(s.mqtt_port(), device("dave", "phone", dave));
  MqttClient bob_phone(s.mqtt_port(), device("bob", "phone", bob));
  for (MqttClient* m : {&a, &c, &d, &bob_phone}) ASSERT_EQ(m->connect(), 0);
  ASSERT_EQ(d.subscribe("u/dave/#"), 1);
  ASSERT_EQ(bob_phone.subscribe("u/bob/#"), 1);

  // Warm-up at the same volume to a device that reads: the archive's
  // memtables fill and flush, the allocators settle. What follows is then
  // measured against a broker already carrying that traffic.
  for (int i = 0; i < kWarmup; ++i) {
    ASSERT_TRUE(is_success(a.publish("dm/bob", text("warm-" + std::to_string(i), body))));
  }
  ASSERT_TRUE(bob_phone.wait_for(
      [](const std::vector<Received>& m) { return on_topic(m, "u/bob/msg").size() >= kWarmup; },
      20s));
  bob_phone.disconnect();

  // bob's tablet subscribes, then stops reading with its socket open.
  MqttClient tablet(s.mqtt_port(), device("bob", "tablet", bob));
  ASSERT_EQ(tablet.connect(), 0);
  ASSERT_EQ(tablet.subscribe("u/bob/#"), 1);
  tablet.freeze();
  const int64_t rss_before = rss_bytes(s.broker_pid());
  ASSERT_GT(rss_before, 0);

  // alice floods bob (~32 MiB) while carol and dave chat.
  std::set<std::string> to_slow, to_dave;
  for (int i = 0; i < kToSlow; ++i) {
    std::string cid = "flood-" + std::to_string(i);
    ASSERT_TRUE(is_success(a.publish("dm/bob", text(cid, body)))) << i;
    to_slow.insert(cid);
    if (i % kOthersEvery == 0) {
      std::string other = "chat-" + std::to_string(i);
      ASSERT_TRUE(is_success(c.publish("dm/dave", text(other, "hi dave"))));
      to_dave.insert(other);
    }
  }
  // Every message of the others arrives (a generous deadline, not a timing).
  EXPECT_TRUE(d.wait_for(
      [&](const std::vector<Received>& m) { return cids_on(m, "u/dave/msg") == to_dave; }, 10s))
      << cids_on(d.received(), "u/dave/msg").size() << " of " << to_dave.size();

  // Memory: the stalled session holds at most kQueuedBytes of payload
  // (queued + in flight), plus a serialized packet for each in-flight one
  // (another copy at most), plus small per-message records; 12 MiB of slack
  // covers the archive's memtables (2 x 4 MiB) coming and going. Measured on
  // the 2-core VM: ~6 MiB of growth; with the limit at 1 GiB instead, ~30 MiB
  // (the kernel's socket buffers hold the rest of the 32 MiB).
  const int64_t rss_after = rss_bytes(s.broker_pid());
  const int64_t bound = 2 * kQueuedBytes + (12 << 20);
  std::cout << "broker VmRSS before " << (rss_before >> 10) << " KiB, after " << (rss_after >> 10)
            << " KiB, growth " << ((rss_after - rss_before) >> 10) << " KiB, bound "
            << (bound >> 10) << " KiB\n";
#ifdef CHAT_ASAN_PRELOAD
  // Under AddressSanitizer the broker's freed memory waits in ASan's
  // quarantine (256 MiB by default) before reuse, so RSS growth measures the
  // quarantine, not the queue; the bound is asserted in the other builds.
  std::cout << "RSS bound not asserted under AddressSanitizer\n";
#else
  EXPECT_LT(rss_after - rss_before, bound);
#endif

  // Counted and logged: Mosquitto's $SYS drop counter through /metrics, a
  // chat-api log line, and Mosquitto's own line naming the client.
  double dropped = -1;
  EXPECT_TRUE(eventually(
      [&] {
        dropped = s.metric("chat_broker_messages_dropped_total");
        return dropped >= kToSlow / 2;
      },
      // $SYS every 2 s, the plugin's stats every 5 s; slack for a loaded CI.
      30s))
      << "dropped=" << dropped;
  EXPECT_LE(dropped, kToSlow);
  EXPECT_NE(s.log_tail("chat-api", 1 << 20).find("broker.messages_dropped: "), std::string::npos);
  EXPECT_NE(s.log_tail("mosquitto", 1 << 20)
                .find("Outgoing messages are being dropped for client bob:tablet"),
            std::string::npos);

  // The slow device comes back and catches up from the archive: everything.
  std::set<std::string> synced;
  for (const auto& e : sync_all(s, bob)) synced.insert(e.value("cid", ""));
  for (const auto& cid : to_slow) ASSERT_TRUE(synced.count(cid)) << cid;
  EXPECT_EQ(synced.size(), static_cast<size_t>(kWarmup + kToSlow));
}

}  // namespace
}  // namespace chat::testing
