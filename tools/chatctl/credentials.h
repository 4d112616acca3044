// Credentials: a logged-in profile whose access token is kept fresh.
//
// Every command that talks to the platform as a user asks fresh() for the
// profile first. A token that expires within refresh_margin_seconds() is
// exchanged with the refresh_token grant; the rotated refresh token is saved
// before anything else happens (the old one no longer works). The exchange
// runs under the profile store's lock and re-reads the profile first, so two
// chatctl processes never both spend the same refresh token.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chat/common/clock.h"
#include "chat/common/status.h"
#include "chatctl/api_client.h"
#include "chatctl/profile.h"

namespace chat::tools {

// 60 s, or half the token's lifetime when that is shorter (so a server with
// a 30 s token TTL does not make every call refresh).
int64_t refresh_margin_seconds(const Profile& profile);
bool needs_refresh(const Profile& profile, int64_t now_s);

// Fills the token fields of `profile` from a grant received at `now_s`.
void apply_token_grant(const TokenGrant& grant, int64_t now_s, Profile* profile);

// The message that tells the user how to recover from a lost session.
std::string login_again_hint(std::string_view user);

class Credentials {
 public:
  // References must outlive this object. Not thread-safe.
  Credentials(const ProfileStore& store, ApiClient& api, const Clock& clock, std::string user)
      : store_(store), api_(api), clock_(clock), user_(std::move(user)) {}

  const std::string& user() const { return user_; }

  // The profile, with an access token valid for at least the refresh margin.
  // `rejected_token`: an access token the server has just refused (HTTP 401,
  // CONNACK "not authorized"); it is replaced even if it looks valid, unless
  // another process already did.
  // Errors: kUnauthenticated (not logged in, or the refresh token was refused:
  // the message says to run `chatctl login`), kUnavailable (the API could not
  // be reached and the current token has expired), kNotFound (no profile).
  Result<Profile> fresh(std::string_view rejected_token = {});

 private:
  const ProfileStore& store_;
  ApiClient& api_;
  const Clock& clock_;
  std::string user_;
};

}  // namespace chat::tools
