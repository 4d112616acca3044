// `chatctl group ...`, `block`, `unblock` and `blocks`: REST only.
#include <string>

#include "chatctl/commands.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"

namespace chat::tools {
namespace {

// The group object of an answer: the body itself, or its "group" member.
const nlohmann::json& group_of(const nlohmann::json& body) {
  const auto& inner = json_field(body, "group");
  return inner.is_object() ? inner : body;
}

std::string group_path(const std::string& gid) { return "/v1/groups/" + url_encode(gid); }

int group_create(Context& ctx, Credentials& credentials) {
  const auto& args = ctx.command_line.args;
  std::string name = args.at(0);
  for (size_t i = 1; i < args.size(); ++i) name += " " + args[i];
  nlohmann::json body = {{"name", name}, {"members", ctx.command_line.members}};
  RestCall c = rest_call(ctx, credentials, "POST", "/v1/groups", &body);
  if (!c.ok()) return c.exit_status;
  const auto& group = group_of(c.response->json);
  std::string gid = json_string(group, "id");
  if (gid.empty()) {
    return fail(ctx, internal_error("the server created the group but did not say its id: " +
                                    format_http_error(c.response->status, c.response->body)));
  }
  if (ctx.out.json()) {
    ctx.out.json_line(group);
  } else {
    // The id alone on stdout, for GID=$(chatctl group create ...).
    ctx.out.line(sanitize_for_terminal(gid));
    ctx.out.note("created " + format_group_line(group, credentials.user()));
  }
  return kExitOk;
}

// add / remove / leave / admin: one call answered with 204 (or the group).
int group_change(Context& ctx, Credentials& credentials) {
  const auto& args = ctx.command_line.args;
  const std::string& gid = args.at(0);
  const std::string& me = credentials.user();
  std::string user = args.size() > 1 ? args[1] : me;
  std::string method, path, done, action;
  switch (ctx.command_line.group_action) {
    case GroupAction::kAdd:
      method = "PUT";
      path = group_path(gid) + "/members/" + url_encode(user);
      done = "added " + user + " to g:" + gid;
      action = "member_added";
      break;
    case GroupAction::kRemove:
    case GroupAction::kLeave:
      method = "DELETE";
      path = group_path(gid) + "/members/" + url_encode(user);
      done = user == me ? "left g:" + gid : "removed " + user + " from g:" + gid;
      action = "member_removed";
      break;
    case GroupAction::kAdmin:
      method = "PUT";
      path = group_path(gid) + "/admins/" + url_encode(user);
      done = user + " is now an admin of g:" + gid;
      action = "admin_added";
      break;
    default:
      return kExitUsage;
  }
  RestCall c = rest_call(ctx, credentials, method, path);
  if (!c.ok()) return c.exit_status;
  if (ctx.out.json()) {
    ctx.out.json_line({{"group", gid}, {"action", action}, {"user", user}, {"by", me}});
  } else {
    ctx.out.line(done);
  }
  return kExitOk;
}

int group_list(Context& ctx, Credentials& credentials) {
  RestCall c = rest_call(ctx, credentials, "GET", "/v1/groups");
  if (!c.ok()) return c.exit_status;
  const auto& groups = json_field(c.response->json, "groups");
  if (!groups.is_array()) {
    return fail(ctx, internal_error("unexpected answer to GET /v1/groups: no \"groups\" list"));
  }
  for (const auto& group : groups) {
    if (ctx.out.json()) {
      ctx.out.json_line(group);
    } else {
      ctx.out.line(format_group_line(group, credentials.user()));
    }
  }
  if (groups.empty()) ctx.out.note("no groups (create one: chatctl group create NAME)");
  return kExitOk;
}

int group_show(Context& ctx, Credentials& credentials) {
  const std::string& gid = ctx.command_line.args.at(0);
  RestCall c = rest_call(ctx, credentials, "GET", group_path(gid));
  if (!c.ok()) return c.exit_status;
  const auto& group = group_of(c.response->json);
  if (ctx.out.json()) {
    ctx.out.json_line(group);
  } else {
    ctx.out.line(format_group_details(group, credentials.user()));
  }
  return kExitOk;
}

}  // namespace

int run_group(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  switch (ctx.command_line.group_action) {
    case GroupAction::kCreate:
      return group_create(ctx, credentials);
    case GroupAction::kAdd:
    case GroupAction::kRemove:
    case GroupAction::kLeave:
    case GroupAction::kAdmin:
      return group_change(ctx, credentials);
    case GroupAction::kList:
      return group_list(ctx, credentials);
    case GroupAction::kShow:
      return group_show(ctx, credentials);
    case GroupAction::kNone:
      break;
  }
  ctx.out.error("usage", "usage: chatctl group create|add|remove|leave|admin|list|show ...");
  return kExitUsage;
}

int run_block(Context& ctx, bool block) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  const std::string& peer = ctx.command_line.args.at(0);
  RestCall c =
      rest_call(ctx, credentials, block ? "POST" : "DELETE", "/v1/blocks/" + url_encode(peer));
  if (!c.ok()) return c.exit_status;
  if (ctx.out.json()) {
    ctx.out.json_line({{"user", peer}, {"blocked", block}});
  } else {
    ctx.out.line((block ? "blocked " : "unblocked ") + peer);
  }
  return kExitOk;
}

int run_blocks(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  RestCall c = rest_call(ctx, credentials, "GET", "/v1/blocks");
  if (!c.ok()) return c.exit_status;
  // {"blocked":[...]}; older drafts said "blocks".
  const auto* list = &json_field(c.response->json, "blocked");
  if (!list->is_array()) list = &json_field(c.response->json, "blocks");
  if (!list->is_array()) {
    return fail(ctx, internal_error("unexpected answer to GET /v1/blocks: no \"blocked\" list"));
  }
  for (const auto& item : *list) {
    std::string peer = item.is_string() ? item.get<std::string>() : json_string(item, "user");
    if (peer.empty()) continue;
    if (ctx.out.json()) {
      ctx.out.json_line({{"user", peer}, {"blocked", true}});
    } else {
      ctx.out.line(sanitize_for_terminal(peer));
    }
  }
  if (list->empty()) ctx.out.note("you block nobody");
  return kExitOk;
}

}  // namespace chat::tools
