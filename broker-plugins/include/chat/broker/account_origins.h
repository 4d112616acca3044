// AccountOrigins: whether each user id is a local account (signed up through
// chat-api, tokens from the embedded issuer) or an external one (provisioned
// from an external OIDC provider's token), so neither origin's tokens can log
// in as the other's users (docs/oidc.md); and which subject of the provider
// (its `sub`) an external account belongs to, so the provider's user claim
// (e.g. preferred_username) passing to someone else does not hand them the
// account.
//
// Persisted in the broker's archive (meta, origin\0<user> ->
// "external:<sub>" | "deleted"; no mark = local, which every archive made
// before this has). "external:" with an empty sub is an external CHAT_ADMINS
// account chat-api created that nobody signed in to yet: the first provider
// token for it binds it. Any other value is not understood: that user is
// refused with either origin's tokens until an operator fixes it (see
// unrecognized()). Loaded once at start and mirrored in memory, so the
// CONNECT check costs no disk read. Not thread-safe (the broker's single
// plugin thread).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/common/status.h"
#include "chat/store/archive.h"

namespace chat::broker {

class AccountOrigins {
 public:
  explicit AccountOrigins(store::Archive& archive) : archive_(archive) {}

  // Reads every mark from the archive (call once at start).
  Status load();
  // Users whose mark load() did not understand (refused with any token), sorted.
  std::vector<std::string> unrecognized() const;

  // The CHAT_ADMINS ids (plugin_opt_admins): an external token never
  // provisions them at CONNECT; only chat-api does (user.add).
  void set_admins(std::vector<std::string> admins) {
    admins_ = std::set<std::string>(admins.begin(), admins.end());
  }

  // CONNECT with a verified token of this origin; `sub` is the provider's
  // subject of an external token. kPermissionDenied for a removed user, an
  // external token for a local user (one the archive's user set holds without
  // an external mark) or for an external user bound to another subject, a
  // local token for an external user, and an external token for a CHAT_ADMINS
  // id chat-api has not created yet. An external user not known yet is
  // provisioned: marked (bound to `sub`), then added to the user set (so
  // others can message them); one not bound yet is bound to `sub`.
  Status admit(const std::string& user, bool external, const std::string& sub = "");

  // Control user.add (chat-api). kPermissionDenied when the user exists with
  // the other origin (a sign-up racing an external user's first CONNECT), or
  // is external and bound to another subject than a non-empty `sub`;
  // re-adding a removed user clears its removal. External with an empty
  // `sub`: the account is created unbound (CHAT_ADMINS), or keeps its binding.
  Status add(const std::string& user, bool external, const std::string& sub = "");
  // Control user.remove, after the archive forgot the user: marks it removed,
  // so an external provider's tokens cannot bring it back.
  Status removed(const std::string& user);

  bool is_external(const std::string& user) const;
  // The provider subject an external user is bound to ("" = not bound yet);
  // nullopt for any other user.
  std::optional<std::string> subject(const std::string& user) const;

 private:
  Status mark(const std::string& user, const std::string& mark);

  store::Archive& archive_;
  std::unordered_map<std::string, std::string> marks_;  // user -> mark
  std::set<std::string> admins_;
};

}  // namespace chat::broker
