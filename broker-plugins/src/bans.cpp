#include "chat/broker/bans.h"

namespace chat::broker {

Status BanList::load() {
  auto users = archive_.banned_users();
  if (!users) return users.status();
  banned_ = std::set<std::string>(users->begin(), users->end());
  return Status::ok();
}

Status BanList::set(const std::string& user, bool banned) {
  Status st = archive_.set_ban(user, banned);
  if (!st.is_ok()) return st;
  if (banned) {
    banned_.insert(user);
  } else {
    banned_.erase(user);
  }
  return Status::ok();
}

}  // namespace chat::broker
