#include "chat/bridge/stats.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace chat::bridge {
namespace {

TEST(StatsTest, JsonHasEveryCounter) {
  Stats s;
  s.connections_current = 2;
  s.connections_total = 7;
  s.refused[static_cast<size_t>(Refusal::kOrigin)] = 3;
  s.refused[static_cast<size_t>(Refusal::kMaxPerIp)] = 1;
  s.closed[static_cast<size_t>(CloseReason::kIdle)] = 4;
  s.closed_by_client = 5;
  s.bytes_to_broker = 100;
  s.bytes_to_client = 200;
  s.upstream_connect_failures = 6;
  auto j = nlohmann::json::parse(s.to_json());
  EXPECT_EQ(j["connections"]["current"], 2);
  EXPECT_EQ(j["connections"]["total"], 7);
  EXPECT_EQ(j["refused"]["origin"], 3);
  EXPECT_EQ(j["refused"]["max_per_ip"], 1);
  EXPECT_EQ(j["refused"]["path"], 0);
  EXPECT_EQ(j["refused"]["subprotocol"], 0);
  EXPECT_EQ(j["refused"]["max_connections"], 0);
  EXPECT_FALSE(j["refused"].contains("none"));
  EXPECT_EQ(j["closed"]["idle_timeout"], 4);
  EXPECT_EQ(j["closed"]["client"], 5);
  EXPECT_EQ(j["bytes"]["to_broker"], 100);
  EXPECT_EQ(j["bytes"]["to_client"], 200);
  EXPECT_EQ(j["upstream_connect_failures"], 6);
  EXPECT_EQ(s.refused_total(), 4u);
}

TEST(StatsTest, SummaryAndChangeDetection) {
  Stats a;
  Stats b;
  EXPECT_EQ(a, b);
  b.refused[static_cast<size_t>(Refusal::kPath)] = 1;
  EXPECT_NE(a, b);
  EXPECT_EQ(b.summary(),
            "connections=0 connections_total=0 refused=1 refused.path=1 bytes_to_broker=0 "
            "bytes_to_client=0 upstream_connect_failures=0");
  EXPECT_EQ(b.summary().find('\n'), std::string::npos);
}

}  // namespace
}  // namespace chat::bridge
