// chat-api's own database: credentials, refresh tokens and abuse reports.
//
// Owned by chat-api alone (a separate RocksDB directory from the archive).
// Passwords arrive here already hashed; refresh tokens are stored by the
// SHA-256 of the token, never the token itself. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chat/common/status.h"

namespace chat::store {

struct Account {
  std::string user;
  std::string password_hash;  // encoded Argon2id string
  std::vector<std::string> roles;
  int64_t created_ms = 0;
  // An external OIDC provider's account (docs/oidc.md): the provider's `sub`
  // it is bound to; "" for a local account, and for a CHAT_ADMINS external
  // account nobody has signed in to yet.
  std::string external_sub;
};

struct RefreshToken {
  std::string user;
  std::string device;  // optional device id the token was issued for
  int64_t expires_ms = 0;
  std::string
      access_jti;  // `jti` of the access token issued with it ("" before revocation existed)
};

// An abuse report (POST /v1/reports), kept for the admins.
struct Report {
  std::string id;                // sorts by creation time (byte order); the store's key
  std::string reporter;          // user who reported
  std::string user;              // user reported
  std::vector<std::string> ids;  // message ids the report points at
  std::string reason;
  int64_t created_ms = 0;
};

class AccountStore {
 public:
  static Result<std::unique_ptr<AccountStore>> open(const std::string& path);
  ~AccountStore();

  // kAlreadyExists when the user id is taken.
  Status create_account(const Account& account);
  // kNotFound when absent.
  Result<Account> get_account(const std::string& user) const;
  Status put_account(const Account& account);  // create or replace
  Status delete_account(const std::string& user);
  // Up to `limit` accounts with ids greater than `after` ("" = from the
  // first), in id order (admin listing). Deleted accounts' tombstones included.
  Result<std::vector<Account>> list_accounts(const std::string& after, size_t limit) const;
  // How many accounts have `role` among their roles, and how many exist.
  struct AccountCounts {
    size_t total = 0;
    size_t with_role = 0;
  };
  Result<AccountCounts> count_accounts(const std::string& role) const;

  Status put_refresh(const std::string& token_hash, const RefreshToken& token);
  // Removes and returns the token (rotation: a refresh token works once).
  // kNotFound when unknown or already used.
  Result<RefreshToken> take_refresh(const std::string& token_hash);
  Status revoke_refresh(const std::string& token_hash);
  // Revokes every refresh token of the user (password change, deletion).
  Status revoke_all_refresh(const std::string& user);
  // Revokes the refresh token issued together with the access token `jti`
  // (admin revocation: the device cannot mint a new access token with it).
  // Scans every refresh token: an admin operation, not a request path.
  // `revoked` (optional) receives how many were removed.
  Status revoke_refresh_by_access_jti(const std::string& jti, size_t* revoked = nullptr);

  // Access tokens an admin revoked, by `jti`. exp_s: the token's expiry, 0
  // when unknown. kInvalidArgument for an empty jti, one over 256 bytes or
  // one with a NUL byte; is_revoked answers false for those.
  Status put_revoked(const std::string& jti, int64_t exp_s);
  Result<bool> is_revoked(const std::string& jti) const;

  // Stores a report under its id. kInvalidArgument for an empty id or one
  // with a NUL byte; kAlreadyExists when the id is taken.
  Status put_report(const Report& report);
  // The `limit` most recent reports (greatest ids), newest first.
  Result<std::vector<Report>> reports(size_t limit) const;

  // Writes a consistent copy of the store into `dir` (a RocksDB checkpoint;
  // see Archive::checkpoint for the rules on `dir`). Safe while in use.
  Status checkpoint(const std::string& dir) const;

 private:
  struct Impl;
  explicit AccountStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::store
