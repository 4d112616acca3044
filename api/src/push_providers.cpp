#include "chat/api/push_providers.h"

#include <fstream>
#include <sstream>

#include "chat/api/apns.h"
#include "chat/api/fcm.h"

namespace chat::api {
namespace {

constexpr size_t kMaxCredentialBytes = 64 * 1024;

// The whole (small) file, or kInvalidArgument "<name>: cannot read '<path>'".
Result<std::string> read_setting_file(const char* name, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid_argument(std::string(name) + ": cannot read '" + path + "'");
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxCredentialBytes) {
      return invalid_argument(std::string(name) + ": '" + path + "' is over 64 KiB");
    }
  }
  if (in.bad()) return invalid_argument(std::string(name) + ": cannot read '" + path + "'");
  return text;
}

}  // namespace

Result<PushProviders> make_push_providers(const Config& config) {
  const PushProviderConfig& c = config.push_providers;
  PushProviders providers;
  HttpClientOptions http;
  http.extra_ca_file = c.push_ca;
  if (!c.push_ca.empty() && (c.fcm_enabled() || c.apns_enabled())) {
    // Checked once here so the error names the variable.
    if (auto probe = HttpClient::create(http); !probe) {
      return invalid_argument("CHAT_PUSH_CA: " + probe.status().message());
    }
  }

  if (c.fcm_enabled()) {
    auto text = read_setting_file("CHAT_FCM_CREDENTIALS", c.fcm_credentials);
    if (!text) return text.status();
    auto credentials = FcmCredentials::parse(*text);
    if (!credentials) {
      return invalid_argument("CHAT_FCM_CREDENTIALS: '" + c.fcm_credentials +
                              "': " + credentials.status().message());
    }
    FcmOptions options;
    options.endpoint = c.fcm_endpoint;
    options.token_url = c.fcm_token_url;
    options.http = http;
    auto fcm = FcmProvider::create(*credentials, options);
    if (!fcm) {
      return invalid_argument("CHAT_FCM_CREDENTIALS: '" + c.fcm_credentials +
                              "': " + fcm.status().message());
    }
    providers.emplace("fcm", std::move(fcm).value());
  }

  if (c.apns_enabled()) {
    auto pem = read_setting_file("CHAT_APNS_KEY", c.apns_key);
    if (!pem) return pem.status();
    ApnsOptions options;
    options.endpoint = c.apns_endpoint;
    options.key_id = c.apns_key_id;
    options.team_id = c.apns_team_id;
    options.topic = c.apns_topic;
    options.http = http;
    auto apns = ApnsProvider::create(*pem, options);
    if (!apns) {
      return invalid_argument("CHAT_APNS_KEY: '" + c.apns_key + "': " + apns.status().message());
    }
    providers.emplace("apns", std::move(apns).value());
  }
  return providers;
}

}  // namespace chat::api
