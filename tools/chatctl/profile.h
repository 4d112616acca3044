// Profiles: what chatctl remembers per user between runs.
//
// Layout under the home directory (created with mode 0700):
//   <home>/<user>.json   the profile, mode 0600, replaced atomically (rename)
//   <home>/current       the name of the profile last logged in, plus "\n"
//
// Several chatctl processes may share a home (a `listen` saving its cursor
// while a `send` refreshes the token). Refresh tokens rotate, so a
// read-modify-write must not lose a newer token: every change goes through
// ProfileStore::update, which holds an exclusive flock on the home directory
// while it re-reads, changes and writes the file.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "chat/common/status.h"

namespace chat::tools {

struct Profile {
  std::string user;
  std::string device;             // this installation's device id (cli-<8 hex> by default)
  std::string access_token;       // "" when logged out
  int64_t access_expires_at = 0;  // Unix seconds
  int64_t access_lifetime = 0;    // seconds, the `expires_in` it was granted with
  std::string refresh_token;      // "" when logged out
  std::string sync_cursor;        // last `next` of /v1/sync; "" = from the beginning
  // The servers of the last successful login ("" = none remembered: a profile
  // from before they were saved). Commands use them when neither an option nor
  // an environment variable names a server (resolve_settings).
  std::string api;      // REST base URL, e.g. "https://127.0.0.1:8080"
  std::string mqtt;     // MQTT server URI, e.g. "ssl://127.0.0.1:8883"
  std::string ca_file;  // absolute path of the extra CA; "" = the system trust store

  bool logged_in() const { return !refresh_token.empty() || !access_token.empty(); }
  void forget_tokens() {
    access_token.clear();
    refresh_token.clear();
    access_expires_at = 0;
    access_lifetime = 0;
  }
};

// Creates `dir` and its missing parents, each with mode 0700 whatever the
// umask (chatctl's home and the Signal store hold tokens and private keys).
// An existing directory is left as it is; kInvalidArgument when `dir` exists
// and is no directory, kUnavailable when one cannot be made.
Status make_private_dirs(const std::string& dir);

nlohmann::json profile_to_json(const Profile& profile);
// kInvalidArgument when a field has the wrong type or the user id is invalid.
Result<Profile> profile_from_json(const nlohmann::json& j);

class ProfileStore {
 public:
  explicit ProfileStore(std::string home) : home_(std::move(home)) {}

  const std::string& home() const { return home_; }
  std::string path_for(std::string_view user) const;

  // Creates the home directory (and missing parents) with mode 0700. An
  // existing directory is left as it is.
  Status ensure_home() const;

  // kNotFound when there is no profile for `user`.
  Result<Profile> load(std::string_view user) const;
  // Writes <home>/<user>.json atomically with mode 0600. Callers that may race
  // with other processes use update() instead.
  Status save(const Profile& profile) const;
  // The user named in <home>/current; kNotFound when none.
  Result<std::string> current_user() const;
  Status set_current_user(std::string_view user) const;

  // Locks the home directory, loads `user`'s profile (a fresh one with only
  // `user` set when none exists, if create_missing; else kNotFound), calls
  // `change`, and saves the result when `change` returns ok. Returns the
  // profile as saved, or the status of `change` when it fails (nothing saved).
  Result<Profile> update(std::string_view user, bool create_missing,
                         const std::function<Status(Profile&)>& change) const;

 private:
  std::string home_;
};

}  // namespace chat::tools
