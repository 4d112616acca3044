// The admin API's logic (issue 5): accounts listing, bans, kicks, connected
// devices and counts. Contract: chat/api/service.h ("admin"). The HTTP edge
// (http_server.cpp) renders these and writes the audit log line.
//
// Where bans live: the broker's archive is the authority (the plugin refuses
// CONNECT and closes connections); chat-api keeps its own persisted flag
// (kBannedRole on the account) so grants and bearer requests are refused
// without a broker round-trip. The flag is set only after the broker
// confirmed the op, like user.remove: a failure in between leaves the broker
// stricter than the API, and repeating the request converges both.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "chat/api/service.h"
#include "chat/common/ids.h"

namespace chat::api {
namespace {

constexpr size_t kMaxJtiBytes = 256;

Status require_admin(const Principal& caller) {
  if (caller.has_role("admin")) return Status::ok();
  return permission_denied("the admin API needs the admin role");
}

}  // namespace

Result<AdminUserPage> Service::admin_users(const Principal& caller, std::string_view after,
                                           size_t limit) {
  if (Status s = require_admin(caller); !s.is_ok()) return s;
  if (!after.empty() && !is_valid_user_id(after)) return invalid_argument("after is not a user id");
  limit = std::clamp<size_t>(limit, 1, kMaxPageLimit);
  // One more than asked tells whether another page exists.
  auto accounts = accounts_.list_accounts(std::string(after), limit + 1);
  if (!accounts) return accounts.status();
  AdminUserPage page;
  for (const auto& a : *accounts) {
    if (page.users.size() == limit) {
      page.next = page.users.back().user;
      break;
    }
    AdminUser u;
    u.user = a.user;
    u.created_ms = a.created_ms;
    u.admin = config_.is_admin(a.user);
    u.banned = is_banned_account(a);
    u.deleted = is_deleted_account(a);
    page.users.push_back(std::move(u));
  }
  return page;
}

Status Service::admin_set_ban(const Principal& caller, std::string_view user, bool banned) {
  if (Status s = require_admin(caller); !s.is_ok()) return s;
  if (!is_valid_user_id(user)) {
    return invalid_argument("not a user id (^[a-z0-9][a-z0-9_.-]{0,31}$)");
  }
  if (config_.is_admin(user)) return permission_denied("a CHAT_ADMINS account cannot be banned");
  auto account = accounts_.get_account(std::string(user));
  if (!account) {
    if (account.status().code() == StatusCode::kNotFound) return not_found("no such user");
    return account.status();
  }
  if (is_deleted_account(*account)) return not_found("the account was deleted");

  auto answer = control_.call(
      {{"op", banned ? "user.ban" : "user.unban"}, {"user", std::string(user)}}, kControlTimeout);
  if (!answer) return answer.status();

  const bool flagged = is_banned_account(*account);
  if (flagged != banned) {
    auto& roles = account->roles;
    if (banned) {
      roles.emplace_back(kBannedRole);
    } else {
      roles.erase(std::remove(roles.begin(), roles.end(), std::string(kBannedRole)), roles.end());
    }
    if (Status s = accounts_.put_account(*account); !s.is_ok()) return s;
  }
  return Status::ok();
}

Status Service::admin_kick(const Principal& caller, std::string_view client_id) {
  if (Status s = require_admin(caller); !s.is_ok()) return s;
  std::string user, device;
  if (!split_client_id(client_id, &user, &device)) {
    return invalid_argument("not a client id (<user>:<device>)");
  }
  auto answer =
      control_.call({{"op", "client.kick"}, {"clientid", std::string(client_id)}}, kControlTimeout);
  if (!answer) return answer.status();
  return Status::ok();
}

Result<RevokedToken> Service::admin_revoke_token(const Principal& caller, std::string_view jti) {
  if (Status s = require_admin(caller); !s.is_ok()) return s;
  const bool printable = std::all_of(jti.begin(), jti.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
  if (jti.empty() || jti.size() > kMaxJtiBytes || !printable) {
    return invalid_argument("jti must be 1-256 printable ASCII characters");
  }
  RevokedToken out;
  out.jti = std::string(jti);
  // chat-api first: from here on the token and the refresh token issued with
  // it are refused, so a device the broker disconnects below cannot refresh
  // its way to a new token in between. exp unknown (the token may come from
  // an external provider): kept for good.
  if (Status s = accounts_.put_revoked(out.jti, 0); !s.is_ok()) return s;
  if (Status s = accounts_.revoke_refresh_by_access_jti(out.jti, &out.refresh_tokens_revoked);
      !s.is_ok()) {
    return s;
  }
  // Then the broker (the authority for MQTT): a failure here leaves chat-api
  // stricter than the broker, and repeating the request converges both.
  auto answer = control_.call({{"op", "token.revoke"}, {"jti", std::string(jti)}}, kControlTimeout);
  if (!answer) return answer.status();
  const nlohmann::json result = control_result(*answer);
  if (result.is_object() && result.contains("closed") && result["closed"].is_array()) {
    for (const auto& c : result["closed"]) {
      if (c.is_string()) out.closed.push_back(c.get<std::string>());
    }
  }
  return out;
}

Result<std::vector<ConnectedClient>> Service::admin_clients(const Principal& caller) {
  if (Status s = require_admin(caller); !s.is_ok()) return s;
  auto answer = control_.call({{"op", "client.list"}}, kControlTimeout);
  if (!answer) return answer.status();
  const nlohmann::json result = control_result(*answer);
  if (!result.is_object() || !result.contains("clients") || !result["clients"].is_array()) {
    return internal_error("the broker's client.list reply has no clients");
  }
  std::vector<ConnectedClient> out;
  for (const auto& c : result["clients"]) {
    if (!c.is_object()) continue;
    ConnectedClient client;
    client.client_id = c.value("clientid", "");
    client.user = c.value("user", "");
    client.device = c.value("device", "");
    client.connected_ms = c.value("connected_ms", int64_t{0});
    client.jti = c.value("jti", "");
    out.push_back(std::move(client));
  }
  return out;
}

Result<AdminStats> Service::admin_stats(const Principal& caller) {
  if (Status s = require_admin(caller); !s.is_ok()) return s;
  AdminStats stats;
  auto banned = accounts_.count_accounts(std::string(kBannedRole));
  if (!banned) return banned.status();
  auto deleted = accounts_.count_accounts(std::string(kDeletedRole));
  if (!deleted) return deleted.status();
  stats.deleted = deleted->with_role;
  stats.users = banned->total - stats.deleted;
  stats.banned = banned->with_role;
  auto clients = admin_clients(caller);
  if (!clients) return clients.status();
  stats.connected_clients = clients->size();
  stats.broker = control_.broker_stats();
  return stats;
}

}  // namespace chat::api
