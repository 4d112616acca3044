// `chatctl keys init|status|refill` and `chatctl verify USER [--confirm]`:
// this device's Signal keys in the key directory (docs/e2e.md), and safety
// numbers.
#include <algorithm>

#include "chat/common/base64.h"
#include "chatctl/commands.h"
#include "chatctl/e2e.h"
#include "chatctl/e2e_client.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"

namespace chat::tools {
namespace {

struct Setup {
  std::string user;
  std::unique_ptr<Credentials> credentials;
  std::unique_ptr<E2eClient> e2e;
};

Result<Setup> setup(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return user.status();
  Setup s;
  s.user = *user;
  s.credentials = std::make_unique<Credentials>(ctx.store, ctx.api, ctx.clock, *user);
  auto device = e2e_device(ctx, *s.credentials);
  if (!device) return device.status();
  s.e2e = std::make_unique<E2eClient>(ctx, *s.credentials, *device);
  return s;
}

std::string identity_public(const E2eClient& e2e) {
  std::string key;
  Status s = e2e.store().transact([&](E2eState& state) {
    key = state.identity_public;
    return Status::ok();
  });
  return s.is_ok() ? key : std::string();
}

// The identity keys of `user`'s devices in the directory, by device.
Result<std::vector<std::pair<std::string, std::string>>> directory_keys(Context& ctx,
                                                                        Credentials& credentials,
                                                                        const std::string& user) {
  auto r = authed_get(ctx, credentials, devices_path(user));
  if (!r) return r.status();
  if (r->status == 404) return not_found("no such user: " + user);
  if (!r->ok()) return status_from_response(*r);
  const auto& list = json_field(r->json, "devices");
  if (!list.is_array()) return internal_error("unexpected answer to GET " + devices_path(user));
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& d : list) {
    auto key = base64_decode_strict(json_string(d, "identity_key"));
    if (!key || key->empty() || json_string(d, "device").empty()) continue;
    out.emplace_back(json_string(d, "device"), std::move(*key));
  }
  return out;
}

}  // namespace

int run_keys(Context& ctx) {
  auto s = setup(ctx);
  if (!s) return fail(ctx, s.status());
  E2eClient& e2e = *s->e2e;
  const std::string& action = ctx.command_line.args.at(0);

  if (action == "init") {
    Status done = e2e.init_keys(ctx.command_line.force);
    if (!done.is_ok()) return fail(ctx, done);
    const std::string fingerprint = key_fingerprint(identity_public(e2e));
    if (ctx.out.json()) {
      ctx.out.json_line({{"device", e2e.my_name()},
                         {"fingerprint", fingerprint},
                         {"prekeys", kPrekeyBatch},
                         {"dir", e2e.store().dir()}});
    } else {
      ctx.out.line("keys made for " + e2e.my_name() + " (" + std::to_string(kPrekeyBatch) +
                   " one-time prekeys uploaded); identity " + fingerprint);
    }
    return kExitOk;
  }

  if (!e2e.has_keys()) {
    return fail(ctx, not_found("no keys on this device (" + e2e.my_name() +
                               "): run `chatctl keys init` first"));
  }
  if (action == "refill") {
    auto added = e2e.refill();
    if (!added) return fail(ctx, added.status());
    auto count = e2e.server_count();
    if (!count) return fail(ctx, count.status());
    if (ctx.out.json()) {
      ctx.out.json_line({{"device", e2e.my_name()}, {"uploaded", *added}, {"count", count->count}});
    } else {
      ctx.out.line("uploaded " + std::to_string(*added) + " one-time prekeys; the server has " +
                   std::to_string(count->count));
    }
    return kExitOk;
  }

  // status
  auto count = e2e.server_count();
  if (!count) return fail(ctx, count.status());
  const std::string fingerprint = key_fingerprint(identity_public(e2e));
  if (ctx.out.json()) {
    ctx.out.json_line({{"device", e2e.my_name()},
                       {"fingerprint", fingerprint},
                       {"count", count->count},
                       {"signed_prekey_id", count->signed_prekey_id},
                       {"dir", e2e.store().dir()}});
  } else {
    ctx.out.line("device   " + e2e.my_name());
    ctx.out.line("identity " + fingerprint);
    ctx.out.line("prekeys  " + std::to_string(count->count) + " one-time prekeys on the server" +
                 (count->count < kPrekeyLowWater ? " (low: chatctl keys refill)" : ""));
    ctx.out.line("store    " + e2e.store().dir());
  }
  return kExitOk;
}

int run_verify(Context& ctx) {
  auto s = setup(ctx);
  if (!s) return fail(ctx, s.status());
  E2eClient& e2e = *s->e2e;
  const std::string& peer = ctx.command_line.args.at(0);
  if (peer == s->user) return fail(ctx, invalid_argument("that is you: name the other person"));
  auto mine = directory_keys(ctx, *s->credentials, s->user);
  if (!mine) return fail(ctx, mine.status());
  auto theirs = directory_keys(ctx, *s->credentials, peer);
  if (!theirs) return fail(ctx, theirs.status());
  if (theirs->empty()) return fail(ctx, not_found(peer + " has no device with keys"));
  if (mine->empty()) return fail(ctx, not_found("you have no device with keys: chatctl keys init"));
  std::vector<std::string> my_keys, their_keys;
  for (const auto& [d, k] : *mine) my_keys.push_back(k);
  for (const auto& [d, k] : *theirs) their_keys.push_back(k);
  auto number = safety_number(s->user, my_keys, peer, their_keys);
  if (!number) return fail(ctx, number.status());

  // What this device has seen of them, and the confirmation: --confirm
  // marks exactly the keys of the number it shows, and refuses when that is
  // not the number `verify USER` showed last (their devices changed since).
  std::vector<nlohmann::json> devices;
  bool changed_since_shown = false;
  Status stored = e2e.store().transact([&](E2eState& state) -> Status {
    auto last = state.safety_numbers.find(peer);
    changed_since_shown = last != state.safety_numbers.end() && last->second != *number;
    const bool confirm = ctx.command_line.confirm && !changed_since_shown;
    state.safety_numbers[peer] = *number;
    state.safety_numbers_dirty = true;
    for (const auto& [device, key] : *theirs) {
      const std::string name = signal_name(peer, device);
      auto known = state.identities.find(name);
      if (confirm) {
        if (known != state.identities.end() && known->second.key != key) {
          state.delete_session(session_key(name, 1));  // it was another identity
        }
        state.identities[name] = {key, true};
        state.identities_dirty = true;
        known = state.identities.find(name);
      }
      bool verified =
          known != state.identities.end() && known->second.verified && known->second.key == key;
      devices.push_back(
          {{"device", device}, {"fingerprint", key_fingerprint(key)}, {"verified", verified}});
    }
    return Status::ok();
  });
  if (!stored.is_ok() && e2e.has_keys()) return fail(ctx, stored);

  const bool confirmed = ctx.command_line.confirm && !changed_since_shown;
  const Status refused = invalid_argument(
      "the safety number changed since `chatctl verify " + peer + "` showed it (" + peer +
      "'s or your devices changed): nothing marked; compare this one, then run --confirm again");
  const std::string grouped = group_digits(*number);
  if (ctx.out.json()) {
    ctx.out.json_line({{"user", peer},
                       {"safety_number", grouped},
                       {"devices", devices},
                       {"confirmed", confirmed}});
    if (ctx.command_line.confirm && !confirmed) return fail(ctx, refused);
    return kExitOk;
  }
  ctx.out.line("safety number of " + s->user + " and " + peer + ":");
  ctx.out.line("  " + grouped.substr(0, 23));
  ctx.out.line("  " + grouped.substr(24, 23));
  ctx.out.line("  " + grouped.substr(48));
  for (const auto& d : devices) {
    ctx.out.line("  " + peer + ":" + json_string(d, "device") + "  " +
                 json_string(d, "fingerprint") + (d["verified"] == true ? "  verified" : ""));
  }
  if (ctx.command_line.confirm && !confirmed) return fail(ctx, refused);
  if (confirmed) {
    ctx.out.line("marked " + std::to_string(devices.size()) + " device" +
                 (devices.size() == 1 ? "" : "s") + " of " + peer + " as verified");
  } else {
    ctx.out.note("compare it with " + peer +
                 " (in person or on a call); if it matches: chatctl verify " + peer + " --confirm");
  }
  return kExitOk;
}

}  // namespace chat::tools
