#include "chat/api/apns.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace chat::api {
namespace {

using json = nlohmann::json;

// APNs device tokens are hex strings (64 characters today; Apple allows them
// to grow). Anything else would not be a valid URL path segment either.
bool is_device_token(std::string_view token) {
  return !token.empty() && token.size() <= 200 &&
         std::all_of(token.begin(), token.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

// {"reason":"BadDeviceToken"} -> "BadDeviceToken" (letters only, at most 64).
std::string apns_reason(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return "";
  auto it = doc.find("reason");
  if (it == doc.end() || !it->is_string()) return "";
  std::string out;
  for (char c : it->get_ref<const std::string&>().substr(0, 64)) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) out += c;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<ApnsProvider>> ApnsProvider::create(std::string_view p8_pem,
                                                           ApnsOptions options) {
  if (options.key_id.empty() || options.team_id.empty() || options.topic.empty()) {
    return invalid_argument("the key id, team id and topic are required");
  }
  auto signer = jwt::Signer::from_pem(p8_pem, options.key_id);
  if (!signer) {
    return invalid_argument("not an APNs .p8 key (" + signer.status().message() + ")");
  }
  options.http.version = HttpVersion::kHttp2Only;
  auto http = HttpClient::create(options.http);
  if (!http) return http.status();
  std::unique_ptr<ApnsProvider> p(new ApnsProvider(std::move(signer).value()));
  while (!options.endpoint.empty() && options.endpoint.back() == '/') options.endpoint.pop_back();
  p->clock_ = options.clock != nullptr ? options.clock : &SystemClock::instance();
  p->options_ = std::move(options);
  p->http_ = std::move(http).value();
  return p;
}

std::string ApnsProvider::provider_token(const std::string& refused) {
  std::lock_guard<std::mutex> lock(token_mu_);
  const int64_t now_ms = clock_->now_ms();
  const bool fresh =
      now_ms - token_iat_ms_ < options_.token_lifetime.count() * 1000 && now_ms >= token_iat_ms_;
  if (!token_.empty() && fresh && token_ != refused) return token_;
  // Header {"alg":"ES256","typ":"JWT","kid":key id}; claims iss + iat only.
  token_ = signer_.sign(json{{"iss", options_.team_id}, {"iat", now_ms / 1000}});
  token_iat_ms_ = now_ms;
  return token_;
}

std::string ApnsProvider::payload_json(const PushNotification& n) {
  // Content-free unless a preview is allowed: a visible alert saying who
  // wrote, which the app's notification service extension (mutable-content)
  // may replace after fetching and decrypting the message by its id.
  json alert = {{"title", n.from}, {"body", n.preview.empty() ? "New message" : n.preview}};
  json aps = {
      {"alert", alert}, {"sound", "default"}, {"mutable-content", 1}, {"thread-id", n.conv}};
  json payload = {{"aps", aps}, {"id", n.message_id}, {"conv", n.conv}, {"from", n.from}};
  if (!n.type.empty()) payload["type"] = n.type;
  return payload.dump(-1, ' ', false, json::error_handler_t::replace);
}

PushResult ApnsProvider::send(const PushTarget& target, const PushNotification& notification) {
  if (!is_device_token(target.token)) {
    return PushResult::of(PushOutcome::kUnregistered, 0, "apns: the device token is not hex");
  }
  const std::string url = options_.endpoint + "/3/device/" + target.token;
  const std::string body = payload_json(notification);
  // apns-collapse-id: at most 64 bytes; our message ids are shorter.
  const std::string collapse_id = notification.message_id.substr(0, 64);
  std::string refused;
  for (int attempt = 0; attempt < 2; ++attempt) {
    const std::string token = provider_token(refused);
    if (token.empty()) return PushResult::of(PushOutcome::kRetry, 0, "apns: cannot sign the token");
    // From the message's time: a notification retried late does not outlive it.
    const int64_t from_s =
        notification.message_ms > 0 ? notification.message_ms / 1000 : clock_->now_s();
    const int64_t expiration = from_s + options_.expiration.count();
    HttpHeaders headers = {{"authorization", "bearer " + token},
                           {"apns-topic", options_.topic},
                           {"apns-push-type", "alert"},
                           {"apns-priority", "10"},
                           {"apns-expiration", std::to_string(expiration)},
                           {"content-type", "application/json"}};
    if (!collapse_id.empty()) headers.emplace_back("apns-collapse-id", collapse_id);
    auto response = http_->post(url, headers, body);
    if (!response)
      return PushResult::of(PushOutcome::kRetry, 0, "apns: " + response.status().message());
    const int status = response->status;
    if (status == 200) return PushResult::of(PushOutcome::kSent, status, "sent");
    const std::string reason_code = apns_reason(response->body);
    const std::string reason =
        "apns: " + std::to_string(status) + (reason_code.empty() ? "" : " " + reason_code);
    if (status == 403 &&
        (reason_code == "ExpiredProviderToken" || reason_code == "InvalidProviderToken") &&
        attempt == 0) {
      refused = token;
      continue;
    }
    if (status == 410 || (status == 400 && (reason_code == "BadDeviceToken" ||
                                            reason_code == "DeviceTokenNotForTopic"))) {
      return PushResult::of(PushOutcome::kUnregistered, status, reason);
    }
    if (status == 429 || status >= 500) {
      std::chrono::seconds after(0);
      if (auto v = response->header("retry-after")) {
        after = parse_retry_after(*v, std::chrono::system_clock::now())
                    .value_or(std::chrono::seconds(0));
      }
      return PushResult::of(PushOutcome::kRetry, status, reason, after);
    }
    return PushResult::of(PushOutcome::kRejected, status, reason);
  }
  return PushResult::of(PushOutcome::kRejected, 403, "apns: 403 after a new provider token");
}

}  // namespace chat::api
