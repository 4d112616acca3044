// PUT /v1/keys, GET /v1/keys/count, GET /v1/keys/{user}, GET
// /v1/users/{user}/keys, GET /v1/users/{user}/devices, DELETE
// /v1/keys/{device} (docs/e2e.md, "Key directory"; docs/api.md). The logic is
// KeyDirectory's (key_directory.h); this file is the HTTP side.
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "chat/api/http_server.h"
#include "chat/api/key_directory.h"
#include "http_internal.h"

namespace chat::api {

using http_internal::require_principal;
using http_internal::write_error;
using http_internal::write_status;
using httplib::Request;
using httplib::Response;
using nlohmann::json;

namespace {

constexpr const char* kJson = "application/json";

// Answers 503 and returns nullptr when chat-api runs without the directory.
KeyDirectory* keys_or_503(const Service& service, Response& res) {
  KeyDirectory* keys = service.keys();
  if (keys == nullptr) {
    write_error(res, 503, "unavailable", "the key directory is not set up on this server");
  }
  return keys;
}

json signed_prekey_json(const store::SignedPreKeyRecord& s) {
  return json{{"id", s.id}, {"key", s.key}, {"signature", s.signature}};
}

json bundle_json(const store::ClaimedBundle& b) {
  const store::DeviceKeysRecord& d = b.device;
  return json{{"device", d.device},
              {"registration_id", d.registration_id},
              {"identity_key", d.identity_key},
              {"signed_prekey", signed_prekey_json(d.signed_prekey)},
              {"prekey", b.prekey ? json{{"id", b.prekey->id}, {"key", b.prekey->key}} : json()},
              {"capabilities", d.capabilities}};
}

json device_json(const store::DeviceKeysRecord& d) {
  return json{{"device", d.device},
              {"registration_id", d.registration_id},
              {"identity_key", d.identity_key},
              {"capabilities", d.capabilities},
              {"created", d.created_ms}};
}

json count_json(const PreKeyCount& c) {
  return json{{"device", c.device}, {"count", c.count}, {"signed_prekey_id", c.signed_prekey_id}};
}

// ?device=<d>: nullopt when absent (an empty value is a bad device id).
std::optional<std::string> device_param(const Request& req) {
  if (!req.has_param("device")) return std::nullopt;
  return req.get_param_value("device");
}

}  // namespace

void HttpServer::register_key_routes() {
  Service& service = service_;

  server_->Put("/v1/keys", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    KeyDirectory* keys = keys_or_503(service, res);
    if (keys == nullptr) return;
    KeyRefusal why = KeyRefusal::kNone;
    int64_t wait_ms = 0;
    auto uploaded = keys->upload(caller->user, req.body, &why, &wait_ms);
    if (!uploaded) {
      const std::string message = uploaded.status().message();
      switch (why) {
        case KeyRefusal::kRateLimited:
          return http_internal::write_rate_limited(res, wait_ms, message);
        case KeyRefusal::kBadSignature:
          return write_error(res, 400, "bad_signature", message);
        case KeyRefusal::kIdentityMismatch:
          return write_error(res, 409, "identity_mismatch", message);
        case KeyRefusal::kTooManyPreKeys:
          return write_error(res, 400, "too_many_prekeys", message);
        case KeyRefusal::kTooManyDevices:
          return write_error(res, 409, "too_many_devices", message);
        case KeyRefusal::kNone:
          break;
      }
      return write_status(res, uploaded.status());
    }
    // The device's state after the upload, as GET /v1/keys/count says it.
    res.status = uploaded->created ? 201 : 200;
    res.set_content(count_json(uploaded->state).dump(), kJson);
  });

  // Before /v1/keys/{user}: the caller's own remaining one-time prekeys.
  server_->Get("/v1/keys/count", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    KeyDirectory* keys = keys_or_503(service, res);
    if (keys == nullptr) return;
    auto device = device_param(req);
    if (!device) {
      return write_status(res, invalid_argument("?device=<device id> is required"));
    }
    auto count = keys->count(caller->user, *device);
    if (!count) return write_status(res, count.status());
    res.status = 200;
    res.set_content(count_json(*count).dump(), kJson);
  });

  // A claim: GET /v1/keys/{user}, and GET /v1/users/{user}/keys, the same
  // for every user id (a user named "count" can only be claimed that way).
  const auto claim = [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    KeyDirectory* keys = keys_or_503(service, res);
    if (keys == nullptr) return;
    const std::string target = req.matches[1].str();
    int64_t wait_ms = 0;
    auto bundles = keys->claim(caller->user, target, device_param(req), &wait_ms);
    if (!bundles) {
      if (wait_ms > 0) {
        return http_internal::write_rate_limited(res, wait_ms, bundles.status().message());
      }
      return write_status(res, bundles.status());
    }
    json devices = json::array();
    for (const auto& b : *bundles) devices.push_back(bundle_json(b));
    res.status = 200;
    res.set_content(json{{"user", target}, {"devices", std::move(devices)}}.dump(), kJson);
  };
  server_->Get(R"(/v1/keys/([^/]+))", claim);
  server_->Get(R"(/v1/users/([^/]+)/keys)", claim);

  server_->Get(R"(/v1/users/([^/]+)/devices)", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    KeyDirectory* keys = keys_or_503(service, res);
    if (keys == nullptr) return;
    const std::string user = req.matches[1].str();
    auto devices = keys->devices(user);
    if (!devices) return write_status(res, devices.status());
    json list = json::array();
    for (const auto& d : *devices) list.push_back(device_json(d));
    res.status = 200;
    res.set_content(json{{"user", user}, {"devices", std::move(list)}}.dump(), kJson);
  });

  server_->Delete(R"(/v1/keys/([^/]+))", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    KeyDirectory* keys = keys_or_503(service, res);
    if (keys == nullptr) return;
    int64_t wait_ms = 0;
    if (Status s = keys->remove_device(caller->user, req.matches[1].str(), &wait_ms); !s.is_ok()) {
      if (wait_ms > 0) return http_internal::write_rate_limited(res, wait_ms, s.message());
      return write_status(res, s);
    }
    res.status = 204;
  });
}

}  // namespace chat::api
