// POST /v1/devices, GET /v1/devices, DELETE /v1/devices/{device} (CONTRACT §4;
// docs/api.md "Devices and push"): the caller's own devices' push targets.
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "chat/api/devices.h"
#include "chat/api/http_server.h"
#include "chat/api/log.h"
#include "chat/api/request_parsing.h"
#include "chat/common/log_fields.h"
#include "http_internal.h"

namespace chat::api {

using httplib::Request;
using httplib::Response;
using nlohmann::json;

namespace http_internal {

void forget_push_targets(DeviceRegistry& devices, const std::string& user) {
  if (Status s = devices.forget_user(user); !s.is_ok()) {
    logger().warn("push.forget_failed: user={} error={}", log_value(user),
                  log_value(s.to_string()));
  }
}

}  // namespace http_internal

namespace {

// The registry's failures: a full device list is a conflict with what is
// registered (409 too_many_devices), not a rate limit.
void write_device_status(Response& res, const Status& status) {
  if (status.code() == StatusCode::kResourceExhausted) {
    return http_internal::write_error(res, 409, "too_many_devices", status.message());
  }
  http_internal::write_status(res, status);
}

json device_json(const DeviceInfo& d) {
  return json{{"device", d.device},
              {"platform", d.platform},
              {"token_hint", d.token_hint},
              {"created_ms", d.created_ms}};
}

// Answers 503 and returns nullptr when chat-api runs without the registry.
DeviceRegistry* registry_or_503(DeviceRegistry* devices, Response& res) {
  if (devices == nullptr) {
    http_internal::write_error(res, 503, "unavailable", "push is not set up on this server");
  }
  return devices;
}

}  // namespace

void HttpServer::register_device_routes() {
  Service& service = service_;
  DeviceRegistry* devices = options_.devices;

  server_->Post("/v1/devices", [&service, devices](const Request& req, Response& res) {
    auto caller = http_internal::require_principal(service, req, res);
    if (!caller) return;
    DeviceRegistry* registry = registry_or_503(devices, res);
    if (registry == nullptr) return;
    auto parsed = parse_json_object_body(req.body);
    if (!parsed) return http_internal::write_status(res, parsed.status());
    json body = std::move(parsed).value();
    const auto member = [&body](const char* name) -> const std::string* {
      auto it = body.find(name);
      return it != body.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
    };
    const std::string* device = member("device");
    const std::string* platform = member("platform");
    const std::string* token = member("token");
    if (device == nullptr || platform == nullptr || token == nullptr) {
      return http_internal::write_status(
          res, invalid_argument("\"device\", \"platform\" and \"token\" strings are required"));
    }
    if (*platform == "fcm" || *platform == "apns") {
      if (Status s = check_push_token(*platform, *token); !s.is_ok()) {
        return http_internal::write_error(res, 400, "invalid_token", s.message());
      }
    }
    auto created = registry->register_device(caller->user, *device, *platform, *token);
    if (!created) return write_device_status(res, created.status());
    // The token is not echoed: the hint is enough to recognise it.
    DeviceInfo info{*device, *platform, token_hint(*token), 0};
    auto listed = registry->list(caller->user);
    if (listed) {
      for (const auto& d : *listed) {
        if (d.device == *device) info = d;
      }
    }
    res.status = *created ? 201 : 200;
    res.set_content(device_json(info).dump(), "application/json");
  });

  server_->Get("/v1/devices", [&service, devices](const Request& req, Response& res) {
    auto caller = http_internal::require_principal(service, req, res);
    if (!caller) return;
    DeviceRegistry* registry = registry_or_503(devices, res);
    if (registry == nullptr) return;
    auto listed = registry->list(caller->user);
    if (!listed) return http_internal::write_status(res, listed.status());
    json list = json::array();
    for (const auto& d : *listed) list.push_back(device_json(d));
    res.status = 200;
    res.set_content(json{{"devices", std::move(list)}}.dump(), "application/json");
  });

  server_->Delete(R"(/v1/devices/([^/]+))", [&service, devices](const Request& req, Response& res) {
    auto caller = http_internal::require_principal(service, req, res);
    if (!caller) return;
    DeviceRegistry* registry = registry_or_503(devices, res);
    if (registry == nullptr) return;
    if (Status s = registry->unregister_device(caller->user, req.matches[1].str()); !s.is_ok()) {
      return write_device_status(res, s);
    }
    res.status = 204;
  });
}

}  // namespace chat::api
