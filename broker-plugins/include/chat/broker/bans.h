// BanList: the users an admin banned (issue 5), as the broker decides on them.
//
// Persisted in the broker's archive (meta, ban\0<user>) so bans survive
// restarts; loaded once at start and mirrored in memory, so the CONNECT check
// costs no disk read. Changed only through the control topic (user.ban /
// user.unban), which writes the archive first and this cache second. Not
// thread-safe (the broker's single plugin thread).
#pragma once

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

 private:
  store::Archive& archive_;
  std::set<std::string> banned_;
};

}  // namespace chat::broker
