#include "chat/bridge/server.h"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/bridge/byte_queue.h"
#include "chat/bridge/connection_limits.h"
#include "chat/bridge/connection_rate.h"
#include "chat/bridge/log.h"
#include "chat/bridge/origin_policy.h"
#include "chat/bridge/packet_framer.h"
#include "chat/bridge/policy.h"
#include "chat/common/log_fields.h"

namespace chat::bridge {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Largest single read handed to us and largest single write we issue.
constexpr size_t kChunk = 32 * 1024;
// After our FIN toward the broker, how long it has to close its side.
constexpr int kUpstreamLingerS = 5;
// How long a WebSocket may take to close once the bridge asked it to (flush
// what the broker sent, close handshake) before its TCP connection is cut: a
// peer that stopped reading would otherwise hold it forever.
constexpr int kCloseGraceS = 30;
// How long a graceful shutdown waits for peers before cutting them.
constexpr auto kShutdownGrace = std::chrono::milliseconds(1500);
constexpr auto kSummaryEvery = std::chrono::seconds(60);
// Body size of the small HTTP answers (/stats, /healthz, errors).
constexpr size_t kHttpBodyMax = 2048;

constexpr const char* kHttpProtocol = "chat-bridge/http";
constexpr const char* kUpstreamProtocol = "chat-bridge/upstream";
constexpr const char* kSignalProtocol = "chat-bridge/signals";

enum class Upstream {
  kConnecting,  // TCP connect in progress (CHAT_WS_HANDSHAKE_TIMEOUT at most)
  kOpen,        // relaying
  kDraining,    // our FIN sent (the browser is gone); waiting for the broker's
  kGone,        // closed, failed, or never connected
};

// One WebSocket and its broker connection. Owned by Server::Impl::sessions;
// each wsi points to it through its opaque user data while it is attached.
struct Session {
  uint64_t id = 0;
  std::string peer;         // client IP, canonical (limits key)
  lws* ws = nullptr;        // null once the WebSocket is closed
  lws* upstream = nullptr;  // null unless connecting/open/draining
  Upstream up = Upstream::kConnecting;
  ByteQueue to_broker;                 // from the browser, not yet written upstream
  ByteQueue to_client;                 // from the broker, not yet written in frames
  PacketFramer framer;                 // where to_client's MQTT packets end
  bool ws_paused = false;              // we stopped reading the WebSocket
  bool up_paused = false;              // we stopped reading the broker
  std::optional<CloseReason> closing;  // a close frame is due / was sent
  uint64_t frame_seen = 0;             // payload bytes of the current frame so far
  SteadyClock::time_point last_activity;
};

// Per-connection data of the HTTP protocol: the pending answer's body.
struct HttpAnswer {
  size_t len;
  char body[kHttpBodyMax];
};

std::string canonical_ip(std::string ip) {
  // IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d.
  if (ip.rfind("::ffff:", 0) == 0 && ip.find('.') != std::string::npos) ip.erase(0, 7);
  return ip;
}

std::string peer_ip(lws* wsi) {
  char buf[128] = {};
  lws_get_peer_simple(wsi, buf, sizeof buf);
  return canonical_ip(buf);
}

bool is_loopback(const std::string& ip) { return ip.rfind("127.", 0) == 0 || ip == "::1"; }

std::optional<std::string> header(lws* wsi, lws_token_indexes h) {
  int n = lws_hdr_total_length(wsi, h);
  if (n <= 0) return std::nullopt;
  std::string v(static_cast<size_t>(n) + 1, '\0');
  if (lws_hdr_copy(wsi, v.data(), n + 1, h) < 0) return std::string("\x01");  // unreadable
  v.resize(std::strlen(v.c_str()));
  return v;
}

// For log lines: attacker-supplied text, shortened.
// A request header for a log field: its first 100 bytes, quoted when needed
// (log_value), "-" when absent.
std::string shown(const std::optional<std::string>& v) {
  if (!v) return "-";
  return log_value(std::string_view(*v).substr(0, 100));
}

// Why listening on addr:port fails, asked of the kernel directly.
std::string bind_error(const std::string& addr, int port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v4;
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v6;
  } else {
    return "not an IP address";
  }
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  std::string why;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    why = std::strerror(errno);
  } else if (::listen(fd, 1) != 0) {
    why = std::strerror(errno);
  }
  ::close(fd);
  return why;
}

// Room for two descriptors per connection (WebSocket + broker) and a few
// more; raises the soft limit as far as the hard one allows.
void raise_fd_limit(int max_connections) {
  const rlim_t wanted = static_cast<rlim_t>(max_connections) * 2 + 64;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < wanted) {
    rlim_t target = rl.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, rl.rlim_max);
    if (target > rl.rlim_cur) {
      rl.rlim_cur = target;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  if (rl.rlim_cur < static_cast<rlim_t>(max_connections) * 2) {
    logger().warn(
        "fd_limit.low: max_connections={} fds_needed={} fd_limit={} connections_possible={} "
        "setting=CHAT_WS_MAX_CONNECTIONS",
        max_connections, wanted, rl.rlim_cur, (rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 0) / 2);
  }
}

// libwebsockets' own error lines. A client can trigger some of them (e.g.
// oversized headers), so at most kLwsLinesPerMinute are logged per minute and
// the rest counted.
constexpr int kLwsLinesPerMinute = 20;

void lws_log_to_spdlog(int level, const char* line) {
  static SteadyClock::time_point window_start = SteadyClock::now();
  static int lines = 0;
  static int suppressed = 0;
  const auto now = SteadyClock::now();
  if (now - window_start >= std::chrono::minutes(1)) {
    if (suppressed > 0) logger().warn("lws.suppressed: count={}", suppressed);
    window_start = now;
    lines = 0;
    suppressed = 0;
  }
  if (++lines > kLwsLinesPerMinute) {
    ++suppressed;
    return;
  }
  std::string_view text(line);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (level & LLL_ERR) {
    logger().error("lws: msg={}", log_value(text));
  } else {
    logger().warn("lws: msg={}", log_value(text));
  }
}

int http_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len);
int ws_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len);
int upstream_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len);
int signal_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len);

// The listener's protocols. Index 0 serves plain HTTP and vets upgrades; its
// name contains '/', which can never be one token of Sec-WebSocket-Protocol,
// so only the two MQTT names can be selected by a client.
const lws_protocols kListenProtocols[] = {
    {kHttpProtocol, http_callback, sizeof(HttpAnswer), 0, 0, nullptr, 0},
    {"mqtt", ws_callback, 0, kChunk, 0, nullptr, kChunk + LWS_PRE + 16},
    {"mqttv3.1", ws_callback, 0, kChunk, 0, nullptr, kChunk + LWS_PRE + 16},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0}};

// The internal vhost (no listener): broker connections and the signalfd.
const lws_protocols kInternalProtocols[] = {
    {kUpstreamProtocol, upstream_callback, 0, kChunk, 0, nullptr, kChunk + 16},
    {kSignalProtocol, signal_callback, 0, 0, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0}};

}  // namespace

struct Server::Impl {
  Impl(const Config& c, std::string upstream)
      : config(c),
        upstream_address(std::move(upstream)),
        origins(c.bind, c.extra_origins),
        limits(static_cast<size_t>(c.max_connections), static_cast<size_t>(c.max_per_ip)),
        conn_rate(SystemClock::instance(), c.conn_rate, c.conn_burst),
        scratch(LWS_PRE + kChunk) {}

  const Config config;
  const std::string upstream_address;
  const OriginPolicy origins;
  ConnectionLimits limits;
  ConnectionRate conn_rate;
  Stats stats;
  Stats last_logged;

  lws_context* context = nullptr;
  lws_vhost* listener = nullptr;
  lws_vhost* internal = nullptr;
  int port = 0;

  std::unordered_map<Session*, std::unique_ptr<Session>> sessions;
  uint64_t next_id = 1;
  std::vector<uint8_t> scratch;  // LWS_PRE headroom + one chunk

  bool stopping = false;    // a signal arrived: no new WebSockets
  bool done = false;        // run() may return
  bool destroying = false;  // inside lws_context_destroy(): bookkeeping only
  SteadyClock::time_point stop_deadline;
  SteadyClock::time_point next_summary;

  // lws timers hand back the sul; this wrapper finds us again.
  struct Timer {
    lws_sorted_usec_list_t sul;
    Impl* self;
  } tick{};

  static Impl* of(lws* wsi) { return static_cast<Impl*>(lws_context_user(lws_get_context(wsi))); }
  static Session* session_of(lws* wsi) {
    return static_cast<Session*>(lws_get_opaque_user_data(wsi));
  }

  size_t cap() const { return config.buffer_bytes; }

  // ---- HTTP: /healthz, /stats, refusals --------------------------------

  int on_confirm_upgrade(lws* wsi, const char* upgrade) {
    const std::string ip = peer_ip(wsi);
    const auto path = header(wsi, WSI_TOKEN_GET_URI);
    const auto origin = header(wsi, WSI_TOKEN_ORIGIN);
    const auto protocols = header(wsi, WSI_TOKEN_PROTOCOL);
    UpgradeRequest request;
    request.path = path ? std::string_view(*path) : std::string_view();
    request.upgrade = upgrade != nullptr ? upgrade : "";
    if (origin) request.origin = *origin;
    if (protocols) request.protocols = *protocols;
    request.peer_ip = ip;
    const Refusal r = check_upgrade(request, origins, limits, stopping);
    if (r == Refusal::kNone) {
      // Last, as it takes a token: only an upgrade we would admit counts.
      const ConnectionRate::Verdict v = conn_rate.admit(ip);
      if (v == ConnectionRate::Verdict::kAdmit) return 0;
      ++stats.refused[static_cast<size_t>(Refusal::kRateLimited)];
      if (v == ConnectionRate::Verdict::kRefuseAndLog) {
        logger().warn("ws.refused: ip={} reason={} status=429 rate={} burst={} quiet_s={}",
                      log_value(ip), refusal_name(Refusal::kRateLimited), config.conn_rate,
                      config.conn_burst, ConnectionRate::kLogEveryMs / 1000);
      }
      write_refusal(wsi, http_status(Refusal::kRateLimited),
                    std::string(refusal_name(Refusal::kRateLimited)) + "\n", "1");
      return -1;
    }
    ++stats.refused[static_cast<size_t>(r)];
    // The path without its query string (lws keeps the arguments apart):
    // a query string is never logged.
    logger().warn("ws.refused: ip={} reason={} status={} path={} origin={} subprotocol={}",
                  log_value(ip), refusal_name(r), http_status(r), shown(path), shown(origin),
                  shown(protocols));
    std::string body = std::string(refusal_name(r)) + "\n";
    write_refusal(wsi, http_status(r), body);
    return -1;  // hang up once the answer is written
  }

  // A complete answer written at once, with "connection: close" (and
  // Retry-After when given); the caller hangs up right after.
  static void write_refusal(lws* wsi, int status, const std::string& body,
                            std::string_view retry_after = {}) {
    uint8_t buf[LWS_PRE + 1024];
    uint8_t* start = buf + LWS_PRE;
    uint8_t* p = start;
    uint8_t* end = buf + sizeof buf - 1;
    const std::string length = std::to_string(body.size());
    if (lws_add_http_header_status(wsi, static_cast<unsigned>(status), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     reinterpret_cast<const uint8_t*>("text/plain"), 10, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                     reinterpret_cast<const uint8_t*>(length.data()),
                                     static_cast<int>(length.size()), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                     reinterpret_cast<const uint8_t*>("close"), 5, &p, end) ||
        (!retry_after.empty() &&
         lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_RETRY_AFTER,
                                      reinterpret_cast<const uint8_t*>(retry_after.data()),
                                      static_cast<int>(retry_after.size()), &p, end)) ||
        lws_finalize_http_header(wsi, &p, end) || body.size() > static_cast<size_t>(end - p)) {
      return;
    }
    std::memcpy(p, body.data(), body.size());
    p += body.size();
    lws_write(wsi, start, static_cast<size_t>(p - start), LWS_WRITE_HTTP);
  }

  int on_http(lws* wsi, HttpAnswer* answer, std::string_view path) {
    if (path == "/healthz")
      return answer_http(wsi, answer, 200, "application/json", R"({"status":"ok"})");
    if (path == "/stats") {
      if (!is_loopback(peer_ip(wsi))) {
        return answer_http(wsi, answer, 403, "application/json", R"({"error":"forbidden"})");
      }
      return answer_http(wsi, answer, 200, "application/json", stats.to_json());
    }
    if (path == kWebSocketPath) {
      return answer_http(wsi, answer, 426, "text/plain",
                         "a WebSocket with subprotocol mqtt is required here\n");
    }
    return answer_http(wsi, answer, 404, "text/plain", "not found\n");
  }

  // Headers now, body from HTTP_WRITEABLE.
  static int answer_http(lws* wsi, HttpAnswer* answer, unsigned status, const char* type,
                         std::string_view body) {
    if (answer == nullptr) return -1;
    answer->len = std::min(body.size(), kHttpBodyMax);
    std::memcpy(answer->body, body.data(), answer->len);
    uint8_t buf[LWS_PRE + 1024];
    uint8_t* start = buf + LWS_PRE;
    uint8_t* p = start;
    uint8_t* end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, status, type, answer->len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     reinterpret_cast<const uint8_t*>("no-store"), 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
      return -1;
    }
    lws_callback_on_writable(wsi);
    return 0;
  }

  static int on_http_writeable(lws* wsi, HttpAnswer* answer) {
    if (answer == nullptr) return -1;
    uint8_t buf[LWS_PRE + kHttpBodyMax];
    std::memcpy(buf + LWS_PRE, answer->body, answer->len);
    if (lws_write(wsi, buf + LWS_PRE, answer->len, LWS_WRITE_HTTP_FINAL) < 0) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  }

  // ---- the WebSocket side ---------------------------------------------

  int on_ws_open(lws* wsi) {
    const std::string ip = peer_ip(wsi);
    // on_confirm_upgrade checked the same limits a moment ago, in this same
    // callback chain, so this only fails if lws admitted something we did not.
    if (stopping || limits.acquire(ip) != Admission::kAdmit) {
      logger().warn("ws.refused: ip={} reason=limits_late", log_value(ip));
      return -1;
    }
    auto owned = std::make_unique<Session>();
    Session* s = owned.get();
    s->id = next_id++;
    s->peer = ip;
    s->ws = wsi;
    s->last_activity = SteadyClock::now();
    sessions.emplace(s, std::move(owned));
    lws_set_opaque_user_data(wsi, s);
    ++stats.connections_current;
    ++stats.connections_total;
    logger().debug("ws.open: id={} ip={} open={}", s->id, log_value(ip), stats.connections_current);
    connect_upstream(s);
    return 0;
  }

  int on_ws_data(lws* wsi, const uint8_t* data, size_t len) {
    Session* s = session_of(wsi);
    if (s == nullptr) return -1;
    if (s->closing || s->up == Upstream::kGone) return 0;  // closing: dropped
    if (!lws_frame_is_binary(wsi)) {
      logger().info("ws.close: id={} ip={} reason={} code=1003", s->id, log_value(s->peer),
                    close_reason_name(CloseReason::kTextFrame));
      request_close(s, CloseReason::kTextFrame);
      return 0;
    }
    const size_t remaining = lws_remaining_packet_payload(wsi);
    if (s->frame_seen + len + remaining > config.max_frame_bytes) {
      logger().info("ws.close: id={} ip={} reason={} code=1009 bytes={} max_frame_bytes={}", s->id,
                    log_value(s->peer), close_reason_name(CloseReason::kFrameTooBig),
                    s->frame_seen + len + remaining, config.max_frame_bytes);
      request_close(s, CloseReason::kFrameTooBig);
      return 0;
    }
    s->frame_seen = remaining == 0 ? 0 : s->frame_seen + len;
    if (len == 0) return 0;
    s->to_broker.append(data, len);
    s->last_activity = SteadyClock::now();
    if (s->up == Upstream::kOpen) lws_callback_on_writable(s->upstream);
    if (!s->ws_paused && s->to_broker.size() > cap()) {
      s->ws_paused = true;
      lws_rx_flow_control(wsi, 0);
    }
    return 0;
  }

  int on_ws_writeable(lws* wsi) {
    Session* s = session_of(wsi);
    if (s == nullptr) return -1;
    // Only a broker-side close waits for the bytes before it; the others
    // (protocol violations, idle, shutdown) close at once.
    const bool flush_first = s->closing == CloseReason::kBrokerClosed;
    if (s->closing && (!flush_first || s->to_client.empty())) {
      const char* text = close_reason_name(*s->closing);
      lws_close_reason(wsi, static_cast<lws_close_status>(close_code(*s->closing)),
                       reinterpret_cast<unsigned char*>(const_cast<char*>(text)),
                       std::strlen(text));
      return -1;
    }
    if (s->to_client.empty()) return 0;
    // Frames end where packets end (see PacketFramer); when the broker is
    // gone or no longer read, whatever there is goes out.
    const bool ended = s->up != Upstream::kOpen;
    const PacketFramer::Frame f =
        s->framer.next(s->to_client.size(), kChunk, ended || s->up_paused, ended);
    if (f.len == 0) return 0;  // the rest of the packet comes with the next read
    const size_t n = s->to_client.peek(scratch.data() + LWS_PRE, f.len);
    int flags = f.continuation ? LWS_WRITE_CONTINUATION : LWS_WRITE_BINARY;
    if (!f.fin) flags |= LWS_WRITE_NO_FIN;
    if (lws_write(wsi, scratch.data() + LWS_PRE, n, static_cast<lws_write_protocol>(flags)) < 0) {
      return -1;
    }
    s->framer.sent(f);
    s->to_client.consume(n);
    stats.bytes_to_client += n;
    s->last_activity = SteadyClock::now();
    if (s->up_paused && s->upstream != nullptr && s->to_client.size() < cap() / 2) {
      s->up_paused = false;
      lws_rx_flow_control(s->upstream, 1);
    }
    if (!s->to_client.empty() || s->closing) lws_callback_on_writable(wsi);
    return 0;
  }

  void on_ws_closed(lws* wsi) {
    Session* s = session_of(wsi);
    if (s == nullptr) return;
    lws_set_opaque_user_data(wsi, nullptr);
    s->ws = nullptr;
    if (!s->closing) ++stats.closed_by_client;
    --stats.connections_current;
    logger().debug("ws.closed: id={} ip={} reason={}", s->id, log_value(s->peer),
                   s->closing ? close_reason_name(*s->closing) : "by_client");
    // Nobody to deliver to any more; whatever the browser sent still goes out.
    s->to_client.clear();
    if (destroying) return;
    if (s->up_paused && s->upstream != nullptr) {
      s->up_paused = false;
      lws_rx_flow_control(s->upstream, 1);
    }
    switch (s->up) {
      case Upstream::kConnecting:  // on connect: flush, then FIN
      case Upstream::kDraining:
        break;
      case Upstream::kOpen:
        // Flush, then FIN; a broker that stops reading must not keep the
        // session (and its buffer) forever: each write re-arms this.
        lws_set_timeout(s->upstream, PENDING_TIMEOUT_USER_OK, kCloseGraceS);
        lws_callback_on_writable(s->upstream);
        break;
      case Upstream::kGone:
        destroy(s);
        break;
    }
  }

  // Asks for a close frame with `reason` from the next WRITEABLE.
  void request_close(Session* s, CloseReason reason) {
    if (s->ws == nullptr || s->closing) return;
    s->closing = reason;
    ++stats.closed[static_cast<size_t>(reason)];
    lws_set_timeout(s->ws, PENDING_TIMEOUT_USER_OK, kCloseGraceS);
    if (s->ws_paused) {  // lws must read the peer's close reply
      s->ws_paused = false;
      lws_rx_flow_control(s->ws, 1);
    }
    lws_callback_on_writable(s->ws);
  }

  // ---- the broker side ------------------------------------------------

  void connect_upstream(Session* s) {
    lws_client_connect_info i{};
    i.context = context;
    i.vhost = internal;
    i.address = upstream_address.c_str();
    i.port = config.upstream_port;
    i.host = upstream_address.c_str();
    i.origin = upstream_address.c_str();
    i.path = "/";
    i.method = "RAW";
    i.protocol = kUpstreamProtocol;
    i.local_protocol_name = kUpstreamProtocol;
    i.opaque_user_data = s;
    lws* w = lws_client_connect_via_info(&i);
    // A failure may already have been reported through CONNECTION_ERROR,
    // from inside the call.
    if (s->up != Upstream::kConnecting) return;
    if (w == nullptr) {
      upstream_failed(s, "connect failed");
      return;
    }
    s->upstream = w;
  }

  void upstream_failed(Session* s, std::string_view why) {
    s->up = Upstream::kGone;
    s->upstream = nullptr;
    ++stats.upstream_connect_failures;
    logger().warn("upstream.connect_failed: id={} ip={} broker={} error={}", s->id,
                  log_value(s->peer), log_value(config.upstream()), log_value(why));
    if (destroying) return;
    if (s->ws != nullptr) {
      request_close(s, CloseReason::kBrokerUnavailable);
    } else {
      destroy(s);
    }
  }

  void on_upstream_connected(lws* wsi) {
    Session* s = session_of(wsi);
    if (s == nullptr) return;
    s->upstream = wsi;
    s->up = Upstream::kOpen;
    // With the browser already gone, only the flush is left: bounded in time.
    if (s->ws == nullptr) {
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, kCloseGraceS);
    } else {
      lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    }
    logger().debug("upstream.open: id={} ip={}", s->id, log_value(s->peer));
    // Bytes may be waiting, or the browser may already be gone (then: FIN).
    lws_callback_on_writable(wsi);
  }

  int on_upstream_data(lws* wsi, const uint8_t* data, size_t len) {
    Session* s = session_of(wsi);
    if (s == nullptr) return -1;
    if (s->ws == nullptr || s->closing || s->up != Upstream::kOpen) return 0;  // dropped
    s->to_client.append(data, len);
    s->framer.feed(data, len);
    s->last_activity = SteadyClock::now();
    lws_callback_on_writable(s->ws);
    if (!s->up_paused && s->to_client.size() > cap()) {
      s->up_paused = true;
      lws_rx_flow_control(wsi, 0);
    }
    return 0;
  }

  int on_upstream_writeable(lws* wsi) {
    Session* s = session_of(wsi);
    if (s == nullptr) return -1;
    if (s->up != Upstream::kOpen) return 0;
    if (!s->to_broker.empty()) {
      const size_t n = s->to_broker.peek(scratch.data() + LWS_PRE, kChunk);
      if (lws_write(wsi, scratch.data() + LWS_PRE, n, LWS_WRITE_RAW) < 0) return -1;
      s->to_broker.consume(n);
      stats.bytes_to_broker += n;
      s->last_activity = SteadyClock::now();
      if (s->ws == nullptr) lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, kCloseGraceS);
      if (s->ws_paused && s->ws != nullptr && !s->closing && s->to_broker.size() < cap() / 2) {
        s->ws_paused = false;
        lws_rx_flow_control(s->ws, 1);
      }
      // More to write, or (browser gone) the FIN, once lws has sent this chunk.
      if (!s->to_broker.empty() || s->ws == nullptr) lws_callback_on_writable(wsi);
      return 0;
    }
    if (s->ws == nullptr) {
      // Everything the browser sent is with the kernel: half-close, so the
      // broker reads it all before EOF, and wait for its close.
      s->up = Upstream::kDraining;
      ::shutdown(lws_get_socket_fd(wsi), SHUT_WR);
      if (s->up_paused) {
        s->up_paused = false;
        lws_rx_flow_control(wsi, 1);
      }
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, stopping ? 1 : kUpstreamLingerS);
    }
    return 0;
  }

  void on_upstream_closed(lws* wsi) {
    Session* s = session_of(wsi);
    if (s == nullptr) return;
    lws_set_opaque_user_data(wsi, nullptr);
    if (s->up == Upstream::kConnecting) {  // closed before it ever opened
      upstream_failed(s, "closed while connecting");
      return;
    }
    s->up = Upstream::kGone;
    s->upstream = nullptr;
    s->to_broker.clear();
    if (destroying) return;
    if (s->ws != nullptr) {
      logger().debug("upstream.closed: id={} ip={}", s->id, log_value(s->peer));
      request_close(s, CloseReason::kBrokerClosed);  // after what it sent
    } else {
      destroy(s);
    }
  }

  void on_upstream_error(lws* wsi, const char* why) {
    Session* s = session_of(wsi);
    if (s == nullptr) return;
    lws_set_opaque_user_data(wsi, nullptr);
    upstream_failed(s, why != nullptr ? why : "unknown error");
  }

  // The session's per-IP and total slots are freed here, when both sides are
  // gone, so a client cannot pile up sessions still flushing to the broker.
  void destroy(Session* s) {
    limits.release(s->peer);
    sessions.erase(s);
    if (stopping && sessions.empty()) finish();
  }

  // Lets run() return. Timers run inside lws_service() before it polls, so
  // the poll must be woken or it would sleep until the next event.
  void finish() {
    done = true;
    lws_cancel_service(context);
  }

  // ---- timers, signals, shutdown --------------------------------------

  void schedule_tick(std::chrono::milliseconds in) {
    tick.self = this;
    lws_sul_schedule(context, 0, &tick.sul, &Impl::on_tick_cb,
                     static_cast<lws_usec_t>(in.count()) * LWS_US_PER_MS);
  }

  static void on_tick_cb(lws_sorted_usec_list_t* sul) {
    reinterpret_cast<Timer*>(sul)->self->on_tick();
  }

  void on_tick() {
    const auto now = SteadyClock::now();
    if (!stopping) {
      const auto idle = std::chrono::seconds(config.idle_timeout_s);
      for (auto& [key, s] : sessions) {
        if (s->ws != nullptr && !s->closing && now - s->last_activity >= idle) {
          logger().info("ws.close: id={} ip={} reason={} code=1001 idle_s={}", s->id,
                        log_value(s->peer), close_reason_name(CloseReason::kIdle),
                        config.idle_timeout_s);
          request_close(s.get(), CloseReason::kIdle);
        }
      }
    }
    if (now >= next_summary) {
      log_summary_if_changed();
      conn_rate.prune();
      next_summary = now + kSummaryEvery;
    }
    if (stopping && (sessions.empty() || now >= stop_deadline)) {
      finish();
      return;
    }
    schedule_tick(stopping ? std::chrono::milliseconds(50) : std::chrono::milliseconds(1000));
  }

  void log_summary_if_changed() {
    if (stats == last_logged) return;
    logger().info("stats: {}", stats.summary());  // key=value pairs
    last_logged = stats;
  }

  void on_signal(int fd) {
    signalfd_siginfo si{};
    ssize_t n = ::read(fd, &si, sizeof si);
    if (n != static_cast<ssize_t>(sizeof si)) return;
    begin_shutdown(si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
  }

  void begin_shutdown(const char* why) {
    if (stopping) return;
    stopping = true;
    stop_deadline = SteadyClock::now() + kShutdownGrace;
    logger().info("shutdown: signal={} closing={} code=1001", why, stats.connections_current);
    for (auto& [key, s] : sessions) {
      logger().debug(
          "shutdown.session: id={} ip={} ws={} closing={} upstream={} bytes_to_broker={} "
          "bytes_to_client={}",
          s->id, log_value(s->peer), s->ws != nullptr ? "open" : "closed",
          s->closing ? close_reason_name(*s->closing) : "-", static_cast<int>(s->up),
          s->to_broker.size(), s->to_client.size());
      if (s->ws != nullptr) {
        request_close(s.get(), CloseReason::kShutdown);
      } else if (s->up == Upstream::kOpen) {
        lws_callback_on_writable(s->upstream);
      }
    }
    if (sessions.empty()) {
      finish();
      return;
    }
    schedule_tick(std::chrono::milliseconds(50));
  }
};

namespace {

int http_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
  auto* impl = Server::Impl::of(wsi);
  switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
      return impl->on_confirm_upgrade(wsi, static_cast<const char*>(in));
    case LWS_CALLBACK_HTTP:
      return impl->on_http(wsi, static_cast<HttpAnswer*>(user),
                           in != nullptr ? static_cast<const char*>(in) : "");
    case LWS_CALLBACK_HTTP_WRITEABLE:
      return Server::Impl::on_http_writeable(wsi, static_cast<HttpAnswer*>(user));
    default:
      break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int ws_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
  auto* impl = Server::Impl::of(wsi);
  switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
      return impl->on_ws_open(wsi);
    case LWS_CALLBACK_RECEIVE:
      return impl->on_ws_data(wsi, static_cast<const uint8_t*>(in), len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
      return impl->on_ws_writeable(wsi);
    case LWS_CALLBACK_CLOSED:
      impl->on_ws_closed(wsi);
      return 0;
    default:
      break;
  }
  return 0;
}

int upstream_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
  auto* impl = Server::Impl::of(wsi);
  switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
      impl->on_upstream_connected(wsi);
      return 0;
    case LWS_CALLBACK_RAW_RX:
      return impl->on_upstream_data(wsi, static_cast<const uint8_t*>(in), len);
    case LWS_CALLBACK_RAW_WRITEABLE:
      return impl->on_upstream_writeable(wsi);
    case LWS_CALLBACK_RAW_CLOSE:
      impl->on_upstream_closed(wsi);
      return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      impl->on_upstream_error(wsi, static_cast<const char*>(in));
      return 0;
    default:
      break;
  }
  return 0;
}

int signal_callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
  if (reason == LWS_CALLBACK_RAW_RX_FILE) {
    auto* impl = Server::Impl::of(wsi);
    if (!impl->destroying) impl->on_signal(lws_get_socket_fd(wsi));
  }
  return 0;
}

}  // namespace

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  if (impl_ && impl_->context != nullptr) {
    impl_->destroying = true;
    lws_context_destroy(impl_->context);
    impl_->context = nullptr;
  }
}

Result<std::unique_ptr<Server>> Server::start(const Config& config,
                                              const std::string& upstream_address, int signal_fd) {
  auto impl = std::make_unique<Impl>(config, upstream_address);
  raise_fd_limit(config.max_connections);
  // Errors only: lws warns about every malformed request, which would let any
  // client flood the log.
  lws_set_log_level(LLL_ERR, lws_log_to_spdlog);

  lws_context_creation_info info{};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  if (config.tls()) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.user = impl.get();
  info.pt_serv_buf_size = kChunk;
  info.timeout_secs = static_cast<unsigned>(config.handshake_timeout_s);
  info.server_string = "chat-bridge";
  impl->context = lws_create_context(&info);
  if (impl->context == nullptr) {
    if (signal_fd >= 0) ::close(signal_fd);
    return internal_error("cannot create the libwebsockets context");
  }
  Server server_guard(std::move(impl));  // destroys the context on every error below
  Impl* self = server_guard.impl_.get();

  // The internal vhost first: it owns the signalfd from here on.
  lws_context_creation_info internal{};
  internal.vhost_name = "internal";
  internal.port = CONTEXT_PORT_NO_LISTEN;
  internal.protocols = kInternalProtocols;
  internal.options = LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
  internal.timeout_secs = static_cast<unsigned>(config.handshake_timeout_s);
  internal.connect_timeout_secs = static_cast<unsigned>(config.handshake_timeout_s);
  self->internal = lws_create_vhost(self->context, &internal);
  if (self->internal == nullptr) {
    if (signal_fd >= 0) ::close(signal_fd);
    return internal_error("cannot create the internal libwebsockets vhost");
  }
  if (signal_fd >= 0) {
    lws_sock_file_fd_type fd{};
    fd.filefd = signal_fd;
    if (lws_adopt_descriptor_vhost(self->internal, LWS_ADOPT_RAW_FILE_DESC, fd, kSignalProtocol,
                                   nullptr) == nullptr) {
      ::close(signal_fd);
      return internal_error("cannot watch the signal descriptor");
    }
  }

  unsigned char v4[sizeof(in_addr)];
  const bool ipv4 = inet_pton(AF_INET, config.bind.c_str(), v4) == 1;
  lws_context_creation_info listen{};
  listen.vhost_name = "chat-bridge";
  listen.port = config.ws_port;
  listen.iface = config.bind.c_str();
  listen.protocols = kListenProtocols;
  listen.options = LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
  if (config.tls()) listen.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  if (ipv4) listen.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  listen.timeout_secs = static_cast<unsigned>(config.handshake_timeout_s);
  listen.timeout_secs_ah_idle = static_cast<unsigned>(config.handshake_timeout_s);
  listen.keepalive_timeout = 5;
  listen.alpn = "http/1.1";  // no HTTP/2: WebSockets over h1 only
  if (config.tls()) {
    listen.ssl_cert_filepath = config.tls_cert.c_str();
    listen.ssl_private_key_filepath = config.tls_key.c_str();
    if (!config.tls_ca.empty()) listen.ssl_ca_filepath = config.tls_ca.c_str();
    listen.ssl_options_set =
        SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1;
    // TLS 1.2: ECDHE key exchange with AEAD ciphers only, as chat-api and the
    // broker's MQTT-over-TLS listener (TLS 1.3 keeps OpenSSL's suites).
    listen.ssl_cipher_list =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  }
  self->listener = lws_create_vhost(self->context, &listen);
  if (self->listener == nullptr) {
    const std::string why = bind_error(config.bind, config.ws_port);
    if (!why.empty()) {
      return unavailable("cannot listen on " + config.bind + ":" + std::to_string(config.ws_port) +
                         ": " + why + " (CHAT_BIND / CHAT_WS_PORT)");
    }
    if (config.tls()) {
      return invalid_argument(
          "CHAT_TLS_CERT / CHAT_TLS_KEY: the TLS listener could not be set up with " +
          config.tls_cert + " and " + config.tls_key + " (see the lws error above)");
    }
    return unavailable("cannot listen on " + config.bind + ":" + std::to_string(config.ws_port));
  }
  self->port = lws_get_vhost_listen_port(self->listener);
  self->next_summary = SteadyClock::now() + kSummaryEvery;
  self->schedule_tick(std::chrono::milliseconds(1000));
  return std::unique_ptr<Server>(new Server(std::move(server_guard.impl_)));
}

int Server::port() const { return impl_->port; }

const Stats& Server::stats() const { return impl_->stats; }

Status Server::run() {
  Impl* self = impl_.get();
  while (!self->done) {
    if (lws_service(self->context, 0) < 0) {
      return internal_error("the libwebsockets event loop failed");
    }
  }
  if (!self->sessions.empty()) {
    logger().info("shutdown.cut: sessions={} reason=grace_expired", self->sessions.size());
  }
  self->destroying = true;
  lws_context_destroy(self->context);
  self->context = nullptr;
  self->sessions.clear();
  self->log_summary_if_changed();
  return Status::ok();
}

}  // namespace chat::bridge
