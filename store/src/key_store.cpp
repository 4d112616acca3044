// chat-api's key directory on RocksDB. Schema and contracts: chat/store/key_store.h.
#include "chat/store/key_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>

#include "checkpoint.h"
#include "rocks_db.h"

namespace chat::store {
namespace {

enum Family : size_t { kDevices, kPreKeys, kFamilyCount };
constexpr const char* kFamilyNames[kFamilyCount] = {"devices", "prekeys"};

constexpr std::string_view kSep("\0", 1);

std::string device_key(std::string_view user, std::string_view device) {
  std::string key(user);
  key.append(kSep);
  key.append(device);
  return key;
}

// <user>\0<device>\0: every prekey of one device.
std::string prekey_prefix(std::string_view user, std::string_view device) {
  std::string key = device_key(user, device);
  key.append(kSep);
  return key;
}

std::string prekey_key(std::string_view user, std::string_view device, uint32_t id) {
  char digits[9];
  std::snprintf(digits, sizeof digits, "%08" PRIx32, id);
  return prekey_prefix(user, device) + digits;
}

// [<prefix without its last \0>\1): the upper bound of a scope ending in \0.
std::string scope_end(std::string_view prefix_with_nul) {
  std::string key(prefix_with_nul.substr(0, prefix_with_nul.size() - 1));
  key.push_back('\1');
  return key;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }
bool valid_part(std::string_view s) { return !s.empty() && !has_nul(s); }

// The id of a prekey key (its last 8 hex digits); false when damaged.
bool prekey_id_of(std::string_view key, uint32_t* id) {
  if (key.size() < 9 || key[key.size() - 9] != '\0') return false;
  uint32_t value = 0;
  for (char c : key.substr(key.size() - 8)) {
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return false;
    value = value << 4 | static_cast<uint32_t>(digit);
  }
  *id = value;
  return true;
}

std::string encode_device(const DeviceKeysRecord& d) {
  return nlohmann::json{{"registration_id", d.registration_id},
                        {"identity_key", d.identity_key},
                        {"signed_prekey",
                         {{"id", d.signed_prekey.id},
                          {"key", d.signed_prekey.key},
                          {"signature", d.signed_prekey.signature}}},
                        {"capabilities", d.capabilities},
                        {"created_ms", d.created_ms}}
      .dump();
}

bool decode_device(std::string_view key, std::string_view text, DeviceKeysRecord* out) {
  const size_t sep = key.find('\0');
  if (sep == std::string_view::npos) return false;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  const auto str = [](const nlohmann::json& o, const char* name, std::string* field) {
    auto it = o.find(name);
    if (it == o.end() || !it->is_string()) return false;
    *field = it->get<std::string>();
    return true;
  };
  auto reg = j.find("registration_id");
  auto spk = j.find("signed_prekey");
  auto caps = j.find("capabilities");
  auto created = j.find("created_ms");
  if (reg == j.end() || !reg->is_number_integer() || spk == j.end() || !spk->is_object() ||
      caps == j.end() || !caps->is_array() || created == j.end() || !created->is_number_integer()) {
    return false;
  }
  auto spk_id = spk->find("id");
  if (spk_id == spk->end() || !spk_id->is_number_unsigned()) return false;
  if (!str(j, "identity_key", &out->identity_key) || !str(*spk, "key", &out->signed_prekey.key) ||
      !str(*spk, "signature", &out->signed_prekey.signature)) {
    return false;
  }
  out->capabilities.clear();
  for (const auto& c : *caps) {
    if (!c.is_string()) return false;
    out->capabilities.push_back(c.get<std::string>());
  }
  out->user = std::string(key.substr(0, sep));
  out->device = std::string(key.substr(sep + 1));
  out->registration_id = reg->get<int>();
  out->signed_prekey.id = spk_id->get<uint32_t>();
  out->created_ms = created->get<int64_t>();
  return true;
}

}  // namespace

struct KeyStore::Impl : FamilyDb {
  std::mutex write_mu;

  Result<std::optional<DeviceKeysRecord>> load_device(const std::string& user,
                                                      const std::string& device) const {
    const std::string key = device_key(user, device);
    auto value = get(kDevices, key, "key store device get");
    if (!value) return value.status();
    if (!value->has_value()) return std::optional<DeviceKeysRecord>();
    DeviceKeysRecord d;
    if (!decode_device(key, **value, &d)) {
      return internal_error("key store: malformed device " + user + ":" + device);
    }
    return std::optional<DeviceKeysRecord>(std::move(d));
  }

  // Visits the devices of one user (key order = device order).
  template <typename Visit>
  Status scan_devices(const std::string& user, Visit&& visit) const {
    const std::string start = device_key(user, "");
    const std::string end = scope_end(start);
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions options;
    options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, cf(kDevices)));
    for (it->Seek(start); it->Valid(); it->Next()) {
      DeviceKeysRecord d;
      if (!decode_device(std::string_view(it->key().data(), it->key().size()),
                         std::string_view(it->value().data(), it->value().size()), &d)) {
        return internal_error("key store: malformed device of " + user);
      }
      visit(std::move(d));
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), "key store devices scan");
    return Status::ok();
  }

  // Visits the prekeys of one device, lowest id first, while `visit` returns true.
  template <typename Visit>
  Status scan_prekeys(const std::string& user, const std::string& device, Visit&& visit) const {
    const std::string start = prekey_prefix(user, device);
    const std::string end = scope_end(start);
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions options;
    options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, cf(kPreKeys)));
    for (it->Seek(start); it->Valid(); it->Next()) {
      const std::string_view key(it->key().data(), it->key().size());
      PreKeyRecord p;
      if (!prekey_id_of(key, &p.id)) {
        return internal_error("key store: damaged prekey key of " + user + ":" + device);
      }
      p.key.assign(it->value().data(), it->value().size());
      if (!visit(std::move(p))) break;
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), "key store prekeys scan");
    return Status::ok();
  }

  // Adds the deletion of a device and all its prekeys. Caller holds write_mu.
  Status delete_device_in(rocksdb::WriteBatch* batch, const std::string& user,
                          const std::string& device) {
    rocksdb::Status s = batch->Delete(cf(kDevices), device_key(user, device));
    const std::string start = prekey_prefix(user, device);
    if (s.ok()) s = batch->DeleteRange(cf(kPreKeys), start, scope_end(start));
    if (!s.ok()) return from_rocksdb(s, "key store batch");
    return Status::ok();
  }

  // Takes the device's lowest prekey into `batch`; nullopt when it has none.
  // Caller holds write_mu.
  Result<std::optional<PreKeyRecord>> take_prekey(rocksdb::WriteBatch* batch,
                                                  const DeviceKeysRecord& d) {
    std::optional<PreKeyRecord> taken;
    Status st = scan_prekeys(d.user, d.device, [&taken](PreKeyRecord p) {
      taken = std::move(p);
      return false;
    });
    if (!st.is_ok()) return st;
    if (taken) {
      rocksdb::Status s = batch->Delete(cf(kPreKeys), prekey_key(d.user, d.device, taken->id));
      if (!s.ok()) return from_rocksdb(s, "key store batch");
    }
    return taken;
  }
};

KeyStore::KeyStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KeyStore::~KeyStore() = default;

Result<std::unique_ptr<KeyStore>> KeyStore::open(const std::string& path) {
  rocksdb::DBOptions db_options;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
  db_options.max_log_file_size = 8 << 20;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = 4 << 20;

  auto impl = std::make_unique<Impl>();
  if (Status st = impl->open(path, db_options, cf_options, kFamilyNames, "key store");
      !st.is_ok()) {
    return st;
  }
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(impl)));
}

Result<bool> KeyStore::upload(const KeyUpload& up, size_t max_prekeys, size_t max_devices,
                              bool* devices_full, const ChangeGate& before_create) {
  if (devices_full != nullptr) *devices_full = false;
  if (!valid_part(up.user) || !valid_part(up.device) || !valid_part(up.identity_key) ||
      up.user.find(':') != std::string::npos) {
    return invalid_argument("key store: malformed upload");
  }
  if (up.signed_prekey &&
      (!valid_part(up.signed_prekey->key) || !valid_part(up.signed_prekey->signature))) {
    return invalid_argument("key store: malformed signed prekey");
  }
  for (const auto& p : up.prekeys) {
    if (!valid_part(p.key)) return invalid_argument("key store: malformed prekey");
  }
  std::lock_guard lock(impl_->write_mu);
  auto existing = impl_->load_device(up.user, up.device);
  if (!existing) return existing.status();
  const bool created = !existing->has_value();
  DeviceKeysRecord record;
  if (created) {
    // Only an identity the request carries: the stored one a top-up was
    // checked against is gone with the device (deleted meanwhile).
    if (!up.identity_from_request) {
      return invalid_argument(
          "identity_key is required on a device's first upload (the device is not in the key "
          "directory)");
    }
    if (!up.registration_id || !up.signed_prekey) {
      return invalid_argument(
          "a device's first upload needs registration_id, identity_key and signed_prekey");
    }
    size_t devices = 0;
    Status st = impl_->scan_devices(up.user, [&devices](DeviceKeysRecord) { ++devices; });
    if (!st.is_ok()) return st;
    if (devices >= max_devices) {
      if (devices_full != nullptr) *devices_full = true;
      return resource_exhausted("a user has at most " + std::to_string(max_devices) +
                                " devices in the key directory; delete one first");
    }
    record.user = up.user;
    record.device = up.device;
    record.identity_key = up.identity_key;
    record.created_ms = up.now_ms;
  } else {
    record = std::move(**existing);
    if (record.identity_key != up.identity_key) {
      return already_exists("the device " + up.device +
                            " has another identity key; delete it first to register a new one");
    }
  }
  if (up.registration_id) record.registration_id = *up.registration_id;
  if (up.signed_prekey) record.signed_prekey = *up.signed_prekey;
  if (up.capabilities) record.capabilities = *up.capabilities;

  // The cap counts what the device would hold: stored ids plus new ones.
  std::set<uint32_t> ids;
  if (!created) {
    Status st = impl_->scan_prekeys(up.user, up.device, [&ids](PreKeyRecord p) {
      ids.insert(p.id);
      return true;
    });
    if (!st.is_ok()) return st;
  }
  for (const auto& p : up.prekeys) ids.insert(p.id);
  if (ids.size() > max_prekeys) {
    return resource_exhausted("a device holds at most " + std::to_string(max_prekeys) +
                              " one-time prekeys; this upload would make it " +
                              std::to_string(ids.size()));
  }

  if (created && before_create) {
    if (Status gate = before_create(); !gate.is_ok()) return gate;
  }

  rocksdb::WriteBatch batch;
  rocksdb::Status s =
      batch.Put(impl_->cf(kDevices), device_key(up.user, up.device), encode_device(record));
  for (const auto& p : up.prekeys) {
    if (!s.ok()) break;
    s = batch.Put(impl_->cf(kPreKeys), prekey_key(up.user, up.device, p.id), p.key);
  }
  if (!s.ok()) return from_rocksdb(s, "key store batch");
  if (Status st = impl_->write(&batch, "key store upload"); !st.is_ok()) return st;
  return created;
}

Result<std::vector<ClaimedBundle>> KeyStore::claim(const std::string& user,
                                                   const std::optional<std::string>& device) {
  std::lock_guard lock(impl_->write_mu);
  std::vector<DeviceKeysRecord> devices;
  if (device) {
    auto one = impl_->load_device(user, *device);
    if (!one) return one.status();
    if (!one->has_value()) return not_found("no device " + *device + " of " + user + " has keys");
    devices.push_back(std::move(**one));
  } else {
    Status st = impl_->scan_devices(
        user, [&devices](DeviceKeysRecord d) { devices.push_back(std::move(d)); });
    if (!st.is_ok()) return st;
  }
  std::vector<ClaimedBundle> out;
  out.reserve(devices.size());
  rocksdb::WriteBatch batch;
  for (auto& d : devices) {
    auto taken = impl_->take_prekey(&batch, d);
    if (!taken) return taken.status();
    out.push_back(ClaimedBundle{std::move(d), std::move(*taken)});
  }
  if (batch.Count() > 0) {
    if (Status st = impl_->write(&batch, "key store claim"); !st.is_ok()) return st;
  }
  return out;
}

Result<std::optional<DeviceKeysRecord>> KeyStore::device(const std::string& user,
                                                         const std::string& device) const {
  return impl_->load_device(user, device);
}

Result<std::vector<DeviceKeysRecord>> KeyStore::devices(const std::string& user) const {
  std::vector<DeviceKeysRecord> out;
  Status st =
      impl_->scan_devices(user, [&out](DeviceKeysRecord d) { out.push_back(std::move(d)); });
  if (!st.is_ok()) return st;
  return out;
}

Result<size_t> KeyStore::prekey_count(const std::string& user, const std::string& device) const {
  size_t n = 0;
  Status st = impl_->scan_prekeys(user, device, [&n](PreKeyRecord) {
    ++n;
    return true;
  });
  if (!st.is_ok()) return st;
  return n;
}

Result<DeviceKeysRecord> KeyStore::delete_device(const std::string& user, const std::string& device,
                                                 const ChangeGate& before_delete) {
  std::lock_guard lock(impl_->write_mu);
  auto existing = impl_->load_device(user, device);
  if (!existing) return existing.status();
  if (!existing->has_value()) return not_found("no device " + device + " in the key directory");
  if (before_delete) {
    if (Status gate = before_delete(); !gate.is_ok()) return gate;
  }
  rocksdb::WriteBatch batch;
  if (Status st = impl_->delete_device_in(&batch, user, device); !st.is_ok()) return st;
  if (Status st = impl_->write(&batch, "key store delete_device"); !st.is_ok()) return st;
  return std::move(**existing);
}

Result<std::vector<DeviceKeysRecord>> KeyStore::delete_user(const std::string& user) {
  std::lock_guard lock(impl_->write_mu);
  std::vector<DeviceKeysRecord> devices;
  Status st = impl_->scan_devices(
      user, [&devices](DeviceKeysRecord d) { devices.push_back(std::move(d)); });
  if (!st.is_ok()) return st;
  if (devices.empty()) return devices;
  rocksdb::WriteBatch batch;
  for (const auto& d : devices) {
    if (Status s = impl_->delete_device_in(&batch, user, d.device); !s.is_ok()) return s;
  }
  if (Status s = impl_->write(&batch, "key store delete_user"); !s.is_ok()) return s;
  return devices;
}

Status KeyStore::checkpoint(const std::string& dir) const {
  return write_checkpoint(impl_->db, dir, "key store");
}

}  // namespace chat::store
