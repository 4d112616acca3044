#include "chatctl/seen_ids.h"

#include <gtest/gtest.h>

namespace chat::tools {
namespace {

TEST(SeenIds, ReportsRepeats) {
  SeenIds seen;
  EXPECT_EQ(seen.capacity(), 100'000u);
  EXPECT_TRUE(seen.insert("a"));
  EXPECT_FALSE(seen.insert("a"));
  EXPECT_TRUE(seen.insert("b"));
  EXPECT_TRUE(seen.contains("a"));
  EXPECT_FALSE(seen.contains("c"));
  EXPECT_EQ(seen.size(), 2u);
}

TEST(SeenIds, ForgetsTheOldestBeyondCapacity) {
  SeenIds seen(3);
  for (const char* id : {"1", "2", "3"}) EXPECT_TRUE(seen.insert(id));
  EXPECT_FALSE(seen.insert("1"));  // a repeat does not refresh or grow anything
  EXPECT_TRUE(seen.insert("4"));   // evicts "1"
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_FALSE(seen.contains("1"));
  EXPECT_TRUE(seen.contains("2"));
  EXPECT_TRUE(seen.contains("4"));
  EXPECT_TRUE(seen.insert("1"));  // forgotten, so new again
}

TEST(SeenIds, StaysBounded) {
  SeenIds seen(1000);
  for (int i = 0; i < 10'000; ++i) seen.insert(std::to_string(i));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_TRUE(seen.contains("9999"));
  EXPECT_FALSE(seen.contains("8999"));
}

TEST(SeenIds, ZeroCapacityStillDeduplicatesTheLastId) {
  SeenIds seen(0);
  EXPECT_TRUE(seen.insert("x"));
  EXPECT_FALSE(seen.insert("x"));
}

}  // namespace
}  // namespace chat::tools
