#include "chat/api/metrics.h"

#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <regex>

#include "chat/api/key_directory.h"
#include "chat/api/media.h"
#include "chat/api/push_metrics.h"
#include "chat/api/web.h"

namespace chat::api {

using nlohmann::json;

// ---- the text format ---------------------------------------------------------

std::string PromWriter::escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string PromWriter::escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string PromWriter::format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  // The shortest text that reads back as the same double, without an exponent.
  char buf[512];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed);
  if (ec != std::errc()) {
    std::snprintf(buf, sizeof buf, "%.17g", value);
    return buf;
  }
  return std::string(buf, end);
}

void PromWriter::family(std::string_view name, std::string_view help, std::string_view type) {
  out_.append("# HELP ").append(name).append(" ").append(escape_help(help)).append("\n");
  out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void PromWriter::labels(const Labels& labels, const std::pair<std::string, std::string>* extra) {
  if (labels.empty() && extra == nullptr) return;
  out_ += '{';
  bool first = true;
  auto one = [&](const std::pair<std::string, std::string>& l) {
    if (!first) out_ += ',';
    first = false;
    out_.append(l.first).append("=\"").append(escape_label_value(l.second)).append("\"");
  };
  for (const auto& l : labels) one(l);
  if (extra != nullptr) one(*extra);
  out_ += '}';
}

void PromWriter::sample(std::string_view name, const Labels& l, double value) {
  out_.append(name);
  labels(l, nullptr);
  out_.append(" ").append(format_value(value)).append("\n");
}

void PromWriter::histogram(std::string_view name, const Labels& l,
                           const std::vector<double>& bounds, const std::vector<uint64_t>& counts,
                           double sum) {
  if (counts.size() != bounds.size() + 1) return;
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts[i];
    std::pair<std::string, std::string> le{
        "le", i < bounds.size() ? format_value(bounds[i]) : std::string("+Inf")};
    out_.append(bucket);
    labels(l, &le);
    out_.append(" ").append(std::to_string(cumulative)).append("\n");
  }
  sample(std::string(name) + "_sum", l, sum);
  sample(std::string(name) + "_count", l, static_cast<double>(cumulative));
}

// ---- labels --------------------------------------------------------------------

namespace {

// Every route chat-api serves; {x} matches one non-empty path segment.
constexpr const char* kRoutes[] = {
    "/healthz",
    "/metrics",
    "/config.json",
    "/v1/users",
    "/v1/users/me",
    "/v1/users/me/password",
    "/v1/oauth/token",
    "/v1/oauth/revoke",
    "/v1/conversations",
    "/v1/conversations/{conv}/messages",
    "/v1/sync",
    "/v1/groups",
    "/v1/groups/{gid}",
    "/v1/groups/{gid}/members/{user}",
    "/v1/groups/{gid}/admins/{user}",
    "/v1/blocks",
    "/v1/blocks/{user}",
    "/v1/reports",
    "/v1/media",
    "/v1/media/{id}",
    "/v1/media/{id}/thumbnail",
    "/v1/devices",
    "/v1/devices/{device}",
    "/v1/keys",
    "/v1/keys/count",
    "/v1/keys/{user_or_device}",
    "/v1/users/{user}/keys",
    "/v1/users/{user}/devices",
};

bool matches_route(std::string_view pattern, std::string_view path) {
  // Both start with '/'; compare segment by segment.
  while (!pattern.empty() && !path.empty()) {
    if (pattern.front() != '/' || path.front() != '/') return false;
    pattern.remove_prefix(1);
    path.remove_prefix(1);
    size_t pe = pattern.find('/');
    size_t se = path.find('/');
    std::string_view pseg = pattern.substr(0, pe);
    std::string_view sseg = path.substr(0, se);
    if (pseg.size() > 2 && pseg.front() == '{' && pseg.back() == '}') {
      if (sseg.empty()) return false;
    } else if (pseg != sseg) {
      return false;
    }
    pattern = pe == std::string_view::npos ? std::string_view() : pattern.substr(pe);
    path = se == std::string_view::npos ? std::string_view() : path.substr(se);
  }
  return pattern.empty() && path.empty();
}

}  // namespace

std::string_view route_label(std::string_view path) {
  if (path.empty() || path.front() != '/') return "other";
  for (const char* r : kRoutes) {
    if (matches_route(r, path)) return r;
  }
  static const std::regex kStatic(kStaticRoutePattern);
  if (path.size() <= 256 && std::regex_match(path.begin(), path.end(), kStatic)) return "/";
  return "other";
}

std::string_view method_label(std::string_view method) {
  static constexpr std::string_view kMethods[] = {"GET",    "HEAD",    "POST", "PUT",
                                                  "DELETE", "OPTIONS", "PATCH"};
  for (std::string_view m : kMethods) {
    if (method == m) return m;
  }
  return "other";
}

// ---- chat-api's own requests ----------------------------------------------------

void HttpMetrics::record(std::string_view method, std::string_view path, int status,
                         double seconds) {
  const std::string_view route = route_label(path);
  size_t bucket = 0;
  while (bucket < kHttpLatencyBounds.size() && seconds > kHttpLatencyBounds[bucket]) ++bucket;
  std::lock_guard lock(mu_);
  ++requests_[{route, method_label(method), status}];
  Latency& l = latency_[route];
  ++l.counts[bucket];
  l.sum += seconds;
}

void HttpMetrics::write(PromWriter& w) const {
  std::lock_guard lock(mu_);
  w.family("chat_http_requests_total",
           "HTTP requests chat-api answered, by route pattern, method and status code.", "counter");
  for (const auto& [key, n] : requests_) {
    const auto& [route, method, code] = key;
    w.sample("chat_http_requests_total",
             {{"route", std::string(route)},
              {"method", std::string(method)},
              {"code", std::to_string(code)}},
             static_cast<double>(n));
  }
  w.family("chat_http_request_duration_seconds",
           "Time from the request's routing to the end of its handler, by route pattern.",
           "histogram");
  const std::vector<double> bounds(kHttpLatencyBounds.begin(), kHttpLatencyBounds.end());
  for (const auto& [route, l] : latency_) {
    w.histogram("chat_http_request_duration_seconds", {{"route", std::string(route)}}, bounds,
                std::vector<uint64_t>(l.counts.begin(), l.counts.end()), l.sum);
  }
}

// ---- chat-bridge -------------------------------------------------------------------

std::optional<BridgeSample> parse_bridge_stats(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  auto num = [&j](const char* a, const char* b, uint64_t* out) {
    auto it = j.find(a);
    if (it == j.end()) return false;
    const json* v = &*it;
    if (b != nullptr) {
      if (!v->is_object() || !v->contains(b)) return false;
      v = &(*v)[b];
    }
    if (!v->is_number_unsigned() && !v->is_number_integer()) return false;
    *out = v->get<uint64_t>();
    return true;
  };
  BridgeSample s;
  if (!num("connections", "current", &s.connections_current) ||
      !num("connections", "total", &s.connections_total) ||
      !num("bytes", "to_broker", &s.bytes_to_broker) ||
      !num("bytes", "to_client", &s.bytes_to_client)) {
    return std::nullopt;
  }
  num("upstream_connect_failures", nullptr, &s.upstream_connect_failures);
  if (auto it = j.find("refused"); it != j.end() && it->is_object()) {
    for (const auto& [reason, count] : it->items()) {
      if (count.is_number_unsigned() || count.is_number_integer()) {
        s.refused[reason] = count.get<uint64_t>();
      }
    }
  }
  s.up = true;
  return s;
}

std::string bridge_local_host(const std::string& bind) {
  if (bind == "0.0.0.0" || bind.empty()) return "127.0.0.1";
  if (bind == "::") return "::1";
  return bind;
}

BridgeStatsPoller::BridgeStatsPoller(std::string host, int port, bool tls,
                                     std::chrono::milliseconds timeout,
                                     std::chrono::milliseconds max_age)
    : host_(std::move(host)), port_(port), tls_(tls), timeout_(timeout), max_age_(max_age) {}

BridgeSample BridgeStatsPoller::fetch() const {
  const std::string host = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  const std::string url = (tls_ ? "https://" : "http://") + host + ":" + std::to_string(port_);
  httplib::Client client(url);
  if (tls_) client.enable_server_certificate_verification(false);  // our own bridge, loopback
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count();
  client.set_connection_timeout(0, us);
  client.set_read_timeout(0, us);
  client.set_write_timeout(0, us);
  client.set_keep_alive(false);
  auto res = client.Get("/stats");
  if (!res || res->status != 200) return {};
  auto parsed = parse_bridge_stats(res->body);
  return parsed ? *parsed : BridgeSample{};
}

BridgeSample BridgeStatsPoller::sample() {
  // One fetch at a time; scrapes that come meanwhile wait for it and share it.
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (fetched_at_ && now - *fetched_at_ < max_age_) return cached_;
  cached_ = fetch();
  fetched_at_ = std::chrono::steady_clock::now();
  return cached_;
}

// ---- the whole page ----------------------------------------------------------------

namespace {

// The value at a path of nested objects, or nullptr.
const json* find_path(const json& root, std::initializer_list<const char*> path) {
  const json* v = &root;
  for (const char* key : path) {
    if (!v->is_object()) return nullptr;
    auto it = v->find(key);
    if (it == v->end()) return nullptr;
    v = &*it;
  }
  return v;
}

std::optional<double> number_at(const json& root, std::initializer_list<const char*> path) {
  const json* v = find_path(root, path);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->get<double>();
}

// One sample per member of an object of numbers, labelled `label`=<member name>.
void labelled_counters(PromWriter& w, const json& root, std::initializer_list<const char*> path,
                       const char* name, const char* help, const char* label) {
  const json* obj = find_path(root, path);
  if (obj == nullptr || !obj->is_object()) return;
  w.family(name, help, "counter");
  for (const auto& [key, value] : obj->items()) {
    if (value.is_number()) w.sample(name, {{label, key}}, value.get<double>());
  }
}

void scalar(PromWriter& w, const json& root, std::initializer_list<const char*> path,
            const char* name, const char* help, const char* type, double scale = 1) {
  auto v = number_at(root, path);
  if (!v) return;
  w.family(name, help, type);
  w.sample(name, {}, *v * scale);
}

void snapshot_histogram(PromWriter& w, const json& root, std::initializer_list<const char*> path,
                        const char* name, const char* help) {
  const json* h = find_path(root, path);
  if (h == nullptr || !h->is_object()) return;
  const json* le = find_path(*h, {"le"});
  const json* counts = find_path(*h, {"counts"});
  auto sum = number_at(*h, {"sum"});
  if (le == nullptr || counts == nullptr || !le->is_array() || !counts->is_array() || !sum ||
      counts->size() != le->size() + 1) {
    return;
  }
  std::vector<double> bounds;
  std::vector<uint64_t> n;
  for (const auto& b : *le) {
    if (!b.is_number()) return;
    bounds.push_back(b.get<double>());
  }
  for (const auto& c : *counts) {
    if (!c.is_number_unsigned() && !c.is_number_integer()) return;
    n.push_back(c.get<uint64_t>());
  }
  w.family(name, help, "histogram");
  w.histogram(name, {}, bounds, n, *sum);
}

void write_broker(PromWriter& w, const MetricsInput& in) {
  w.family("chat_broker_up", "1 while chat-api's control connection to the broker is up.", "gauge");
  w.sample("chat_broker_up", {}, in.broker_connected ? 1 : 0);
  w.family("chat_broker_stats_age_seconds",
           "Seconds since the broker plugin's last stats snapshot arrived (published every 5 s; "
           "+Inf when none has arrived since chat-api started).",
           "gauge");
  if (!in.broker) {
    w.sample("chat_broker_stats_age_seconds", {}, INFINITY);
    return;
  }
  w.sample("chat_broker_stats_age_seconds", {},
           std::chrono::duration<double>(in.now - in.broker->received).count());
  const json& s = in.broker->stats;
  scalar(w, s, {"started_ms"}, "chat_broker_start_time_seconds",
         "When the broker plugin started, unix seconds.", "gauge", 0.001);
  scalar(w, s, {"clients", "connected"}, "chat_broker_connected_clients",
         "Devices (not service clients) connected to the broker now.", "gauge");
  scalar(w, s, {"connections", "accepted"}, "chat_broker_connections_accepted_total",
         "MQTT connections the plugin authenticated.", "counter");
  labelled_counters(w, s, {"connections", "refused"}, "chat_broker_connections_refused_total",
                    "MQTT connections the plugin refused, by reason.", "reason");
  labelled_counters(w, s, {"messages", "routed"}, "chat_broker_messages_routed_total",
                    "Publishes the plugin accepted and routed, by kind.", "kind");
  labelled_counters(w, s, {"messages", "refused"}, "chat_broker_messages_refused_total",
                    "Publishes the plugin refused, by the contract's error code.", "reason");
  scalar(w, s, {"messages", "duplicates"}, "chat_broker_messages_duplicate_total",
         "Messages re-sent with a cid already archived (acknowledged, not stored again).",
         "counter");
  scalar(w, s, {"archive", "append_failures"}, "chat_broker_archive_append_failures_total",
         "Archive appends that failed (the sender was disconnected without PUBACK).", "counter");
  if (const json* writable = find_path(s, {"archive", "writable"});
      writable != nullptr && writable->is_boolean()) {
    w.family("chat_broker_archive_writable",
             "1 while the broker's archive takes writes; 0 after a failed write (disk full, I/O "
             "error) until it recovers.",
             "gauge");
    w.sample("chat_broker_archive_writable", {}, writable->get<bool>() ? 1 : 0);
  }
  scalar(w, s, {"archive", "recoveries"}, "chat_broker_archive_recoveries_total",
         "Times the broker's archive became writable again after a failed write.", "counter");
  scalar(w, s, {"mosquitto", "messages_dropped"}, "chat_broker_messages_dropped_total",
         "Outgoing messages Mosquitto dropped because a session's queue was full (its "
         "$SYS/broker/publish/messages/dropped; every client, since the broker started).",
         "counter");
  snapshot_histogram(w, s, {"archive", "append_seconds"},
                     "chat_broker_archive_append_duration_seconds",
                     "Time of each message's archive append in the broker, seconds.");
  snapshot_histogram(w, s, {"group_fanout"}, "chat_broker_group_fanout_recipients",
                     "Recipients (members, the sender included) of each routed group message.");
}

void write_bridge(PromWriter& w, const BridgeSample& b) {
  w.family("chat_bridge_up", "1 when chat-bridge's /stats answered the last poll.", "gauge");
  w.sample("chat_bridge_up", {}, b.up ? 1 : 0);
  if (!b.up) return;
  w.family("chat_bridge_connections", "WebSocket connections open on chat-bridge now.", "gauge");
  w.sample("chat_bridge_connections", {}, static_cast<double>(b.connections_current));
  w.family("chat_bridge_connections_opened_total",
           "WebSocket connections chat-bridge accepted since it started.", "counter");
  w.sample("chat_bridge_connections_opened_total", {}, static_cast<double>(b.connections_total));
  w.family("chat_bridge_bytes_total",
           "Bytes chat-bridge relayed, by direction (to_broker, to_client).", "counter");
  w.sample("chat_bridge_bytes_total", {{"direction", "to_broker"}},
           static_cast<double>(b.bytes_to_broker));
  w.sample("chat_bridge_bytes_total", {{"direction", "to_client"}},
           static_cast<double>(b.bytes_to_client));
  w.family("chat_bridge_upstream_connect_failures_total",
           "Times chat-bridge could not reach the broker for a new WebSocket.", "counter");
  w.sample("chat_bridge_upstream_connect_failures_total", {},
           static_cast<double>(b.upstream_connect_failures));
  if (!b.refused.empty()) {
    w.family("chat_bridge_connections_refused_total",
             "WebSocket upgrades chat-bridge refused, by reason (rate_limited: over "
             "CHAT_WS_CONN_RATE).",
             "counter");
    for (const auto& [reason, count] : b.refused) {
      w.sample("chat_bridge_connections_refused_total", {{"reason", reason}},
               static_cast<double>(count));
    }
  }
}

void write_rate_limits(PromWriter& w, const RateLimitCounters& c) {
  w.family("chat_http_rate_limited_total",
           "Requests chat-api answered 429, by limit (login_ip: token requests over "
           "CHAT_LOGIN_RATE; login_locked: password grants of a locked account; rest: writes over "
           "CHAT_RATE_LIMIT_REST).",
           "counter");
  w.sample("chat_http_rate_limited_total", {{"limit", "login_ip"}},
           static_cast<double>(c.login_ip_refused));
  w.sample("chat_http_rate_limited_total", {{"limit", "login_locked"}},
           static_cast<double>(c.login_locked_refused));
  w.sample("chat_http_rate_limited_total", {{"limit", "rest"}},
           static_cast<double>(c.rest_refused));
  w.family("chat_login_lockouts_total",
           "Failed password grants that locked an account (CHAT_LOGIN_LOCKOUT_AFTER and beyond).",
           "counter");
  w.sample("chat_login_lockouts_total", {}, static_cast<double>(c.lockouts));
}

void write_key_claims(PromWriter& w, const KeyClaimCounters& c) {
  w.family("chat_key_claims_total",
           "Key directory claims: bundles handed out with a one-time prekey (ok) or without "
           "(exhausted: none left; limited: the target's limit over all claimers), and claim "
           "requests refused by the per-claimer CHAT_KEY_CLAIM_RATE (rate_limited).",
           "counter");
  w.sample("chat_key_claims_total", {{"result", "ok"}}, static_cast<double>(c.ok));
  w.sample("chat_key_claims_total", {{"result", "exhausted"}}, static_cast<double>(c.exhausted));
  w.sample("chat_key_claims_total", {{"result", "limited"}}, static_cast<double>(c.limited));
  w.sample("chat_key_claims_total", {{"result", "rate_limited"}},
           static_cast<double>(c.rate_limited));
}

void write_media(PromWriter& w, const MediaCounters& c) {
  w.family("chat_media_uploads_total", "Media uploads stored (POST /v1/media answered 201).",
           "counter");
  w.sample("chat_media_uploads_total", {}, static_cast<double>(c.uploads));
  w.family("chat_media_upload_bytes_total", "Bytes of the media uploads stored.", "counter");
  w.sample("chat_media_upload_bytes_total", {}, static_cast<double>(c.upload_bytes));
  w.family("chat_media_deduplicated_total",
           "Uploads whose bytes were stored already (kept once, content-addressed).", "counter");
  w.sample("chat_media_deduplicated_total", {}, static_cast<double>(c.deduplicated));
  w.family("chat_media_refused_total", "Uploads refused (too large, type not allowed, empty).",
           "counter");
  w.sample("chat_media_refused_total", {}, static_cast<double>(c.refused));
  w.family("chat_media_thumbnails_total", "Thumbnails made.", "counter");
  w.sample("chat_media_thumbnails_total", {}, static_cast<double>(c.thumbnails));
}

const double kProcessStart =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

}  // namespace

double process_start_time_s() { return kProcessStart; }

std::string render_metrics(const MetricsInput& in) {
  PromWriter w;
  w.family("chat_process_start_time_seconds", "When chat-api started, unix seconds.", "gauge");
  w.sample("chat_process_start_time_seconds", {}, in.process_start_s);
  if (in.http != nullptr) in.http->write(w);
  write_broker(w, in);
  if (in.rate_limits) write_rate_limits(w, *in.rate_limits);
  if (in.media != nullptr) write_media(w, in.media->counters());
  if (in.keys != nullptr) write_key_claims(w, in.keys->counters());
  if (in.push != nullptr) in.push->write(w);
  if (in.bridge) write_bridge(w, *in.bridge);
  return w.take();
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Compare over the longer length so the time depends on the lengths only.
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  // Keep the compiler from short-circuiting the loop.
  volatile unsigned char result = diff;
  return result == 0;
}

}  // namespace chat::api
