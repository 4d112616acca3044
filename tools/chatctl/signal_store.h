// The Signal protocol state of one chatctl device, kept on disk, and its
// binding to libsignal-protocol-c's store callbacks.
//
// Layout (directory 0700, files 0600, each replaced atomically: temp file,
// fsync, rename, fsync of the directory):
//   <home>/e2e/<user>/<device>/
//     lock             flock target; held for every operation
//     keys.json        registration id, identity key pair, signed prekeys,
//                      one-time prekeys (private halves: never leave here)
//     identities.json  remote identity keys by "<user>:<device>", with a
//                      verified flag
//     sessions/<user>:<device>.<n>.json   one session record per address
//     sender_keys.json sender-key records, and which devices already got
//                      this device's sender key per group
//     messages.json    plaintext cache: decrypted and sent messages by id
//                      (and sent ones by cid until their id is known)
//     verify.json      the safety number last shown per user (chatctl verify),
//                      so --confirm marks only what was compared
//
// `chatctl listen` and `chatctl send` may run at the same time on one
// device: every operation goes through E2eStore::transact, which takes an
// exclusive flock, reloads every file, runs the operation on the in-memory
// state and writes back what changed before unlocking. No session update
// is lost, and a ratchet step is never taken twice from the same state.
#pragma once

#include <signal_protocol.h>

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::tools {

struct RemoteIdentity {
  std::string key;  // the serialized public key (33 bytes: 0x05 + 32)
  bool verified = false;
};

struct SessionBlob {
  std::string record;
  std::string user_record;
};

// Everything, loaded under the lock. Members are plain data; the *_dirty
// flags say what to write back.
struct E2eState {
  // keys.json
  bool initialized = false;
  uint32_t registration_id = 0;
  std::string identity_public;                     // ec_public_key_serialize (33 bytes)
  std::string identity_private;                    // ec_private_key_serialize
  std::map<uint32_t, std::string> signed_prekeys;  // id -> session_signed_pre_key_serialize
  uint32_t signed_prekey_id = 0;                   // the current one (uploaded)
  std::map<uint32_t, std::string> prekeys;         // id -> session_pre_key_serialize
  uint32_t next_prekey_id = 1;
  bool keys_dirty = false;

  // identities.json
  std::map<std::string, RemoteIdentity> identities;  // "<user>:<device>"
  bool identities_dirty = false;

  // sessions/
  std::map<std::string, SessionBlob> sessions;  // "<name>.<device_id>"
  std::set<std::string> sessions_dirty;         // written or deleted

  // sender_keys.json
  std::map<std::string, SessionBlob> sender_keys;  // "<group>|<name>.<device_id>"
  // group ("g:<gid>") -> the devices ("<user>:<device>") that have this
  // device's current sender key for it.
  std::map<std::string, std::set<std::string>> sender_key_holders;
  bool sender_keys_dirty = false;

  // verify.json: user -> the safety number `chatctl verify USER` showed last.
  std::map<std::string, std::string> safety_numbers;
  bool safety_numbers_dirty = false;

  // messages.json: {"by_id": {id: entry}, "by_cid": {cid: entry}, "seq": N}
  nlohmann::json messages = nlohmann::json::object();
  bool messages_dirty = false;

  // Said by the identity callbacks during the operation (an identity that
  // changed); the caller prints them.
  std::vector<std::string> warnings;

  void delete_session(const std::string& address_key) {
    sessions.erase(address_key);
    sessions_dirty.insert(address_key);
  }
};

// A device of `user` appeared or changed its identity: if any of `user`'s
// identities is marked verified, every mark of `user` is cleared (the safety
// number the user compared no longer covers all of `user`'s devices) and a
// warning saying so is added to state.warnings. True when marks were cleared.
bool unverify_user(E2eState& state, const std::string& user);

// "<name>.<device_id>", the key of `sessions`.
std::string session_key(const signal_protocol_address& address);
std::string session_key(const std::string& name, int32_t device_id);

class E2eStore {
 public:
  explicit E2eStore(std::string dir) : dir_(std::move(dir)) {}
  // <home>/e2e/<user>/<device>
  static std::string dir_for(const std::string& home, const std::string& user,
                             const std::string& device);

  const std::string& dir() const { return dir_; }
  // True when keys.json exists (keys init has run).
  bool exists() const;

  // Locks, loads, runs `operation`, writes what changed when it returns ok,
  // unlocks. Not reentrant: `operation` must not call transact again.
  Status transact(const std::function<Status(E2eState&)>& operation) const;

  // Removes every file of the store (keys init --force), under the lock.
  Status wipe() const;

 private:
  std::string dir_;
};

// Binds `state` to a new store context for `global` (callers free it with
// signal_protocol_store_context_destroy). `state` must outlive it.
Result<signal_protocol_store_context*> make_store_context(signal_context* global, E2eState* state);

}  // namespace chat::tools
