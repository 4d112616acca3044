#include "chatctl/credentials.h"

#include <algorithm>

namespace chat::tools {

int64_t refresh_margin_seconds(const Profile& profile) {
  constexpr int64_t kMargin = 60;
  if (profile.access_lifetime > 0) return std::min(kMargin, profile.access_lifetime / 2);
  return kMargin;
}

bool needs_refresh(const Profile& profile, int64_t now_s) {
  if (profile.access_token.empty()) return true;
  return profile.access_expires_at - now_s <= refresh_margin_seconds(profile);
}

void apply_token_grant(const TokenGrant& grant, int64_t now_s, Profile* profile) {
  profile->access_token = grant.access_token;
  profile->refresh_token = grant.refresh_token;
  profile->access_lifetime = grant.expires_in;
  profile->access_expires_at = now_s + grant.expires_in;
}

std::string login_again_hint(std::string_view user) {
  return "run `chatctl login " + std::string(user) + "` again";
}

Result<Profile> Credentials::fresh(std::string_view rejected_token) {
  auto updated = store_.update(user_, /*create_missing=*/false, [&](Profile& p) -> Status {
    if (!p.logged_in()) {
      return unauthenticated("not logged in as " + user_ + ": run `chatctl login " + user_ + "`");
    }
    int64_t now = clock_.now_s();
    bool rejected = !rejected_token.empty() && p.access_token == rejected_token;
    if (!rejected && !needs_refresh(p, now)) return Status::ok();
    if (p.refresh_token.empty()) {
      return unauthenticated("the session of " + user_ +
                             " has expired: " + login_again_hint(user_));
    }
    auto response = api_.refresh_grant(p.refresh_token);
    bool still_valid = !rejected && !p.access_token.empty() && p.access_expires_at > now;
    if (!response) {
      // Keep going on a token that still works; the next call retries.
      if (still_valid) return Status::ok();
      return unavailable("cannot refresh the access token: " + response.status().message());
    }
    if (response->status >= 500 || response->status == 429) {
      if (still_valid) return Status::ok();
      return unavailable("cannot refresh the access token: " +
                         status_from_response(*response).message());
    }
    auto grant = parse_token_grant(*response);
    if (!grant) {
      if (response->ok()) return grant.status();
      return unauthenticated("the session of " + user_ + " has expired or was revoked (" +
                             grant.status().message() + "): " + login_again_hint(user_));
    }
    apply_token_grant(*grant, clock_.now_s(), &p);
    return Status::ok();
  });
  if (!updated && updated.status().code() == StatusCode::kNotFound) {
    return unauthenticated("no profile for " + user_ + " in " + store_.home() +
                           ": run `chatctl login " + user_ + "`");
  }
  return updated;
}

}  // namespace chat::tools
