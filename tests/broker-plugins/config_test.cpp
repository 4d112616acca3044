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

}  // namespace
}  // namespace chat::broker
