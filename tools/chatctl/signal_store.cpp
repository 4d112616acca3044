#include "chatctl/signal_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "chat/common/base64.h"
#include "chatctl/json_access.h"
#include "chatctl/profile.h"

namespace chat::tools {
namespace {

constexpr size_t kMaxStoreFile = 64 << 20;
// The plaintext cache keeps this many messages (the oldest go first).
constexpr size_t kMaxCachedMessages = 5000;

std::string errno_text() { return std::strerror(errno); }

// kNotFound when absent.
Result<std::string> read_whole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return not_found(path + ": no such file");
    return unavailable(path + ": " + errno_text());
  }
  std::string data;
  char buf[8192];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = unavailable(path + ": " + errno_text());
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxStoreFile) {
      ::close(fd);
      return invalid_argument(path + ": too large");
    }
  }
  ::close(fd);
  return data;
}

void sync_dir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

Status write_atomically(const std::string& dir, const std::string& path, std::string_view data) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable(tmp + ": " + errno_text());
  auto fail = [&]() {
    Status s = unavailable(tmp + ": " + errno_text());
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  if (::fchmod(fd, 0600) != 0) return fail();
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail();
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail();
  if (::close(fd) != 0) {
    Status s = unavailable(tmp + ": " + errno_text());
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = unavailable(path + ": " + errno_text());
    ::unlink(tmp.c_str());
    return s;
  }
  sync_dir(dir);
  return Status::ok();
}

Result<nlohmann::json> read_json(const std::string& path) {
  auto text = read_whole(path);
  if (!text) {
    if (text.status().code() == StatusCode::kNotFound) return nlohmann::json::object();
    return text.status();
  }
  auto j = parse_json(*text);
  if (!j.is_object()) return invalid_argument(path + ": not a JSON object (damaged store?)");
  return j;
}

Result<std::string> b64_field(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto& v = json_field(j, key);
  if (v.is_null()) return std::string();
  if (!v.is_string()) return invalid_argument(where + ": \"" + key + "\" is not a string");
  auto decoded = base64_decode_strict(v.get<std::string>());
  if (!decoded) {
    return invalid_argument(where + ": \"" + key + "\": not standard base64 with padding");
  }
  return std::move(*decoded);
}

Result<std::map<uint32_t, std::string>> id_map(const nlohmann::json& j, const char* key,
                                               const std::string& where) {
  std::map<uint32_t, std::string> out;
  const auto& m = json_field(j, key);
  if (m.is_null()) return out;
  if (!m.is_object()) return invalid_argument(where + ": \"" + key + "\" is not an object");
  for (const auto& [id_text, value] : m.items()) {
    char* end = nullptr;
    unsigned long id = std::strtoul(id_text.c_str(), &end, 10);
    if (id_text.empty() || *end != '\0' || id == 0 || id > 0xFFFFFF || !value.is_string()) {
      return invalid_argument(where + ": bad entry in \"" + key + "\"");
    }
    auto decoded = base64_decode_strict(value.get<std::string>());
    if (!decoded) return invalid_argument(where + ": bad base64 in \"" + key + "\"");
    out[static_cast<uint32_t>(id)] = std::move(*decoded);
  }
  return out;
}

nlohmann::json id_map_json(const std::map<uint32_t, std::string>& m) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [id, v] : m) out[std::to_string(id)] = base64_encode(v);
  return out;
}

// A session file name: the key with nothing but [A-Za-z0-9_.:-].
bool safe_file_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == ':';
    if (!ok) return false;
  }
  return true;
}

class StoreLock {
 public:
  explicit StoreLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      status_ = unavailable(path + ": " + errno_text());
      return;
    }
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      status_ = unavailable(path + ": cannot lock: " + errno_text());
      return;
    }
  }
  ~StoreLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;
  const Status& status() const { return status_; }

 private:
  int fd_ = -1;
  Status status_;
};

Status load_state(const std::string& dir, E2eState* state) {
  const std::string keys_path = dir + "/keys.json";
  auto keys = read_whole(keys_path);
  if (keys) {
    auto j = parse_json(*keys);
    if (!j.is_object()) return invalid_argument(keys_path + ": not a JSON object (damaged store?)");
    state->initialized = true;
    state->registration_id = static_cast<uint32_t>(json_int(j, "registration_id"));
    auto pub = b64_field(j, "identity_public", keys_path);
    if (!pub) return pub.status();
    auto priv = b64_field(j, "identity_private", keys_path);
    if (!priv) return priv.status();
    state->identity_public = std::move(*pub);
    state->identity_private = std::move(*priv);
    auto signed_prekeys = id_map(j, "signed_prekeys", keys_path);
    if (!signed_prekeys) return signed_prekeys.status();
    state->signed_prekeys = std::move(*signed_prekeys);
    auto prekeys = id_map(j, "prekeys", keys_path);
    if (!prekeys) return prekeys.status();
    state->prekeys = std::move(*prekeys);
    state->signed_prekey_id = static_cast<uint32_t>(json_int(j, "signed_prekey_id"));
    state->next_prekey_id = static_cast<uint32_t>(json_int(j, "next_prekey_id", 1));
    if (state->registration_id == 0 || state->identity_public.empty() ||
        state->identity_private.empty()) {
      return invalid_argument(keys_path + ": incomplete (run chatctl keys init --force)");
    }
  } else if (keys.status().code() != StatusCode::kNotFound) {
    return keys.status();
  }

  const std::string identities_path = dir + "/identities.json";
  auto identities = read_json(identities_path);
  if (!identities) return identities.status();
  for (const auto& [address, v] : identities->items()) {
    auto key = b64_field(v, "key", identities_path);
    if (!key) return key.status();
    const auto& verified = json_field(v, "verified");
    state->identities[address] = {std::move(*key), verified.is_boolean() && verified.get<bool>()};
  }

  const std::string sessions_dir = dir + "/sessions";
  if (DIR* d = ::opendir(sessions_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      const std::string suffix = ".json";
      if (name.size() <= suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0 ||
          !safe_file_name(name)) {
        continue;  // temp files and anything else
      }
      std::string path = sessions_dir + "/" + name;
      auto j = read_json(path);
      if (!j) {
        ::closedir(d);
        return j.status();
      }
      auto record = b64_field(*j, "record", path);
      auto user_record = b64_field(*j, "user_record", path);
      if (!record || !user_record) {
        ::closedir(d);
        return invalid_argument(path + ": damaged session file");
      }
      state->sessions[name.substr(0, name.size() - suffix.size())] = {std::move(*record),
                                                                      std::move(*user_record)};
    }
    ::closedir(d);
  }

  const std::string sender_keys_path = dir + "/sender_keys.json";
  auto sender_keys = read_json(sender_keys_path);
  if (!sender_keys) return sender_keys.status();
  const auto& records = json_field(*sender_keys, "records");
  if (records.is_object()) {
    for (const auto& [name, v] : records.items()) {
      auto record = b64_field(v, "record", sender_keys_path);
      auto user_record = b64_field(v, "user_record", sender_keys_path);
      if (!record || !user_record) return invalid_argument(sender_keys_path + ": damaged");
      state->sender_keys[name] = {std::move(*record), std::move(*user_record)};
    }
  }
  const auto& holders = json_field(*sender_keys, "holders");
  if (holders.is_object()) {
    for (const auto& [group, list] : holders.items()) {
      if (!list.is_array()) continue;
      auto& set = state->sender_key_holders[group];
      for (const auto& d : list) {
        if (d.is_string()) set.insert(d.get<std::string>());
      }
    }
  }

  const std::string verify_path = dir + "/verify.json";
  auto verify = read_json(verify_path);
  if (!verify) return verify.status();
  const auto& numbers = json_field(*verify, "shown");
  if (numbers.is_object()) {
    for (const auto& [user, number] : numbers.items()) {
      if (number.is_string()) state->safety_numbers[user] = number.get<std::string>();
    }
  }

  auto messages = read_json(dir + "/messages.json");
  if (!messages) return messages.status();
  state->messages = std::move(*messages);
  return Status::ok();
}

// Drops the oldest cached messages beyond kMaxCachedMessages.
void trim_messages(nlohmann::json& messages) {
  for (const char* table : {"by_id", "by_cid"}) {
    auto it = messages.find(table);
    if (it == messages.end() || !it->is_object() || it->size() <= kMaxCachedMessages) continue;
    std::vector<std::pair<int64_t, std::string>> order;
    for (const auto& [k, v] : it->items()) order.emplace_back(json_int(v, "n"), k);
    std::sort(order.begin(), order.end());
    size_t drop = it->size() - kMaxCachedMessages;
    for (size_t i = 0; i < drop; ++i) it->erase(order[i].second);
  }
}

Status save_state(const std::string& dir, E2eState* state) {
  if (state->keys_dirty) {
    nlohmann::json j = {{"registration_id", state->registration_id},
                        {"identity_public", base64_encode(state->identity_public)},
                        {"identity_private", base64_encode(state->identity_private)},
                        {"signed_prekeys", id_map_json(state->signed_prekeys)},
                        {"signed_prekey_id", state->signed_prekey_id},
                        {"prekeys", id_map_json(state->prekeys)},
                        {"next_prekey_id", state->next_prekey_id}};
    Status s = write_atomically(dir, dir + "/keys.json", j.dump());
    if (!s.is_ok()) return s;
    state->keys_dirty = false;
  }
  if (state->identities_dirty) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [address, id] : state->identities) {
      j[address] = {{"key", base64_encode(id.key)}, {"verified", id.verified}};
    }
    Status s = write_atomically(dir, dir + "/identities.json", j.dump());
    if (!s.is_ok()) return s;
    state->identities_dirty = false;
  }
  if (!state->sessions_dirty.empty()) {
    const std::string sessions_dir = dir + "/sessions";
    Status s = make_private_dirs(sessions_dir);
    if (!s.is_ok()) return s;
    for (const auto& key : state->sessions_dirty) {
      if (!safe_file_name(key)) continue;
      std::string path = sessions_dir + "/" + key + ".json";
      auto it = state->sessions.find(key);
      if (it == state->sessions.end()) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
          return unavailable(path + ": " + errno_text());
        }
        continue;
      }
      nlohmann::json j = {{"record", base64_encode(it->second.record)},
                          {"user_record", base64_encode(it->second.user_record)}};
      s = write_atomically(sessions_dir, path, j.dump());
      if (!s.is_ok()) return s;
    }
    sync_dir(sessions_dir);
    state->sessions_dirty.clear();
  }
  if (state->sender_keys_dirty) {
    nlohmann::json records = nlohmann::json::object();
    for (const auto& [name, blob] : state->sender_keys) {
      records[name] = {{"record", base64_encode(blob.record)},
                       {"user_record", base64_encode(blob.user_record)}};
    }
    nlohmann::json holders = nlohmann::json::object();
    for (const auto& [group, set] : state->sender_key_holders) holders[group] = set;
    Status s = write_atomically(dir, dir + "/sender_keys.json",
                                nlohmann::json{{"records", records}, {"holders", holders}}.dump());
    if (!s.is_ok()) return s;
    state->sender_keys_dirty = false;
  }
  if (state->safety_numbers_dirty) {
    nlohmann::json shown = nlohmann::json::object();
    for (const auto& [user, number] : state->safety_numbers) shown[user] = number;
    Status s = write_atomically(dir, dir + "/verify.json", nlohmann::json{{"shown", shown}}.dump());
    if (!s.is_ok()) return s;
    state->safety_numbers_dirty = false;
  }
  if (state->messages_dirty) {
    trim_messages(state->messages);
    Status s = write_atomically(dir, dir + "/messages.json", dump_json(state->messages));
    if (!s.is_ok()) return s;
    state->messages_dirty = false;
  }
  return Status::ok();
}

// --- libsignal callbacks ------------------------------------------------------

E2eState* st(void* user_data) { return static_cast<E2eState*>(user_data); }

std::string bytes(const uint8_t* data, size_t len) {
  return len == 0 ? std::string() : std::string(reinterpret_cast<const char*>(data), len);
}

signal_buffer* buffer_of(const std::string& s) {
  return signal_buffer_create(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string address_name(const signal_protocol_address* address) {
  return std::string(address->name, address->name_len);
}

// The identities key: "<user>:<device>" for device id 1 (the only one we
// use), "<name>.<n>" otherwise.
std::string identity_key_of(const signal_protocol_address* address) {
  std::string name = address_name(address);
  if (address->device_id == 1) return name;
  return name + "." + std::to_string(address->device_id);
}

std::string sender_key_key(const signal_protocol_sender_key_name* name) {
  return std::string(name->group_id, name->group_id_len) + "|" + session_key(name->sender);
}

int load_session(signal_buffer** record, signal_buffer** user_record,
                 const signal_protocol_address* address, void* user_data) {
  auto& sessions = st(user_data)->sessions;
  auto it = sessions.find(session_key(*address));
  if (it == sessions.end()) return 0;
  *record = buffer_of(it->second.record);
  if (*record == nullptr) return SG_ERR_NOMEM;
  if (!it->second.user_record.empty()) *user_record = buffer_of(it->second.user_record);
  return 1;
}

int sub_device_sessions(signal_int_list** sessions, const char* name, size_t name_len,
                        void* user_data) {
  signal_int_list* list = signal_int_list_alloc();
  if (list == nullptr) return SG_ERR_NOMEM;
  const std::string prefix = std::string(name, name_len) + ".";
  int count = 0;
  for (const auto& [key, blob] : st(user_data)->sessions) {
    if (key.rfind(prefix, 0) != 0) continue;
    int device = std::atoi(key.c_str() + prefix.size());
    if (device <= 0) continue;
    signal_int_list_push_back(list, device);
    ++count;
  }
  *sessions = list;
  return count;
}

int store_session(const signal_protocol_address* address, uint8_t* record, size_t record_len,
                  uint8_t* user_record, size_t user_record_len, void* user_data) {
  std::string key = session_key(*address);
  if (!safe_file_name(key)) return SG_ERR_INVAL;
  st(user_data)->sessions[key] = {bytes(record, record_len), bytes(user_record, user_record_len)};
  st(user_data)->sessions_dirty.insert(key);
  return SG_SUCCESS;
}

int contains_session(const signal_protocol_address* address, void* user_data) {
  return st(user_data)->sessions.count(session_key(*address)) ? 1 : 0;
}

int delete_session(const signal_protocol_address* address, void* user_data) {
  std::string key = session_key(*address);
  bool had = st(user_data)->sessions.count(key) > 0;
  st(user_data)->delete_session(key);
  return had ? 1 : 0;
}

int delete_all_sessions(const char* name, size_t name_len, void* user_data) {
  const std::string prefix = std::string(name, name_len) + ".";
  std::vector<std::string> keys;
  for (const auto& [key, blob] : st(user_data)->sessions) {
    if (key.rfind(prefix, 0) == 0) keys.push_back(key);
  }
  for (const auto& key : keys) st(user_data)->delete_session(key);
  return static_cast<int>(keys.size());
}

int load_pre_key(signal_buffer** record, uint32_t id, void* user_data) {
  auto& prekeys = st(user_data)->prekeys;
  auto it = prekeys.find(id);
  if (it == prekeys.end()) return SG_ERR_INVALID_KEY_ID;
  *record = buffer_of(it->second);
  return *record == nullptr ? SG_ERR_NOMEM : SG_SUCCESS;
}

int store_pre_key(uint32_t id, uint8_t* record, size_t record_len, void* user_data) {
  st(user_data)->prekeys[id] = bytes(record, record_len);
  st(user_data)->keys_dirty = true;
  return SG_SUCCESS;
}

int contains_pre_key(uint32_t id, void* user_data) {
  return st(user_data)->prekeys.count(id) ? 1 : 0;
}

int remove_pre_key(uint32_t id, void* user_data) {
  // A one-time prekey is used once: gone after the session it started.
  st(user_data)->prekeys.erase(id);
  st(user_data)->keys_dirty = true;
  return SG_SUCCESS;
}

int load_signed_pre_key(signal_buffer** record, uint32_t id, void* user_data) {
  auto& keys = st(user_data)->signed_prekeys;
  auto it = keys.find(id);
  if (it == keys.end()) return SG_ERR_INVALID_KEY_ID;
  *record = buffer_of(it->second);
  return *record == nullptr ? SG_ERR_NOMEM : SG_SUCCESS;
}

int store_signed_pre_key(uint32_t id, uint8_t* record, size_t record_len, void* user_data) {
  st(user_data)->signed_prekeys[id] = bytes(record, record_len);
  st(user_data)->keys_dirty = true;
  return SG_SUCCESS;
}

int contains_signed_pre_key(uint32_t id, void* user_data) {
  return st(user_data)->signed_prekeys.count(id) ? 1 : 0;
}

int remove_signed_pre_key(uint32_t id, void* user_data) {
  st(user_data)->signed_prekeys.erase(id);
  st(user_data)->keys_dirty = true;
  return SG_SUCCESS;
}

int get_identity_key_pair(signal_buffer** public_data, signal_buffer** private_data,
                          void* user_data) {
  const E2eState* state = st(user_data);
  if (!state->initialized) return SG_ERR_INVALID_KEY;
  *public_data = buffer_of(state->identity_public);
  *private_data = buffer_of(state->identity_private);
  if (*public_data == nullptr || *private_data == nullptr) return SG_ERR_NOMEM;
  return SG_SUCCESS;
}

int get_local_registration_id(void* user_data, uint32_t* registration_id) {
  if (!st(user_data)->initialized) return SG_ERR_INVALID_KEY;
  *registration_id = st(user_data)->registration_id;
  return SG_SUCCESS;
}

// Trust on first use; a changed key is accepted (a new identity is a new
// device in the directory, docs/e2e.md) but loses its verified mark, and the
// caller warns about it.
int save_identity(const signal_protocol_address* address, uint8_t* key_data, size_t key_len,
                  void* user_data) {
  E2eState* state = st(user_data);
  std::string key = identity_key_of(address);
  if (key_data == nullptr) {
    if (state->identities.erase(key)) state->identities_dirty = true;
    return SG_SUCCESS;
  }
  std::string value = bytes(key_data, key_len);
  auto it = state->identities.find(key);
  if (it != state->identities.end() && it->second.key == value) return SG_SUCCESS;
  const std::string user = key.substr(0, key.find(':'));
  if (it != state->identities.end()) {
    state->warnings.push_back("the identity key of " + key +
                              " changed (a new device identity); it is not verified: check it "
                              "with chatctl verify " +
                              user);
  }
  // A new device, or a new identity, of a verified user.
  unverify_user(*state, user);
  state->identities[key] = {std::move(value), false};
  state->identities_dirty = true;
  return SG_SUCCESS;
}

int is_trusted_identity(const signal_protocol_address*, uint8_t*, size_t, void*) { return 1; }

int store_sender_key(const signal_protocol_sender_key_name* name, uint8_t* record,
                     size_t record_len, uint8_t* user_record, size_t user_record_len,
                     void* user_data) {
  st(user_data)->sender_keys[sender_key_key(name)] = {bytes(record, record_len),
                                                      bytes(user_record, user_record_len)};
  st(user_data)->sender_keys_dirty = true;
  return SG_SUCCESS;
}

int load_sender_key(signal_buffer** record, signal_buffer** user_record,
                    const signal_protocol_sender_key_name* name, void* user_data) {
  auto& keys = st(user_data)->sender_keys;
  auto it = keys.find(sender_key_key(name));
  if (it == keys.end()) return 0;
  *record = buffer_of(it->second.record);
  if (*record == nullptr) return SG_ERR_NOMEM;
  if (!it->second.user_record.empty()) *user_record = buffer_of(it->second.user_record);
  return 1;
}

}  // namespace

bool unverify_user(E2eState& state, const std::string& user) {
  const std::string prefix = user + ":";
  bool cleared = false;
  for (auto& [name, identity] : state.identities) {
    if (name.rfind(prefix, 0) != 0 || !identity.verified) continue;
    identity.verified = false;
    cleared = true;
  }
  if (!cleared) return false;
  state.identities_dirty = true;
  state.warnings.push_back(user + "'s devices changed since you verified them; compare safety " +
                           "numbers again: chatctl verify " + user);
  return true;
}

std::string session_key(const std::string& name, int32_t device_id) {
  return name + "." + std::to_string(device_id);
}

std::string session_key(const signal_protocol_address& address) {
  return session_key(std::string(address.name, address.name_len), address.device_id);
}

std::string E2eStore::dir_for(const std::string& home, const std::string& user,
                              const std::string& device) {
  return home + "/e2e/" + user + "/" + device;
}

bool E2eStore::exists() const {
  struct stat st {};
  return ::stat((dir_ + "/keys.json").c_str(), &st) == 0;
}

Status E2eStore::transact(const std::function<Status(E2eState&)>& operation) const {
  Status s = make_private_dirs(dir_);
  if (!s.is_ok()) return s;
  StoreLock lock(dir_ + "/lock");
  if (!lock.status().is_ok()) return lock.status();
  E2eState state;
  s = load_state(dir_, &state);
  if (!s.is_ok()) return s;
  s = operation(state);
  if (!s.is_ok()) return s;
  return save_state(dir_, &state);
}

Status E2eStore::wipe() const {
  Status s = make_private_dirs(dir_);
  if (!s.is_ok()) return s;
  StoreLock lock(dir_ + "/lock");
  if (!lock.status().is_ok()) return lock.status();
  const std::string sessions_dir = dir_ + "/sessions";
  if (DIR* d = ::opendir(sessions_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") ::unlink((sessions_dir + "/" + name).c_str());
    }
    ::closedir(d);
  }
  for (const char* file :
       {"keys.json", "identities.json", "sender_keys.json", "messages.json", "verify.json"}) {
    std::string path = dir_ + "/" + file;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return unavailable(path + ": " + errno_text());
    }
  }
  sync_dir(dir_);
  return Status::ok();
}

Result<signal_protocol_store_context*> make_store_context(signal_context* global, E2eState* state) {
  signal_protocol_store_context* ctx = nullptr;
  if (signal_protocol_store_context_create(&ctx, global) != 0) {
    return internal_error("libsignal: cannot create a store context");
  }
  signal_protocol_session_store sessions = {
      load_session,   sub_device_sessions, store_session, contains_session,
      delete_session, delete_all_sessions, nullptr,       state};
  signal_protocol_pre_key_store prekeys = {load_pre_key,   store_pre_key, contains_pre_key,
                                           remove_pre_key, nullptr,       state};
  signal_protocol_signed_pre_key_store signed_prekeys = {load_signed_pre_key,
                                                         store_signed_pre_key,
                                                         contains_signed_pre_key,
                                                         remove_signed_pre_key,
                                                         nullptr,
                                                         state};
  signal_protocol_identity_key_store identities = {get_identity_key_pair,
                                                   get_local_registration_id,
                                                   save_identity,
                                                   is_trusted_identity,
                                                   nullptr,
                                                   state};
  signal_protocol_sender_key_store sender_keys = {store_sender_key, load_sender_key, nullptr,
                                                  state};
  if (signal_protocol_store_context_set_session_store(ctx, &sessions) != 0 ||
      signal_protocol_store_context_set_pre_key_store(ctx, &prekeys) != 0 ||
      signal_protocol_store_context_set_signed_pre_key_store(ctx, &signed_prekeys) != 0 ||
      signal_protocol_store_context_set_identity_key_store(ctx, &identities) != 0 ||
      signal_protocol_store_context_set_sender_key_store(ctx, &sender_keys) != 0) {
    signal_protocol_store_context_destroy(ctx);
    return internal_error("libsignal: cannot set up the stores");
  }
  return ctx;
}

}  // namespace chat::tools
