#include "chat/broker/config.h"

#include <gtest/gtest.h>

namespace chat::broker {
namespace {

TEST(PluginConfig, DefaultsAndRequiredDataDir) {
  auto c = PluginConfig::from_options({{"data_dir", "/d"}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->archive_path, "/d/archive");
  EXPECT_EQ(c->jwks_file, "/d/keys/jwks.json");
  EXPECT_EQ(c->leeway_s, 5);
  EXPECT_EQ(c->max_payload, 65536u);
  EXPECT_FALSE(PluginConfig::from_options({}).is_ok());
}

TEST(PluginConfig, BadValuesNameTheKey) {
  auto c = PluginConfig::from_options({{"data_dir", "/d"}, {"jwt_leeway", "31"}});
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("plugin_opt_jwt_leeway"), std::string::npos);
  EXPECT_FALSE(PluginConfig::from_options({{"data_dir", "/d"}, {"max_payload", "abc"}}).is_ok());
  EXPECT_FALSE(PluginConfig::from_options({{"data_dir", "/d"}, {"sync_writes", "yes"}}).is_ok());
  EXPECT_FALSE(PluginConfig::from_options({{"data_dir", "/d"}, {"bogus", "1"}}).is_ok());
}

TEST(PluginConfig, ArchiveMinFreeMb) {
  auto c = PluginConfig::from_options({{"data_dir", "/d"}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->archive_min_free_mb, 256u);
  c = PluginConfig::from_options({{"data_dir", "/d"}, {"archive_min_free_mb", "0"}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->archive_min_free_mb, 0u);
  for (const char* bad : {"-1", "1048577", "12MB", ""}) {
    auto r = PluginConfig::from_options({{"data_dir", "/d"}, {"archive_min_free_mb", bad}});
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_NE(r.status().message().find("plugin_opt_archive_min_free_mb"), std::string::npos);
  }
}

}  // namespace
}  // namespace chat::broker

namespace chat::broker {
namespace {

TEST(PluginConfig, RateLimitsDefaultsValuesAndBounds) {
  auto d = PluginConfig::from_options({{"data_dir", "/d"}});
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->rate_msgs, 20);
  EXPECT_EQ(d->rate_burst, 100);
  EXPECT_EQ(d->rate_typing, 5);
  EXPECT_EQ(d->rate_typing_burst, 20);
  EXPECT_EQ(d->rate_receipts, 50);
  EXPECT_EQ(d->rate_receipts_burst, 200);

  auto c = PluginConfig::from_options({{"data_dir", "/d"},
                                       {"rate_limit_typing", "0"},
                                       {"rate_limit_typing_burst", "3"},
                                       {"rate_limit_receipts", "7"},
                                       {"rate_limit_receipts_burst", "9"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->rate_typing, 0);  // 0 = off
  EXPECT_EQ(c->rate_typing_burst, 3);
  EXPECT_EQ(c->rate_receipts, 7);
  EXPECT_EQ(c->rate_receipts_burst, 9);

  for (auto [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"rate_limit_typing", "-1"},
                                                        {"rate_limit_typing", "fast"},
                                                        {"rate_limit_typing_burst", "0"},
                                                        {"rate_limit_receipts", "-5"},
                                                        {"rate_limit_receipts_burst", "0"},
                                                        {"rate_limit_receipts_burst", ""}}) {
    auto bad = PluginConfig::from_options({{"data_dir", "/d"}, {key, value}});
    ASSERT_FALSE(bad.is_ok()) << key << "=" << value;
    EXPECT_NE(bad.status().message().find("plugin_opt_" + key + ":"), std::string::npos)
        << bad.status().message();
  }
}

}  // namespace
}  // namespace chat::broker
