// The broker plugin's stats: histogram bucketing and the snapshot JSON that
// chat-api reads (docs/protocol.md, "Broker stats").
#include "chat/broker/stats.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace chat::broker {
namespace {

using json = nlohmann::json;

TEST(BrokerStatsTest, HistogramPutsValuesInTheFirstBucketAtOrAboveThem) {
  FixedHistogram<3> h{{1, 2, 5}};
  h.observe(0.5);
  h.observe(1);  // le is inclusive
  h.observe(1.5);
  h.observe(7);
  EXPECT_EQ(h.counts, (std::array<uint64_t, 4>{2, 1, 0, 1}));
  EXPECT_EQ(h.count, 4u);
  EXPECT_DOUBLE_EQ(h.sum, 10);
}

TEST(BrokerStatsTest, SnapshotJsonHasEveryCounter) {
  BrokerStats s;
  s.connection_accepted();
  s.connection_refused(StatusCode::kUnauthenticated);
  s.connection_refused(StatusCode::kPermissionDenied);
  s.connection_refused(StatusCode::kInternal);
  s.message_routed(RoutedKind::kGroup);
  s.message_refused(RefusalCode::kRateLimited);
  s.append_seconds.observe(0.0003);
  s.group_fanout.observe(3);
  json j = json::parse(s.to_json(1'700'000'005'000, 1'700'000'000'000, 2));
  EXPECT_EQ(j["v"], 1);
  EXPECT_EQ(j["ts"], 1'700'000'005'000);
  EXPECT_EQ(j["started_ms"], 1'700'000'000'000);
  EXPECT_EQ(j["interval_s"], kStatsIntervalS);
  EXPECT_EQ(j["clients"]["connected"], 2);
  EXPECT_EQ(j["connections"]["accepted"], 1);
  EXPECT_EQ(j["connections"]["refused"],
            json({{"unauthenticated", 1}, {"permission_denied", 1}, {"other", 1}}));
  EXPECT_EQ(j["messages"]["routed"],
            json({{"direct", 0}, {"group", 1}, {"receipt", 0}, {"typing", 0}}));
  EXPECT_EQ(j["messages"]["refused"], json({{"not_authorized", 0},
                                            {"invalid_payload", 0},
                                            {"too_large", 0},
                                            {"rate_limited", 1},
                                            {"unknown_peer", 0}}));
  const json& a = j["archive"]["append_seconds"];
  ASSERT_EQ(a["counts"].size(), a["le"].size() + 1);
  EXPECT_EQ(a["count"], 1);
  EXPECT_EQ(a["counts"][3], 1);  // (0.00025, 0.0005]
  const json& f = j["group_fanout"];
  ASSERT_EQ(f["counts"].size(), f["le"].size() + 1);
  EXPECT_EQ(f["counts"][2], 1);  // (2, 5]
}

}  // namespace
}  // namespace chat::broker
