#include "chat/broker/account_origins.h"

#include "chat/common/oidc.h"

namespace chat::broker {
namespace {

constexpr char kDeleted[] = "deleted";
const std::string kExternal(oidc::kExternalOrigin);

}  // namespace

Status AccountOrigins::load() {
  auto marks = archive_.user_marks();
  if (!marks) return marks.status();
  marks_.clear();
  for (auto& [user, mark] : *marks) marks_.emplace(std::move(user), std::move(mark));
  return Status::ok();
}

bool AccountOrigins::is_external(const std::string& user) const {
  auto it = marks_.find(user);
  return it != marks_.end() && it->second == kExternal;
}

Status AccountOrigins::mark(const std::string& user, const std::string& mark) {
  Status st = archive_.set_user_mark(user, mark);
  if (!st.is_ok()) return st;
  if (mark.empty()) {
    marks_.erase(user);
  } else {
    marks_[user] = mark;
  }
  return Status::ok();
}

Status AccountOrigins::admit(const std::string& user, bool external) {
  auto it = marks_.find(user);
  const std::string current = it == marks_.end() ? "" : it->second;
  if (current == kDeleted) return permission_denied("the account of " + user + " was deleted");
  if (!external) {
    if (current == kExternal) {
      return permission_denied(user +
                               " is an external account: sign in with the identity provider");
    }
    return Status::ok();
  }
  auto exists = archive_.has_user(user);
  if (!exists) return exists.status();
  if (current != kExternal) {
    if (*exists) return permission_denied(user + " is a local account, not the provider's");
    // Marked first: should the second write fail, the next CONNECT adds the user.
    if (Status st = mark(user, kExternal); !st.is_ok()) return st;
  }
  if (!*exists) return archive_.add_user(user);
  return Status::ok();
}

Status AccountOrigins::add(const std::string& user, bool external) {
  auto it = marks_.find(user);
  const std::string current = it == marks_.end() ? "" : it->second;
  if (current == kExternal && !external) {
    return permission_denied(user + " exists as an external account");
  }
  if (external && current != kExternal) {
    auto exists = archive_.has_user(user);
    if (!exists) return exists.status();
    if (*exists && current != kDeleted) {
      return permission_denied(user + " exists as a local account");
    }
  }
  const std::string wanted = external ? kExternal : "";
  if (current != wanted) {
    if (Status st = mark(user, wanted); !st.is_ok()) return st;
  }
  return archive_.add_user(user);
}

Status AccountOrigins::removed(const std::string& user) { return mark(user, kDeleted); }

}  // namespace chat::broker
