#include "chat/broker/gatekeeper.h"

#include <algorithm>

#include "chat/common/ids.h"
#include "chat/common/topics.h"

namespace chat::broker {

Gatekeeper::Gatekeeper(const Clock& clock, jwt::KeySet keys, jwt::VerifyOptions verify,
                       SharesConversation shares_conversation)
    : clock_(clock),
      keys_(std::move(keys)),
      verify_(std::move(verify)),
      shares_conversation_(std::move(shares_conversation)) {}

Status Gatekeeper::authenticate(const void* handle, std::string_view client_id,
                                const char* username, const char* password) {
  if (username == nullptr || password == nullptr) {
    return unauthenticated("username and access token required");
  }
  // The token's `iss` picks the trust domain; each verifies with its own keys only.
  const bool external =
      external_.enabled() && oidc::unverified_issuer(password) == external_.issuer;
  std::string provider_sub;  // the provider's `sub` (external tokens)
  auto claims = external ? verify_external(password, &provider_sub)
                         : jwt::verify_jwt(password, keys_, verify_, clock_.now_s());
  if (!claims) return claims.status();
  if (claims->sub != username) return unauthenticated("username does not match the token's sub");

  DeviceSession s;
  if (!split_client_id(client_id, &s.user, &s.device) || s.user != claims->sub) {
    return permission_denied("client id must be <user>:<device> for the token's user");
  }
  s.service = claims->has_role(kServiceRole);
  bool service_name = s.user.compare(0, kServicePrefix.size(), kServicePrefix) == 0;
  if (s.service != service_name) {
    return permission_denied("service role and svc. account names go together");
  }
  if (banned_ && banned_(s.user)) return permission_denied("user " + s.user + " is banned");
  if (!claims->jti.empty() && revoked_ && revoked_(claims->jti)) {
    return permission_denied("the access token was revoked");
  }
  // Last, as it may provision an external user: only for an accepted CONNECT.
  if (origin_check_) {
    if (Status st = origin_check_(s.user, external, provider_sub); !st.is_ok()) return st;
  }
  s.jti = claims->jti;
  s.client_id.assign(client_id);
  s.connected_ms = clock_.now_ms();
  s.expires_s = claims->exp;
  // Session takeover: Mosquitto publishes the old connection's will before it
  // disconnects it; without a session of its own, that will fails the ACL
  // instead of bypassing the router.
  if (auto prev = by_client_id_.find(s.client_id);
      prev != by_client_id_.end() && prev->second != handle) {
    const void* prev_handle = prev->second;
    by_client_id_.erase(prev);  // its key views the session erased next
    if (auto it = sessions_.find(prev_handle); it != sessions_.end()) {
      if (observer_) observer_(it->second, false);
      sessions_.erase(it);
    }
  }
  if (auto old = sessions_.find(handle); old != sessions_.end()) {
    if (observer_) observer_(old->second, false);
    if (auto idx = by_client_id_.find(old->second.client_id);
        idx != by_client_id_.end() && idx->second == handle) {
      by_client_id_.erase(idx);
    }
  }
  DeviceSession& stored = sessions_[handle] = std::move(s);
  by_client_id_[stored.client_id] = handle;
  if (observer_) observer_(stored, true);
  return Status::ok();
}

Result<jwt::Claims> Gatekeeper::verify_external(std::string_view token,
                                                std::string* provider_sub) const {
  auto id = oidc::verify(token, external_keys_, external_, verify_.leeway_s, clock_.now_s());
  if (!id) return id.status();
  *provider_sub = std::move(id->subject);
  jwt::Claims claims = std::move(id->claims);
  claims.sub = id->user;  // our user id, from the provider's user claim
  // The broker grants no admin powers (admins act through chat-api); never service.
  claims.roles = oidc::granted_roles(id->provider_roles, /*listed_admin=*/false);
  return claims;
}

void Gatekeeper::disconnected(const void* handle) {
  auto it = sessions_.find(handle);
  if (it == sessions_.end()) return;
  if (observer_) observer_(it->second, false);
  if (auto idx = by_client_id_.find(it->second.client_id);
      idx != by_client_id_.end() && idx->second == handle) {
    by_client_id_.erase(idx);
  }
  sessions_.erase(it);
}

const DeviceSession* Gatekeeper::session(const void* handle) const {
  auto it = sessions_.find(handle);
  return it == sessions_.end() ? nullptr : &it->second;
}

bool Gatekeeper::allowed(const void* handle, std::string_view client_id, Access access,
                         std::string_view topic, int qos) const {
  const DeviceSession* s = session(handle);
  switch (access) {
    case Access::kUnsubscribe:
      return true;
    case Access::kRead: {
      std::string user, device;
      if (s != nullptr) {
        user = s->user;
      } else if (!split_client_id(client_id, &user, &device)) {
        return false;
      }
      if (s != nullptr && s->service) {
        return topic == topics::kControlResponse || topic == topics::kControlStats ||
               topic == topics::kControlPush || topic == topics::kSysMessagesDropped;
      }
      std::string_view t = topic;
      if (t.substr(0, 2) == "u/" && t.substr(2, user.size()) == user &&
          t.substr(2 + user.size(), 1) == "/") {
        return true;
      }
      return topics::parse_presence(topic, nullptr);
    }
    case Access::kSubscribe:
      return s != nullptr && allowed_subscribe(*s, topic);
    case Access::kWrite:
      return s != nullptr && allowed_write(*s, topic, qos);
  }
  return false;
}

bool Gatekeeper::allowed_subscribe(const DeviceSession& s, std::string_view filter) const {
  if (s.service) {
    return filter == topics::kControlResponse || filter == topics::kControlStats ||
           filter == topics::kControlPush || filter == topics::kSysMessagesDropped;
  }
  if (topics::is_own_inbox_filter(filter, s.user)) return true;
  std::string peer;
  if (topics::parse_presence(filter, &peer)) {
    return peer == s.user || (shares_conversation_ && shares_conversation_(s.user, peer));
  }
  return false;
}

bool Gatekeeper::allowed_write(const DeviceSession& s, std::string_view topic, int qos) const {
  if (s.service) return topic == topics::kControl;
  auto t = topics::parse_send_topic(topic);
  switch (t.kind) {
    case topics::SendKind::kInvalid:
      return false;
    case topics::SendKind::kDirectTyping:
    case topics::SendKind::kGroupTyping:
      return qos == 0;
    default:
      return qos == 1 || qos == 2;
  }
}

size_t Gatekeeper::connected_devices() const {
  size_t n = 0;
  for (const auto& [handle, s] : sessions_) n += s.service ? 0 : 1;
  return n;
}

std::vector<DeviceSession> Gatekeeper::devices() const {
  std::vector<DeviceSession> out;
  for (const auto& [handle, s] : sessions_) {
    if (!s.service) out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const DeviceSession& a, const DeviceSession& b) {
    return a.client_id < b.client_id;
  });
  return out;
}

std::vector<std::string> Gatekeeper::clients_with_jti(const std::string& jti) const {
  std::vector<std::string> out;
  if (jti.empty()) return out;
  for (const auto& [handle, s] : sessions_) {
    if (s.jti == jti) out.push_back(s.client_id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Gatekeeper::take_expired() {
  std::vector<std::string> out;
  int64_t now = clock_.now_s();
  for (auto& [handle, s] : sessions_) {
    // The rule CONNECT applied (leeway clamped, no overflow for any exp).
    if (!s.kicked && jwt::is_expired(s.expires_s, verify_.leeway_s, now)) {
      s.kicked = true;
      out.push_back(s.client_id);
    }
  }
  return out;
}

}  // namespace chat::broker
