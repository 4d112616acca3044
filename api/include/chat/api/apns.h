// ApnsProvider: push notifications to iOS devices through the Apple Push
// Notification service's HTTP/2 provider API, authenticated with a provider
// token (docs/push.md "Providers").
//
// The provider token is an ES256 JWT (header alg ES256 + kid = the key id;
// claims iss = team id, iat) signed with the .p8 key. APNs refuses tokens
// older than one hour (ExpiredProviderToken) and new tokens more often than
// every 20 minutes (TooManyProviderTokenUpdates), so one token is shared by
// every request and replaced after 50 minutes, or at once when APNs calls
// it expired or invalid (at most one replacement per refused token).
//
// HTTP/2 is required (APNs speaks nothing else): the connection is
// negotiated by ALPN and kept open between requests (HttpClient).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "chat/api/http_client.h"
#include "chat/api/push_provider.h"
#include "chat/common/clock.h"
#include "chat/common/jwt.h"
#include "chat/common/status.h"

namespace chat::api {

struct ApnsOptions {
  // Default: "https://api.push.apple.com" (https://api.sandbox.push.apple.com
  // for development builds). Requests go to {endpoint}/3/device/{token}. An
  // http:// endpoint is spoken to as h2c with prior knowledge (tests only).
  std::string endpoint = "https://api.push.apple.com";
  std::string key_id;   // kid of the provider token (CHAT_APNS_KEY_ID)
  std::string team_id;  // iss of the provider token (CHAT_APNS_TEAM_ID)
  std::string topic;    // apns-topic: the app's bundle id (CHAT_APNS_TOPIC)
  // Default: 50 minutes. Age at which the provider token is replaced.
  std::chrono::seconds token_lifetime{50 * 60};
  // Default: 24 hours. apns-expiration: how long APNs keeps trying to reach
  // an offline device (the app syncs on open anyway).
  std::chrono::seconds expiration{24 * 3600};
  // Timeouts and the extra CA (CHAT_PUSH_CA); `version` is forced to kHttp2Only.
  HttpClientOptions http;
  // Default: SystemClock. iat of the provider token, its age, apns-expiration.
  const Clock* clock = nullptr;
};

class ApnsProvider final : public PushProvider {
 public:
  // `p8_pem`: the PKCS#8 PEM private key (EC P-256) Apple issued.
  static Result<std::unique_ptr<ApnsProvider>> create(std::string_view p8_pem, ApnsOptions options);

  const char* platform() const override { return "apns"; }
  // 200: kSent. 410, or 400 BadDeviceToken / DeviceTokenNotForTopic:
  // kUnregistered. 429, 5xx and no answer: kRetry (with Retry-After). 403
  // ExpiredProviderToken / InvalidProviderToken: sent once more with a new
  // provider token, then kRejected. Anything else: kRejected.
  PushResult send(const PushTarget& target, const PushNotification& notification) override;

  // The JSON payload of one notification (tests, docs).
  static std::string payload_json(const PushNotification& notification);

 private:
  explicit ApnsProvider(jwt::Signer signer) : signer_(std::move(signer)) {}
  // The current provider token; a new one when it is too old or `refused`
  // names it.
  std::string provider_token(const std::string& refused);

  jwt::Signer signer_;
  ApnsOptions options_;
  const Clock* clock_ = nullptr;
  std::unique_ptr<HttpClient> http_;

  std::mutex token_mu_;
  std::string token_;  // guarded by token_mu_
  int64_t token_iat_ms_ = 0;
};

}  // namespace chat::api
