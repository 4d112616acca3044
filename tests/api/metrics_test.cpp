// GET /metrics: the Prometheus text writer, route labelling, the rendering of
// the broker's stats snapshot and the bridge's /stats, and the endpoint's
// access rules (admin access token or CHAT_METRICS_TOKEN).
#include "chat/api/metrics.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "http_fixture.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)
using nlohmann::json;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The value of the sample line `series` (name and labels exactly as written), or NaN.
double sample_value(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      size_t start = pos + series.size() + 1;
      size_t end = text.find('\n', start);
      std::string v = text.substr(start, end - start);
      if (v == "+Inf") return INFINITY;
      return std::stod(v);
    }
    pos += series.size();
  }
  return NAN;
}

// ---- the text format ----

TEST(PromWriterTest, EscapesLabelValues) {
  EXPECT_EQ(PromWriter::escape_label_value(R"(a"b\c)"
                                           "\n"
                                           "d"),
            R"(a\"b\\c\nd)");
  PromWriter w;
  w.family("x_total", "Help with a \\ and a\nnewline.", "counter");
  w.sample("x_total", {{"route", "/v1/\"q\""}, {"code", "200"}}, 3);
  EXPECT_EQ(w.text(),
            "# HELP x_total Help with a \\\\ and a\\nnewline.\n"
            "# TYPE x_total counter\n"
            "x_total{route=\"/v1/\\\"q\\\"\",code=\"200\"} 3\n");
}

TEST(PromWriterTest, FormatsValues) {
  EXPECT_EQ(PromWriter::format_value(0), "0");
  EXPECT_EQ(PromWriter::format_value(42), "42");
  EXPECT_EQ(PromWriter::format_value(0.25), "0.25");
  EXPECT_EQ(PromWriter::format_value(0.00005), "0.00005");
  EXPECT_EQ(PromWriter::format_value(INFINITY), "+Inf");
  EXPECT_EQ(PromWriter::format_value(-INFINITY), "-Inf");
  EXPECT_EQ(PromWriter::format_value(NAN), "NaN");
}

TEST(PromWriterTest, HistogramBucketsAreCumulativeAndEndWithInf) {
  PromWriter w;
  // 1 at <= 0.1, 0 in (0.1, 1], 2 in (1, 5], 3 above 5.
  w.histogram("lat_seconds", {{"route", "r"}}, {0.1, 1, 5}, {1, 0, 2, 3}, 42.5);
  EXPECT_EQ(w.text(),
            "lat_seconds_bucket{route=\"r\",le=\"0.1\"} 1\n"
            "lat_seconds_bucket{route=\"r\",le=\"1\"} 1\n"
            "lat_seconds_bucket{route=\"r\",le=\"5\"} 3\n"
            "lat_seconds_bucket{route=\"r\",le=\"+Inf\"} 6\n"
            "lat_seconds_sum{route=\"r\"} 42.5\n"
            "lat_seconds_count{route=\"r\"} 6\n");
}

TEST(PromWriterTest, HistogramWithMismatchedCountsWritesNothing) {
  PromWriter w;
  w.histogram("h", {}, {1, 2}, {1, 2}, 0);
  EXPECT_EQ(w.text(), "");
}

// ---- labels ----

TEST(RouteLabelTest, PathsMapToTheirPattern) {
  EXPECT_EQ(route_label("/healthz"), "/healthz");
  EXPECT_EQ(route_label("/metrics"), "/metrics");
  EXPECT_EQ(route_label("/v1/users"), "/v1/users");
  EXPECT_EQ(route_label("/v1/users/me"), "/v1/users/me");
  EXPECT_EQ(route_label("/v1/users/me/password"), "/v1/users/me/password");
  EXPECT_EQ(route_label("/v1/oauth/token"), "/v1/oauth/token");
  EXPECT_EQ(route_label("/v1/conversations/dm:alice:bob/messages"),
            "/v1/conversations/{conv}/messages");
  EXPECT_EQ(route_label("/v1/groups/Gabc"), "/v1/groups/{gid}");
  EXPECT_EQ(route_label("/v1/groups/Gabc/members/carol"), "/v1/groups/{gid}/members/{user}");
  EXPECT_EQ(route_label("/v1/groups/Gabc/admins/carol"), "/v1/groups/{gid}/admins/{user}");
  EXPECT_EQ(route_label("/v1/blocks/mallory"), "/v1/blocks/{user}");
  EXPECT_EQ(route_label("/v1/sync"), "/v1/sync");
  EXPECT_EQ(route_label("/"), "/");
  EXPECT_EQ(route_label("/index.html"), "/");
  EXPECT_EQ(route_label("/assets/main-ABC123.js"), "/");
}

TEST(RouteLabelTest, UnknownPathsAreOtherAndNeverCarryIds) {
  EXPECT_EQ(route_label("/v1/nothing-here"), "other");
  EXPECT_EQ(route_label("/v1/users/alice"), "other");
  EXPECT_EQ(route_label("/v1/groups//members/x"), "other");
  EXPECT_EQ(route_label("/v1/groups/G1/members/x/y"), "other");
  EXPECT_EQ(route_label("/etc/passwd"), "other");
  EXPECT_EQ(route_label(""), "other");
  EXPECT_EQ(route_label("healthz"), "other");
  EXPECT_EQ(method_label("GET"), "GET");
  EXPECT_EQ(method_label("BREW"), "other");
}

TEST(HttpMetricsTest, CountsByRouteMethodAndCode) {
  HttpMetrics m;
  m.record("GET", "/v1/groups/G1", 200, 0.002);
  m.record("GET", "/v1/groups/G2", 200, 0.003);
  m.record("GET", "/v1/groups/G3", 404, 2.0);
  PromWriter w;
  m.write(w);
  const std::string& t = w.text();
  EXPECT_EQ(sample_value(
                t, R"(chat_http_requests_total{route="/v1/groups/{gid}",method="GET",code="200"})"),
            2);
  EXPECT_EQ(sample_value(
                t, R"(chat_http_requests_total{route="/v1/groups/{gid}",method="GET",code="404"})"),
            1);
  EXPECT_EQ(
      sample_value(
          t, R"(chat_http_request_duration_seconds_bucket{route="/v1/groups/{gid}",le="0.0025"})"),
      1);
  EXPECT_EQ(sample_value(
                t, R"(chat_http_request_duration_seconds_bucket{route="/v1/groups/{gid}",le="1"})"),
            2);
  EXPECT_EQ(
      sample_value(
          t, R"(chat_http_request_duration_seconds_bucket{route="/v1/groups/{gid}",le="+Inf"})"),
      3);
  EXPECT_EQ(
      sample_value(t, R"(chat_http_request_duration_seconds_count{route="/v1/groups/{gid}"})"), 3);
  EXPECT_FALSE(contains(t, "G1"));
}

TEST(ConstantTimeEqualTest, ComparesContentAndLength) {
  EXPECT_TRUE(constant_time_equal("secret-token-123", "secret-token-123"));
  EXPECT_FALSE(constant_time_equal("secret-token-123", "secret-token-124"));
  EXPECT_FALSE(constant_time_equal("secret-token-123", "secret-token-1234"));
  EXPECT_FALSE(constant_time_equal("", "x"));
}

// ---- the broker's snapshot and the bridge ----

json broker_snapshot() {
  return json::parse(R"({"v":1,"ts":1700000000000,"started_ms":1700000000000,"interval_s":5,
    "clients":{"connected":3},
    "connections":{"accepted":7,"refused":{"unauthenticated":2,"permission_denied":1,"other":0}},
    "messages":{"routed":{"direct":5,"group":1,"receipt":2,"typing":0},
                "refused":{"not_authorized":1,"invalid_payload":0,"too_large":0,"rate_limited":4,"unknown_peer":0},
                "duplicates":0},
    "archive":{"append_failures":0,
               "append_seconds":{"le":[0.001,0.01],"counts":[4,1,1],"sum":0.05,"count":6}},
    "group_fanout":{"le":[1,2,5],"counts":[0,0,1,0],"sum":3,"count":1}})");
}

TEST(RenderMetricsTest, BrokerSnapshotBecomesMetrics) {
  MetricsInput in;
  in.process_start_s = 1700000000;
  in.broker_connected = true;
  in.now = std::chrono::steady_clock::now();
  in.broker = BrokerStatsSnapshot{broker_snapshot(), in.now - std::chrono::seconds(2)};
  std::string t = render_metrics(in);
  EXPECT_EQ(sample_value(t, "chat_process_start_time_seconds"), 1700000000);
  EXPECT_EQ(sample_value(t, "chat_broker_up"), 1);
  EXPECT_NEAR(sample_value(t, "chat_broker_stats_age_seconds"), 2, 0.1);
  EXPECT_EQ(sample_value(t, "chat_broker_connected_clients"), 3);
  EXPECT_EQ(sample_value(t, "chat_broker_connections_accepted_total"), 7);
  EXPECT_EQ(sample_value(t, R"(chat_broker_connections_refused_total{reason="unauthenticated"})"),
            2);
  EXPECT_EQ(sample_value(t, R"(chat_broker_messages_routed_total{kind="direct"})"), 5);
  EXPECT_EQ(sample_value(t, R"(chat_broker_messages_refused_total{reason="rate_limited"})"), 4);
  EXPECT_EQ(sample_value(t, R"(chat_broker_archive_append_duration_seconds_bucket{le="0.01"})"), 5);
  EXPECT_EQ(sample_value(t, R"(chat_broker_archive_append_duration_seconds_bucket{le="+Inf"})"), 6);
  EXPECT_EQ(sample_value(t, "chat_broker_archive_append_duration_seconds_count"), 6);
  EXPECT_EQ(sample_value(t, R"(chat_broker_group_fanout_recipients_bucket{le="5"})"), 1);
  EXPECT_TRUE(contains(t, "# TYPE chat_broker_messages_routed_total counter\n"));
  EXPECT_TRUE(contains(t, "# TYPE chat_broker_archive_append_duration_seconds histogram\n"));
  EXPECT_FALSE(contains(t, "chat_bridge_up"));  // not polled
}

TEST(RenderMetricsTest, NoSnapshotYetIsAnInfiniteAge) {
  MetricsInput in;
  in.bridge = BridgeSample{};  // down
  std::string t = render_metrics(in);
  EXPECT_EQ(sample_value(t, "chat_broker_up"), 0);
  EXPECT_EQ(sample_value(t, "chat_broker_stats_age_seconds"), INFINITY);
  EXPECT_FALSE(contains(t, "chat_broker_messages_routed_total"));
  EXPECT_EQ(sample_value(t, "chat_bridge_up"), 0);
  EXPECT_FALSE(contains(t, "chat_bridge_connections"));
}

TEST(BridgeStatsTest, ParsesTheBridgesStatsJson) {
  auto s = parse_bridge_stats(
      R"({"connections":{"current":3,"total":57},"refused":{"origin":2},
          "closed":{"client":40},"bytes":{"to_broker":123456,"to_client":654321},
          "upstream_connect_failures":2})");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->up);
  EXPECT_EQ(s->connections_current, 3u);
  EXPECT_EQ(s->connections_total, 57u);
  EXPECT_EQ(s->bytes_to_broker, 123456u);
  EXPECT_EQ(s->bytes_to_client, 654321u);
  EXPECT_EQ(s->upstream_connect_failures, 2u);
  EXPECT_FALSE(parse_bridge_stats("not json"));
  EXPECT_FALSE(parse_bridge_stats(R"({"connections":{"current":"x"}})"));
}

TEST(BridgeStatsTest, RefusalsByReasonBecomeACounter) {
  auto s = parse_bridge_stats(
      R"({"connections":{"current":0,"total":9},"refused":{"origin":2,"rate_limited":7},
          "bytes":{"to_broker":0,"to_client":0}})");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->refused.at("rate_limited"), 7u);
  MetricsInput in;
  in.bridge = *s;
  in.rate_limits = RateLimitCounters{1, 2, 3, 4};
  const std::string t = render_metrics(in);
  EXPECT_EQ(sample_value(t, R"(chat_bridge_connections_refused_total{reason="rate_limited"})"), 7);
  EXPECT_EQ(sample_value(t, R"(chat_bridge_connections_refused_total{reason="origin"})"), 2);
  EXPECT_EQ(sample_value(t, R"(chat_http_rate_limited_total{limit="login_ip"})"), 1);
  EXPECT_EQ(sample_value(t, R"(chat_http_rate_limited_total{limit="login_locked"})"), 2);
  EXPECT_EQ(sample_value(t, "chat_login_lockouts_total"), 3);
  EXPECT_EQ(sample_value(t, R"(chat_http_rate_limited_total{limit="rest"})"), 4);
}

TEST(MetricsConfigTest, MetricsTokenIsOptionalAndChecked) {
  auto lookup = [](std::map<std::string, std::string> env) {
    return [env](const char* name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
  };
  auto none = Config::from_lookup(lookup({}));
  ASSERT_TRUE(none.is_ok());
  EXPECT_EQ(none->metrics_token, "");
  auto set = Config::from_lookup(lookup({{"CHAT_METRICS_TOKEN", "0123456789abcdef"}}));
  ASSERT_TRUE(set.is_ok());
  EXPECT_EQ(set->metrics_token, "0123456789abcdef");
  for (const char* bad : {"short", "has a space in it, 16+", "tab\there-0123456789"}) {
    std::string value = bad;
    auto r = Config::from_lookup(lookup({{"CHAT_METRICS_TOKEN", value}}));
    ASSERT_FALSE(r.is_ok()) << value;
    EXPECT_NE(r.status().message().find("CHAT_METRICS_TOKEN"), std::string::npos);
    EXPECT_EQ(r.status().message().find(value), std::string::npos);  // never echoed
  }
}

// ---- the endpoint ----

constexpr const char* kMetricsToken = "metrics-token-0123456789";

// A stand-in for chat-bridge's /stats on a free port.
class FakeBridge {
 public:
  FakeBridge() {
    server_.Get("/stats", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(
          R"({"connections":{"current":4,"total":9},"bytes":{"to_broker":100,"to_client":200},)"
          R"("upstream_connect_failures":0})",
          "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // Bounded: a server that never starts fails the test instead of hanging it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(server_.is_running()) << "the fake bridge did not start";
  }
  ~FakeBridge() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

class MetricsEndpointTest : public HttpServerTest {};

TEST_F(MetricsEndpointTest, NeedsAdminOrTheMetricsToken) {
  start({{"CHAT_METRICS_TOKEN", kMetricsToken}});
  auto r = get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(body_of(r)["error"], "unauthenticated");
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");

  r = get("/metrics", "not-the-token-and-not-a-jwt");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  std::string user = token_for("alice");
  r = get("/metrics", user);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(body_of(r)["error"], "permission_denied");

  std::string admin = login("root", "root-password")["access_token"];
  r = get("/metrics", admin);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_TRUE(contains(r->body, "# TYPE chat_http_requests_total counter\n"));

  r = get("/metrics", kMetricsToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(contains(r->body, "chat_process_start_time_seconds "));
}

TEST_F(MetricsEndpointTest, WithoutAMetricsTokenOnlyAdminsRead) {
  start();
  EXPECT_EQ(get("/metrics", kMetricsToken)->status, 401);
  std::string admin = login("root", "root-password")["access_token"];
  EXPECT_EQ(get("/metrics", admin)->status, 200);
}

TEST_F(MetricsEndpointTest, RequestCountersGrowByRoutePattern) {
  start({{"CHAT_METRICS_TOKEN", kMetricsToken}});
  const std::string series =
      R"(chat_http_requests_total{route="/v1/groups/{gid}",method="GET",code="401"})";
  auto before = get("/metrics", kMetricsToken);
  ASSERT_TRUE(before);
  double n0 = sample_value(before->body, series);
  if (std::isnan(n0)) n0 = 0;
  for (const char* gid : {"Gone", "Gtwo", "Gthree"}) {
    EXPECT_EQ(get(std::string("/v1/groups/") + gid)->status, 401);
  }
  // A request is counted once its response is written (cpp-httplib's logger
  // runs after the write), so the client may see its answer first: poll.
  auto after = get("/metrics", kMetricsToken);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  // (a missing series reads as NaN, which compares false: count it as 0)
  while (after && !(sample_value(after->body, series) >= n0 + 3) &&
         std::chrono::steady_clock::now() < deadline) {
    after = get("/metrics", kMetricsToken);
  }
  ASSERT_TRUE(after);
  EXPECT_EQ(sample_value(after->body, series), n0 + 3) << after->body;
  EXPECT_EQ(sample_value(after->body,
                         R"(chat_http_request_duration_seconds_count{route="/v1/groups/{gid}"})"),
            n0 + 3);
  EXPECT_FALSE(contains(after->body, "Gone"));
  // The first scrape is counted too (after it answered).
  EXPECT_GE(sample_value(after->body,
                         R"(chat_http_requests_total{route="/metrics",method="GET",code="200"})"),
            1);
}

TEST_F(MetricsEndpointTest, BridgeDownIsReportedNotAFailure) {
  // Nothing listens on this port: the scrape still succeeds.
  int unused = 0;
  {
    httplib::Server probe;
    unused = probe.bind_to_any_port("127.0.0.1");
  }
  start({{"CHAT_METRICS_TOKEN", kMetricsToken}, {"CHAT_WS_PORT", std::to_string(unused)}});
  auto r = get("/metrics", kMetricsToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(sample_value(r->body, "chat_bridge_up"), 0) << r->body;
  EXPECT_EQ(sample_value(r->body, "chat_broker_stats_age_seconds"), INFINITY);
}

TEST_F(MetricsEndpointTest, BridgeStatsAreExposed) {
  FakeBridge bridge;
  start({{"CHAT_METRICS_TOKEN", kMetricsToken}, {"CHAT_WS_PORT", std::to_string(bridge.port())}});
  auto r = get("/metrics", kMetricsToken);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(sample_value(r->body, "chat_bridge_up"), 1) << r->body;
  EXPECT_EQ(sample_value(r->body, "chat_bridge_connections"), 4);
  EXPECT_EQ(sample_value(r->body, R"(chat_bridge_bytes_total{direction="to_broker"})"), 100);
  EXPECT_EQ(sample_value(r->body, R"(chat_bridge_bytes_total{direction="to_client"})"), 200);
}

}  // namespace
}  // namespace chat::api
