#include "chatctl/e2e_client.h"

#include <algorithm>
#include <set>

#include "chat/common/base64.h"
#include "chat/common/ids.h"
#include "chat/common/topics.h"
#include "chatctl/commands.h"
#include "chatctl/e2e.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
#include "chatctl/random_ids.h"

namespace chat::tools {
namespace {

nlohmann::json& table(E2eState& state, const char* name) {
  if (!state.messages.is_object()) state.messages = nlohmann::json::object();
  auto& t = state.messages[name];
  if (!t.is_object()) t = nlohmann::json::object();
  return t;
}

// Caches `entry` under `key` in by_id or by_cid, with an insertion number.
void cache(E2eState& state, const char* name, const std::string& key, nlohmann::json entry) {
  int64_t seq = json_int(state.messages, "seq") + 1;
  state.messages["seq"] = seq;
  entry["n"] = seq;
  table(state, name)[key] = std::move(entry);
  state.messages_dirty = true;
}

const nlohmann::json* cached(E2eState& state, const char* name, const std::string& key) {
  auto& t = table(state, name);
  auto it = t.find(key);
  return it == t.end() ? nullptr : &*it;
}

// Why an incoming ciphertext (or sender key message) `what` was not opened:
// it is not the standard base64 of docs/e2e.md.
Status not_base64(const char* what) {
  return invalid_argument(std::string("base64: ") + what + " is not standard base64 with padding");
}

std::string stamp(int64_t ts, bool with_date) { return "[" + format_clock(ts, with_date) + "] "; }

// The topic of a conversation id seen from `me`: dm/<other> or g/<gid>.
Result<std::string> topic_of(const std::string& me, const std::string& conv) {
  auto parsed = topics::parse_conversation(conv);
  if (parsed.kind == topics::ConvKind::kGroup) return topics::group(parsed.gid);
  if (parsed.kind == topics::ConvKind::kDirect) {
    return topics::direct(parsed.a == me ? parsed.b : parsed.a);
  }
  return invalid_argument("not a conversation: " + conv);
}

Status from_response(const Result<ApiResponse>& r) {
  if (!r) return r.status();
  if (!r->ok()) return status_from_response(*r);
  return Status::ok();
}

// A decrypted payload: {"t":...} (docs/e2e.md "Plaintext").
nlohmann::json parse_plaintext(const std::string& bytes) {
  auto j = parse_json(bytes);
  if (!j.is_object() || !json_field(j, "t").is_string()) return nlohmann::json();
  return j;
}

}  // namespace

std::string devices_path(const std::string& user) {
  return "/v1/users/" + url_encode(user) + "/devices";
}

Result<std::string> e2e_device(Context& ctx, Credentials& credentials) {
  auto profile = credentials.fresh();
  if (!profile) return profile.status();
  auto device = active_device(ctx, *profile);
  if (!device) return device.status();
  return device->substr(0, 61) + "-tx";
}

E2eClient::E2eClient(Context& ctx, Credentials& credentials, std::string device)
    : ctx_(ctx),
      credentials_(credentials),
      device_(std::move(device)),
      store_(E2eStore::dir_for(ctx.settings.home, credentials.user(), device_)) {}

std::string E2eClient::my_name() const { return signal_name(credentials_.user(), device_); }

void E2eClient::print_warnings(std::vector<std::string>& warnings) {
  for (const auto& w : warnings) ctx_.out.warn(sanitize_for_terminal(w));
  warnings.clear();
}

// --- keys ----------------------------------------------------------------------

Status E2eClient::init_keys(bool force) {
  if (store_.exists() && !force) {
    return already_exists("this device (" + my_name() +
                          ") already has keys; `chatctl keys init --force` makes a new device "
                          "identity (everyone sees a new device)");
  }
  if (force) {
    auto removed =
        authed_request(ctx_, credentials_, "DELETE", "/v1/keys/" + url_encode(device_), nullptr);
    if (!removed) return removed.status();
    if (!removed->ok() && removed->status != 404) return status_from_response(*removed);
    Status s = store_.wipe();
    if (!s.is_ok()) return s;
  }
  return store_.transact([&](E2eState& state) -> Status {
    Status s = generate_identity(state, ctx_.clock.now_ms());
    if (!s.is_ok()) return s;
    auto ids = generate_prekeys(state, kPrekeyBatch);
    if (!ids) return ids.status();
    auto body = key_upload_body(state, device_, /*with_identity=*/true, *ids);
    if (!body) return body.status();
    auto r = authed_request(ctx_, credentials_, "PUT", "/v1/keys", &*body);
    if (r && r->status == 409) {
      return already_exists("the key directory already holds another identity for " + my_name() +
                            " (keys made elsewhere, or this store was lost): `chatctl keys init "
                            "--force` replaces it");
    }
    return from_response(r);
  });
}

Result<PrekeyCount> E2eClient::server_count() {
  auto r = authed_get(ctx_, credentials_, "/v1/keys/count?device=" + url_encode(device_));
  Status s = from_response(r);
  if (!s.is_ok()) return s;
  const auto& count = json_field(r->json, "count");
  if (!count.is_number_integer()) {
    return internal_error("unexpected answer to GET /v1/keys/count: no \"count\"");
  }
  return PrekeyCount{count.get<int64_t>(), json_int(r->json, "signed_prekey_id")};
}

Result<int> E2eClient::refill() {
  if (!has_keys()) return not_found("no keys on this device: run `chatctl keys init` first");
  auto count = server_count();
  if (!count) return count.status();
  int missing = kPrekeyBatch - static_cast<int>(std::min<int64_t>(count->count, kPrekeyBatch));
  if (missing <= 0) return 0;
  Status s = store_.transact([&](E2eState& state) -> Status {
    auto ids = generate_prekeys(state, missing);
    if (!ids) return ids.status();
    auto body = key_upload_body(state, device_, /*with_identity=*/false, *ids);
    if (!body) return body.status();
    return from_response(authed_request(ctx_, credentials_, "PUT", "/v1/keys", &*body));
  });
  if (!s.is_ok()) return s;
  return missing;
}

void E2eClient::top_up_if_low() {
  if (!has_keys()) return;
  auto count = server_count();
  if (!count) {
    ctx_.out.warn("cannot count this device's prekeys: " + count.status().message());
    return;
  }
  if (count->count >= kPrekeyLowWater) return;
  auto added = refill();
  if (!added) {
    ctx_.out.warn("cannot top up this device's prekeys: " + added.status().message());
  } else if (*added > 0) {
    ctx_.out.note("uploaded " + std::to_string(*added) + " new one-time prekeys");
  }
}

// --- sending -------------------------------------------------------------------

Result<std::vector<E2eClient::Target>> E2eClient::devices_of(const std::string& user) {
  auto r = authed_get(ctx_, credentials_, devices_path(user));
  if (r && r->status == 404) return not_found("no such user: " + user);
  Status s = from_response(r);
  if (!s.is_ok()) return s;
  const auto& list = json_field(r->json, "devices");
  if (!list.is_array()) {
    return internal_error("unexpected answer to GET " + devices_path(user) + ": no \"devices\"");
  }
  std::vector<Target> out;
  for (const auto& d : list) {
    Target t;
    t.user = user;
    t.device = json_string(d, "device");
    auto key = base64_decode_strict(json_string(d, "identity_key"));
    if (!is_valid_device_id(t.device) || !key || key->empty()) {
      ctx_.out.warn("ignored a malformed device of " + user + " in the key directory");
      continue;
    }
    t.identity_key = std::move(*key);
    const auto& caps = json_field(d, "capabilities");
    if (caps.is_array()) {
      for (const auto& c : caps) t.sender_keys = t.sender_keys || c == "sender_keys";
    }
    out.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<std::string>> E2eClient::group_members(const std::string& gid) {
  auto r = authed_get(ctx_, credentials_, "/v1/groups/" + url_encode(gid));
  Status s = from_response(r);
  if (!s.is_ok()) return s;
  const auto& inner = json_field(r->json, "group");
  const auto& group = inner.is_object() ? inner : r->json;
  const auto& members = json_field(group, "members");
  if (!members.is_array()) return internal_error("unexpected answer to GET /v1/groups/" + gid);
  std::vector<std::string> out;
  for (const auto& m : members) {
    if (m.is_string() && is_valid_user_id(m.get<std::string>())) {
      out.push_back(m.get<std::string>());
    }
  }
  return out;
}

// The claim answer's device entry for `device`.
Result<nlohmann::json> E2eClient::claim(const std::string& user, const std::string& device) {
  const std::string path = "/v1/keys/" + url_encode(user) + "?device=" + url_encode(device);
  auto r = authed_get(ctx_, credentials_, path);
  Status s = from_response(r);
  if (!s.is_ok()) return s;
  const auto& list = json_field(r->json, "devices");
  if (list.is_array()) {
    for (const auto& d : list) {
      if (json_string(d, "device") == device) return d;
    }
  }
  return not_found(user + ":" + device + " is no longer in the key directory");
}

Result<nlohmann::json> E2eClient::seal_text(const std::string& peer, const std::string& text,
                                            const std::string& cid, const std::string& resend_of) {
  if (!has_keys()) return not_found("no keys on this device: run `chatctl keys init` first");
  const std::string me = credentials_.user();
  const bool group = peer.rfind("g:", 0) == 0;
  std::vector<std::string> users;
  if (group) {
    auto members = group_members(peer.substr(2));
    if (!members) return members.status();
    users = std::move(*members);
    if (std::find(users.begin(), users.end(), me) == users.end()) users.push_back(me);
  } else {
    users = {peer};
    if (peer != me) users.push_back(me);
  }
  auto conv = conversation_for(me, peer);
  if (!conv) return conv.status();

  std::vector<Target> targets;
  bool all_sender_keys = true;
  for (const auto& user : users) {
    auto devices = devices_of(user);
    if (!devices) return devices.status();
    size_t before = targets.size();
    for (auto& t : *devices) {
      if (t.user == me && t.device == device_) continue;
      all_sender_keys = all_sender_keys && t.sender_keys;
      targets.push_back(std::move(t));
    }
    if (user != me && targets.size() == before) {
      if (!group) {
        return not_found(user +
                         " has no device with keys: they need `chatctl keys init` (or the web "
                         "client) before they can receive encrypted messages");
      }
      ctx_.out.warn(user + " has no device with keys and will not be able to read this");
    }
  }
  const bool use_sender_keys = group && all_sender_keys && !targets.empty();

  nlohmann::json plaintext = {{"t", "text"}, {"text", text}};
  if (!resend_of.empty()) plaintext["resend_of"] = resend_of;
  const std::string plain = plaintext.dump();
  const std::string my = my_name();
  nlohmann::json body = nlohmann::json::object();
  std::vector<std::string> warnings;
  Status s = store_.transact([&](E2eState& state) -> Status {
    nlohmann::json to = nlohmann::json::object();
    std::vector<Target> reachable;
    std::set<std::string> stale_names;  // a new identity since this device last saw them
    for (const auto& t : targets) {
      const std::string name = t.name();
      auto known = state.identities.find(name);
      bool stale = known != state.identities.end() && known->second.key != t.identity_key;
      if (stale) stale_names.insert(name);
      if (has_session(state, name) && !stale) {
        reachable.push_back(t);
        continue;
      }
      auto entry = claim(t.user, t.device);
      Result<PreKeyBundle> bundle =
          entry ? parse_bundle(t.user, *entry) : Result<PreKeyBundle>(entry.status());
      if (bundle) {
        if (stale) state.delete_session(session_key(name, 1));
        Status built = process_bundle(state, *bundle);
        if (built.is_ok()) {
          reachable.push_back(t);
          continue;
        }
        bundle = built;
      }
      ctx_.out.warn("cannot start a session with " + name + ": " + bundle.status().message() +
                    " (it will not be able to read this)");
    }
    if (reachable.empty()) {
      return not_found("no device to encrypt for: nobody else in " + *conv +
                       " has keys (chatctl keys init, or the web client)");
    }
    if (!group && peer != me &&
        std::none_of(reachable.begin(), reachable.end(),
                     [&](const Target& t) { return t.user == peer; })) {
      return unavailable("no device of " + peer + " could be reached: nothing sent");
    }
    // Who can read it: the devices it is encrypted for (for a sender-key
    // message, every holder of the key). Only they may ask for it again.
    std::set<std::string> recipients;
    if (use_sender_keys) {
      const std::string& g = *conv;
      std::set<std::string> names;
      for (const auto& t : reachable) names.insert(t.name());
      // A device that held the key is gone (a member left, a device was
      // removed) or has another identity now: a new key, which it never gets.
      const auto& holders = state.sender_key_holders[g];
      bool rotate = std::any_of(holders.begin(), holders.end(), [&](const std::string& h) {
        return !names.count(h) || stale_names.count(h);
      });
      if (rotate) forget_sender_key(state, g, my);
      auto skdm = sender_key_distribution(state, g, my);
      if (!skdm) return skdm.status();
      const std::string skdm_plain =
          nlohmann::json{{"t", "skdm"}, {"skdm", base64_encode(*skdm)}}.dump();
      auto& owed = state.sender_key_holders[g];
      for (const auto& t : reachable) {
        if (owed.count(t.name())) continue;
        auto ct = encrypt_to(state, t.name(), skdm_plain);
        if (!ct) return ct.status();
        to[t.name()] = {{"type", ct->type}, {"body", base64_encode(ct->body)}};
        owed.insert(t.name());
      }
      recipients = owed;
      state.sender_keys_dirty = true;
      auto sealed = group_encrypt(state, g, my, plain);
      if (!sealed) return sealed.status();
      body["group"] = base64_encode(*sealed);
    } else {
      for (const auto& t : reachable) {
        auto ct = encrypt_to(state, t.name(), plain);
        if (!ct) return ct.status();
        to[t.name()] = {{"type", ct->type}, {"body", base64_encode(ct->body)}};
        recipients.insert(t.name());
      }
    }
    if (!to.empty() || !body.contains("group")) body["to"] = std::move(to);
    nlohmann::json entry = {
        {"text", text}, {"sent", true}, {"from", my}, {"conv", *conv}, {"recipients", recipients}};
    if (!resend_of.empty()) entry["resend_of"] = resend_of;
    cache(state, "by_cid", cid, std::move(entry));
    warnings = std::move(state.warnings);
    return Status::ok();
  });
  print_warnings(warnings);
  if (!s.is_ok()) return s;
  return body;
}

void E2eClient::sent(const std::string& cid, const nlohmann::json& envelope) {
  const std::string id = json_string(envelope, "id");
  if (id.empty() || !has_keys()) return;
  Status s = store_.transact([&](E2eState& state) -> Status {
    const nlohmann::json* entry = cached(state, "by_cid", cid);
    if (entry == nullptr) return Status::ok();
    nlohmann::json copy = *entry;
    table(state, "by_cid").erase(cid);
    cache(state, "by_id", id, std::move(copy));
    return Status::ok();
  });
  if (!s.is_ok()) ctx_.out.warn("cannot keep the sent message: " + s.message());
}

Status E2eClient::publish(const std::string& conv, const nlohmann::json& body,
                          const std::string& cid) {
  auto topic = topic_of(credentials_.user(), conv);
  if (!topic) return topic.status();
  auto envelope = publisher_
                      ? publisher_(*topic, body, cid)
                      : send_one_message(ctx_, credentials_, device_, *topic, "e2e", body, cid);
  if (!envelope) return envelope.status();
  sent(cid, *envelope);
  return Status::ok();
}

// --- receiving -----------------------------------------------------------------

Status E2eClient::request_reset(const std::string& user, const std::string& device,
                                const std::string& conv, const std::string& failed_id) {
  auto entry = claim(user, device);
  if (!entry) return entry.status();
  auto bundle = parse_bundle(user, *entry);
  if (!bundle) return bundle.status();
  const std::string name = signal_name(user, device);
  const std::string cid = new_message_cid(ctx_.clock.now_ms());
  nlohmann::json body;
  std::vector<std::string> warnings;
  Status s = store_.transact([&](E2eState& state) -> Status {
    state.delete_session(session_key(name, 1));
    Status built = process_bundle(state, *bundle);
    if (!built.is_ok()) return built;
    auto ct = encrypt_to(state, name, nlohmann::json{{"t", "reset"}, {"failed", failed_id}}.dump());
    if (!ct) return ct.status();
    body = {{"to", {{name, {{"type", ct->type}, {"body", base64_encode(ct->body)}}}}}};
    cache(state, "by_cid", cid, {{"control", "reset"}, {"from", my_name()}, {"conv", conv}});
    warnings = std::move(state.warnings);
    return Status::ok();
  });
  print_warnings(warnings);
  if (!s.is_ok()) return s;
  return publish(conv, body, cid);
}

Status E2eClient::answer_reset(const std::string& reset_id, const std::string& requester,
                               const std::string& failed_id, const std::string& conv) {
  const std::string cid = new_message_cid(ctx_.clock.now_ms());
  nlohmann::json body;
  Status refused;
  Status s = store_.transact([&](E2eState& state) -> Status {
    // Answered once, whatever the outcome: a request is never replayed.
    if (!reset_id.empty()) {
      auto& entry = table(state, "by_id")[reset_id];
      if (entry.is_object()) {
        entry["answered"] = true;
        state.messages_dirty = true;
      }
    }
    // It lost our sender key too, if it had it: the next group message
    // carries the current one for it (it is a member, or it is no target).
    auto holders = state.sender_key_holders.find(conv);
    if (holders != state.sender_key_holders.end() && holders->second.erase(requester) > 0) {
      state.sender_keys_dirty = true;
    }
    const nlohmann::json* original = cached(state, "by_id", failed_id);
    if (original == nullptr || json_field(*original, "sent") != true) {
      refused = not_found("the plaintext of " + failed_id + " is not kept on this device");
      return Status::ok();
    }
    bool recipient = false;
    const auto& recipients = json_field(*original, "recipients");
    if (recipients.is_array()) {
      for (const auto& r : recipients) recipient = recipient || r == requester;
    }
    if (json_string(*original, "conv") != conv || !recipient) {
      refused = permission_denied(failed_id + " was not sent to that device in " + conv +
                                  ": not sent again");
      return Status::ok();
    }
    const std::string text = json_string(*original, "text");
    nlohmann::json plain = {{"t", "text"}, {"text", text}, {"resend_of", failed_id}};
    auto ct = encrypt_to(state, requester, plain.dump());
    if (!ct) return ct.status();
    body = {{"to", {{requester, {{"type", ct->type}, {"body", base64_encode(ct->body)}}}}}};
    cache(state, "by_cid", cid,
          {{"text", text},
           {"sent", true},
           {"from", my_name()},
           {"conv", conv},
           {"resend_of", failed_id},
           {"recipients", {requester}}});
    return Status::ok();
  });
  if (!s.is_ok()) return s;
  if (!refused.is_ok()) return refused;
  return publish(conv, body, cid);
}

E2eClient::Shown E2eClient::show(const nlohmann::json& envelope, bool with_date, bool live) {
  const std::string id = json_string(envelope, "id");
  const std::string from = json_string(envelope, "from");
  const std::string dev = json_string(envelope, "dev");
  const std::string conv = json_string(envelope, "conv");
  const std::string cid = json_string(envelope, "cid");
  const nlohmann::json& body = json_field(envelope, "body");
  const std::string sender = signal_name(from, dev);
  const std::string me = credentials_.user();
  const std::string my = my_name();

  // What happened, for the line and the JSON: status is ok, own, control,
  // not_for_this_device, no_keys, duplicate or failed.
  nlohmann::json info = {{"from", sender}};
  bool need_reset = false;
  std::vector<std::string> warnings;

  if (!has_keys()) {
    info["status"] = "no_keys";
  } else {
    Status s = store_.transact([&](E2eState& state) -> Status {
      auto remember = [&](const std::string& key, nlohmann::json entry) {
        info.update(entry);
        if (!key.empty()) cache(state, "by_id", key, std::move(entry));
      };
      if (const nlohmann::json* hit = id.empty() ? nullptr : cached(state, "by_id", id)) {
        info.update(*hit);
      } else if (from == me && dev == device_) {
        if (const nlohmann::json* mine = cached(state, "by_cid", cid)) {
          nlohmann::json copy = *mine;
          table(state, "by_cid").erase(cid);
          remember(id, copy);
        } else {
          info["status"] = "own_not_kept";
        }
      } else {
        const nlohmann::json& to = json_field(body, "to");
        const nlohmann::json& entry = json_field(to, my);
        const std::string group = json_string(body, "group");
        if (!entry.is_object() && group.empty()) {
          info["status"] = "not_for_this_device";
          return Status::ok();
        }
        nlohmann::json plain;
        Status failure;
        if (entry.is_object()) {
          auto bytes = base64_decode_strict(json_string(entry, "body"));
          auto opened =
              bytes ? decrypt_from(state, sender, static_cast<int>(json_int(entry, "type")), *bytes)
                    : Result<std::string>(not_base64("body"));
          if (opened) {
            plain = parse_plaintext(*opened);
            if (plain.is_null()) failure = invalid_argument("not a chatctl/web payload");
          } else {
            failure = opened.status();
          }
        }
        if (failure.is_ok() && json_string(plain, "t") == "skdm") {
          auto skdm = base64_decode_strict(json_string(plain, "skdm"));
          failure = skdm ? process_sender_key_distribution(state, conv, sender, *skdm)
                         : not_base64("skdm");
          plain = nlohmann::json();
        }
        if (failure.is_ok() && plain.is_null() && !group.empty()) {
          auto sealed = base64_decode_strict(group);
          auto opened = sealed ? group_decrypt(state, conv, sender, *sealed)
                               : Result<std::string>(not_base64("group"));
          if (opened) {
            plain = parse_plaintext(*opened);
            if (plain.is_null()) failure = invalid_argument("not a chatctl/web payload");
          } else {
            failure = opened.status();
          }
        }
        const std::string t = json_string(plain, "t");
        if (!failure.is_ok()) {
          if (failure.code() == StatusCode::kAlreadyExists) {
            info["status"] = "duplicate";
          } else {
            info["status"] = "failed";
            info["error"] = failure.message();
            // Once per sending device and run: two broken ends never ping-pong.
            need_reset = !dev.empty() && reset_requested_.insert(sender).second;
            remember(id, {{"status", "failed"},
                          {"error", failure.message()},
                          {"from", sender},
                          {"conv", conv}});
          }
        } else if (t == "text") {
          nlohmann::json e = {
              {"text", json_string(plain, "text")}, {"from", sender}, {"conv", conv}};
          const std::string resend_of = json_string(plain, "resend_of");
          if (!resend_of.empty()) {
            // It replaces the original only when that one failed here and
            // came from the same device in the same conversation; anything
            // else is an ordinary new message.
            const nlohmann::json* original = cached(state, "by_id", resend_of);
            if (original != nullptr && json_string(*original, "status") == "failed" &&
                json_string(*original, "from") == sender &&
                json_string(*original, "conv") == conv) {
              e["resend_of"] = resend_of;
              cache(state, "by_id", resend_of, e);  // the original's entry now has its text
            } else {
              state.warnings.push_back(sender + " says " + id + " is " + resend_of +
                                       " sent again, but that is no failed message of theirs here: "
                                       "shown as a new message");
            }
          }
          remember(id, std::move(e));
        } else if (t == "reset") {
          remember(id, {{"control", "reset"},
                        {"from", sender},
                        {"failed", json_string(plain, "failed")},
                        {"conv", conv},
                        {"answered", false}});
        } else if (t.empty()) {
          remember(id, {{"control", "skdm"}, {"from", sender}});
        } else {
          remember(id, {{"status", "unknown"}, {"from", sender}});
        }
      }
      auto known = state.identities.find(sender);
      info["verified"] = known != state.identities.end() && known->second.verified;
      warnings = std::move(state.warnings);
      return Status::ok();
    });
    if (!s.is_ok()) {
      info["status"] = "failed";
      info["error"] = s.message();
    }
  }
  print_warnings(warnings);
  if (need_reset) {
    Status s = request_reset(from, dev, conv, id);
    if (s.is_ok()) {
      ctx_.out.warn("could not decrypt " + id + " from " + sanitize_for_terminal(sender) +
                    ": asked that device for a new session and the message again");
    } else {
      ctx_.out.warn("could not decrypt " + id + " from " + sanitize_for_terminal(sender) +
                    ", and the session reset failed: " + s.message());
    }
  }
  // A reset request is answered live (listen), once: history replays old
  // requests, which must not send anything again.
  if (live && json_string(info, "control") == "reset" && json_field(info, "answered") == false) {
    const std::string requester = json_string(info, "from");
    const std::string failed = json_string(info, "failed");
    Status s = answer_reset(id, requester, failed, conv);
    info["answered"] = true;
    if (!s.is_ok()) {
      ctx_.out.warn(sanitize_for_terminal(requester) + " asked for a new session and " +
                    sanitize_for_terminal(failed) + " again: " + s.message());
    } else {
      ctx_.out.note("new session with " + sanitize_for_terminal(requester) + "; sent " +
                    sanitize_for_terminal(failed) + " again");
    }
  }

  Shown shown;
  if (!info.contains("status")) info["status"] = info.contains("control") ? "control" : "ok";
  const std::string status = json_string(info, "status");
  shown.counts = status != "control" && !info.contains("control");
  shown.json = envelope;
  info.erase("n");
  info.erase("sent");
  shown.json["e2e"] = info;

  std::string line = stamp(json_int(envelope, "ts"), with_date);
  if (conv.rfind("g:", 0) == 0) line += "[" + sanitize_for_terminal(conv) + "] ";
  line += sanitize_for_terminal(dev.empty() ? from : sender) + " -> " +
          sanitize_for_terminal(json_string(envelope, "to"));
  const bool verified = json_field(info, "verified") == true;
  std::string what;
  if (info.contains("text")) {
    line += from == me && dev == device_ ? " [e2e]"
            : verified                   ? " [e2e, verified]"
                                         : " [e2e, unverified]";
    what = sanitize_for_terminal(json_string(info, "text"));
    if (info.contains("resend_of"))
      what += " (sent again for " + json_string(info, "resend_of") + ")";
  } else if (json_string(info, "control") == "reset") {
    what = "[e2e: asked for a new session]";
  } else if (info.contains("control")) {
    what = "[e2e: group key]";
  } else if (status == "not_for_this_device") {
    what = "[encrypted, not for this device]";
  } else if (status == "no_keys") {
    what = "[encrypted, no keys on this device: chatctl keys init]";
  } else if (status == "duplicate") {
    what = "[encrypted, already decrypted on this device; plaintext not kept]";
  } else if (status == "own_not_kept") {
    what = "[encrypted, sent from this device; plaintext not kept]";
  } else {
    what =
        "[encrypted, could not decrypt: " + sanitize_for_terminal(json_string(info, "error")) + "]";
  }
  shown.line = line + ": " + what;
  return shown;
}

void E2eClient::on_group_event(const nlohmann::json& event) {
  const std::string gid = json_string(event, "group");
  if (json_string(event, "action") != "member_removed" || !is_valid_group_id(gid) || !has_keys()) {
    return;
  }
  Status s = store_.transact([&](E2eState& state) -> Status {
    const std::string group = "g:" + gid;
    if (state.sender_key_holders.count(group) ||
        state.sender_keys.count(group + "|" + session_key(my_name(), 1))) {
      forget_sender_key(state, group, my_name());
    }
    return Status::ok();
  });
  if (!s.is_ok()) ctx_.out.warn("group event: " + s.message());
}

std::string E2eClient::on_keys_event(const nlohmann::json& event, int64_t now_ms) {
  const std::string action = json_string(event, "action");
  const std::string user = json_string(event, "user");
  const std::string device = json_string(event, "device");
  const std::string name = signal_name(user, device);
  if (has_keys() && is_valid_user_id(user) && is_valid_device_id(device)) {
    std::vector<std::string> warnings;
    Status s = store_.transact([&](E2eState& state) -> Status {
      auto known = state.identities.find(name);
      auto key = base64_decode_strict(json_string(event, "identity_key"));
      bool changed = action == "device_added" && known != state.identities.end() && key &&
                     !key->empty() && known->second.key != *key;
      if (action == "device_removed" || changed) {
        state.delete_session(session_key(name, 1));
        // It holds this device's sender key of these groups: the next
        // message in them gets a new key, which it is not given.
        std::vector<std::string> groups;
        for (const auto& [group, holders] : state.sender_key_holders) {
          if (holders.count(name)) groups.push_back(group);
        }
        for (const auto& group : groups) forget_sender_key(state, group, my_name());
      }
      if (changed) {
        known->second = {*key, false};
        state.identities_dirty = true;
        state.warnings.push_back("the identity key of " + name +
                                 " changed (a new device identity); it is not verified: check it "
                                 "with chatctl verify " +
                                 user);
      }
      // A new device (or identity) of a user this device verified.
      bool is_new = known == state.identities.end() || changed;
      if (action == "device_added" && is_new && user != credentials_.user()) {
        unverify_user(state, user);
      }
      warnings = std::move(state.warnings);
      return Status::ok();
    });
    print_warnings(warnings);
    if (!s.is_ok()) ctx_.out.warn("keys event: " + s.message());
  }
  std::string what = action == "device_added"     ? "has a new device"
                     : action == "device_removed" ? "removed a device"
                                                  : "changed keys (" + action + ")";
  return "[" + format_clock(json_int(event, "ts", now_ms), false) + "] " +
         sanitize_for_terminal(user) + " " + sanitize_for_terminal(what) + ": " +
         sanitize_for_terminal(device);
}

}  // namespace chat::tools
