// Gatekeeper: who may connect (JWT bearer tokens) and what each connected
// device may subscribe to, read and publish (CONTRACT §3).
//
// Pure logic over an injected clock and key set; the extern "C" trampolines in
// plugin.cpp feed it Mosquitto's events. Not thread-safe: Mosquitto runs every
// plugin callback on one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "chat/common/clock.h"
#include "chat/common/jwt.h"
#include "chat/common/oidc.h"
#include "chat/common/status.h"

namespace chat::broker {

inline constexpr std::string_view kServiceRole = "service";
inline constexpr std::string_view kServicePrefix = "svc.";

// One authenticated connection.
struct DeviceSession {
  std::string user;
  std::string device;
  std::string client_id;
  int64_t expires_s = 0;
  int64_t connected_ms = 0;  // when this connection authenticated
  bool service = false;
  bool kicked = false;  // expiry kick already requested
  std::string jti;      // the access token's id ("" when it has none)
};

enum class Access { kSubscribe, kUnsubscribe, kRead, kWrite };

class Gatekeeper {
 public:
  // `shares_conversation(a, b)`: whether a and b have a conversation (for
  // presence subscriptions). Must be cheap: called on SUBSCRIBE only.
  using SharesConversation = std::function<bool(const std::string&, const std::string&)>;

  Gatekeeper(const Clock& clock, jwt::KeySet keys, jwt::VerifyOptions verify,
             SharesConversation shares_conversation);

  // CONNECT with username/password. On success the connection (identified by
  // `handle`, Mosquitto's client pointer) is remembered until disconnected().
  Status authenticate(const void* handle, std::string_view client_id, const char* username,
                      const char* password);
  void disconnected(const void* handle);
  const DeviceSession* session(const void* handle) const;

  // The ACL decision. `client_id` is used when the connection has no live
  // session: Mosquitto checks READ access while queueing for offline
  // persistent sessions, and the client id of such a session was bound to
  // its user when it authenticated.
  bool allowed(const void* handle, std::string_view client_id, Access access,
               std::string_view topic, int qos) const;

  // Client ids whose token has expired (beyond the leeway) and that were not
  // reported before. Call periodically; kick each.
  std::vector<std::string> take_expired();

  void replace_keys(jwt::KeySet keys) { keys_ = std::move(keys); }

  // An external OAuth 2.0 / OIDC provider trusted next to the embedded issuer
  // (docs/oidc.md). A token whose `iss` is the provider's is verified with the
  // provider's keys only, any other with the embedded issuer's keys only.
  // Default: none.
  void set_external(oidc::Provider provider, jwt::KeySet keys) {
    external_ = std::move(provider);
    external_keys_ = std::move(keys);
  }
  // Key rotation: later CONNECTs verify with these keys only.
  void replace_external_keys(jwt::KeySet keys) { external_keys_ = std::move(keys); }
  bool has_external() const { return external_.enabled(); }
  // Decides whether `user` may log in with a token of this origin (`external`:
  // the provider's, whose subject is `sub`; "" for the embedded issuer's) and
  // provisions an external user on first use; called last, for a CONNECT that
  // passed every other check. Default: none (all allowed).
  using OriginCheck =
      std::function<Status(const std::string& user, bool external, const std::string& sub)>;
  void set_origin_check(OriginCheck check) { origin_check_ = std::move(check); }

  // Told of every session that starts (true) or ends (false), takeovers
  // included: presence is derived from it.
  using SessionObserver = std::function<void(const DeviceSession&, bool started)>;
  void set_session_observer(SessionObserver observer) { observer_ = std::move(observer); }
  size_t connected() const { return sessions_.size(); }
  // Refuses CONNECT of users it names (admin bans): permission denied. Default: none.
  using BannedCheck = std::function<bool(const std::string& user)>;
  void set_banned_check(BannedCheck check) { banned_ = std::move(check); }
  // Refuses CONNECT with tokens it names by jti (admin revocation): permission
  // denied. Default: none.
  using RevokedCheck = std::function<bool(const std::string& jti)>;
  void set_revoked_check(RevokedCheck check) { revoked_ = std::move(check); }
  // Client ids of the live connections authenticated with this token.
  std::vector<std::string> clients_with_jti(const std::string& jti) const;
  // The live device (non-service) sessions, by client id.
  std::vector<DeviceSession> devices() const;
  // Whether a connection with this client id is live.
  bool is_connected(const std::string& client_id) const {
    return by_client_id_.count(client_id) > 0;
  }
  // Connected sessions that are not service clients (devices).
  size_t connected_devices() const;

 private:
  // The provider's token as our claims: sub = the user claim, roles granted
  // by us; *provider_sub = the provider's own `sub`.
  Result<jwt::Claims> verify_external(std::string_view token, std::string* provider_sub) const;
  bool allowed_write(const DeviceSession& s, std::string_view topic, int qos) const;
  bool allowed_subscribe(const DeviceSession& s, std::string_view filter) const;

  const Clock& clock_;
  jwt::KeySet keys_;
  jwt::VerifyOptions verify_;
  SharesConversation shares_conversation_;
  std::unordered_map<const void*, DeviceSession> sessions_;
  // The live connection of each client id. Keys view the client_id of the
  // session they name (unordered_map nodes never move): one copy of each
  // client id per connection. An entry goes before its session does.
  std::unordered_map<std::string_view, const void*> by_client_id_;
  SessionObserver observer_;
  BannedCheck banned_;
  RevokedCheck revoked_;
  oidc::Provider external_;
  jwt::KeySet external_keys_;
  OriginCheck origin_check_;
};

}  // namespace chat::broker
