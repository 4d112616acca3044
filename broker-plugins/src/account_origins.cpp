#include "chat/broker/account_origins.h"

#include <algorithm>

#include "chat/common/oidc.h"

namespace chat::broker {
namespace {

constexpr char kDeleted[] = "deleted";
// "external:<sub>"
const std::string kExternalPrefix = std::string(oidc::kExternalOrigin) + ":";

bool is_external_mark(const std::string& mark) { return mark.rfind(kExternalPrefix, 0) == 0; }

bool is_known_mark(const std::string& mark) {
  return mark.empty() || mark == kDeleted || is_external_mark(mark);
}

std::string external_mark(const std::string& sub) { return kExternalPrefix + sub; }

Status not_understood(const std::string& user) {
  return permission_denied("the origin record of " + user +
                           " is not understood (archive meta origin\\0" + user + ")");
}

Status other_subject(const std::string& user, const std::string& bound, const std::string& sub) {
  return permission_denied(user + " belongs to another subject of the identity provider (bound: " +
                           bound + ", token: " + sub + ")");
}

}  // namespace

Status AccountOrigins::load() {
  auto marks = archive_.user_marks();
  if (!marks) return marks.status();
  marks_.clear();
  for (auto& [user, mark] : *marks) marks_.emplace(std::move(user), std::move(mark));
  return Status::ok();
}

std::vector<std::string> AccountOrigins::unrecognized() const {
  std::vector<std::string> out;
  for (const auto& [user, mark] : marks_) {
    if (!is_known_mark(mark)) out.push_back(user);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool AccountOrigins::is_external(const std::string& user) const {
  auto it = marks_.find(user);
  return it != marks_.end() && is_external_mark(it->second);
}

std::optional<std::string> AccountOrigins::subject(const std::string& user) const {
  auto it = marks_.find(user);
  if (it == marks_.end() || !is_external_mark(it->second)) return std::nullopt;
  return it->second.substr(kExternalPrefix.size());
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

Status AccountOrigins::admit(const std::string& user, bool external, const std::string& sub) {
  auto it = marks_.find(user);
  const std::string current = it == marks_.end() ? "" : it->second;
  if (current == kDeleted) return permission_denied("the account of " + user + " was deleted");
  if (!is_known_mark(current)) return not_understood(user);
  if (!external) {
    if (is_external_mark(current)) {
      return permission_denied(user +
                               " is an external account: sign in with the identity provider");
    }
    return Status::ok();
  }
  if (!oidc::is_valid_subject(sub)) return unauthenticated("the token has no usable sub");
  auto exists = archive_.has_user(user);
  if (!exists) return exists.status();
  if (!is_external_mark(current)) {
    if (*exists) return permission_denied(user + " is a local account, not the provider's");
    // An admin id taken by a provider token before chat-api announced it
    // would lock the local admin out and hand the token's holder its inbox.
    if (admins_.count(user) > 0) {
      return permission_denied(user +
                               " is listed in CHAT_ADMINS: only chat-api creates its account");
    }
    // Marked first: should the second write fail, the next CONNECT adds the user.
    if (Status st = mark(user, external_mark(sub)); !st.is_ok()) return st;
  } else {
    const std::string bound = current.substr(kExternalPrefix.size());
    if (bound.empty()) {
      if (Status st = mark(user, external_mark(sub)); !st.is_ok()) return st;
    } else if (bound != sub) {
      return other_subject(user, bound, sub);
    }
  }
  if (!*exists) return archive_.add_user(user);
  return Status::ok();
}

Status AccountOrigins::add(const std::string& user, bool external, const std::string& sub) {
  auto it = marks_.find(user);
  const std::string current = it == marks_.end() ? "" : it->second;
  if (!is_known_mark(current)) return not_understood(user);
  if (!sub.empty() && (!external || !oidc::is_valid_subject(sub))) {
    return invalid_argument("sub must be 1 to 255 bytes without NUL, with origin external");
  }
  std::string wanted;
  if (!external) {
    if (is_external_mark(current)) {
      return permission_denied(user + " exists as an external account");
    }
  } else if (!is_external_mark(current)) {
    auto exists = archive_.has_user(user);
    if (!exists) return exists.status();
    if (*exists && current != kDeleted) {
      return permission_denied(user + " exists as a local account");
    }
    wanted = external_mark(sub);
  } else {
    const std::string bound = current.substr(kExternalPrefix.size());
    if (!bound.empty() && !sub.empty() && bound != sub) return other_subject(user, bound, sub);
    wanted = bound.empty() ? external_mark(sub) : current;
  }
  if (current != wanted) {
    if (Status st = mark(user, wanted); !st.is_ok()) return st;
  }
  return archive_.add_user(user);
}

Status AccountOrigins::removed(const std::string& user) { return mark(user, kDeleted); }

}  // namespace chat::broker
