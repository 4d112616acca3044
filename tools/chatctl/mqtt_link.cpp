#include "chatctl/mqtt_link.h"

#include <mqtt/async_client.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>

namespace chat::tools {
namespace {

std::string hex_reason(int reason) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", reason & 0xFF);
  return buf;
}

std::string reason_text(int reason) {
  std::string name = mqtt::exception::reason_code_str(reason);
  return name.empty() ? hex_reason(reason) : hex_reason(reason) + " " + name;
}

// Thread-safe FIFO between Paho's threads and the owner's thread.
class EventQueue {
 public:
  void push(MqttEvent event) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(event));
    }
    cv_.notify_one();
  }

  std::optional<MqttEvent> pop(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_until(lock, deadline, [&] { return !events_.empty(); })) return std::nullopt;
    MqttEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<MqttEvent> events_;
};

// Turns the outcome of each publish token into a kPublishDone event. The
// sequence number travels as the token's user context.
class PublishListener final : public mqtt::iaction_listener {
 public:
  explicit PublishListener(EventQueue& queue) : queue_(queue) {}

  void on_success(const mqtt::token& tok) override {
    MqttEvent e;
    e.kind = MqttEvent::Kind::kPublishDone;
    e.publish_seq = seq_of(tok);
    e.reason_code = static_cast<int>(tok.get_reason_code());
    e.publish_ok = e.reason_code < 0x80;
    if (!e.publish_ok) e.detail = "PUBACK " + reason_text(e.reason_code);
    queue_.push(std::move(e));
  }

  void on_failure(const mqtt::token& tok) override {
    MqttEvent e;
    e.kind = MqttEvent::Kind::kPublishDone;
    e.publish_seq = seq_of(tok);
    int reason = static_cast<int>(tok.get_reason_code());
    e.reason_code = reason >= 0x80 ? reason : -1;
    e.publish_ok = false;
    e.detail = reason >= 0x80
                   ? "PUBACK " + reason_text(reason)
                   : "publish failed: " + mqtt::exception::error_str(tok.get_return_code());
    queue_.push(std::move(e));
  }

 private:
  static uint64_t seq_of(const mqtt::token& tok) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(tok.get_user_context()));
  }
  EventQueue& queue_;
};

// The CONNACK reason code behind a failed connect, 0 when there was none.
// Paho reports an MQTT 5 refusal as the reason code or as the return code,
// depending on the path; MQTT 3.1.1 return codes 4 and 5 mean 0x86 and 0x87.
int connack_reason(const mqtt::exception& e) {
  int reason = e.get_reason_code();
  int rc = e.get_return_code();
  if (reason >= 0x80) return reason;
  if (rc >= 0x80 && rc <= 0xFF) return rc;
  if (rc == 4) return mqtt::ReasonCode::BAD_USER_NAME_OR_PASSWORD;
  if (rc == 5) return mqtt::ReasonCode::NOT_AUTHORIZED;
  return 0;
}

Status connect_error(int reason, const std::string& what, const std::string& uri) {
  switch (reason) {
    case mqtt::ReasonCode::BAD_USER_NAME_OR_PASSWORD:
    case mqtt::ReasonCode::NOT_AUTHORIZED:
    case mqtt::ReasonCode::BAD_AUTHENTICATION_METHOD:
      return unauthenticated("the broker refused the credentials (" + reason_text(reason) + ")");
    case mqtt::ReasonCode::BANNED:
      return permission_denied("the broker says this account is banned");
    default:
      break;
  }
  if (reason >= 0x80)
    return unavailable("the broker refused the connection (" + reason_text(reason) + ")");
  return unavailable("cannot connect to the broker at " + uri + " (" +
                     (what.empty() || what == "Failure" ? "refused or unreachable" : what) + ")");
}

}  // namespace

struct MqttLink::Impl {
  // Declared before the client so they outlive it: Paho's threads use them
  // until the client is destroyed.
  EventQueue queue;
  PublishListener listener{queue};
  uint64_t next_seq = 1;
  bool disconnected = false;
  std::unique_ptr<mqtt::async_client> client;
};

MqttLink::MqttLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttLink::~MqttLink() {
  disconnect(std::chrono::milliseconds(1000));
  impl_->client.reset();
}

Result<std::unique_ptr<MqttLink>> MqttLink::connect(const MqttConnectOptions& options,
                                                    bool* session_present) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->client = std::make_unique<mqtt::async_client>(
        options.server_uri, options.client_id, mqtt::create_options(MQTTVERSION_5), nullptr);
  } catch (const std::exception& e) {
    return invalid_argument("cannot create an MQTT client for " + options.server_uri + ": " +
                            e.what());
  }

  EventQueue* queue = &impl->queue;
  impl->client->set_message_callback([queue](mqtt::const_message_ptr msg) {
    if (!msg) return;
    MqttEvent e;
    e.kind = MqttEvent::Kind::kMessage;
    e.topic = msg->get_topic();
    e.payload = msg->get_payload_str();
    e.retained = msg->is_retained();
    queue->push(std::move(e));
  });
  impl->client->set_connection_lost_handler([queue](const std::string& cause) {
    MqttEvent e;
    e.kind = MqttEvent::Kind::kConnectionLost;
    e.detail = cause.empty() ? "connection lost" : "connection lost: " + cause;
    queue->push(std::move(e));
  });
  impl->client->set_disconnected_handler([queue](const mqtt::properties&, mqtt::ReasonCode reason) {
    MqttEvent e;
    e.kind = MqttEvent::Kind::kConnectionLost;
    e.detail = "the broker closed the connection (" + reason_text(static_cast<int>(reason)) + ")";
    queue->push(std::move(e));
  });

  mqtt::connect_options opts;
  opts.set_mqtt_version(MQTTVERSION_5);
  opts.set_clean_start(options.session_expiry.count() == 0);
  opts.set_user_name(options.user_name);
  opts.set_password(options.password);
  opts.set_keep_alive_interval(options.keep_alive);
  opts.set_connect_timeout(std::chrono::duration_cast<std::chrono::seconds>(options.timeout) +
                           std::chrono::seconds(1));
  opts.set_automatic_reconnect(false);
  opts.set_properties(mqtt::properties{{mqtt::property::SESSION_EXPIRY_INTERVAL,
                                        static_cast<int32_t>(options.session_expiry.count())}});
  if (options.server_uri.rfind("ssl://", 0) == 0) {
    mqtt::ssl_options ssl;
    if (!options.ca_file.empty()) ssl.set_trust_store(options.ca_file);
    ssl.set_enable_server_cert_auth(true);
    ssl.set_verify(true);
    opts.set_ssl(ssl);
  }

  try {
    mqtt::token_ptr tok = impl->client->connect(opts);
    if (!tok->wait_for(options.timeout)) {
      return unavailable("no answer from the broker at " + options.server_uri + " within " +
                         std::to_string(options.timeout.count() / 1000) + " s");
    }
    if (session_present) *session_present = tok->get_connect_response().is_session_present();
  } catch (const mqtt::exception& e) {
    return connect_error(connack_reason(e), e.get_error_str(), options.server_uri);
  } catch (const std::exception& e) {
    return unavailable("cannot connect to the broker at " + options.server_uri + ": " + e.what());
  }
  return std::unique_ptr<MqttLink>(new MqttLink(std::move(impl)));
}

Status MqttLink::subscribe(const std::string& filter, int qos, std::chrono::milliseconds timeout) {
  try {
    mqtt::token_ptr tok = impl_->client->subscribe(filter, qos);
    if (!tok->wait_for(timeout)) return unavailable("no SUBACK for " + filter);
    mqtt::subscribe_response response = tok->get_subscribe_response();
    for (auto reason : response.get_reason_codes()) {
      if (static_cast<int>(reason) >= 0x80) {
        return permission_denied("the broker refused the subscription to " + filter + " (" +
                                 reason_text(static_cast<int>(reason)) + ")");
      }
    }
  } catch (const mqtt::exception& e) {
    int reason = e.get_reason_code();
    if (reason >= 0x80) {
      return permission_denied("the broker refused the subscription to " + filter + " (" +
                               reason_text(reason) + ")");
    }
    return unavailable("cannot subscribe to " + filter + ": " + e.get_error_str());
  } catch (const std::exception& e) {
    return unavailable("cannot subscribe to " + filter + ": " + e.what());
  }
  return Status::ok();
}

Result<std::vector<bool>> MqttLink::subscribe_many(const std::vector<std::string>& filters, int qos,
                                                   std::chrono::milliseconds timeout) {
  std::vector<bool> granted(filters.size(), false);
  if (filters.empty()) return granted;
  try {
    auto collection = mqtt::string_collection::create(filters);
    mqtt::iasync_client::qos_collection qoss(filters.size(), qos);
    mqtt::token_ptr tok = impl_->client->subscribe(collection, qoss);
    if (!tok->wait_for(timeout)) return unavailable("no SUBACK within the timeout");
    mqtt::subscribe_response response = tok->get_subscribe_response();
    const auto& reasons = response.get_reason_codes();
    for (size_t i = 0; i < filters.size() && i < reasons.size(); ++i) {
      granted[i] = static_cast<int>(reasons[i]) < 0x80;
    }
  } catch (const mqtt::exception& e) {
    // Paho reports a SUBACK refusing a single filter as a failure.
    if (e.get_reason_code() >= 0x80) return granted;
    return unavailable("cannot subscribe: " + e.get_error_str());
  } catch (const std::exception& e) {
    return unavailable(std::string("cannot subscribe: ") + e.what());
  }
  return granted;
}

Result<uint64_t> MqttLink::publish(const std::string& topic, const std::string& payload, int qos) {
  uint64_t seq = impl_->next_seq++;
  try {
    auto msg = mqtt::make_message(topic, payload, qos, /*retained=*/false);
    impl_->client->publish(msg, reinterpret_cast<void*>(static_cast<uintptr_t>(seq)),
                           impl_->listener);
  } catch (const mqtt::exception& e) {
    return unavailable("cannot publish to " + topic + ": " + e.get_error_str());
  } catch (const std::exception& e) {
    return unavailable("cannot publish to " + topic + ": " + e.what());
  }
  return seq;
}

std::optional<MqttEvent> MqttLink::next_event(std::chrono::steady_clock::time_point deadline) {
  return impl_->queue.pop(deadline);
}

void MqttLink::disconnect(std::chrono::milliseconds timeout) {
  if (impl_->disconnected || !impl_->client) return;
  impl_->disconnected = true;
  try {
    if (!impl_->client->is_connected()) return;
    auto tok =
        impl_->client->disconnect(mqtt::disconnect_options(static_cast<int>(timeout.count())));
    tok->wait_for(timeout);
  } catch (const std::exception&) {
    // Already gone: nothing to tell the broker.
  }
}

}  // namespace chat::tools
