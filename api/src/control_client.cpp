#include <mqtt/async_client.h>
#include <unistd.h>

#include <charconv>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "chat/api/control.h"
#include "chat/api/log.h"
#include "chat/api/secrets.h"
#include "chat/common/log_fields.h"
#include "chat/common/topics.h"

namespace chat::api {

using nlohmann::json;

StatusCode control_error_code(std::string_view error) {
  static constexpr StatusCode kCodes[] = {
      StatusCode::kInvalidArgument,   StatusCode::kNotFound,        StatusCode::kAlreadyExists,
      StatusCode::kPermissionDenied,  StatusCode::kUnauthenticated, StatusCode::kUnavailable,
      StatusCode::kResourceExhausted, StatusCode::kInternal,
  };
  for (StatusCode c : kCodes) {
    if (error == status_code_name(c)) return c;
  }
  return StatusCode::kInternal;
}

nlohmann::json control_result(const nlohmann::json& answer) {
  if (!answer.is_object()) return nullptr;
  auto it = answer.find("result");
  if (it == answer.end()) return nullptr;
  return *it;
}

namespace {

using Promise = std::promise<Result<json>>;

// A connection that lasted at least this long resets the reconnect backoff.
constexpr auto kStableConnection = std::chrono::seconds(10);
constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kDisconnectTimeout = std::chrono::seconds(2);

}  // namespace

struct ControlClient::Impl {
  ControlClientOptions opts;
  std::unique_ptr<mqtt::async_client> client;
  std::string req_prefix = random_hex(6);
  std::atomic<uint64_t> seq{0};

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  bool started = false;
  bool stopping = false;
  bool is_connected = false;  // guarded by mu
  bool lost = false;          // the current connection dropped; guarded by mu
  std::map<std::string, std::shared_ptr<Promise>> pending;  // guarded by mu
  std::optional<BrokerStatsSnapshot> stats;                 // guarded by mu
  // Mosquitto's $SYS count of outgoing messages dropped on full queues, as
  // last published, and the greatest value logged (guarded by mu).
  std::optional<uint64_t> sys_dropped;
  uint64_t sys_dropped_logged = 0;
  std::thread thread;

  void fail_all_pending(const std::string& why) {
    std::map<std::string, std::shared_ptr<Promise>> taken;
    {
      std::lock_guard lock(mu);
      taken.swap(pending);
    }
    for (auto& [id, p] : taken) p->set_value(unavailable(why));
  }

  void on_connection_lost(const std::string& cause) {
    {
      std::lock_guard lock(mu);
      is_connected = false;
      lost = true;
    }
    cv.notify_all();
    logger().warn("control.lost: error={}", log_value(cause.empty() ? "-" : cause));
    fail_all_pending("broker connection lost");
  }

  void on_stats(const std::string& payload) {
    json snapshot = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (!snapshot.is_object()) {
      logger().warn("control.malformed: kind=stats action=ignored");
      return;
    }
    std::lock_guard lock(mu);
    stats = BrokerStatsSnapshot{std::move(snapshot), std::chrono::steady_clock::now()};
  }

  // The broker's stats snapshots arrive through a subscription (a clean
  // session: once per connection). Failing it costs /metrics only.
  void subscribe_stats() {
    try {
      auto tok = client->subscribe(std::string(topics::kControlStats), 0);
      if (!tok->wait_for(kConnectTimeout)) {
        logger().warn("control.subscribe_failed: topic=stats error=timeout");
      }
    } catch (const mqtt::exception& e) {
      logger().warn("control.subscribe_failed: topic=stats error={}", log_value(e.what()));
    }
    try {
      auto tok = client->subscribe(std::string(topics::kSysMessagesDropped), 0);
      if (!tok->wait_for(kConnectTimeout)) {
        logger().warn("control.subscribe_failed: topic=sys_dropped error=timeout");
      }
    } catch (const mqtt::exception& e) {
      logger().warn("control.subscribe_failed: topic=sys_dropped error={}", log_value(e.what()));
    }
    if (!opts.on_push) return;
    // Push wake-ups: a missed one only delays (the push feed also polls).
    try {
      auto tok = client->subscribe(std::string(topics::kControlPush), 0);
      if (!tok->wait_for(kConnectTimeout)) {
        logger().warn("control.subscribe_failed: topic=push error=timeout");
      }
    } catch (const mqtt::exception& e) {
      logger().warn("control.subscribe_failed: topic=push error={}", log_value(e.what()));
    }
  }

  // Slow consumers (docs/operations.md): Mosquitto drops outgoing messages
  // silently when a session's queue is full, and counts them in $SYS only.
  // A rise is logged here, once per $SYS update.
  void on_sys_dropped(const std::string& payload) {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(payload.data(), payload.data() + payload.size(), n);
    if (ec != std::errc() || end != payload.data() + payload.size()) {
      logger().warn("control.malformed: kind=sys_dropped action=ignored");
      return;
    }
    uint64_t before = 0;
    {
      std::lock_guard lock(mu);
      sys_dropped = n;
      // The counter restarts with the broker: count from there.
      if (n < sys_dropped_logged) sys_dropped_logged = 0;
      if (n <= sys_dropped_logged) return;
      before = sys_dropped_logged;
      sys_dropped_logged = n;
    }
    logger().warn("broker.messages_dropped: total={} new={} reason=queue_full", n, n - before);
  }

  void on_message(mqtt::const_message_ptr msg) {
    if (msg && msg->get_topic() == topics::kControlStats) return on_stats(msg->get_payload_str());
    if (msg && msg->get_topic() == topics::kSysMessagesDropped) {
      return on_sys_dropped(msg->get_payload_str());
    }
    if (msg && msg->get_topic() == topics::kControlPush) {
      if (opts.on_push) opts.on_push();
      return;
    }
    if (!msg || msg->get_topic() != topics::kControlResponse) return;
    json answer = json::parse(msg->get_payload_str(), nullptr, /*allow_exceptions=*/false);
    if (!answer.is_object() || !answer.contains("req") || !answer["req"].is_string()) {
      logger().warn("control.malformed: kind=response action=ignored");
      return;
    }
    std::shared_ptr<Promise> p;
    {
      std::lock_guard lock(mu);
      auto it = pending.find(answer["req"].get<std::string>());
      if (it == pending.end()) return;  // timed out already, or another process's id
      p = std::move(it->second);
      pending.erase(it);
    }
    bool ok = answer.value("ok", false);
    if (ok) {
      p->set_value(std::move(answer));
      return;
    }
    std::string code = answer.contains("error") && answer["error"].is_string()
                           ? answer["error"].get<std::string>()
                           : std::string("internal");
    std::string message = answer.contains("message") && answer["message"].is_string()
                              ? answer["message"].get<std::string>()
                              : code;
    p->set_value(Status(control_error_code(code), message));
  }

  // One connect attempt with a freshly minted password.
  bool connect_once(std::string* error) {
    mqtt::connect_options co;
    co.set_mqtt_version(MQTTVERSION_3_1_1);
    co.set_clean_session(true);
    co.set_automatic_reconnect(false);
    co.set_keep_alive_interval(std::chrono::seconds(30));
    co.set_connect_timeout(kConnectTimeout);
    co.set_user_name(opts.username);
    co.set_password(opts.mint_password ? opts.mint_password() : std::string());
    try {
      auto tok = client->connect(co);
      if (!tok->wait_for(kConnectTimeout + std::chrono::seconds(1))) {
        *error = "connect timed out";
        return false;
      }
      return true;
    } catch (const mqtt::exception& e) {
      *error = e.what();
      return false;
    }
  }

  void disconnect_quietly() {
    try {
      if (client->is_connected())
        client->disconnect(kDisconnectTimeout)->wait_for(kDisconnectTimeout);
    } catch (const mqtt::exception&) {
      // Already gone: nothing to release.
    }
  }

  void run() {
    auto backoff = opts.backoff_min;
    bool quiet = false;  // a failure streak was already logged at warn
    for (;;) {
      {
        std::lock_guard lock(mu);
        if (stopping) break;
      }
      std::string error;
      if (!connect_once(&error)) {
        if (quiet)
          logger().debug("control.connect_failed: error={} retrying=true", log_value(error));
        else
          logger().warn("control.connect_failed: error={} retrying=true", log_value(error));
        quiet = true;
        std::unique_lock lock(mu);
        cv.wait_for(lock, backoff, [&] { return stopping; });
        backoff = std::min(backoff * 2, opts.backoff_max);
        continue;
      }
      quiet = false;
      auto connected_at = std::chrono::steady_clock::now();
      {
        std::lock_guard lock(mu);
        is_connected = true;
        lost = false;
      }
      cv.notify_all();
      logger().info("control.connected: client={}", log_value(opts.client_id));
      subscribe_stats();
      if (opts.on_connected) opts.on_connected();

      bool renew = false;
      {
        std::unique_lock lock(mu);
        renew = !cv.wait_until(lock, connected_at + opts.token_max_age,
                               [&] { return stopping || lost; });
        is_connected = false;
      }
      if (renew) logger().info("control.renew: reason=token_max_age");
      disconnect_quietly();
      fail_all_pending("broker connection closed");

      if (std::chrono::steady_clock::now() - connected_at >= kStableConnection) {
        backoff = opts.backoff_min;
      }
      if (!renew) {
        std::unique_lock lock(mu);
        cv.wait_for(lock, backoff, [&] { return stopping; });
        backoff = std::min(backoff * 2, opts.backoff_max);
      }
    }
    disconnect_quietly();
    fail_all_pending("control client stopped");
  }
};

ControlClient::ControlClient(ControlClientOptions options) : impl_(std::make_unique<Impl>()) {
  if (options.client_id.empty()) {
    options.client_id = options.username + ":api-" + std::to_string(::getpid());
  }
  impl_->opts = std::move(options);
  std::string uri = "tcp://" + impl_->opts.host + ":" + std::to_string(impl_->opts.port);
  impl_->client = std::make_unique<mqtt::async_client>(uri, impl_->opts.client_id,
                                                       mqtt::create_options(MQTTVERSION_3_1_1));
  Impl* impl = impl_.get();
  impl_->client->set_connection_lost_handler(
      [impl](const std::string& cause) { impl->on_connection_lost(cause); });
  impl_->client->set_message_callback(
      [impl](mqtt::const_message_ptr msg) { impl->on_message(std::move(msg)); });
}

ControlClient::~ControlClient() { stop(); }

void ControlClient::start() {
  std::lock_guard lock(impl_->mu);
  if (impl_->started) return;
  impl_->started = true;
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

void ControlClient::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  // Calls in flight (the on_connected hook's too) end now, not at their timeout.
  impl_->fail_all_pending("control client stopped");
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool ControlClient::wait_connected(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->is_connected; });
}

bool ControlClient::connected() const {
  std::lock_guard lock(impl_->mu);
  return impl_->is_connected;
}

std::optional<BrokerStatsSnapshot> ControlClient::broker_stats() const {
  std::lock_guard lock(impl_->mu);
  std::optional<BrokerStatsSnapshot> out = impl_->stats;
  // Mosquitto's own counter rides along with the plugin's snapshot.
  if (out && impl_->sys_dropped) out->stats["mosquitto"]["messages_dropped"] = *impl_->sys_dropped;
  return out;
}

Result<json> ControlClient::call(const json& request, std::chrono::milliseconds timeout) {
  if (!request.is_object() || !request.contains("op")) {
    return invalid_argument("control request needs an \"op\"");
  }
  std::string id = impl_->req_prefix + "-" + std::to_string(impl_->seq.fetch_add(1) + 1);
  json req = request;
  req["req"] = id;
  std::string payload = req.dump();

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto promise = std::make_shared<Promise>();
  auto future = promise->get_future();
  {
    // Between connections (a token renewal, a broker restart) wait for the
    // next one rather than failing at once.
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait_until(lock, deadline, [&] { return impl_->stopping || impl_->is_connected; });
    if (impl_->stopping) return unavailable("control client stopped");
    if (!impl_->is_connected) return unavailable("broker not connected");
    impl_->pending.emplace(id, promise);
  }
  try {
    impl_->client->publish(std::string(topics::kControl), payload.data(), payload.size(), 1, false);
  } catch (const mqtt::exception& e) {
    std::lock_guard lock(impl_->mu);
    if (impl_->pending.erase(id) == 1)
      return unavailable(std::string("publish failed: ") + e.what());
    // Answered or failed concurrently: fall through to the future.
  }
  if (future.wait_until(deadline) != std::future_status::ready) {
    std::lock_guard lock(impl_->mu);
    if (impl_->pending.erase(id) == 1) {
      return unavailable("broker did not answer " + request.value("op", std::string()) +
                         " in time");
    }
  }
  return future.get();
}

}  // namespace chat::api
