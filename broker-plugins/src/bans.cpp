#include "chat/broker/bans.h"

namespace chat::broker {

Status BanList::load() {
  auto users = archive_.banned_users();
  if (!users) return users.status();
  banned_ = std::set<std::string>(users->begin(), users->end());
  auto revoked = archive_.revoked_tokens();
  if (!revoked) return revoked.status();
  revoked_ = std::map<std::string, int64_t>(revoked->begin(), revoked->end());
  return Status::ok();
}

Status BanList::revoke(const std::string& jti, int64_t exp_s) {
  Status st = archive_.set_revoked(jti, exp_s);
  if (!st.is_ok()) return st;
  revoked_[jti] = exp_s;
  return Status::ok();
}

size_t BanList::forget_expired(int64_t now_s, int64_t grace_s) {
  size_t dropped = 0;
  for (auto it = revoked_.begin(); it != revoked_.end();) {
    if (it->second > 0 && it->second < now_s - grace_s &&
        archive_.forget_revoked(it->first).is_ok()) {
      it = revoked_.erase(it);
      ++dropped;
    } else {
      ++it;
    }
  }
  return dropped;
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
