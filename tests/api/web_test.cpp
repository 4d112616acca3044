// The browser client's side of chat-api: the built client served at / with
// its security headers, nothing else from the disk, and GET /config.json.
#include "chat/api/web.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "http_fixture.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)

constexpr const char* kIndex = "<!doctype html><title>chat</title>";
constexpr const char* kBundle = "console.log('bundle')";
constexpr const char* kSecret = "TOP-SECRET";

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// One raw HTTP/1.1 request, so the target goes out byte for byte (no client
// normalises "..", percent-encoding or anything else). Returns the whole answer.
std::string raw_request(int port, const std::string& method, const std::string& target,
                        const std::string& host = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return {};
  }
  std::string request =
      method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return {};
  }
  std::string answer;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return answer;
}

int status_of(const std::string& answer) {
  // "HTTP/1.1 200 OK"
  if (answer.size() < 12) return 0;
  return std::atoi(answer.substr(9, 3).c_str());
}

class WebTest : public HttpServerTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/chat-web-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    web_ = root_ / "web";
    write_file(web_ / "index.html", kIndex);
    write_file(web_ / "assets" / "main-ABCD1234.js", kBundle);
    write_file(web_ / "assets" / "main-ABCD1234.js.map", "{}");
    write_file(web_ / "assets" / "style-ABCD1234.css", "body{}");
    // Things that must never be served.
    write_file(root_ / "secret.txt", kSecret);
    write_file(root_ / "secret.js", kSecret);
    write_file(web_ / "notes.cmake", kSecret);
    write_file(web_ / "sub" / "inner.js", kSecret);
    fs::create_symlink(root_ / "secret.txt", web_ / "link.txt");
    fs::create_symlink(root_ / "secret.js", web_ / "assets" / "link.js");
  }

  void TearDown() override {
    HttpServerTest::TearDown();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  void start_web(std::map<std::string, std::string> env = {}) {
    env.emplace("CHAT_WEB_DIR", web_.string());
    start(std::move(env));
  }

  httplib::Result get_with_host(const std::string& path, const std::string& host) {
    return client_->Get(path.c_str(), httplib::Headers{{"Host", host}});
  }

  std::string config_url(const std::string& host) {
    auto r = get_with_host("/config.json", host);
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, 200);
    return body_of(r).value("mqtt_ws_url", "");
  }

  fs::path root_;
  fs::path web_;
};

// ---- the built client ----

TEST_F(WebTest, IndexIsServedWithSecurityHeaders) {
  start_web();
  for (const char* path : {"/", "/index.html"}) {
    SCOPED_TRACE(path);
    auto r = get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, kIndex);
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(r->get_header_value("Referrer-Policy"), "no-referrer");
    EXPECT_EQ(r->get_header_value("X-Frame-Options"), "DENY");
    std::string csp = r->get_header_value("Content-Security-Policy");
    EXPECT_NE(csp.find("default-src 'self'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("script-src 'self';"), std::string::npos) << csp;
    EXPECT_NE(csp.find("connect-src 'self' ws://127.0.0.1:8083/mqtt;"), std::string::npos) << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  }
}

TEST_F(WebTest, CspNamesTheBridgeTheBrowserIsToldAbout) {
  start_web({{"CHAT_WS_PORT", "9001"}});
  auto r = get_with_host("/", "chat.example.org:8080");
  ASSERT_TRUE(r);
  EXPECT_NE(r->get_header_value("Content-Security-Policy")
                .find("connect-src 'self' ws://chat.example.org:9001/mqtt;"),
            std::string::npos);
}

TEST_F(WebTest, HashedAssetsAreServedAndCachedForever) {
  start_web();
  auto r = get("/assets/main-ABCD1234.js");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, kBundle);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");

  r = get("/assets/style-ABCD1234.css");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/css; charset=utf-8");

  r = get("/assets/main-ABCD1234.js.map");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
}

TEST_F(WebTest, HeadAnswersWithoutABody) {
  start_web();
  auto r = client_->Head("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body.empty());
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(r->get_header_value("X-Frame-Options"), "DENY");

  std::string raw = raw_request(port_, "HEAD", "/assets/main-ABCD1234.js");
  EXPECT_EQ(status_of(raw), 200) << raw;
  EXPECT_EQ(raw.find(kBundle), std::string::npos) << raw;
}

TEST_F(WebTest, OnlyGetAndHead) {
  start_web();
  auto r = client_->Post("/", "x", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = client_->Put("/index.html", "x", "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = client_->Delete("/index.html");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(fs::file_size(web_ / "index.html"), std::string(kIndex).size());
}

TEST_F(WebTest, NothingOutsideTheBuiltClientIsServed) {
  start_web();
  for (const char* target : {
           "/../secret.txt",
           "/assets/../../secret.js",
           "/assets/../index.html",
           "/%2e%2e/secret.txt",
           "/%2E%2E/secret.js",
           "/..%2fsecret.txt",
           "/assets/..%2f..%2fsecret.js",
           "/assets/%2e%2e%2f%2e%2e%2fsecret.js",
           "/..",
           "/.",
           "/./index.html",
           "//index.html",
           "/%2findex.html",
           "/link.txt",        // a symlink, even one that leads out
           "/assets/link.js",  // likewise under assets/
           "/notes.cmake",     // an unknown extension
           "/sub/inner.js",    // no other directory
           "/assets/",         // no listings
           "/assets",
           "/secret.txt",  // one level up is not ours
           "/index.html%00.js",
           "/.hidden.js",
           "/a..js",
       }) {
    SCOPED_TRACE(target);
    std::string answer = raw_request(port_, "GET", target);
    ASSERT_FALSE(answer.empty());
    int status = status_of(answer);
    EXPECT_TRUE(status == 404 || status == 400) << answer;
    EXPECT_EQ(answer.find(kSecret), std::string::npos) << answer;
  }
}

TEST_F(WebTest, StaticRoutesNeverHideTheApi) {
  start_web();
  auto r = get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = get("/v1/conversations");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = get("/metrics");  // an API route, not a file
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  r = get("/v1/no-such-route");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(body_of(r)["message"], "no such route");
}

TEST_F(WebTest, MissingWebDirIsAClearJson404) {
  start({{"CHAT_WEB_DIR", (root_ / "not-built").string()}});
  for (const char* path : {"/", "/index.html"}) {
    SCOPED_TRACE(path);
    auto r = get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
    json b = body_of(r);
    EXPECT_EQ(b["error"], "not_found");
    EXPECT_NE(b["message"].get<std::string>().find("web client is not installed"),
              std::string::npos);
  }
  auto r = get("/assets/main-ABCD1234.js");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  r = get("/healthz");  // the API itself is unaffected
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// ---- GET /config.json ----

TEST_F(WebTest, ConfigDerivesTheBridgeUrlFromTheHostHeader) {
  start_web();
  EXPECT_EQ(config_url("127.0.0.1:8080"), "ws://127.0.0.1:8083/mqtt");
  EXPECT_EQ(config_url("chat.example.org"), "ws://chat.example.org:8083/mqtt");
  EXPECT_EQ(config_url("Chat-1.example.org:443"), "ws://Chat-1.example.org:8083/mqtt");
  EXPECT_EQ(config_url("[::1]:8080"), "ws://[::1]:8083/mqtt");
  EXPECT_EQ(config_url("localhost"), "ws://localhost:8083/mqtt");

  auto r = get("/config.json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
}

TEST_F(WebTest, ConfigFallsBackToTheBindAddressForABadHost) {
  start_web();
  for (const char* host :
       {"evil\"host", "a b", "x;y", "host:80:90", "host:port", "[::1", "-", "a-.b", "-a", "a..b",
        "<script>", "host/path", "user@host", ".", "[zz]:1"}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(config_url(host), "ws://127.0.0.1:8083/mqtt");
  }
  EXPECT_EQ(config_url(std::string(300, 'a')), "ws://127.0.0.1:8083/mqtt");
}

TEST_F(WebTest, ConfigUsesThePortAndTlsSettings) {
  start_web({{"CHAT_WS_PORT", "9443"},
             {"CHAT_TLS_CERT", "/etc/chat/cert.pem"},
             {"CHAT_TLS_KEY", "/etc/chat/key.pem"}});
  EXPECT_EQ(config_url("chat.example.org:8443"), "wss://chat.example.org:9443/mqtt");
}

TEST_F(WebTest, ConfigPublicUrlOverridesDerivation) {
  start_web({{"CHAT_WS_PUBLIC_URL", "wss://chat.example.org/mqtt"}});
  EXPECT_EQ(config_url("127.0.0.1:8080"), "wss://chat.example.org/mqtt");
  EXPECT_EQ(config_url("evil\"host"), "wss://chat.example.org/mqtt");
  auto r = get("/");
  ASSERT_TRUE(r);
  EXPECT_NE(r->get_header_value("Content-Security-Policy")
                .find("connect-src 'self' wss://chat.example.org/mqtt;"),
            std::string::npos);
}

// ---- the pure parts ----

TEST(WebUrl, WildcardBindFallsBackToLoopback) {
  WebOptions o;
  o.bind = "0.0.0.0";
  EXPECT_EQ(mqtt_ws_url(o, ""), "ws://127.0.0.1:8083/mqtt");
  o.bind = "::";
  EXPECT_EQ(mqtt_ws_url(o, "bad host"), "ws://[::1]:8083/mqtt");
  o.bind = "192.0.2.7";
  o.ws_tls = true;
  o.ws_port = 443;
  EXPECT_EQ(mqtt_ws_url(o, ""), "wss://192.0.2.7:443/mqtt");
}

TEST(WebFiles, OnlyKnownNamesMapToFiles) {
  char tmpl[] = "/tmp/chat-web-files-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  fs::path dir = tmpl;
  write_file(dir / "index.html", kIndex);
  write_file(dir / "robots.txt", "x");
  write_file(dir / "assets" / "a-1.js", "x");
  auto index = find_static_file(dir.string(), "/");
  ASSERT_TRUE(index.is_ok());
  EXPECT_EQ(index->path, (dir / "index.html").string());
  EXPECT_FALSE(index->immutable);
  auto asset = find_static_file(dir.string(), "/assets/a-1.js");
  ASSERT_TRUE(asset.is_ok());
  EXPECT_TRUE(asset->immutable);
  EXPECT_TRUE(find_static_file(dir.string(), "/robots.txt").is_ok());
  for (const char* bad : {"", "index.html", "/assets/", "/assets//a-1.js", "/assets/../index.html",
                          "/robots.txt/", "/ROBOTS.TXT", "/index.html.", "/assets/a-1.js.exe"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(find_static_file(dir.string(), bad).is_ok());
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

// ---- configuration ----

Result<Config> config_with(std::map<std::string, std::string> env) {
  return Config::from_lookup([&env](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}

TEST(WebConfig, DefaultsAndValidation) {
  auto c = config_with({});
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->ws_port, 8083);
  EXPECT_TRUE(c->web_dir.empty());
  EXPECT_TRUE(c->ws_public_url.empty());
  EXPECT_FALSE(c->ws_tls);
  EXPECT_EQ(WebOptions::from_config(*c).dir, default_web_dir());

  EXPECT_TRUE(config_with({{"CHAT_TLS", "dev"}})->ws_tls);  // the dev certificate: wss
  EXPECT_EQ(config_with({{"CHAT_WEB_DIR", "/srv/web"}})->web_dir, "/srv/web");
  EXPECT_EQ(config_with({{"CHAT_WS_PUBLIC_URL", "ws://h:1/mqtt?x=1"}})->ws_public_url,
            "ws://h:1/mqtt?x=1");

  for (auto [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"CHAT_WS_PORT", "0"},
           {"CHAT_WS_PORT", "65536"},
           {"CHAT_WS_PORT", "80x"},
           {"CHAT_WS_PUBLIC_URL", "http://h/mqtt"},
           {"CHAT_WS_PUBLIC_URL", "ws://"},
           {"CHAT_WS_PUBLIC_URL", "ws:///mqtt"},
           {"CHAT_WS_PUBLIC_URL", "ws://h/mqtt; script-src *"},
           {"CHAT_WS_PUBLIC_URL", "ws://h/a,b"},
           {"CHAT_WS_PUBLIC_URL", "ws://h/'x'"},
           {"CHAT_WS_PUBLIC_URL", "ws://h/\"x\""},
           {"CHAT_WS_PUBLIC_URL", "ws://" + std::string(2050, 'a')},
           {"CHAT_TLS", "yes"},
       }) {
    SCOPED_TRACE(name + "=" + value);
    auto bad = config_with({{name, value}});
    ASSERT_FALSE(bad.is_ok());
    EXPECT_NE(bad.status().message().find(name), std::string::npos) << bad.status().message();
  }
}

}  // namespace
}  // namespace chat::api
