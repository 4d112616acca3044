// KeyDirectory (key_directory.h): docs/e2e.md, "Key directory".
#include "chat/api/key_directory.h"

#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "chat/api/log.h"
#include "chat/api/service.h"
#include "chat/common/base64.h"
#include "chat/common/ids.h"
#include "chat/common/log_fields.h"
#include "chat/common/strict_json.h"

namespace chat::api {
namespace {

using nlohmann::json;

constexpr int kMaxUploadJsonDepth = 4;  // {"prekeys":[{...}]} is 3 deep

// A serialised Curve25519 public key in base64: its bytes, or an error naming `field`.
Result<std::string> decode_public_key(const json& value, const std::string& field) {
  if (!value.is_string()) return invalid_argument(field + " must be a base64 string");
  auto bytes = base64_decode_strict(value.get_ref<const std::string&>());
  if (!bytes) return invalid_argument(field + " is not standard base64 with padding");
  if (bytes->size() != kPublicKeyBytes || static_cast<unsigned char>((*bytes)[0]) != 0x05) {
    return invalid_argument(field + " must be a 33-byte public key starting with 0x05");
  }
  return std::move(*bytes);
}

Result<uint32_t> decode_id(const json& value, const std::string& field) {
  if (!value.is_number_integer() || value.get<int64_t>() < 1 ||
      value.get<int64_t>() > static_cast<int64_t>(kMaxPreKeyId)) {
    return invalid_argument(field + " must be an integer from 1 to " +
                            std::to_string(kMaxPreKeyId));
  }
  return static_cast<uint32_t>(value.get<int64_t>());
}

// Refuses members other than `allowed` in `object` (strict bodies: a typo
// is an error, not silently ignored).
Status only_members(const json& object, std::initializer_list<const char*> allowed,
                    const std::string& where) {
  for (const auto& item : object.items()) {
    const std::string& name = item.key();
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return name == a; })) {
      return invalid_argument("unknown member \"" + name + "\" in " + where);
    }
  }
  return Status::ok();
}

bool is_capability_name(const std::string& s) {
  if (s.empty() || s.size() > kMaxCapabilityChars) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

// ---- signatures ---------------------------------------------------------------------

bool verify_signed_prekey(std::string_view identity_key, std::string_view signed_key,
                          std::string_view signature) {
  if (identity_key.size() != kPublicKeyBytes || signed_key.size() != kPublicKeyBytes ||
      signature.size() != kSignatureBytes) {
    return false;
  }
  // Neither call needs a signal_context (no crypto provider): decoding copies
  // the 32 bytes, and XEdDSA verification hashes with the library's own SHA-512.
  ec_public_key* key = nullptr;
  if (curve_decode_point(&key, reinterpret_cast<const uint8_t*>(identity_key.data()),
                         identity_key.size(), nullptr) != 0) {
    return false;
  }
  const int valid = curve_verify_signature(
      key, reinterpret_cast<const uint8_t*>(signed_key.data()), signed_key.size(),
      reinterpret_cast<const uint8_t*>(signature.data()), signature.size());
  SIGNAL_UNREF(key);
  return valid == 1;
}

// ---- parsing -----------------------------------------------------------------------

Result<ParsedKeyUpload> parse_key_upload(std::string_view body) {
  JsonRefusal why = JsonRefusal::kNone;
  json doc = parse_untrusted_json(body, kMaxUploadJsonDepth, &why);
  if (why == JsonRefusal::kTooDeep || why == JsonRefusal::kDuplicateKey) {
    return invalid_argument("the body must be a JSON object: " +
                            json_refusal_reason(why, kMaxUploadJsonDepth));
  }
  if (doc.is_discarded() || !doc.is_object()) {
    return invalid_argument("the body must be a JSON object");
  }
  if (Status s = only_members(
          doc,
          {"device", "registration_id", "identity_key", "signed_prekey", "prekeys", "capabilities"},
          "the body");
      !s.is_ok()) {
    return s;
  }
  ParsedKeyUpload out;
  auto device = doc.find("device");
  if (device == doc.end() || !device->is_string() ||
      !is_valid_device_id(device->get_ref<const std::string&>())) {
    return invalid_argument("device must be a device id matching ^[A-Za-z0-9_-]{1,64}$");
  }
  out.device = device->get<std::string>();

  if (auto it = doc.find("registration_id"); it != doc.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 ||
        it->get<int64_t>() > kMaxRegistrationId) {
      return invalid_argument("registration_id must be an integer from 1 to " +
                              std::to_string(kMaxRegistrationId));
    }
    out.registration_id = static_cast<int>(it->get<int64_t>());
  }
  if (auto it = doc.find("identity_key"); it != doc.end()) {
    auto key = decode_public_key(*it, "identity_key");
    if (!key) return key.status();
    out.identity_key = it->get<std::string>();
  }
  if (auto it = doc.find("signed_prekey"); it != doc.end()) {
    if (!it->is_object()) {
      return invalid_argument("signed_prekey must be an object {\"id\",\"key\",\"signature\"}");
    }
    if (Status s = only_members(*it, {"id", "key", "signature"}, "signed_prekey"); !s.is_ok()) {
      return s;
    }
    auto id = it->find("id");
    auto key = it->find("key");
    auto sig = it->find("signature");
    if (id == it->end() || key == it->end() || sig == it->end()) {
      return invalid_argument("signed_prekey needs \"id\", \"key\" and \"signature\"");
    }
    auto id_value = decode_id(*id, "signed_prekey.id");
    if (!id_value) return id_value.status();
    auto key_bytes = decode_public_key(*key, "signed_prekey.key");
    if (!key_bytes) return key_bytes.status();
    if (!sig->is_string()) return invalid_argument("signed_prekey.signature must be a string");
    auto sig_bytes = base64_decode_strict(sig->get_ref<const std::string&>());
    if (!sig_bytes) {
      return invalid_argument("signed_prekey.signature is not standard base64 with padding");
    }
    if (sig_bytes->size() != kSignatureBytes) {
      return invalid_argument("signed_prekey.signature must be 64 bytes");
    }
    out.signed_prekey =
        store::SignedPreKeyRecord{*id_value, key->get<std::string>(), sig->get<std::string>()};
  }
  if (auto it = doc.find("prekeys"); it != doc.end()) {
    if (!it->is_array()) return invalid_argument("prekeys must be an array of {\"id\",\"key\"}");
    if (it->size() > kMaxPreKeysPerUpload) {
      return invalid_argument("at most " + std::to_string(kMaxPreKeysPerUpload) +
                              " prekeys per request");
    }
    std::set<uint32_t> seen;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& p = (*it)[i];
      const std::string where = "prekeys[" + std::to_string(i) + "]";
      if (!p.is_object()) return invalid_argument(where + " must be an object {\"id\",\"key\"}");
      if (Status s = only_members(p, {"id", "key"}, where); !s.is_ok()) return s;
      auto id = p.find("id");
      auto key = p.find("key");
      if (id == p.end() || key == p.end()) {
        return invalid_argument(where + " needs \"id\" and \"key\"");
      }
      auto id_value = decode_id(*id, where + ".id");
      if (!id_value) return id_value.status();
      if (!seen.insert(*id_value).second) {
        return invalid_argument(where + ".id " + std::to_string(*id_value) +
                                " appears twice in this request");
      }
      auto key_bytes = decode_public_key(*key, where + ".key");
      if (!key_bytes) return key_bytes.status();
      out.prekeys.push_back(store::PreKeyRecord{*id_value, key->get<std::string>()});
    }
  }
  if (auto it = doc.find("capabilities"); it != doc.end()) {
    if (!it->is_array() || it->size() > kMaxCapabilities) {
      return invalid_argument("capabilities must be an array of at most " +
                              std::to_string(kMaxCapabilities) + " names");
    }
    std::vector<std::string> caps;
    for (const auto& c : *it) {
      if (!c.is_string() || !is_capability_name(c.get_ref<const std::string&>())) {
        return invalid_argument("capabilities must be names of [a-z0-9_] (1-32 characters)");
      }
      if (std::find(caps.begin(), caps.end(), c.get<std::string>()) != caps.end()) {
        return invalid_argument("capability \"" + c.get<std::string>() + "\" appears twice");
      }
      caps.push_back(c.get<std::string>());
    }
    out.capabilities = std::move(caps);
  }
  return out;
}

// ---- the directory -----------------------------------------------------------------

KeyDirectory::KeyDirectory(store::KeyStore& keys, store::ArchiveReader& archive,
                           ControlChannel& control, const Clock& clock, KeyDirectoryOptions options)
    : keys_(keys),
      archive_(archive),
      control_(control),
      clock_(clock),
      options_(options),
      pair_limits_(clock, RateLimit{options.claim_rate_per_min / 60.0, options.claim_burst},
                   options.max_tracked),
      target_limits_(clock,
                     RateLimit{options.claim_rate_per_min / 60.0 * kTargetClaimFactor,
                               options.claim_burst * kTargetClaimFactor},
                     options.max_tracked),
      change_limits_(
          clock, RateLimit{options.device_changes_per_hour / 3600.0, options.device_changes_burst},
          options.max_tracked) {}

store::KeyStore::ChangeGate KeyDirectory::device_change_gate(const std::string& user,
                                                             int64_t* wait_ms) {
  return [this, user, wait_ms]() -> Status {
    int64_t wait = 0;
    {
      std::lock_guard lock(mu_);
      wait = change_limits_.take(user);
    }
    if (wait == 0) return Status::ok();
    if (wait_ms != nullptr) *wait_ms = wait;
    logger().info("keys.device_change_limited: user={} wait_ms={}", log_value(user), wait);
    return resource_exhausted("too many devices added to or removed from the key directory");
  };
}

Result<KeyDirectory::Uploaded> KeyDirectory::upload(const std::string& user, std::string_view body,
                                                    KeyRefusal* why, int64_t* wait_ms) {
  *why = KeyRefusal::kNone;
  if (wait_ms != nullptr) *wait_ms = 0;
  auto parsed = parse_key_upload(body);
  if (!parsed) return parsed.status();

  // From the user check to the write, account deletion (forget_user) waits:
  // a user deleted before it is refused here, one deleted after it loses
  // what this writes.
  std::shared_lock users_lock(users_mu_);
  if (Status s = check_user(user); !s.is_ok()) {
    if (s.code() == StatusCode::kNotFound) return unauthenticated("the account no longer exists");
    return s;
  }

  store::KeyUpload up;
  up.user = user;
  up.device = parsed->device;
  up.registration_id = parsed->registration_id;
  up.signed_prekey = parsed->signed_prekey;
  up.prekeys = std::move(parsed->prekeys);
  up.capabilities = std::move(parsed->capabilities);
  up.now_ms = clock_.now_ms();
  if (parsed->identity_key) {
    up.identity_key = *parsed->identity_key;
  } else {
    // A later upload may leave it out: the stored one is the one to verify
    // with. The store uses it only for a device that still has it, never to
    // create one (identity_from_request), under its lock.
    auto stored = keys_.device(user, parsed->device);
    if (!stored) return stored.status();
    if (!stored->has_value()) {
      return invalid_argument(
          "identity_key is required on a device's first upload (with registration_id and "
          "signed_prekey)");
    }
    up.identity_key = (*stored)->identity_key;
    up.identity_from_request = false;
  }
  if (up.signed_prekey) {
    // Both decode: parse_key_upload checked them (and the store's copy was checked when stored).
    const auto identity = base64_decode_strict(up.identity_key);
    const auto signed_key = base64_decode_strict(up.signed_prekey->key);
    const auto signature = base64_decode_strict(up.signed_prekey->signature);
    if (!identity || !signed_key || !signature ||
        !verify_signed_prekey(*identity, *signed_key, *signature)) {
      *why = KeyRefusal::kBadSignature;
      return invalid_argument(
          "signed_prekey.signature is not the identity key's signature of signed_prekey.key");
    }
  }
  bool devices_full = false;
  int64_t change_wait = 0;
  auto created = keys_.upload(up, kMaxPreKeysStored, kMaxKeyDevicesPerUser, &devices_full,
                              device_change_gate(user, &change_wait));
  users_lock.unlock();  // written (or not): the rest may overlap a deletion
  if (!created) {
    if (change_wait > 0) {
      *why = KeyRefusal::kRateLimited;
      if (wait_ms != nullptr) *wait_ms = change_wait;
    } else if (devices_full) {
      *why = KeyRefusal::kTooManyDevices;
    } else if (created.status().code() == StatusCode::kAlreadyExists) {
      *why = KeyRefusal::kIdentityMismatch;
      logger().info("keys.identity_mismatch: user={} device={}", log_value(user),
                    log_value(up.device));
    } else if (created.status().code() == StatusCode::kResourceExhausted) {
      *why = KeyRefusal::kTooManyPreKeys;
      return invalid_argument(created.status().message());
    }
    return created.status();
  }
  logger().info("keys.uploaded: user={} device={} created={} prekeys={} signed_prekey={}",
                log_value(user), log_value(up.device), *created, up.prekeys.size(),
                up.signed_prekey ? std::to_string(up.signed_prekey->id) : std::string("-"));
  if (*created) announce(user, up.device, "device_added", up.identity_key);
  Uploaded out;
  out.created = *created;
  auto state = count(user, up.device);
  if (state) {
    out.state = std::move(state).value();
  } else {
    out.state.device = up.device;  // deleted meanwhile: the upload did happen
  }
  return out;
}

Status KeyDirectory::check_user(const std::string& user) {
  if (!is_valid_user_id(user)) {
    return invalid_argument("user must match ^[a-z0-9][a-z0-9_.-]{0,31}$");
  }
  if (Status s = archive_.catch_up(); !s.is_ok()) return unavailable("archive: " + s.message());
  auto exists = archive_.user_exists(user);
  if (!exists) return exists.status();
  if (!*exists) return not_found("no such user");
  return Status::ok();
}

int64_t KeyDirectory::take_claim(const std::string& caller, const std::string& target,
                                 bool* target_limited) {
  std::lock_guard lock(mu_);
  *target_limited = false;
  const int64_t wait = pair_limits_.take(caller + "/" + target);
  if (wait > 0) {
    ++counters_.rate_limited;
    return wait;
  }
  // Over all claimers: a flood by many must not drain the target's prekeys,
  // and must not keep anyone from starting a session either (no 429 here).
  *target_limited = target_limits_.take(target) > 0;
  return 0;
}

Result<std::vector<store::ClaimedBundle>> KeyDirectory::claim(
    const std::string& caller, const std::string& target, const std::optional<std::string>& device,
    int64_t* wait_ms) {
  *wait_ms = 0;
  if (device && !is_valid_device_id(*device)) {
    return invalid_argument("device must match ^[A-Za-z0-9_-]{1,64}$");
  }
  if (Status s = check_user(target); !s.is_ok()) return s;
  bool target_limited = false;
  if (int64_t wait = take_claim(caller, target, &target_limited); wait > 0) {
    *wait_ms = wait;
    logger().info("keys.claim_limited: caller={} target={} wait_ms={}", log_value(caller),
                  log_value(target), wait);
    return resource_exhausted("too many key claims for " + target);
  }
  if (target_limited) {
    // The bundles without one-time prekeys: X3DH on the signed prekey alone.
    std::vector<store::ClaimedBundle> bundles;
    if (device) {
      auto one = keys_.device(target, *device);
      if (!one) return one.status();
      if (!one->has_value())
        return not_found("no device " + *device + " of " + target + " has keys");
      bundles.push_back(store::ClaimedBundle{std::move(**one), std::nullopt});
    } else {
      auto all = keys_.devices(target);
      if (!all) return all.status();
      for (auto& d : *all) bundles.push_back(store::ClaimedBundle{std::move(d), std::nullopt});
    }
    logger().info("keys.claim_target_limited: caller={} target={} devices={}", log_value(caller),
                  log_value(target), bundles.size());
    std::lock_guard lock(mu_);
    counters_.limited += bundles.size();
    return bundles;
  }
  auto bundles = keys_.claim(target, device);
  if (!bundles) return bundles.status();
  std::lock_guard lock(mu_);
  for (const auto& b : *bundles) ++(b.prekey ? counters_.ok : counters_.exhausted);
  return bundles;
}

Result<PreKeyCount> KeyDirectory::count(const std::string& user, const std::string& device) {
  if (!is_valid_device_id(device)) {
    return invalid_argument("device must match ^[A-Za-z0-9_-]{1,64}$ (?device=<d>)");
  }
  auto record = keys_.device(user, device);
  if (!record) return record.status();
  if (!record->has_value()) return not_found("no keys uploaded for device " + device);
  auto n = keys_.prekey_count(user, device);
  if (!n) return n.status();
  return PreKeyCount{device, *n, (*record)->signed_prekey.id};
}

Result<std::vector<store::DeviceKeysRecord>> KeyDirectory::devices(const std::string& user) {
  if (Status s = check_user(user); !s.is_ok()) return s;
  return keys_.devices(user);
}

Status KeyDirectory::remove_device(const std::string& user, const std::string& device,
                                   int64_t* wait_ms) {
  if (wait_ms != nullptr) *wait_ms = 0;
  if (!is_valid_device_id(device)) {
    return invalid_argument("device must match ^[A-Za-z0-9_-]{1,64}$");
  }
  auto removed = keys_.delete_device(user, device, device_change_gate(user, wait_ms));
  if (!removed) return removed.status();
  logger().info("keys.device_removed: user={} device={}", log_value(user), log_value(device));
  announce(user, device, "device_removed", removed->identity_key);
  return Status::ok();
}

Status KeyDirectory::forget_user(const std::string& user) {
  // Waits for uploads that passed the user check; later ones find no user.
  std::unique_lock users_lock(users_mu_);
  auto removed = keys_.delete_user(user);
  users_lock.unlock();
  if (!removed) return removed.status();
  for (const auto& d : *removed) {
    logger().info("keys.device_removed: user={} device={} reason=account_deleted", log_value(user),
                  log_value(d.device));
    announce(user, d.device, "device_removed", d.identity_key);
  }
  return Status::ok();
}

void KeyDirectory::announce(const std::string& user, const std::string& device, const char* action,
                            const std::string& identity_key) {
  if (!control_.connected()) {
    logger().warn("keys.event_failed: user={} device={} action={} error=\"broker not connected\"",
                  log_value(user), log_value(device), action);
    return;
  }
  auto answer = control_.call({{"op", "keys.changed"},
                               {"user", user},
                               {"device", device},
                               {"action", action},
                               {"identity_key", identity_key}},
                              kControlTimeout);
  if (!answer) {
    logger().warn("keys.event_failed: user={} device={} action={} error={}", log_value(user),
                  log_value(device), action, log_value(answer.status().to_string()));
  }
}

KeyClaimCounters KeyDirectory::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace chat::api
