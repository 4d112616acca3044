#include "chat/bridge/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace chat::bridge {
namespace {

Result<Config> parse(const std::map<std::string, std::string>& env) {
  return Config::from_lookup(settings::from_map(env));
}

TEST(BridgeConfigTest, DefaultsMatchTheContract) {
  auto c = parse({});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->bind, "127.0.0.1");
  EXPECT_EQ(c->ws_port, 8083);
  EXPECT_EQ(c->mqtt_port, 1883);
  EXPECT_EQ(c->upstream_host, "127.0.0.1");
  EXPECT_EQ(c->upstream_port, 1883);
  EXPECT_EQ(c->upstream(), "127.0.0.1:1883");
  EXPECT_TRUE(c->extra_origins.empty());
  EXPECT_EQ(c->buffer_bytes, 262144u);
  EXPECT_EQ(c->max_connections, 10000);
  EXPECT_EQ(c->max_per_ip, 100);
  EXPECT_EQ(c->conn_rate, 10);
  EXPECT_EQ(c->conn_burst, 30);
  EXPECT_EQ(c->handshake_timeout_s, 10);
  EXPECT_EQ(c->idle_timeout_s, 600);
  EXPECT_EQ(c->max_frame_bytes, 16u * 1024 * 1024);
  EXPECT_FALSE(c->tls());
  EXPECT_TRUE(c->check_files().is_ok());
}

TEST(BridgeConfigTest, ReadsEveryVariable) {
  auto c = parse({{"CHAT_BIND", "::1"},
                  {"CHAT_WS_PORT", "0"},
                  {"CHAT_MQTT_PORT", "1999"},
                  {"CHAT_BRIDGE_UPSTREAM", "broker.internal:2883"},
                  {"CHAT_WS_ORIGINS", " HTTPS://Chat.Example.com/ ,,https://b.example:8443"},
                  {"CHAT_WS_BUFFER_BYTES", "4096"},
                  {"CHAT_WS_MAX_CONNECTIONS", "5"},
                  {"CHAT_WS_MAX_PER_IP", "2"},
                  {"CHAT_WS_HANDSHAKE_TIMEOUT", "3"},
                  {"CHAT_WS_IDLE_TIMEOUT", "60"},
                  {"CHAT_WS_MAX_FRAME", "1024"},
                  {"CHAT_TLS_CERT", "/c.pem"},
                  {"CHAT_TLS_KEY", "/k.pem"},
                  {"CHAT_TLS_CA", "/ca.pem"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->bind, "::1");
  EXPECT_EQ(c->ws_port, 0);
  EXPECT_EQ(c->mqtt_port, 1999);
  EXPECT_EQ(c->upstream_host, "broker.internal");
  EXPECT_EQ(c->upstream_port, 2883);
  EXPECT_EQ(c->extra_origins,
            (std::vector<std::string>{"https://chat.example.com", "https://b.example:8443"}));
  EXPECT_EQ(c->buffer_bytes, 4096u);
  EXPECT_EQ(c->max_connections, 5);
  EXPECT_EQ(c->max_per_ip, 2);
  EXPECT_EQ(c->handshake_timeout_s, 3);
  EXPECT_EQ(c->idle_timeout_s, 60);
  EXPECT_EQ(c->max_frame_bytes, 1024u);
  EXPECT_TRUE(c->tls());
  EXPECT_EQ(c->tls_cert, "/c.pem");
  EXPECT_EQ(c->tls_key, "/k.pem");
  EXPECT_EQ(c->tls_ca, "/ca.pem");
}

TEST(BridgeConfigTest, UpstreamDefaultsToTheMqttPort) {
  auto c = parse({{"CHAT_MQTT_PORT", "1884"}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->upstream(), "127.0.0.1:1884");
}

TEST(BridgeConfigTest, UpstreamForms) {
  auto v6 = parse({{"CHAT_BRIDGE_UPSTREAM", "[::1]:1883"}});
  ASSERT_TRUE(v6.is_ok()) << v6.status().to_string();
  EXPECT_EQ(v6->upstream_host, "::1");
  EXPECT_EQ(v6->upstream(), "[::1]:1883");
  auto name = parse({{"CHAT_BRIDGE_UPSTREAM", "localhost:1"}});
  ASSERT_TRUE(name.is_ok());
  EXPECT_EQ(name->upstream_port, 1);
}

TEST(BridgeConfigTest, LocalhostBindsLoopback) {
  auto c = parse({{"CHAT_BIND", "localhost"}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->bind, "127.0.0.1");
}

TEST(BridgeConfigTest, EmptyMeansUnset) {
  auto c = parse({{"CHAT_WS_PORT", ""}, {"CHAT_WS_ORIGINS", ""}, {"CHAT_TLS_CERT", ""}});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->ws_port, 8083);
  EXPECT_TRUE(c->extra_origins.empty());
  EXPECT_FALSE(c->tls());
}

TEST(BridgeConfigTest, BadValuesNameTheVariable) {
  const std::pair<const char*, const char*> bad[] = {
      {"CHAT_BIND", "example.com"},
      {"CHAT_BIND", "127.0.0.256"},
      {"CHAT_WS_PORT", "http"},
      {"CHAT_WS_PORT", "65536"},
      {"CHAT_WS_PORT", "-1"},
      {"CHAT_WS_PORT", "80 "},
      {"CHAT_MQTT_PORT", "0"},
      {"CHAT_BRIDGE_UPSTREAM", "localhost"},
      {"CHAT_BRIDGE_UPSTREAM", "localhost:"},
      {"CHAT_BRIDGE_UPSTREAM", ":1883"},
      {"CHAT_BRIDGE_UPSTREAM", "host:0"},
      {"CHAT_BRIDGE_UPSTREAM", "host:99999"},
      {"CHAT_BRIDGE_UPSTREAM", "::1:1883"},
      {"CHAT_BRIDGE_UPSTREAM", "[::1]1883"},
      {"CHAT_BRIDGE_UPSTREAM", "[nothex]:1883"},
      {"CHAT_WS_ORIGINS", "chat.example.com"},
      {"CHAT_WS_ORIGINS", "https://a.example/path"},
      {"CHAT_WS_ORIGINS", "null"},
      {"CHAT_WS_BUFFER_BYTES", "4095"},
      {"CHAT_WS_BUFFER_BYTES", "1MiB"},
      {"CHAT_WS_BUFFER_BYTES", "67108865"},
      {"CHAT_WS_MAX_CONNECTIONS", "0"},
      {"CHAT_WS_MAX_CONNECTIONS", "1000001"},
      {"CHAT_WS_MAX_PER_IP", "0"},
      {"CHAT_WS_MAX_PER_IP", "1.5"},
      {"CHAT_WS_CONN_RATE", "-1"},
      {"CHAT_WS_CONN_RATE", "1000001"},
      {"CHAT_WS_CONN_BURST", "0"},
      {"CHAT_WS_CONN_BURST", "lots"},
      {"CHAT_WS_HANDSHAKE_TIMEOUT", "0"},
      {"CHAT_WS_HANDSHAKE_TIMEOUT", "301"},
      {"CHAT_WS_IDLE_TIMEOUT", "0"},
      {"CHAT_WS_IDLE_TIMEOUT", "86401"},
      {"CHAT_WS_MAX_FRAME", "15"},
      {"CHAT_WS_MAX_FRAME", "1073741825"},
      {"CHAT_WS_MAX_FRAME", "0x100"},
  };
  for (const auto& [name, value] : bad) {
    auto c = parse({{name, value}});
    ASSERT_FALSE(c.is_ok()) << name << "=" << value;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(c.status().message().rfind(std::string(name) + ": ", 0), 0u) << c.status().message();
    EXPECT_EQ(c.status().message().find('\n'), std::string::npos);
  }
}

TEST(BridgeConfigTest, ConnectionRateCanBeSetOrTurnedOff) {
  auto c = parse({{"CHAT_WS_CONN_RATE", "0"}, {"CHAT_WS_CONN_BURST", "1"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->conn_rate, 0);
  EXPECT_EQ(c->conn_burst, 1);
  auto d = parse({{"CHAT_WS_CONN_RATE", "250"}, {"CHAT_WS_CONN_BURST", "1000"}});
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->conn_rate, 250);
  EXPECT_EQ(d->conn_burst, 1000);
}

TEST(BridgeConfigTest, TlsNeedsCertificateAndKey) {
  auto cert_only = parse({{"CHAT_TLS_CERT", "/c.pem"}});
  ASSERT_FALSE(cert_only.is_ok());
  EXPECT_EQ(cert_only.status().message().rfind("CHAT_TLS_KEY: ", 0), 0u);
  auto key_only = parse({{"CHAT_TLS_KEY", "/k.pem"}});
  ASSERT_FALSE(key_only.is_ok());
  EXPECT_EQ(key_only.status().message().rfind("CHAT_TLS_CERT: ", 0), 0u);
  auto ca_only = parse({{"CHAT_TLS_CA", "/ca.pem"}});  // ignored without TLS
  ASSERT_TRUE(ca_only.is_ok());
  EXPECT_TRUE(ca_only->tls_ca.empty());
}

TEST(BridgeConfigTest, CheckFilesNamesTheUnreadableOne) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("bridge-config-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "cert.pem") << "x";
  auto c = parse({{"CHAT_TLS_CERT", (dir / "cert.pem").string()},
                  {"CHAT_TLS_KEY", (dir / "missing.pem").string()}});
  ASSERT_TRUE(c.is_ok());
  Status s = c->check_files();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message().rfind("CHAT_TLS_KEY: cannot read", 0), 0u) << s.message();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace chat::bridge
