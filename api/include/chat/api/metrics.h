// GET /metrics (CONTRACT §4): Prometheus text exposition format 0.0.4.
//
// - PromWriter: the text format itself (HELP/TYPE lines, label escaping,
//   histograms with cumulative buckets and +Inf).
// - route_label(): the route pattern a request path belongs to, so label
//   values never carry user ids, group ids or conversation ids.
// - HttpMetrics: chat-api's own request counters and latency histograms
//   (thread-safe; recorded from the HTTP access log hook).
// - BridgeStatsPoller: chat-bridge's loopback /stats, fetched with a short
//   timeout and cached for a second.
// - render_metrics(): everything, including the broker plugin's latest stats
//   snapshot (topics::kControlStats, kept by the control client).
//
// Every metric and its meaning: docs/operations.md, "Metrics".
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "chat/api/control.h"
#include "chat/api/rate_limits.h"

namespace chat::api {

class PushMetrics;
class MediaLibrary;  // media.h
class KeyDirectory;  // key_directory.h

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// A label set, in output order.
using Labels = std::vector<std::pair<std::string, std::string>>;

class PromWriter {
 public:
  // # HELP and # TYPE lines; `type` is counter, gauge or histogram.
  void family(std::string_view name, std::string_view help, std::string_view type);
  void sample(std::string_view name, const Labels& labels, double value);
  // <name>_bucket{...,le="b"} (cumulative, ending with le="+Inf" = count),
  // <name>_sum and <name>_count. `counts` holds one entry per bound plus the
  // overflow (non-cumulative); a size mismatch writes nothing.
  void histogram(std::string_view name, const Labels& labels, const std::vector<double>& bounds,
                 const std::vector<uint64_t>& counts, double sum);

  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

  // Label value escaping of the text format: \ -> \\, " -> \", newline -> \n.
  static std::string escape_label_value(std::string_view value);
  // HELP text escaping: \ -> \\, newline -> \n.
  static std::string escape_help(std::string_view help);
  // Integers without a fraction, +Inf/-Inf/NaN as the format spells them.
  static std::string format_value(double value);

 private:
  void labels(const Labels& labels, const std::pair<std::string, std::string>* extra);
  std::string out_;
};

// The route pattern of a request, e.g. "/v1/groups/{gid}/members/{user}";
// "/" for the web client and its assets; "other" for anything unknown.
// Points at static storage (no allocation).
std::string_view route_label(std::string_view path);
// GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH as they are; anything else
// "other". Static storage too.
std::string_view method_label(std::string_view method);

// Request latency buckets, seconds.
inline constexpr std::array<double, 13> kHttpLatencyBounds = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

class HttpMetrics {
 public:
  void record(std::string_view method, std::string_view path, int status, double seconds);
  void write(PromWriter& w) const;

 private:
  struct Latency {
    std::array<uint64_t, kHttpLatencyBounds.size() + 1> counts{};
    double sum = 0;
  };
  mutable std::mutex mu_;
  // (route, method, code) -> requests; the labels point at static storage,
  // so counting an already seen series allocates nothing.
  std::map<std::tuple<std::string_view, std::string_view, int>, uint64_t> requests_;
  std::map<std::string_view, Latency> latency_;  // by route
};

// chat-bridge's /stats (bridge/README.md) as far as /metrics shows it.
struct BridgeSample {
  bool up = false;  // /stats answered 200 with the expected JSON
  uint64_t connections_current = 0;
  uint64_t connections_total = 0;
  uint64_t bytes_to_broker = 0;
  uint64_t bytes_to_client = 0;
  uint64_t upstream_connect_failures = 0;
  std::map<std::string, uint64_t> refused;  // upgrades refused, by reason ("rate_limited", ...)
};

// Parses the bridge's /stats body; nullopt when it is not what the bridge sends.
std::optional<BridgeSample> parse_bridge_stats(std::string_view body);

// Fetches http(s)://host:port/stats at most once per `max_age` (concurrent
// scrapes share the cached answer); a bridge that does not answer within
// `timeout` is reported down. Thread-safe.
class BridgeStatsPoller {
 public:
  BridgeStatsPoller(std::string host, int port, bool tls,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(500),
                    std::chrono::milliseconds max_age = std::chrono::milliseconds(1000));
  BridgeSample sample();

 private:
  BridgeSample fetch() const;

  std::string host_;
  int port_;
  bool tls_;
  std::chrono::milliseconds timeout_;
  std::chrono::milliseconds max_age_;
  std::mutex mu_;
  std::optional<std::chrono::steady_clock::time_point> fetched_at_;
  BridgeSample cached_;
};

// The address chat-api reaches the bridge at: CHAT_BIND, or loopback when it
// is a wildcard (0.0.0.0 -> 127.0.0.1, :: -> ::1).
std::string bridge_local_host(const std::string& bind);

struct MetricsInput {
  const HttpMetrics* http = nullptr;
  double process_start_s = 0;  // unix seconds
  bool broker_connected = false;
  std::optional<BrokerStatsSnapshot> broker;
  std::optional<BridgeSample> bridge;            // nullopt: not polled
  std::optional<RateLimitCounters> rate_limits;  // chat-api's own abuse limits
  const PushMetrics* push = nullptr;             // the push pipeline's counters, when set up
  const MediaLibrary* media = nullptr;           // media upload counters, when set up
  const KeyDirectory* keys = nullptr;            // key claim counters, when set up
  std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now();
};

// When this process started (unix seconds; taken at static initialisation).
double process_start_time_s();

// The whole /metrics body.
std::string render_metrics(const MetricsInput& in);

// Constant-time equality of two secrets (the length may leak, the content does not).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace chat::api
