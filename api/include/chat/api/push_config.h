// The push providers' settings (CONTRACT §1): which of FCM HTTP v1 and APNs
// HTTP/2 chat-api sends to, with which credentials, where. Part of Config
// (config.h: Config::push_providers); parsed once at start.
//
// A provider is on exactly when its credentials are set. Config::from_lookup
// checks the shape of the values (companion settings, URLs, ids); the files
// themselves (readable? a usable key?) are checked by make_push_providers()
// (push_providers.h) at start, with the same one-line errors naming the
// variable (exit 2).
#pragma once

#include <string>

#include "chat/common/settings.h"
#include "chat/common/status.h"

namespace chat::api {

struct PushProviderConfig {
  // CHAT_FCM_CREDENTIALS. Default: none (FCM off). The Firebase service-account
  // JSON file (project_id, client_email, private_key, token_uri).
  std::string fcm_credentials;
  // CHAT_FCM_ENDPOINT. Default: "https://fcm.googleapis.com". Scheme, host and
  // optional port (and path prefix) of the FCM HTTP v1 API; no trailing '/'.
  std::string fcm_endpoint = "https://fcm.googleapis.com";
  // CHAT_FCM_TOKEN_URL. Default: empty = the credentials' `token_uri`. The
  // OAuth 2.0 token endpoint the JWT bearer grant (RFC 7523) is posted to.
  std::string fcm_token_url;

  // CHAT_APNS_KEY. Default: none (APNs off). The .p8 token-signing key
  // (PKCS#8 PEM, EC P-256) from the Apple developer account. Requires
  // CHAT_APNS_KEY_ID, CHAT_APNS_TEAM_ID and CHAT_APNS_TOPIC.
  std::string apns_key;
  // CHAT_APNS_KEY_ID: the key's 10-character id (1-64 of [A-Za-z0-9]).
  std::string apns_key_id;
  // CHAT_APNS_TEAM_ID: the developer team id (1-64 of [A-Za-z0-9]).
  std::string apns_team_id;
  // CHAT_APNS_TOPIC: the app's bundle id (1-255 of [A-Za-z0-9._-]).
  std::string apns_topic;
  // CHAT_APNS_ENDPOINT. Default: "https://api.push.apple.com" (production;
  // https://api.sandbox.push.apple.com for development builds of the app).
  std::string apns_endpoint = "https://api.push.apple.com";

  // CHAT_PUSH_CA. Default: none. A PEM file of CA certificates trusted for
  // both providers' endpoints in addition to the system store.
  std::string push_ca;

  bool fcm_enabled() const { return !fcm_credentials.empty(); }
  bool apns_enabled() const { return !apns_key.empty(); }
};

// Reads the variables above into *out (unset keeps the default). Errors are
// kInvalidArgument with one line naming the variable.
Status read_push_provider_config(const settings::Lookup& lookup, PushProviderConfig* out);

// Whether `url` is an absolute http:// or https:// URL with a host and no
// query, fragment, user info or whitespace (the shape of every endpoint
// setting above).
bool is_valid_endpoint_url(std::string_view url);

}  // namespace chat::api
