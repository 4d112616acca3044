#include "chat/api/config.h"

#include <gtest/gtest.h>

#include <map>

namespace chat::api {
namespace {

Result<Config> parse(const std::map<std::string, std::string>& env) {
  return Config::from_lookup(settings::from_map(env));
}

TEST(ConfigTest, DefaultsMatchTheContract) {
  auto c = parse({});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->bind, "127.0.0.1");
  EXPECT_EQ(c->http_port, 8080);
  EXPECT_EQ(c->mqtt_port, 1883);
  EXPECT_EQ(c->data_dir, "var");
  EXPECT_TRUE(c->admins.empty());
  EXPECT_EQ(c->signup, SignupPolicy::kOpen);
  EXPECT_EQ(c->token_ttl_s, 3600);
  EXPECT_EQ(c->jwt_leeway_s, 5);
  EXPECT_EQ(c->jwt_issuer, "chat-platform");
  EXPECT_EQ(c->jwt_audience, "chat");
  EXPECT_EQ(c->refresh_ttl_s, 30 * 24 * 3600);
  EXPECT_EQ(c->http_threads, 64);
  EXPECT_EQ(c->jwks_path(), "var/keys/jwks.json");
  EXPECT_EQ(c->accounts_path(), "var/api/accounts");
  EXPECT_EQ(c->archive_path(), "var/archive");
  EXPECT_EQ(c->archive_secondary_path(), "var/api/archive-secondary");
}

TEST(ConfigTest, ReadsEveryVariable) {
  auto c = parse({{"CHAT_BIND", "0.0.0.0"},
                  {"CHAT_HTTP_PORT", "9000"},
                  {"CHAT_MQTT_PORT", "1999"},
                  {"CHAT_DATA_DIR", "/tmp/x"},
                  {"CHAT_ADMINS", " root , ops,,root"},
                  {"CHAT_ADMIN_PASSWORD", "correct horse"},
                  {"CHAT_SIGNUP", "closed"},
                  {"CHAT_TOKEN_TTL", "60"},
                  {"CHAT_JWT_LEEWAY", "30"},
                  {"CHAT_JWT_ISSUER", "iss"},
                  {"CHAT_JWT_AUDIENCE", "aud"},
                  {"CHAT_REFRESH_TTL", "86400"},
                  {"CHAT_HTTP_THREADS", "8"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->bind, "0.0.0.0");
  EXPECT_EQ(c->http_port, 9000);
  EXPECT_EQ(c->mqtt_port, 1999);
  EXPECT_EQ(c->archive_path(), "/tmp/x/archive");
  EXPECT_EQ(c->admins, (std::vector<std::string>{"root", "ops"}));
  EXPECT_TRUE(c->is_admin("ops"));
  EXPECT_FALSE(c->is_admin("alice"));
  EXPECT_EQ(c->admin_password, "correct horse");
  EXPECT_EQ(c->signup, SignupPolicy::kClosed);
  EXPECT_EQ(c->token_ttl_s, 60);
  EXPECT_EQ(c->jwt_leeway_s, 30);
  EXPECT_EQ(c->jwt_issuer, "iss");
  EXPECT_EQ(c->jwt_audience, "aud");
  EXPECT_EQ(c->refresh_ttl_s, 86400);
  EXPECT_EQ(c->http_threads, 8);
}

TEST(ConfigTest, EmptyMeansUnset) {
  auto c = parse({{"CHAT_HTTP_PORT", ""}, {"CHAT_ADMINS", ""}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->http_port, 8080);
  EXPECT_TRUE(c->admins.empty());
}

TEST(ConfigTest, BadValuesNameTheVariable) {
  const std::map<std::string, std::string> bad[] = {
      {{"CHAT_HTTP_PORT", "http"}},       {{"CHAT_HTTP_PORT", "70000"}},
      {{"CHAT_MQTT_PORT", "0"}},          {{"CHAT_JWT_LEEWAY", "31"}},
      {{"CHAT_JWT_LEEWAY", "-1"}},        {{"CHAT_TOKEN_TTL", "0"}},
      {{"CHAT_TOKEN_TTL", "10s"}},        {{"CHAT_SIGNUP", "maybe"}},
      {{"CHAT_ADMINS", "Root"}},          {{"CHAT_ADMINS", "svc.x"}},
      {{"CHAT_ADMIN_PASSWORD", "short"}}, {{"CHAT_HTTP_THREADS", "0"}},
      {{"CHAT_REFRESH_TTL", "5"}},
  };
  for (const auto& env : bad) {
    auto c = parse(env);
    ASSERT_FALSE(c.is_ok()) << env.begin()->first << "=" << env.begin()->second;
    const std::string message = c.status().message();
    EXPECT_EQ(message.rfind(env.begin()->first + ":", 0), 0u) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }
}

TEST(ConfigTest, MediaMinFreeDefaultBoundsAndOff) {
  EXPECT_EQ(parse({})->media_min_free_mb, 1024);
  EXPECT_EQ(parse({{"CHAT_MEDIA_MIN_FREE_MB", "0"}})->media_min_free_mb, 0);
  EXPECT_EQ(parse({{"CHAT_MEDIA_MIN_FREE_MB", "5000"}})->media_min_free_mb, 5000);
  for (const char* bad : {"-1", "1GB", "1073741825"}) {
    auto c = parse({{"CHAT_MEDIA_MIN_FREE_MB", bad}});
    ASSERT_FALSE(c.is_ok()) << bad;
    EXPECT_EQ(c.status().message().rfind("CHAT_MEDIA_MIN_FREE_MB:", 0), 0u) << c.status().message();
  }
}

TEST(ConfigTest, TlsCertificateAndKeyBothOrNeither) {
  auto off = parse({{"CHAT_TLS_CA", "/ca.pem"}});  // ignored without TLS
  ASSERT_TRUE(off.is_ok());
  EXPECT_FALSE(off->tls());
  EXPECT_FALSE(off->ws_tls);
  EXPECT_TRUE(off->tls_ca.empty());

  auto on =
      parse({{"CHAT_TLS_CERT", "/c.pem"}, {"CHAT_TLS_KEY", "/k.pem"}, {"CHAT_TLS_CA", "/ca"}});
  ASSERT_TRUE(on.is_ok()) << on.status().to_string();
  EXPECT_TRUE(on->tls());
  EXPECT_TRUE(on->ws_tls);
  EXPECT_EQ(on->tls_cert, "/c.pem");
  EXPECT_EQ(on->tls_key, "/k.pem");
  EXPECT_EQ(on->tls_ca, "/ca");

  auto cert_only = parse({{"CHAT_TLS_CERT", "/c.pem"}});
  ASSERT_FALSE(cert_only.is_ok());
  EXPECT_EQ(cert_only.status().message().rfind("CHAT_TLS_KEY: ", 0), 0u);
  auto key_only = parse({{"CHAT_TLS_KEY", "/k.pem"}});
  ASSERT_FALSE(key_only.is_ok());
  EXPECT_EQ(key_only.status().message().rfind("CHAT_TLS_CERT: ", 0), 0u);

  // CHAT_TLS=dev: the certificate scripts/tls-dev makes under the data dir.
  auto dev = parse({{"CHAT_TLS", "dev"}, {"CHAT_DATA_DIR", "/srv/chat"}});
  ASSERT_TRUE(dev.is_ok());
  EXPECT_EQ(dev->tls_cert, "/srv/chat/tls/server.pem");
  EXPECT_EQ(dev->tls_key, "/srv/chat/tls/server.key");
  EXPECT_TRUE(dev->ws_tls);
  auto bad = parse({{"CHAT_TLS", "on"}});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message().rfind("CHAT_TLS: ", 0), 0u);
}

}  // namespace
}  // namespace chat::api

namespace chat::api {
namespace {

TEST(ConfigTest, RateLimitDefaultsValuesAndBounds) {
  auto d = Config::from_lookup(settings::from_map({}));
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->rate_limits.login_rate, 5);
  EXPECT_EQ(d->rate_limits.login_burst, 20);
  EXPECT_EQ(d->rate_limits.lockout_after, 5);
  EXPECT_EQ(d->rate_limits.lockout_base_ms, 1000);
  EXPECT_EQ(d->rate_limits.lockout_max_ms, 900'000);
  EXPECT_EQ(d->rate_limits.rest_rate, 10);
  EXPECT_EQ(d->rate_limits.rest_burst, 50);

  auto c = Config::from_lookup(settings::from_map({{"CHAT_LOGIN_RATE", "0"},
                                                   {"CHAT_LOGIN_BURST", "3"},
                                                   {"CHAT_LOGIN_LOCKOUT_AFTER", "2"},
                                                   {"CHAT_LOGIN_LOCKOUT_SECONDS", "4"},
                                                   {"CHAT_LOGIN_LOCKOUT_MAX", "60"},
                                                   {"CHAT_RATE_LIMIT_REST", "0"},
                                                   {"CHAT_RATE_LIMIT_REST_BURST", "7"}}));
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->rate_limits.login_rate, 0);
  EXPECT_EQ(c->rate_limits.login_burst, 3);
  EXPECT_EQ(c->rate_limits.lockout_after, 2);
  EXPECT_EQ(c->rate_limits.lockout_base_ms, 4000);
  EXPECT_EQ(c->rate_limits.lockout_max_ms, 60'000);
  EXPECT_EQ(c->rate_limits.rest_rate, 0);
  EXPECT_EQ(c->rate_limits.rest_burst, 7);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"CHAT_LOGIN_RATE", "-1"},           {"CHAT_LOGIN_RATE", "2.5"},
      {"CHAT_LOGIN_BURST", "0"},           {"CHAT_LOGIN_LOCKOUT_AFTER", "1001"},
      {"CHAT_LOGIN_LOCKOUT_SECONDS", "0"}, {"CHAT_LOGIN_LOCKOUT_MAX", "86401"},
      {"CHAT_RATE_LIMIT_REST", "x"},       {"CHAT_RATE_LIMIT_REST_BURST", "0"},
  };
  for (const auto& [name, value] : bad) {
    auto r = Config::from_lookup(settings::from_map({{name, value}}));
    ASSERT_FALSE(r.is_ok()) << name << "=" << value;
    EXPECT_EQ(r.status().message().rfind(name + ": ", 0), 0u) << r.status().message();
  }
  // The longest lock may not be shorter than the first one.
  auto shorter = Config::from_lookup(
      settings::from_map({{"CHAT_LOGIN_LOCKOUT_SECONDS", "60"}, {"CHAT_LOGIN_LOCKOUT_MAX", "30"}}));
  ASSERT_FALSE(shorter.is_ok());
  EXPECT_EQ(shorter.status().message().rfind("CHAT_LOGIN_LOCKOUT_MAX: ", 0), 0u);
}

}  // namespace
}  // namespace chat::api
