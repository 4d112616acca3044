#include "chat/common/settings.h"

#include <gtest/gtest.h>

#include <map>

namespace chat::settings {
namespace {

Lookup from(std::map<std::string, std::string> m) { return from_map(std::move(m)); }

TEST(SettingsTest, IntegersWithinBoundsAndTheOneLineError) {
  int port = 8083;
  EXPECT_TRUE(read_int(from({}), "CHAT_WS_PORT", 1, 65535, &port).is_ok());
  EXPECT_EQ(port, 8083);  // unset keeps the default
  EXPECT_TRUE(read_int(from({{"CHAT_WS_PORT", "9000"}}), "CHAT_WS_PORT", 1, 65535, &port).is_ok());
  EXPECT_EQ(port, 9000);
  for (const char* bad_value : {"0", "65536", "12ab", " 80", "-1", "", "99999999999999999999"}) {
    Status s = read_int(from({{"CHAT_WS_PORT", bad_value}}), "CHAT_WS_PORT", 1, 65535, &port);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad_value;
    EXPECT_EQ(s.message(), std::string("CHAT_WS_PORT: expected an integer from 1 to 65535, got '") +
                               bad_value + "'");
  }
  EXPECT_EQ(port, 9000);  // a refused value changes nothing
}

TEST(SettingsTest, Lists) {
  auto items = split_list(" a, b,,\tc ,");
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0], "a");
  EXPECT_EQ(items[1], "b");
  EXPECT_EQ(items[2], "c");
  EXPECT_TRUE(split_list("").empty());
  EXPECT_TRUE(split_list(" , ").empty());
}

TEST(SettingsTest, EmptyCountsAsUnset) {
  Lookup l = empty_as_unset(from({{"CHAT_A", ""}, {"CHAT_B", "x"}}));
  EXPECT_EQ(l("CHAT_A"), std::nullopt);
  EXPECT_EQ(l("CHAT_B"), std::optional<std::string>("x"));
  EXPECT_EQ(l("CHAT_C"), std::nullopt);
}

}  // namespace
}  // namespace chat::settings
