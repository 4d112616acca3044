// BanList: the users an admin banned and the access tokens an admin revoked
// (by `jti`), as the broker decides on them.
//
// Persisted in the broker's archive (meta, ban\0<user> and revoked\0<jti>) so
// both survive restarts; loaded once at start and mirrored in memory, so the
// CONNECT check costs no disk read. Changed only through the control topic
// (user.ban / user.unban / token.revoke), which writes the archive first and
// this cache second. Not thread-safe (the broker's single plugin thread).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "chat/common/status.h"
#include "chat/store/archive.h"

namespace chat::broker {

class BanList {
 public:
  explicit BanList(store::Archive& archive) : archive_(archive) {}

  // Reads every ban from the archive (call once at start).
  Status load();
  bool is_banned(const std::string& user) const { return banned_.count(user) > 0; }
  // Writes the archive, then the cache. Idempotent.
  Status set(const std::string& user, bool banned);
  const std::set<std::string>& users() const { return banned_; }

  // Revoked tokens. exp_s: the token's expiry (0 = unknown: kept for good).
  bool is_revoked(const std::string& jti) const { return revoked_.count(jti) > 0; }
  Status revoke(const std::string& jti, int64_t exp_s);
  // Forgets revocations of tokens expired before `now_s - grace_s` (they are
  // refused for expiry anyway). Returns how many were dropped.
  size_t forget_expired(int64_t now_s, int64_t grace_s);
  size_t revoked_count() const { return revoked_.size(); }

 private:
  store::Archive& archive_;
  std::set<std::string> banned_;
  std::map<std::string, int64_t> revoked_;  // jti -> exp seconds (0: unknown)
};

}  // namespace chat::broker
