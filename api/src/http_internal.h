// chat-api's HTTP edge, shared between http_server.cpp and the route files
// beside it (media_routes.cpp). Private to api/src.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "chat/api/devices.h"
#include "chat/api/service.h"
#include "chat/common/status.h"

namespace chat::api::http_internal {

// {"error":code,"message":...} with `status`.
void write_error(httplib::Response& res, int status, std::string_view code,
                 std::string_view message);
// A Service failure, through http_status().
void write_status(httplib::Response& res, const Status& status);
// 429 rate_limited with Retry-After (whole seconds, at least 1) for a wait of `wait_ms`.
void write_rate_limited(httplib::Response& res, int64_t wait_ms, std::string_view message);
// The bearer's principal, or nullopt after writing the 401 (or the 429 of a
// REST write over the user's rate).
std::optional<Principal> require_principal(const Service& service, const httplib::Request& req,
                                           httplib::Response& res);

// POST /v1/media: the one request whose body may exceed HttpOptions::max_body_bytes.
inline bool is_media_upload(const httplib::Request& req) {
  return req.method == "POST" && req.path == "/v1/media";
}
// The media upload limit (0 when the service has no media library).
uint64_t media_max_bytes(const Service& service);

// DELETE /v1/users/me: the deleted account's push targets go too (failures
// are logged; the broker already forgot the user's devices). device_routes.cpp.
void forget_push_targets(DeviceRegistry& devices, const std::string& user);

}  // namespace chat::api::http_internal
