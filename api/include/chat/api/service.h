// chat-api's logic, apart from HTTP: accounts and the OAuth 2.0 grants,
// history and sync over the archive reader, and the broker round-trips. Every
// operation returns a Status/Result; http_server.cpp maps them to HTTP once.
//
// Thread-safe: the HTTP pool calls it from many threads at once.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "chat/api/config.h"
#include "chat/api/control.h"
#include "chat/api/passwords.h"
#include "chat/api/tokens.h"
#include "chat/common/clock.h"
#include "chat/common/status.h"
#include "chat/store/accounts.h"
#include "chat/store/archive.h"

namespace chat::api {

// Paging limits (CONTRACT §4: the maximum is at least 500).
inline constexpr size_t kDefaultPageLimit = 50;
inline constexpr size_t kDefaultSyncLimit = 500;
inline constexpr size_t kMaxPageLimit = 500;
inline constexpr size_t kMaxConversations = 500;
// POST /v1/groups input bounds (the broker's CHAT_GROUP_MAX_MEMBERS is the
// real size limit; this only bounds one request).
inline constexpr size_t kMaxGroupNameChars = 100;
inline constexpr size_t kMaxGroupCreateMembers = 1024;
// POST /v1/reports input bounds.
inline constexpr size_t kMaxReportIds = 100;
inline constexpr size_t kMaxReportReasonChars = 1000;
// How long a REST request waits for the broker's control answer.
inline constexpr std::chrono::milliseconds kControlTimeout{5000};
// The service identity and its token lifetime (the control client's password).
inline constexpr std::string_view kServiceUser = "svc.chat-api";
inline constexpr int64_t kServiceTokenTtlS = 24 * 3600;

// The answer of a successful grant (RFC 6749 §5.1).
struct TokenGrant {
  std::string access_token;
  int64_t expires_in = 0;
  std::string refresh_token;
};

struct HistoryQuery {
  size_t limit = kDefaultPageLimit;
  std::string before;  // exclusive upper bound, or empty
  std::string after;   // exclusive lower bound, or empty (at most one of the two)
};

// Envelopes are the archived JSON text, oldest first.
struct MessagePage {
  std::vector<std::string> envelopes;
  std::optional<std::string> next;
  bool has_more = false;
};

// A group as the REST API shows it (the broker's `result`, or the archive's GroupInfo).
using Group = store::GroupInfo;

struct ReportInput {
  std::string user;
  std::vector<std::string> ids;
  std::string reason;
};

// ---- admin API (issue 5; api/src/admin.cpp)

// One account as GET /v1/admin/users lists it.
struct AdminUser {
  std::string user;
  int64_t created_ms = 0;
  bool admin = false;
  bool banned = false;
  bool deleted = false;
};

struct AdminUserPage {
  std::vector<AdminUser> users;
  std::optional<std::string> next;  // pass as `after` for the next page; nullopt at the end
};

// A connected device, as the broker's gatekeeper knows it.
struct ConnectedClient {
  std::string client_id;
  std::string user;
  std::string device;
  std::string jti;  // the access token it authenticated with (for revocation)
  int64_t connected_ms = 0;
};

// What POST /v1/admin/tokens/{jti}/revoke did.
struct RevokedToken {
  std::string jti;
  std::vector<std::string> closed;  // client ids whose connection the broker closed
  size_t refresh_tokens_revoked = 0;
};

struct AdminStats {
  size_t users = 0;    // accounts, deleted ones excluded
  size_t banned = 0;   // accounts banned now
  size_t deleted = 0;  // account tombstones
  size_t connected_clients = 0;
  std::optional<BrokerStatsSnapshot> broker;  // the latest broker stats snapshot, if any
};

class MediaLibrary;  // media.h
class KeyDirectory;  // key_directory.h

struct Health {
  bool archive_ok = false;
  std::string archive_error;
  bool broker_ok = false;
  bool bridge_ok = true;  // true when no bridge probe is set
  // False while the broker's latest stats say its archive refuses writes
  // (disk full, I/O error): messages get no PUBACK until it recovers.
  bool archive_writable = true;
  bool ok() const { return archive_ok && archive_writable && broker_ok && bridge_ok; }
};

class Service {
 public:
  // Borrows everything; all of it must outlive the service.
  Service(const Config& config, store::AccountStore& accounts, store::ArchiveReader& archive,
          ControlChannel& control, const TokenIssuer& tokens, const PasswordHasher& hasher,
          const Clock& clock);

  // Checks a bearer access token. kUnauthenticated with the reason otherwise.
  Result<Principal> authenticate(std::string_view access_token) const;

  // POST /v1/users. `caller` is the bearer's principal, if a valid token came.
  // kInvalidArgument (bad id or password), kPermissionDenied (reserved name,
  // or signup closed and caller not admin), kAlreadyExists, kUnavailable
  // (broker did not confirm; the account is removed again).
  Result<std::string> create_user(const std::optional<Principal>& caller, std::string_view user,
                                  std::string_view password);

  // The grants of POST /v1/oauth/token. kInvalidArgument is a malformed
  // request (RFC 6749 "invalid_request"), kUnauthenticated a refused grant
  // ("invalid_grant"); anything else is a server-side failure.
  Result<TokenGrant> password_grant(std::string_view user, std::string_view password,
                                    std::string_view device);
  Result<TokenGrant> refresh_grant(std::string_view refresh_token);

  // POST /v1/oauth/revoke: ok for unknown tokens too (RFC 7009 §2.2).
  Status revoke(std::string_view refresh_token);

  // POST /v1/users/me/password: kPermissionDenied for a wrong old password,
  // kInvalidArgument for a new one that breaks the rules. Revokes every
  // refresh token of the user.
  Status change_password(const Principal& caller, std::string_view old_password,
                         std::string_view new_password);

  Result<std::vector<store::ConversationSummary>> conversations(const Principal& caller,
                                                                size_t limit);
  // kInvalidArgument for a malformed conversation id or cursor,
  // kPermissionDenied when the caller is not a participant.
  Result<MessagePage> messages(const Principal& caller, std::string_view conv,
                               const HistoryQuery& query);
  // Messages of all the caller's conversations with id > since, oldest first;
  // `next` is the id of the last one returned (nullopt when none).
  Result<MessagePage> sync(const Principal& caller, std::string_view since, size_t limit);

  // ---- groups (every change goes through the broker; reads come from the archive)

  // POST /v1/groups: control group.create with `by` = caller. kInvalidArgument
  // for a bad name or member list, or a member the broker does not know (the
  // message names the user); kResourceExhausted when the group would be too
  // large (the HTTP edge answers 409 group_full).
  Result<Group> create_group(const Principal& caller, std::string_view name,
                             const std::vector<std::string>& members);
  // GET /v1/groups: the groups the caller is a member of now, by id.
  Result<std::vector<Group>> groups(const Principal& caller);
  // GET /v1/groups/{gid}: kNotFound for an unknown group, kPermissionDenied
  // when the caller is not a current member.
  Result<Group> group(const Principal& caller, std::string_view gid);
  // PUT /v1/groups/{gid}/members/{user} (group.add), PUT .../admins/{user}
  // (group.admin), DELETE .../members/{user} (group.remove: an admin removes,
  // or the user leaves). Ok only once the broker applied the change; its
  // errors come back as they are (kResourceExhausted: group full).
  Status add_member(const Principal& caller, std::string_view gid, std::string_view user);
  Status add_admin(const Principal& caller, std::string_view gid, std::string_view user);
  Status remove_member(const Principal& caller, std::string_view gid, std::string_view user);

  // ---- blocks, reports, account deletion

  // POST/DELETE /v1/blocks/{user}: control block.set. kInvalidArgument for a
  // malformed id or the caller itself; kNotFound when the broker does not know `peer`.
  Status set_block(const Principal& caller, std::string_view peer, bool blocked);
  // GET /v1/blocks: everyone the caller blocked, sorted.
  Result<std::vector<std::string>> blocks(const Principal& caller);
  // POST /v1/reports: validates and stores the report; returns its id.
  Result<std::string> report(const Principal& caller, const ReportInput& input);
  // DELETE /v1/users/me: control user.remove, then the user's media uploads
  // go (blobs nobody else references too), then the user's devices leave the
  // key directory (device_removed events), then the account becomes a
  // tombstone (no password, id never reusable) and its refresh tokens are
  // revoked. kPermissionDenied for a CHAT_ADMINS account.
  Status delete_account(const Principal& caller);

  // ---- admin (admin role only: kPermissionDenied otherwise)

  // GET /v1/admin/users: accounts with ids greater than `after`, in id order.
  // kInvalidArgument for a malformed `after`.
  Result<AdminUserPage> admin_users(const Principal& caller, std::string_view after, size_t limit);
  // POST/DELETE /v1/admin/users/{u}/ban: the broker applies the ban first
  // (control user.ban / user.unban: CONNECT refused, connections closed);
  // only once it confirmed does the account get (or lose) kBannedRole, which
  // refuses its grants and bearer tokens here. kInvalidArgument for a bad id,
  // kNotFound for an unknown or deleted account, kPermissionDenied for a
  // CHAT_ADMINS account (they are never banned).
  Status admin_set_ban(const Principal& caller, std::string_view user, bool banned);
  // POST /v1/admin/clients/{clientid}/kick (control client.kick): kNotFound
  // when that client id is not connected.
  Status admin_kick(const Principal& caller, std::string_view client_id);
  // Whether an account (deleted ones' tombstones included) has this id: which
  // lockout table a password grant for it is counted in. False on errors.
  bool account_exists(std::string_view user) const;

  // POST /v1/admin/tokens/{jti}/revoke: chat-api first refuses the token as
  // a bearer token and revokes the refresh token issued with it (so the
  // device cannot mint a new one), then the broker records the revocation
  // (control token.revoke: CONNECT with that token refused, its connections
  // closed); kUnavailable when it did not answer (repeat the request).
  // kInvalidArgument for a jti that is empty, over 256 bytes or not printable
  // ASCII. Revoking an unknown or already revoked jti succeeds (idempotent).
  Result<RevokedToken> admin_revoke_token(const Principal& caller, std::string_view jti);
  // GET /v1/admin/clients (control client.list).
  Result<std::vector<ConnectedClient>> admin_clients(const Principal& caller);
  // GET /v1/admin/stats.
  Result<AdminStats> admin_stats(const Principal& caller);

  Health health();
  // How health() tells whether chat-bridge is usable (the contract's /healthz
  // covers it). Unset: not checked. Set once, before the HTTP server starts.
  void set_bridge_probe(std::function<bool()> probe) { bridge_probe_ = std::move(probe); }

  // Media (media.h): the routes of /v1/media use it, and delete_account
  // removes the user's uploads. Unset: /v1/media answers 503. Set once,
  // before the HTTP server starts; borrowed.
  void set_media(MediaLibrary* media) { media_ = media; }
  MediaLibrary* media() const { return media_; }

  // The key directory of end-to-end encryption (key_directory.h): the routes
  // of /v1/keys use it, and delete_account removes the user's devices. Unset:
  // those routes answer 503. Set once, before the HTTP server starts; borrowed.
  void set_keys(KeyDirectory* keys) { keys_ = keys; }
  KeyDirectory* keys() const { return keys_; }

  // GET /metrics: whether the broker control connection is up, and the
  // broker plugin's latest stats snapshot (nullopt until one arrived).
  bool broker_connected() const { return control_.connected(); }
  std::optional<BrokerStatsSnapshot> broker_stats() const { return control_.broker_stats(); }

  const Config& config() const { return config_; }

  // Tells the broker every admin exists (user.add); run after each connect.
  Status announce_admins();

  // The service identity's connect password for the broker.
  std::string mint_service_token() const;

  // The roles an account's access tokens carry.
  std::vector<std::string> roles_for(std::string_view user) const;

  // Backups (backup.h): creating or deleting an account changes the account
  // store and the broker's archive, one after the other; each holds this gate
  // shared from start to end. A backup holds it exclusively while it copies
  // the archive and chat-api's databases, so the copies agree on who exists.
  std::unique_lock<std::shared_mutex> pause_account_changes() const {
    return std::unique_lock(account_gate_);
  }
  // Deleting an account deletes its media blobs; it holds this gate shared
  // from start to end (taken before the account gate). A backup holds it
  // exclusively from before its database copies until its media files are
  // linked, so every blob a copied media record names is still there to be
  // linked. Lock order: this one, then pause_account_changes().
  std::unique_lock<std::shared_mutex> pause_account_deletion() const {
    return std::unique_lock(deletion_gate_);
  }

 private:
  Result<TokenGrant> issue(const std::string& user, const std::string& device);
  // user.add; `external`: the user comes from the external OIDC provider,
  // bound to its subject `sub` ("" = not bound yet: a CHAT_ADMINS account).
  Status tell_broker_user_added(const std::string& user, bool external,
                                const std::string& sub = "") const;
  // First use of an external provider's token for `user`, whose provider
  // subject is `sub`: an account record without a password, marked external
  // and bound to `sub`, then user.add (origin external, sub) at the broker;
  // or the binding of an external CHAT_ADMINS account not bound yet (the
  // broker first, then the record). Serialized (provision_mu_): a concurrent
  // first request waits and sees the outcome of the one before it.
  Status provision_external(const std::string& user, const std::string& sub) const;
  // 401 for a provider token whose `sub` is not the one `user` is bound to
  // (logged with both).
  Status refuse_other_subject(const std::string& user, const std::string& bound_sub,
                              const std::string& token_sub) const;
  // group.add / group.admin / group.remove with `by` = caller.
  Status group_op(const char* op, const Principal& caller, std::string_view gid,
                  std::string_view user);
  Status catch_up();

  const Config& config_;
  std::function<bool()> bridge_probe_;
  MediaLibrary* media_ = nullptr;
  KeyDirectory* keys_ = nullptr;
  store::AccountStore& accounts_;
  store::ArchiveReader& archive_;
  ControlChannel& control_;
  const TokenIssuer& tokens_;
  const PasswordHasher& hasher_;
  const Clock& clock_;
  mutable std::mutex provision_mu_;          // provision_external, start to end
  mutable std::shared_mutex account_gate_;   // see pause_account_changes()
  mutable std::shared_mutex deletion_gate_;  // see pause_account_deletion()
};

// Creates the CHAT_ADMINS accounts that do not exist yet (password from
// CHAT_ADMIN_PASSWORD, or random and printed once to stdout). Existing
// accounts are left as they are (a changed CHAT_ADMIN_PASSWORD does not reset
// them).
Status ensure_admin_accounts(const Config& config, store::AccountStore& accounts,
                             const PasswordHasher& hasher, const Clock& clock);

// A deleted account is kept as a tombstone so its id is never registered
// again (the archive still holds the old inbox under that id).
inline constexpr std::string_view kDeletedRole = "deleted";
bool is_deleted_account(const store::Account& account);
// A banned account (admin API) carries this among its stored roles (never in
// a token): grants and bearer tokens are refused until it is unbanned.
inline constexpr std::string_view kBannedRole = "banned";
bool is_banned_account(const store::Account& account);
// An account provisioned from an external OIDC provider's token (docs/oidc.md)
// carries this among its stored roles (never in a token): it has no password,
// and only the provider's tokens speak for it.
inline constexpr std::string_view kExternalRole = "external";
bool is_external_account(const store::Account& account);
// An external account whose user.add the broker has not confirmed yet: no
// request is served on it until it is (Service::provision_external).
inline constexpr std::string_view kPendingRole = "pending";
bool is_pending_account(const store::Account& account);

// The RFC 6749 §5.2 name for a failed grant's Status, or nullptr when the
// failure is the server's (then the ordinary error mapping applies).
const char* grant_error_name(const Status& status);

}  // namespace chat::api
