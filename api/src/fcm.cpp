#include "chat/api/fcm.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "chat/api/push_config.h"
#include "chat/common/jwt.h"

namespace chat::api {
namespace {

using json = nlohmann::json;

constexpr char kScope[] = "https://www.googleapis.com/auth/firebase.messaging";
constexpr char kGrantType[] = "urn:ietf:params:oauth:grant-type:jwt-bearer";
constexpr int64_t kAssertionLifetimeS = 3600;  // the most Google accepts
constexpr int64_t kRefreshMarginS = 300;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const std::string* string_field(const json& doc, const char* name) {
  auto it = doc.find(name);
  if (it == doc.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return nullptr;
  }
  return &it->get_ref<const std::string&>();
}

// RS256 over `input`; "" when OpenSSL fails.
std::string sign_rs256(EVP_PKEY* pkey, std::string_view input) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx ||
      EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, pkey, nullptr) != 1) {
    return "";
  }
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) return "";
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     input.size()) != 1) {
    return "";
  }
  sig.resize(len);
  return sig;
}

std::chrono::seconds retry_after_of(const HttpResponse& response) {
  auto v = response.header("retry-after");
  if (!v) return std::chrono::seconds(0);
  return parse_retry_after(*v, std::chrono::system_clock::now()).value_or(std::chrono::seconds(0));
}

// FCM's error body: {"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":
// "type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}.
// Returns the FcmError errorCode, else the status, else "".
std::string fcm_error_code(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return "";
  auto error = doc.find("error");
  if (error == doc.end() || !error->is_object()) return "";
  if (auto details = error->find("details"); details != error->end() && details->is_array()) {
    for (const auto& d : *details) {
      if (!d.is_object()) continue;
      if (const std::string* code = string_field(d, "errorCode")) return *code;
    }
  }
  if (const std::string* status = string_field(*error, "status")) return *status;
  return "";
}

// 400 INVALID_ARGUMENT is FCM's answer to a malformed message and to a token
// that is not (or no longer) an FCM registration token; only the error's
// message tells them apart ("The registration token is not a valid FCM
// registration token").
bool is_invalid_registration_token(const std::string& body) {
  json doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return false;
  auto error = doc.find("error");
  if (error == doc.end() || !error->is_object()) return false;
  const std::string* message = string_field(*error, "message");
  return message != nullptr && message->find("registration token") != std::string::npos;
}

// A short, loggable reason: letters, digits and _ only, at most 64 bytes.
std::string safe_code(std::string_view code) {
  std::string out;
  for (char c : code.substr(0, 64)) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
      out += c;
    }
  }
  return out;
}

}  // namespace

Result<FcmCredentials> FcmCredentials::parse(std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (!doc.is_object()) return invalid_argument("not a JSON object (a service-account key file)");
  FcmCredentials c;
  for (auto [name, out] :
       {std::pair{"project_id", &c.project_id}, std::pair{"client_email", &c.client_email},
        std::pair{"private_key", &c.private_key_pem}, std::pair{"token_uri", &c.token_uri}}) {
    const std::string* v = string_field(doc, name);
    if (v == nullptr) return invalid_argument(std::string("missing string field '") + name + "'");
    *out = *v;
  }
  if (auto type = string_field(doc, "type"); type != nullptr && *type != "service_account") {
    return invalid_argument("'type' is not service_account");
  }
  // project_id goes into the URL path: Google's ids are [a-z0-9-] (plus ':' and
  // '.' for old domain-scoped projects).
  const bool id_ok = c.project_id.size() <= 100 &&
                     std::all_of(c.project_id.begin(), c.project_id.end(), [](char ch) {
                       return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                              ch == ':' || ch == '.';
                     });
  if (!id_ok) return invalid_argument("'project_id' is not a Google Cloud project id");
  if (!is_valid_endpoint_url(c.token_uri)) return invalid_argument("'token_uri' is not a URL");
  return c;
}

Result<std::unique_ptr<FcmProvider>> FcmProvider::create(const FcmCredentials& credentials,
                                                         FcmOptions options) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(
      BIO_new_mem_buf(credentials.private_key_pem.data(),
                      static_cast<int>(credentials.private_key_pem.size())),
      BIO_free);
  EVP_PKEY* raw = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  ERR_clear_error();
  if (raw == nullptr)
    return invalid_argument("'private_key' is not an unencrypted PEM private key");
  std::shared_ptr<void> key(raw, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
  if (!EVP_PKEY_is_a(raw, "RSA") || EVP_PKEY_get_bits(raw) < 2048) {
    return invalid_argument("'private_key' is not an RSA key of at least 2048 bits");
  }

  auto http = HttpClient::create(options.http);
  if (!http) return http.status();

  std::unique_ptr<FcmProvider> p(new FcmProvider());
  p->credentials_ = credentials;
  p->key_ = std::move(key);
  std::string endpoint = options.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  p->send_url_ = endpoint + "/v1/projects/" + credentials.project_id + "/messages:send";
  p->token_url_ = options.token_url.empty() ? credentials.token_uri : options.token_url;
  p->clock_ = options.clock != nullptr ? options.clock : &SystemClock::instance();
  p->http_ = std::move(http).value();
  return p;
}

std::string FcmProvider::make_assertion(int64_t now_s) const {
  const json header = {{"alg", "RS256"}, {"typ", "JWT"}};
  const json claims = {{"iss", credentials_.client_email},
                       {"scope", kScope},
                       {"aud", token_url_},
                       {"iat", now_s},
                       {"exp", now_s + kAssertionLifetimeS}};
  std::string input =
      jwt::base64url_encode(dump(header)) + "." + jwt::base64url_encode(dump(claims));
  std::string sig = sign_rs256(static_cast<EVP_PKEY*>(key_.get()), input);
  ERR_clear_error();
  if (sig.empty()) return "";
  return input + "." + jwt::base64url_encode(sig);
}

std::string FcmProvider::access_token(const std::string& stale, PushResult* failure) {
  std::lock_guard<std::mutex> lock(token_mu_);
  const int64_t now_ms = clock_->now_ms();
  // Another sender may have replaced the refused token while we waited.
  if (!token_.empty() && token_ != stale && now_ms < token_refresh_at_ms_) return token_;
  token_.clear();

  const std::string assertion = make_assertion(now_ms / 1000);
  if (assertion.empty()) {
    *failure = PushResult::of(PushOutcome::kRetry, 0, "fcm oauth: cannot sign the assertion");
    return "";
  }
  const std::string form =
      "grant_type=" + form_escape(kGrantType) + "&assertion=" + form_escape(assertion);
  auto response = http_->post(
      token_url_,
      {{"Content-Type", "application/x-www-form-urlencoded"}, {"Accept", "application/json"}},
      form);
  if (!response) {
    *failure = PushResult::of(PushOutcome::kRetry, 0, "fcm oauth: " + response.status().message());
    return "";
  }
  const int status = response->status;
  if (status != 200) {
    // RFC 6749 §5.2: {"error":"invalid_grant",...}.
    json doc = json::parse(response->body, nullptr, false);
    std::string code;
    if (doc.is_object()) {
      if (const std::string* e = string_field(doc, "error")) code = safe_code(*e);
    }
    const bool transient = status == 429 || status >= 500;
    *failure =
        PushResult::of(transient ? PushOutcome::kRetry : PushOutcome::kRejected, status,
                       "fcm oauth: " + std::to_string(status) + (code.empty() ? "" : " " + code),
                       retry_after_of(*response));
    return "";
  }
  json doc = json::parse(response->body, nullptr, false);
  const std::string* token = doc.is_object() ? string_field(doc, "access_token") : nullptr;
  int64_t expires_in = 3600;
  if (doc.is_object()) {
    if (auto it = doc.find("expires_in"); it != doc.end() && it->is_number_integer()) {
      expires_in = std::clamp<int64_t>(it->get<int64_t>(), 0, 24 * 3600);
    }
  }
  if (token == nullptr) {
    *failure =
        PushResult::of(PushOutcome::kRetry, status, "fcm oauth: no access_token in the answer");
    return "";
  }
  token_ = *token;
  const int64_t margin = std::min(kRefreshMarginS, expires_in / 2);
  token_refresh_at_ms_ = now_ms + (expires_in - margin) * 1000;
  return token_;
}

std::string FcmProvider::message_json(const PushTarget& target,
                                      const PushNotification& notification) {
  json data = {{"type", "message"},
               {"id", notification.message_id},
               {"conv", notification.conv},
               {"from", notification.from}};
  if (!notification.type.empty()) data["msg_type"] = notification.type;
  json message = {{"token", target.token},
                  {"data", data},
                  {"android", {{"priority", "high"}, {"collapse_key", notification.message_id}}}};
  if (!notification.preview.empty()) {
    data["preview"] = notification.preview;
    message["data"] = data;
    message["notification"] = {{"title", notification.from}, {"body", notification.preview}};
  }
  return dump(json{{"message", message}});
}

PushResult FcmProvider::send(const PushTarget& target, const PushNotification& notification) {
  const std::string body = message_json(target, notification);
  std::string refused;  // the access token a 401 refused
  for (int attempt = 0; attempt < 2; ++attempt) {
    PushResult failure;
    const std::string token = access_token(refused, &failure);
    if (token.empty()) return failure;
    auto response = http_->post(
        send_url_,
        {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json; charset=UTF-8"}},
        body);
    if (!response)
      return PushResult::of(PushOutcome::kRetry, 0, "fcm: " + response.status().message());
    const int status = response->status;
    if (status >= 200 && status < 300) return PushResult::of(PushOutcome::kSent, status, "sent");
    const std::string code = safe_code(fcm_error_code(response->body));
    const std::string reason = "fcm: " + std::to_string(status) + (code.empty() ? "" : " " + code);
    if (status == 401 && attempt == 0) {
      refused = token;  // a new access token, then once more
      continue;
    }
    if (status == 404 || code == "UNREGISTERED" ||
        (status == 400 && code == "INVALID_ARGUMENT" &&
         is_invalid_registration_token(response->body))) {
      return PushResult::of(PushOutcome::kUnregistered, status, reason);
    }
    if (status == 429 || status == 500 || status == 502 || status == 503 || status == 504 ||
        code == "QUOTA_EXCEEDED" || code == "UNAVAILABLE" || code == "INTERNAL") {
      return PushResult::of(PushOutcome::kRetry, status, reason, retry_after_of(*response));
    }
    return PushResult::of(PushOutcome::kRejected, status, reason);
  }
  return PushResult::of(PushOutcome::kRejected, 401, "fcm: 401 after a new access token");
}

}  // namespace chat::api
