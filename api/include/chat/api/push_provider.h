// One push provider (FCM HTTP v1 or APNs HTTP/2) as the push worker sees it.
//
// The worker (push_worker.h) owns queueing, de-duplication, retries with
// backoff and the removal of unregistered targets; a provider only turns one
// notification for one target into one HTTP request and classifies the
// answer. Implementations: FcmProvider (fcm.h), ApnsProvider (apns.h); tests
// substitute their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace chat::api {

// A registered push target: one device of one user (POST /v1/devices).
struct PushTarget {
  std::string user;
  std::string device;
  std::string platform;  // "fcm" or "apns"
  std::string token;     // the provider's registration token / device token
};

// What a notification says. Content-free by default (sender and conversation
// only, like Signal); `preview` is set only when CHAT_PUSH_PREVIEW allows a
// text preview and the message is a plain `text` message.
struct PushNotification {
  std::string message_id;  // the archive's message id; also the collapse id
  std::string conv;        // "dm:<a>:<b>" or "g:<gid>"
  std::string from;        // sender user id
  std::string type;        // envelope type: text, media, e2e, ...
  std::string preview;     // "" = none
  int64_t message_ms = 0;  // the message's time (envelope ts); 0 = unknown
};

enum class PushOutcome {
  kSent,          // the provider accepted it (2xx)
  kRetry,         // 429 / 5xx / transport error: try again later
  kUnregistered,  // the token is gone (FCM UNREGISTERED or 404, APNs 410 or BadDeviceToken)
  kRejected,      // any other refusal (bad request, auth): do not retry
};

struct PushResult {
  PushOutcome outcome = PushOutcome::kRetry;
  int http_status = 0;                  // 0 when no HTTP answer arrived
  std::chrono::seconds retry_after{0};  // the provider's Retry-After, 0 when absent
  std::string reason;                   // short, loggable (never the token)

  static PushResult of(PushOutcome outcome, int status, std::string reason,
                       std::chrono::seconds retry_after = std::chrono::seconds(0)) {
    PushResult r;
    r.outcome = outcome;
    r.http_status = status;
    r.reason = std::move(reason);
    r.retry_after = retry_after;
    return r;
  }
};

class PushProvider {
 public:
  virtual ~PushProvider() = default;
  virtual const char* platform() const = 0;  // "fcm" or "apns"
  // Sends one notification; blocking, bounded by the provider's timeouts.
  // Thread-safe: the worker may call it from several threads at once.
  virtual PushResult send(const PushTarget& target, const PushNotification& notification) = 0;
};

}  // namespace chat::api
