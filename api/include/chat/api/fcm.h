// FcmProvider: push notifications to Android (and any FCM target) through
// the Firebase Cloud Messaging HTTP v1 API (docs/push.md "Providers").
//
// Authentication is a Google service account: an RS256 JWT signed with its
// private key is exchanged for an OAuth 2.0 access token (JWT bearer grant,
// RFC 7523) at the token endpoint; the token is cached until 5 minutes
// before it expires (or half its lifetime, when shorter) and fetched again
// once when the send API answers 401. One token fetch at a time: concurrent
// senders wait for it instead of each fetching their own.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "chat/api/http_client.h"
#include "chat/api/push_provider.h"
#include "chat/common/clock.h"
#include "chat/common/status.h"

namespace chat::api {

// The fields of a Firebase service-account JSON file that FCM needs.
struct FcmCredentials {
  std::string project_id;
  std::string client_email;
  std::string private_key_pem;  // RSA, PKCS#8 PEM
  std::string token_uri;        // e.g. https://oauth2.googleapis.com/token

  // Parses the JSON document; errors name the missing or bad field (never
  // its value: the key is secret).
  static Result<FcmCredentials> parse(std::string_view json);
};

struct FcmOptions {
  // Default: "https://fcm.googleapis.com". Messages go to
  // {endpoint}/v1/projects/{project_id}/messages:send.
  std::string endpoint = "https://fcm.googleapis.com";
  // Default: empty = the credentials' token_uri.
  std::string token_url;
  // Timeouts and the extra CA (CHAT_PUSH_CA). Default: HttpClientOptions'.
  HttpClientOptions http;
  // Default: SystemClock. Decides when the cached access token is stale and
  // the JWT's iat/exp.
  const Clock* clock = nullptr;
};

class FcmProvider final : public PushProvider {
 public:
  // Checks the credentials (an RSA private key, the fields above) and
  // builds the HTTP client. No network I/O.
  static Result<std::unique_ptr<FcmProvider>> create(const FcmCredentials& credentials,
                                                     FcmOptions options);

  const char* platform() const override { return "fcm"; }
  // 2xx: kSent. 404 or errorCode UNREGISTERED: kUnregistered. 429, 5xx and no
  // answer: kRetry (with Retry-After). 401 once more after a new access
  // token, then kRejected, like every other answer (400 INVALID_ARGUMENT,
  // 403 SENDER_ID_MISMATCH, ...). A token endpoint that refuses the
  // service account (4xx) rejects; one that fails (5xx, no answer) retries.
  PushResult send(const PushTarget& target, const PushNotification& notification) override;

  // The JSON request body of one notification (tests, docs).
  static std::string message_json(const PushTarget& target, const PushNotification& notification);
  // The signed assertion of the JWT bearer grant, as of `now_s`.
  std::string make_assertion(int64_t now_s) const;

 private:
  FcmProvider() = default;
  // A valid access token, fetching one when there is none, it is stale, or
  // `stale` names the one the API just refused. On failure "" and *failure.
  std::string access_token(const std::string& stale, PushResult* failure);

  FcmCredentials credentials_;
  std::shared_ptr<void> key_;  // EVP_PKEY*
  std::string send_url_;
  std::string token_url_;
  const Clock* clock_ = nullptr;
  std::unique_ptr<HttpClient> http_;

  std::mutex token_mu_;  // held while a token is fetched
  std::string token_;    // guarded by token_mu_
  int64_t token_refresh_at_ms_ = 0;
};

}  // namespace chat::api
