#include "chatctl/commands.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "chat/common/ids.h"
#include "chatctl/e2e_client.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
#include "chatctl/random_ids.h"
#include "chatctl/terminal.h"

namespace chat::tools {
namespace {

int usage_failure(Output& out, const std::string& message) {
  out.error("usage", message + " (see `chatctl help`)");
  return kExitUsage;
}

// --password, else $CHATCTL_PASSWORD, else asked on the terminal (twice when
// `confirm`).
Result<std::string> password_for(Context& ctx, std::string_view user, bool confirm) {
  if (ctx.command_line.password) return *ctx.command_line.password;
  if (auto env = ctx.env("CHATCTL_PASSWORD")) return *env;
  auto first = prompt_password("Password for " + std::string(user) + ": ");
  if (!first) {
    return invalid_argument(
        "no password: pass --password, set CHATCTL_PASSWORD, or run on a terminal");
  }
  if (!confirm) return first;
  auto second = prompt_password("Repeat the password: ");
  if (!second) return second.status();
  if (*first != *second) return invalid_argument("the passwords do not match");
  return first;
}

// `path` made absolute against the working directory ("" stays "").
std::string absolute_path(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  auto absolute = std::filesystem::absolute(path, ec);
  if (ec) return path;
  return absolute.lexically_normal().string();
}

// The body of a list answer: `key` must be an array.
Result<nlohmann::json> list_field(const ApiResponse& response, const char* key,
                                  std::string_view what) {
  const auto& list = json_field(response.json, key);
  if (!list.is_array()) {
    return internal_error("unexpected answer to " + std::string(what) + ": no \"" + key +
                          "\" list");
  }
  return list;
}

}  // namespace

int run_register(Context& ctx) {
  const std::string& user = ctx.command_line.args.at(0);
  if (!is_valid_user_id(user)) {
    return usage_failure(ctx.out, "'" + user +
                                      "' is not a valid user id (1-32 of a-z 0-9 _ . -, starting "
                                      "with a letter or digit)");
  }
  auto password = password_for(ctx, user, /*confirm=*/true);
  if (!password) return fail(ctx, password.status());

  auto response = ctx.api.create_user(user, *password);
  if (!response) return fail(ctx, response.status());
  if (response->ok()) {
    if (ctx.out.json()) {
      ctx.out.json_line({{"user", user}, {"registered", true}});
    } else {
      // The same servers for the login (it remembers them for the profile).
      // Shell-quoted, so the hint can be pasted as it is ('' for an empty --ca).
      auto quoted = [](const std::string& v) {
        std::string q = "'";
        for (char c : v) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
        return q + "'";
      };
      std::string servers;
      if (ctx.command_line.api) servers += " --api " + quoted(*ctx.command_line.api);
      if (ctx.command_line.mqtt) servers += " --mqtt " + quoted(*ctx.command_line.mqtt);
      if (ctx.command_line.ca_file) servers += " --ca " + quoted(*ctx.command_line.ca_file);
      ctx.out.line("registered " + user + " (next: chatctl" + servers + " login " + user + ")");
    }
    return kExitOk;
  }
  std::string detail = format_http_error(response->status, response->body);
  if (response->status == 409) {
    ctx.out.error("already_exists", "the user id '" + user + "' is already taken: " + detail);
    return kExitFailure;
  }
  if (response->status == 400) {
    ctx.out.error("invalid_argument",
                  "registration refused: " + detail + " (passwords need at least 8 characters)");
    return kExitFailure;
  }
  return fail(ctx, status_from_response(*response));
}

int run_login(Context& ctx) {
  const std::string& user = ctx.command_line.args.at(0);
  if (!is_valid_user_id(user))
    return usage_failure(ctx.out, "'" + user + "' is not a valid user id");
  auto password = password_for(ctx, user, /*confirm=*/false);
  if (!password) return fail(ctx, password.status());

  auto saved = ctx.store.update(user, /*create_missing=*/true, [&](Profile& p) -> Status {
    if (ctx.command_line.device) p.device = *ctx.command_line.device;
    if (p.device.empty()) p.device = new_device_id();
    auto response = ctx.api.password_grant(user, *password, p.device);
    if (!response) return response.status();
    if (response->status == 400 || response->status == 401) {
      // A locked account answers invalid_grant too (docs/api.md): say that
      // rather than "wrong password".
      const std::string detail = format_http_error(response->status, response->body);
      if (response->body.find("too many failed logins") != std::string::npos) {
        return unauthenticated("login refused for now: " + detail);
      }
      return unauthenticated("login failed: wrong user name or password (" + detail + ")");
    }
    auto grant = parse_token_grant(*response);
    if (!grant) return grant.status();
    apply_token_grant(*grant, ctx.clock.now_s(), &p);
    // Remember where: later commands for this profile need no --api/--mqtt/--ca.
    p.api = api_url_text(ctx.settings.api);
    p.mqtt = ctx.settings.mqtt_uri;
    p.ca_file = absolute_path(ctx.settings.ca_file);
    return Status::ok();
  });
  if (!saved) return fail(ctx, saved.status());
  Status s = ctx.store.set_current_user(user);
  if (!s.is_ok()) return fail(ctx, s);

  if (ctx.out.json()) {
    ctx.out.json_line({{"user", user},
                       {"device", saved->device},
                       {"expires_at", saved->access_expires_at},
                       {"api", saved->api},
                       {"mqtt", saved->mqtt},
                       {"ca", saved->ca_file}});
  } else {
    ctx.out.line("logged in as " + user + " at " + saved->api + " (MQTT " + saved->mqtt +
                 (saved->ca_file.empty() ? "" : ", CA " + saved->ca_file) + "; device " +
                 saved->device + ", token valid until " +
                 format_clock(saved->access_expires_at * 1000, true) + ")");
  }
  return kExitOk;
}

int run_logout(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  auto profile = ctx.store.load(*user);
  if (!profile && profile.status().code() != StatusCode::kNotFound)
    return fail(ctx, profile.status());
  if (!profile || !profile->logged_in()) {
    ctx.out.note("not logged in as " + *user);
    if (ctx.out.json()) ctx.out.json_line({{"user", *user}, {"logged_out", true}});
    return kExitOk;
  }

  // Revoke the refresh token the server knows now (a refresh may rotate it).
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  Status revoked;
  auto fresh = credentials.fresh();
  if (fresh) {
    auto response = ctx.api.revoke(fresh->refresh_token, fresh->access_token);
    if (!response) {
      revoked = response.status();
    } else if (!response->ok()) {
      revoked = status_from_response(*response);
    }
  } else if (fresh.status().code() != StatusCode::kUnauthenticated) {
    revoked = fresh.status();  // the server could not be asked
  }                            // else: the session was already dead on the server

  auto cleared = ctx.store.update(*user, /*create_missing=*/false, [](Profile& p) {
    p.forget_tokens();
    return Status::ok();
  });
  if (!cleared) return fail(ctx, cleared.status());

  if (!revoked.is_ok()) {
    ctx.out.error(status_code_name(revoked.code()),
                  "tokens removed from this computer, but the server did not confirm the "
                  "revocation: " +
                      revoked.message());
    return kExitFailure;
  }
  if (ctx.out.json()) {
    ctx.out.json_line({{"user", *user}, {"logged_out", true}});
  } else {
    ctx.out.line("logged out " + *user);
  }
  return kExitOk;
}

int run_token(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto profile = credentials.fresh();
  if (!profile) return fail(ctx, profile.status());
  if (ctx.out.json()) {
    ctx.out.json_line({{"user", *user},
                       {"access_token", profile->access_token},
                       {"expires_at", profile->access_expires_at}});
  } else {
    ctx.out.line(profile->access_token);
  }
  return kExitOk;
}

int run_history(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  const std::string& peer = ctx.command_line.args.at(0);
  auto conv = conversation_for(*user, peer);
  if (!conv) return usage_failure(ctx.out, conv.status().message());

  std::string path = "/v1/conversations/" + *conv + "/messages";
  std::string query;
  if (ctx.command_line.limit) query += "limit=" + std::to_string(*ctx.command_line.limit);
  if (ctx.command_line.before) {
    query +=
        (query.empty() ? "" : "&") + std::string("before=") + url_encode(*ctx.command_line.before);
  }
  if (!query.empty()) path += "?" + query;

  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto response = authed_get(ctx, credentials, path);
  if (!response) return fail(ctx, response.status());
  if (response->status == 403) {
    ctx.out.error("permission_denied", *user + " is not a participant of " + *conv);
    return kExitFailure;
  }
  if (!response->ok()) return fail(ctx, status_from_response(*response));
  auto messages = list_field(*response, "messages", "GET " + path);
  if (!messages) return fail(ctx, messages.status());

  // e2e messages: decrypted (or taken from the plaintext cache) by this
  // device's Signal state (e2e_client.h).
  std::optional<E2eClient> e2e;
  for (const auto& envelope : *messages) {
    if (json_string(envelope, "type") == "e2e") {
      if (!e2e) {
        auto device = e2e_device(ctx, credentials);
        if (!device) return fail(ctx, device.status());
        e2e.emplace(ctx, credentials, *device);
      }
      // Not live: history never answers reset requests (listen does, once).
      auto shown = e2e->show(envelope, /*with_date=*/true, /*live=*/false);
      if (ctx.out.json()) {
        ctx.out.json_line(shown.json);
      } else {
        ctx.out.line(shown.line);
      }
      continue;
    }
    if (ctx.out.json()) {
      ctx.out.json_line(envelope);
    } else {
      ctx.out.line(format_message_line(envelope, /*with_date=*/true));
    }
  }
  if (!ctx.out.json()) {
    if (messages->empty()) ctx.out.note("no messages");
    std::string next = json_string(response->json, "next");
    if (!next.empty() && !messages->empty()) {
      ctx.out.note("older messages: chatctl history " + peer + " --before " +
                   sanitize_for_terminal(next));
    }
  }
  return kExitOk;
}

int run_conversations(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto response = authed_get(ctx, credentials, "/v1/conversations");
  if (!response) return fail(ctx, response.status());
  if (!response->ok()) return fail(ctx, status_from_response(*response));
  auto conversations = list_field(*response, "conversations", "GET /v1/conversations");
  if (!conversations) return fail(ctx, conversations.status());
  for (const auto& conversation : *conversations) {
    if (ctx.out.json()) {
      ctx.out.json_line(conversation);
    } else {
      ctx.out.line(format_conversation_line(conversation));
    }
  }
  if (conversations->empty()) ctx.out.note("no conversations yet");
  return kExitOk;
}

int run_chatctl(const std::vector<std::string>& args, const EnvLookup& env, std::FILE* out,
                std::FILE* err, const Clock& clock) {
  auto command_line = parse_command_line(args);
  if (!command_line) {
    bool json = false;
    for (const auto& a : args) json = json || a == "--json";
    Output output(out, err, json);
    output.error("usage", command_line.status().message());
    std::fputs(("\n" + usage_text()).c_str(), err);
    return kExitUsage;
  }
  Output output(out, err, command_line->json);
  if (command_line->command == Command::kHelp) {
    std::fputs(usage_text().c_str(), out);
    std::fflush(out);
    return kExitOk;
  }
  // Options and environment first (a mistake there is a usage error); they
  // also say where the profiles are. Then again with the servers the
  // profile remembers, used where neither an option nor a variable says.
  auto settings = resolve_settings(*command_line, env);
  if (!settings) {
    output.error("usage", settings.status().message());
    return kExitUsage;
  }
  auto remembered = remembered_servers(ProfileStore(settings->home), *command_line);
  if (!remembered) {
    output.error(remembered.status());
    return kExitFailure;
  }
  settings = resolve_settings(*command_line, env, *remembered);
  if (!settings) {
    output.error(settings.status());
    return kExitFailure;
  }
  if (settings->ca_remembered && ::access(settings->ca_file.c_str(), R_OK) != 0) {
    output.error("invalid_argument", remembered->source + ": the remembered CA file " +
                                         settings->ca_file + " cannot be read (" +
                                         std::strerror(errno) +
                                         "); log in again with --ca FILE or fix the file");
    return kExitFailure;
  }
  Context ctx(std::move(*command_line), std::move(*settings), clock, output, env);
  switch (ctx.command_line.command) {
    case Command::kRegister:
      return run_register(ctx);
    case Command::kLogin:
      return run_login(ctx);
    case Command::kLogout:
      return run_logout(ctx);
    case Command::kSend:
      return run_send(ctx);
    case Command::kFetch:
      return run_fetch(ctx);
    case Command::kListen:
      return run_listen(ctx);
    case Command::kHistory:
      return run_history(ctx);
    case Command::kConversations:
      return run_conversations(ctx);
    case Command::kToken:
      return run_token(ctx);
    case Command::kGroup:
      return run_group(ctx);
    case Command::kRead:
      return run_read(ctx);
    case Command::kTyping:
      return run_typing(ctx);
    case Command::kBlock:
      return run_block(ctx, true);
    case Command::kUnblock:
      return run_block(ctx, false);
    case Command::kBlocks:
      return run_blocks(ctx);
    case Command::kAdmin:
      return run_admin(ctx);
    case Command::kDevices:
      return run_devices(ctx);
    case Command::kKeys:
      return run_keys(ctx);
    case Command::kVerify:
      return run_verify(ctx);
    case Command::kHelp:
      break;
  }
  return kExitOk;
}

int run_chatctl(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return run_chatctl(args, process_environment(), stdout, stderr, SystemClock::instance());
}

}  // namespace chat::tools
