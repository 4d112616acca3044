// POST /v1/admin/backups {"dir":"/abs/path"} (admin role; docs/api.md,
// "Admin"): an online backup into a directory on the server (backup.h).
#include <httplib.h>

#include <nlohmann/json.hpp>

#include "chat/api/backup.h"
#include "chat/api/http_server.h"
#include "chat/api/log.h"
#include "chat/common/log_fields.h"
#include "http_internal.h"

namespace chat::api {

using httplib::Request;
using httplib::Response;
using nlohmann::json;

void HttpServer::register_backup_routes() {
  Service& service = service_;
  BackupRunner* backups = options_.backups;
  server_->Post("/v1/admin/backups", [&service, backups](const Request& req, Response& res) {
    auto caller = http_internal::require_principal(service, req, res);
    if (!caller) return;
    std::string dir;
    if (!caller->has_role("admin")) {
      http_internal::write_status(res, permission_denied("the admin API needs the admin role"));
    } else if (backups == nullptr) {
      http_internal::write_error(res, 503, "unavailable", "backups are not set up on this server");
    } else {
      json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_discarded() || !body.is_object() || !body.contains("dir") ||
          !body["dir"].is_string()) {
        http_internal::write_error(res, 400, "invalid_argument",
                                   "body must be {\"dir\":\"<absolute path on the server>\"}");
      } else {
        dir = body["dir"].get<std::string>();
        auto manifest = backups->run(dir);
        if (manifest) {
          res.status = 201;
          res.set_content(manifest->dump(), "application/json");
        } else if (manifest.status().code() == StatusCode::kAlreadyExists) {
          http_internal::write_error(res, 409, "backup_in_progress", manifest.status().message());
        } else {
          http_internal::write_status(res, manifest.status());
        }
      }
    }
    logger().info("audit: admin={} action=backup target={} result={}", caller->user,
                  dir.empty() ? std::string("-") : log_value(dir), res.status);
  });
}

}  // namespace chat::api
