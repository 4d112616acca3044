// AccountOrigins: whether each user id is a local account (signed up through
// chat-api, tokens from the embedded issuer) or an external one (provisioned
// from an external OIDC provider's token), so neither origin's tokens can log
// in as the other's users (docs/oidc.md).
//
// Persisted in the broker's archive (meta, origin\0<user> -> "external" |
// "deleted"; no mark = local, which every archive made before this has);
// loaded once at start and mirrored in memory, so the CONNECT check costs no
// disk read. Not thread-safe (the broker's single plugin thread).
#pragma once

#include <string>
#include <unordered_map>

#include "chat/common/status.h"
#include "chat/store/archive.h"

namespace chat::broker {

class AccountOrigins {
 public:
  explicit AccountOrigins(store::Archive& archive) : archive_(archive) {}

  // Reads every mark from the archive (call once at start).
  Status load();

  // CONNECT with a verified token of this origin. kPermissionDenied for a
  // removed user, an external token for a local user (one the archive's user
  // set holds without an external mark) and a local token for an external
  // user. An external user not known yet is provisioned: marked, then added
  // to the user set (so others can message them).
  Status admit(const std::string& user, bool external);

  // Control user.add (chat-api). kPermissionDenied when the user exists with
  // the other origin (a sign-up racing an external user's first CONNECT);
  // re-adding a removed user clears its removal.
  Status add(const std::string& user, bool external);
  // Control user.remove, after the archive forgot the user: marks it removed,
  // so an external provider's tokens cannot bring it back.
  Status removed(const std::string& user);

  bool is_external(const std::string& user) const;

 private:
  Status mark(const std::string& user, const std::string& mark);

  store::Archive& archive_;
  std::unordered_map<std::string, std::string> marks_;  // user -> mark
};

}  // namespace chat::broker
