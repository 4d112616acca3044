#include "chat/api/push_config.h"

#include <algorithm>

namespace chat::api {
namespace {

using settings::bad;

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [extra](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

Status read_endpoint(const settings::Lookup& lookup, const char* name, std::string* out) {
  auto v = lookup(name);
  if (!v) return Status::ok();
  std::string url = *v;
  while (url.size() > 1 && url.back() == '/') url.pop_back();
  if (!is_valid_endpoint_url(url)) {
    return bad(name, *v, "an http:// or https:// URL without query, fragment or user info");
  }
  *out = std::move(url);
  return Status::ok();
}

Status read_id(const settings::Lookup& lookup, const char* name, size_t max, std::string_view extra,
               std::string_view expected, std::string* out) {
  auto v = lookup(name);
  if (!v) return Status::ok();
  if (v->size() > max || !all_of_chars(*v, extra)) return bad(name, *v, expected);
  *out = *v;
  return Status::ok();
}

}  // namespace

bool is_valid_endpoint_url(std::string_view url) {
  std::string_view rest;
  if (url.substr(0, 7) == "http://")
    rest = url.substr(7);
  else if (url.substr(0, 8) == "https://")
    rest = url.substr(8);
  else
    return false;
  if (rest.empty() || rest.front() == '/' || rest.front() == ':' || url.size() > 2048) return false;
  for (char c : rest) {
    if (c <= ' ' || c >= 127 || c == '?' || c == '#' || c == '@' || c == '"' || c == '\\') {
      return false;
    }
  }
  return true;
}

Status read_push_provider_config(const settings::Lookup& lookup, PushProviderConfig* out) {
  PushProviderConfig& c = *out;

  // FCM.
  if (auto v = lookup("CHAT_FCM_CREDENTIALS")) c.fcm_credentials = *v;
  if (Status s = read_endpoint(lookup, "CHAT_FCM_ENDPOINT", &c.fcm_endpoint); !s.is_ok()) return s;
  if (Status s = read_endpoint(lookup, "CHAT_FCM_TOKEN_URL", &c.fcm_token_url); !s.is_ok()) {
    return s;
  }
  if (!c.fcm_enabled()) {
    for (const char* name : {"CHAT_FCM_ENDPOINT", "CHAT_FCM_TOKEN_URL"}) {
      if (lookup(name)) {
        return invalid_argument(std::string("CHAT_FCM_CREDENTIALS: required with ") + name);
      }
    }
  }

  // APNs: the key and its three companions, all or none.
  if (auto v = lookup("CHAT_APNS_KEY")) c.apns_key = *v;
  if (Status s =
          read_id(lookup, "CHAT_APNS_KEY_ID", 64, "", "1 to 64 letters and digits", &c.apns_key_id);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_id(lookup, "CHAT_APNS_TEAM_ID", 64, "", "1 to 64 letters and digits",
                         &c.apns_team_id);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_id(lookup, "CHAT_APNS_TOPIC", 255, "._-",
                         "the app's bundle id: 1 to 255 of [A-Za-z0-9._-]", &c.apns_topic);
      !s.is_ok()) {
    return s;
  }
  if (Status s = read_endpoint(lookup, "CHAT_APNS_ENDPOINT", &c.apns_endpoint); !s.is_ok()) {
    return s;
  }
  const std::pair<const char*, const std::string*> companions[] = {
      {"CHAT_APNS_KEY_ID", &c.apns_key_id},
      {"CHAT_APNS_TEAM_ID", &c.apns_team_id},
      {"CHAT_APNS_TOPIC", &c.apns_topic}};
  if (c.apns_enabled()) {
    for (auto [name, value] : companions) {
      if (value->empty())
        return invalid_argument(std::string(name) + ": required with CHAT_APNS_KEY");
    }
  } else {
    for (auto [name, value] : companions) {
      if (!value->empty())
        return invalid_argument(std::string("CHAT_APNS_KEY: required with ") + name);
    }
    if (lookup("CHAT_APNS_ENDPOINT")) {
      return invalid_argument("CHAT_APNS_KEY: required with CHAT_APNS_ENDPOINT");
    }
  }

  if (auto v = lookup("CHAT_PUSH_CA")) c.push_ca = *v;
  return Status::ok();
}

}  // namespace chat::api
