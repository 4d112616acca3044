// `chatctl admin ...`: the admin REST API (docs/api.md, "Admin"). REST only;
// the profile's account must have the admin role (403 otherwise).
#include <cstdio>
#include <string>

#include "chatctl/commands.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
#include "chatctl/restore.h"

namespace chat::tools {
namespace {

int64_t int_field(const nlohmann::json& j, const char* name) {
  const auto& v = json_field(j, name);
  return v.is_number_integer() ? v.get<int64_t>() : 0;
}

bool bool_field(const nlohmann::json& j, const char* name) {
  const auto& v = json_field(j, name);
  return v.is_boolean() && v.get<bool>();
}

const nlohmann::json* list_of(Context& ctx, const ApiResponse& response, const char* name,
                              const char* route) {
  const auto& list = json_field(response.json, name);
  if (list.is_array()) return &list;
  fail(ctx, internal_error(std::string("unexpected answer to GET ") + route + ": no \"" + name +
                           "\" list"));
  return nullptr;
}

int admin_users(Context& ctx, Credentials& credentials) {
  std::string path = "/v1/admin/users";
  if (ctx.command_line.limit) path += "?limit=" + std::to_string(*ctx.command_line.limit);
  RestCall c = rest_call(ctx, credentials, "GET", path);
  if (!c.ok()) return c.exit_status;
  const auto* users = list_of(ctx, *c.response, "users", "/v1/admin/users");
  if (users == nullptr) return kExitFailure;
  for (const auto& u : *users) {
    if (ctx.out.json()) {
      ctx.out.json_line(u);
      continue;
    }
    std::string line = sanitize_for_terminal(json_string(u, "user"));
    if (bool_field(u, "admin")) line += "  admin";
    if (bool_field(u, "banned")) line += "  banned";
    if (bool_field(u, "deleted")) line += "  deleted";
    ctx.out.line(line);
  }
  const auto& next = json_field(c.response->json, "next");
  if (next.is_string()) {
    ctx.out.note("more: GET /v1/admin/users?after=" + next.get<std::string>());
  }
  return kExitOk;
}

int admin_clients(Context& ctx, Credentials& credentials) {
  RestCall c = rest_call(ctx, credentials, "GET", "/v1/admin/clients");
  if (!c.ok()) return c.exit_status;
  const auto* clients = list_of(ctx, *c.response, "clients", "/v1/admin/clients");
  if (clients == nullptr) return kExitFailure;
  for (const auto& client : *clients) {
    if (ctx.out.json()) {
      ctx.out.json_line(client);
    } else {
      std::string line = sanitize_for_terminal(json_string(client, "clientid")) + "  since " +
                         std::to_string(int_field(client, "connected_ms"));
      if (!json_string(client, "jti").empty()) {
        line += "  jti " + sanitize_for_terminal(json_string(client, "jti"));
      }
      ctx.out.line(line);
    }
  }
  if (clients->empty()) ctx.out.note("no devices connected");
  return kExitOk;
}

int admin_stats(Context& ctx, Credentials& credentials) {
  RestCall c = rest_call(ctx, credentials, "GET", "/v1/admin/stats");
  if (!c.ok()) return c.exit_status;
  const auto& s = c.response->json;
  if (ctx.out.json()) {
    ctx.out.json_line(s);
  } else {
    ctx.out.line("users " + std::to_string(int_field(s, "users")));
    ctx.out.line("banned " + std::to_string(int_field(s, "banned")));
    ctx.out.line("connected_clients " + std::to_string(int_field(s, "connected_clients")));
  }
  return kExitOk;
}

int admin_change(Context& ctx, Credentials& credentials) {
  const std::string& target = ctx.command_line.args.at(0);
  std::string method = "POST", path, done, action;
  switch (ctx.command_line.admin_action) {
    case AdminAction::kBan:
      path = "/v1/admin/users/" + url_encode(target) + "/ban";
      done = "banned " + target;
      action = "ban";
      break;
    case AdminAction::kUnban:
      method = "DELETE";
      path = "/v1/admin/users/" + url_encode(target) + "/ban";
      done = "unbanned " + target;
      action = "unban";
      break;
    case AdminAction::kKick:
      path = "/v1/admin/clients/" + url_encode(target) + "/kick";
      done = "kicked " + target;
      action = "kick";
      break;
    case AdminAction::kRevoke:
      path = "/v1/admin/tokens/" + url_encode(target) + "/revoke";
      done = "revoked token " + target;
      action = "revoke";
      break;
    default:
      return kExitUsage;
  }
  RestCall c = rest_call(ctx, credentials, method, path);
  if (!c.ok()) return c.exit_status;
  if (action == "revoke") {
    const auto& closed = json_field(c.response->json, "closed");
    if (closed.is_array()) done += "; connections closed: " + std::to_string(closed.size());
  }
  if (ctx.out.json()) {
    ctx.out.json_line({{"action", action}, {"target", target}});
  } else {
    ctx.out.line(done);
  }
  return kExitOk;
}

// POST /v1/admin/backups: DIR is a path on the server, sent as given (the
// server refuses a relative one).
int admin_backup(Context& ctx, Credentials& credentials) {
  const nlohmann::json body{{"dir", ctx.command_line.args.at(0)}};
  ctx.api.set_read_timeout(std::chrono::hours(1));  // the server copies media meanwhile
  RestCall c = rest_call(ctx, credentials, "POST", "/v1/admin/backups", &body);
  if (!c.ok()) return c.exit_status;
  const auto& m = c.response->json;
  if (ctx.out.json()) {
    ctx.out.json_line(m);
    return kExitOk;
  }
  const auto& archive = json_field(m, "archive");
  const auto& media = json_field(json_field(m, "components"), "media");
  ctx.out.line("backup written to " + sanitize_for_terminal(json_string(m, "dir")) + " in " +
               std::to_string(int_field(m, "duration_ms")) + " ms");
  ctx.out.line("newest message " + sanitize_for_terminal(json_string(archive, "max_id")) +
               " (archive checkpoint " + std::to_string(int_field(archive, "checkpoint_ms")) +
               " ms)");
  ctx.out.line("media files " + std::to_string(int_field(media, "files")) + " (" +
               std::to_string(int_field(media, "bytes")) + " bytes)");
  return kExitOk;
}

// Local: no login needed, the data directory is on this machine.
int admin_restore(Context& ctx) {
  RestoreOptions options;
  options.backup_dir = ctx.command_line.args.at(0);
  if (ctx.command_line.data_dir) {
    options.data_dir = *ctx.command_line.data_dir;
  } else if (auto env = ctx.env("CHAT_DATA_DIR")) {
    options.data_dir = *env;
  } else {
    ctx.out.error("usage", "admin restore: give --data-dir DIR or set CHAT_DATA_DIR");
    return kExitUsage;
  }
  options.force = ctx.command_line.force;
  options.now_ms = ctx.clock.now_ms();
  auto report = restore_backup(options);
  if (!report) return fail(ctx, report.status());
  const auto& m = report->manifest;
  if (ctx.out.json()) {
    ctx.out.json_line({{"restored", options.backup_dir},
                       {"data_dir", options.data_dir},
                       {"moved_aside", report->moved_aside},
                       {"files", report->files},
                       {"bytes", report->bytes},
                       {"created", json_string(m, "created")},
                       {"max_id", json_string(json_field(m, "archive"), "max_id")}});
    return kExitOk;
  }
  ctx.out.line("restored " + options.backup_dir + " (taken " +
               sanitize_for_terminal(json_string(m, "created")) + ", newest message " +
               sanitize_for_terminal(json_string(json_field(m, "archive"), "max_id")) + ") into " +
               options.data_dir + ": " + std::to_string(report->files) + " files, " +
               std::to_string(report->bytes) + " bytes");
  if (!report->moved_aside.empty()) {
    ctx.out.line("the previous data is in " + report->moved_aside);
  }
  ctx.out.note("start the stack on it (make run / scripts/run)");
  return kExitOk;
}

}  // namespace

int run_admin(Context& ctx) {
  if (ctx.command_line.admin_action == AdminAction::kRestore) return admin_restore(ctx);
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  switch (ctx.command_line.admin_action) {
    case AdminAction::kUsers:
      return admin_users(ctx, credentials);
    case AdminAction::kClients:
      return admin_clients(ctx, credentials);
    case AdminAction::kStats:
      return admin_stats(ctx, credentials);
    case AdminAction::kBan:
    case AdminAction::kUnban:
    case AdminAction::kKick:
    case AdminAction::kRevoke:
      return admin_change(ctx, credentials);
    case AdminAction::kBackup:
      return admin_backup(ctx, credentials);
    case AdminAction::kRestore:  // handled above
      break;
    case AdminAction::kNone:
      break;
  }
  ctx.out.error("usage",
                "usage: chatctl admin users|clients|stats|ban USER|unban USER|kick ID|revoke "
                "JTI|backup DIR|restore DIR");
  return kExitUsage;
}

}  // namespace chat::tools
