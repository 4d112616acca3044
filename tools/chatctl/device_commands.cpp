// `chatctl devices ...`: the push targets of the profile's devices (REST only;
// docs/push.md).
#include <string>

#include "chatctl/commands.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"

namespace chat::tools {
namespace {

std::string device_line(const nlohmann::json& d) {
  std::string line = sanitize_for_terminal(json_string(d, "device")) + "  " +
                     sanitize_for_terminal(json_string(d, "platform"));
  const std::string hint = json_string(d, "token_hint");
  if (!hint.empty()) line += "  token " + sanitize_for_terminal(hint);
  return line;
}

int devices_list(Context& ctx, Credentials& credentials) {
  RestCall c = rest_call(ctx, credentials, "GET", "/v1/devices");
  if (!c.ok()) return c.exit_status;
  const auto& devices = json_field(c.response->json, "devices");
  if (!devices.is_array()) {
    return fail(ctx, internal_error("unexpected answer to GET /v1/devices: no \"devices\" list"));
  }
  for (const auto& d : devices) {
    if (ctx.out.json()) {
      ctx.out.json_line(d);
    } else {
      ctx.out.line(device_line(d));
    }
  }
  if (devices.empty()) {
    ctx.out.note(
        "no devices with push (register one: chatctl devices register --platform fcm --token T)");
  }
  return kExitOk;
}

}  // namespace

int run_devices(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  const auto& args = ctx.command_line.args;
  const std::string action = args.empty() ? "list" : args.front();
  if (action == "list") return devices_list(ctx, credentials);

  // register / unregister: this run's device unless one is named.
  std::string device;
  if (action == "unregister" && args.size() == 2) {
    device = args[1];
  } else {
    auto profile = credentials.fresh();
    if (!profile) return fail(ctx, profile.status());
    auto active = active_device(ctx, *profile);
    if (!active) return fail(ctx, active.status());
    device = *active;
  }
  if (action == "register") {
    nlohmann::json body = {{"device", device},
                           {"platform", *ctx.command_line.platform},
                           {"token", *ctx.command_line.push_token}};
    RestCall c = rest_call(ctx, credentials, "POST", "/v1/devices", &body);
    if (!c.ok()) return c.exit_status;
    if (ctx.out.json()) {
      ctx.out.json_line(c.response->json);
    } else {
      ctx.out.line("registered " + device_line(c.response->json));
    }
    return kExitOk;
  }
  RestCall c = rest_call(ctx, credentials, "DELETE", "/v1/devices/" + url_encode(device));
  if (!c.ok()) return c.exit_status;
  if (ctx.out.json()) {
    ctx.out.json_line({{"device", device}, {"unregistered", true}});
  } else {
    ctx.out.line("unregistered " + sanitize_for_terminal(device));
  }
  return kExitOk;
}

}  // namespace chat::tools
