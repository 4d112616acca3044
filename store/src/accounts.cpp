// chat-api's account store on RocksDB. Contract: chat/store/accounts.h.
//
// Schema (column families, created at open when missing, so databases made by
// an older version gain the newer families):
//   accounts         "<user>"           -> {"user","password_hash","roles","created_ms",
//                                           "external_sub" (external accounts only)}
//   refresh          "<token hash>"     -> {"user","device","expires_ms","jti"}
//   refresh_by_user  "<user>\0<hash>"   -> ""   (index for revoke_all_refresh)
//   reports          "<report id>"      -> {"id","reporter","user","ids","reason","created_ms"}
//   revoked          "<jti>"            -> "<exp seconds>" (access tokens an admin revoked)
//
// Every mutation takes write_mu_: the check-then-act operations (create,
// take) need it, and serializing the rest keeps the refresh index exact.
// chat-api writes rarely; reads take no lock.
#include "chat/store/accounts.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/common/clock.h"
#include "checkpoint.h"
#include "rocks_db.h"

namespace chat::store {
namespace {

constexpr char kAccountsFamily[] = "accounts";
constexpr char kRefreshFamily[] = "refresh";
constexpr char kRefreshByUserFamily[] = "refresh_by_user";
constexpr char kReportsFamily[] = "reports";
constexpr char kRevokedFamily[] = "revoked";

enum Family : size_t { kAccounts, kRefresh, kRefreshByUser, kReports, kRevoked, kFamilyCount };
constexpr const char* kFamilyNames[kFamilyCount] = {
    kAccountsFamily, kRefreshFamily, kRefreshByUserFamily, kReportsFamily, kRevokedFamily};
constexpr size_t kMaxJtiBytes = 256;

constexpr size_t kWriteBufferSize = 4 << 20;
constexpr size_t kBlockCacheSize = 8 << 20;

constexpr std::string_view kSep("\0", 1);

std::string index_key(std::string_view user, std::string_view hash) {
  std::string key(user);
  key.append(kSep);
  key.append(hash);
  return key;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

std::string encode_account(const Account& account) {
  nlohmann::json json = {{"user", account.user},
                         {"password_hash", account.password_hash},
                         {"roles", account.roles},
                         {"created_ms", account.created_ms}};
  if (!account.external_sub.empty()) json["external_sub"] = account.external_sub;
  return json.dump();
}

bool decode_account(std::string_view text, Account* out) {
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return false;
  auto user = json.find("user");
  auto hash = json.find("password_hash");
  auto roles = json.find("roles");
  auto created = json.find("created_ms");
  if (user == json.end() || !user->is_string()) return false;
  if (hash == json.end() || !hash->is_string()) return false;
  out->user = user->get<std::string>();
  out->password_hash = hash->get<std::string>();
  out->roles.clear();
  if (roles != json.end() && roles->is_array()) {
    for (const auto& role : *roles) {
      if (!role.is_string()) return false;
      out->roles.push_back(role.get<std::string>());
    }
  }
  out->created_ms =
      (created != json.end() && created->is_number_integer()) ? created->get<int64_t>() : 0;
  out->external_sub.clear();
  if (auto sub = json.find("external_sub"); sub != json.end()) {
    if (!sub->is_string()) return false;
    out->external_sub = sub->get<std::string>();
  }
  return true;
}

std::string encode_refresh(const RefreshToken& token) {
  nlohmann::json json = {
      {"user", token.user}, {"device", token.device}, {"expires_ms", token.expires_ms}};
  if (!token.access_jti.empty()) json["jti"] = token.access_jti;
  return json.dump();
}

bool decode_refresh(std::string_view text, RefreshToken* out) {
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return false;
  auto user = json.find("user");
  auto device = json.find("device");
  auto expires = json.find("expires_ms");
  if (user == json.end() || !user->is_string()) return false;
  if (expires == json.end() || !expires->is_number_integer()) return false;
  out->user = user->get<std::string>();
  out->device = (device != json.end() && device->is_string()) ? device->get<std::string>() : "";
  out->expires_ms = expires->get<int64_t>();
  auto jti = json.find("jti");
  out->access_jti = (jti != json.end() && jti->is_string()) ? jti->get<std::string>() : "";
  return true;
}

std::string encode_report(const Report& report) {
  nlohmann::json json = {{"id", report.id},         {"reporter", report.reporter},
                         {"user", report.user},     {"ids", report.ids},
                         {"reason", report.reason}, {"created_ms", report.created_ms}};
  return json.dump();
}

bool decode_report(std::string_view text, Report* out) {
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return false;
  const auto str = [&json](const char* name, std::string* field) {
    auto it = json.find(name);
    if (it == json.end() || !it->is_string()) return false;
    *field = it->get<std::string>();
    return true;
  };
  if (!str("id", &out->id) || !str("reporter", &out->reporter) || !str("user", &out->user) ||
      !str("reason", &out->reason)) {
    return false;
  }
  out->ids.clear();
  auto ids = json.find("ids");
  if (ids == json.end() || !ids->is_array()) return false;
  for (const auto& id : *ids) {
    if (!id.is_string()) return false;
    out->ids.push_back(id.get<std::string>());
  }
  auto created = json.find("created_ms");
  out->created_ms =
      (created != json.end() && created->is_number_integer()) ? created->get<int64_t>() : 0;
  return true;
}

}  // namespace

struct AccountStore::Impl : FamilyDb {
  std::string path;
  std::mutex write_mu;

  // Adds the deletion of a refresh token and its index entry. Caller holds write_mu.
  Status delete_refresh(rocksdb::WriteBatch* batch, const std::string& hash,
                        const std::string& user) {
    rocksdb::Status s = batch->Delete(cf(kRefresh), hash);
    if (s.ok()) s = batch->Delete(cf(kRefreshByUser), index_key(user, hash));
    if (!s.ok()) return from_rocksdb(s, "accounts batch");
    return Status::ok();
  }

  // The stored token, or kNotFound. Caller holds write_mu.
  Result<RefreshToken> load_refresh(const std::string& hash) const {
    auto value = get(kRefresh, hash, "accounts refresh get");
    if (!value) return value.status();
    if (!value->has_value()) return not_found("unknown refresh token");
    RefreshToken token;
    if (!decode_refresh(**value, &token))
      return internal_error("accounts: malformed refresh token");
    return token;
  }
};

AccountStore::AccountStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AccountStore::~AccountStore() = default;

Result<std::unique_ptr<AccountStore>> AccountStore::open(const std::string& path) {
  rocksdb::DBOptions db_options;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
  db_options.max_log_file_size = 8 << 20;

  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = kWriteBufferSize;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(kBlockCacheSize);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  if (Status st = impl->open(path, db_options, cf_options, kFamilyNames, "accounts"); !st.is_ok()) {
    return st;
  }
  return std::unique_ptr<AccountStore>(new AccountStore(std::move(impl)));
}

Status AccountStore::create_account(const Account& account) {
  if (account.user.empty() || has_nul(account.user)) {
    return invalid_argument("accounts: malformed user id");
  }
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto existing = impl_->get(kAccounts, account.user, "accounts get");
  if (!existing) return existing.status();
  if (existing->has_value()) return already_exists("user " + account.user + " exists");
  rocksdb::Status s = impl_->db->Put(impl_->write_options, impl_->cf(kAccounts), account.user,
                                     encode_account(account));
  if (!s.ok()) return from_rocksdb(s, "accounts put");
  return Status::ok();
}

Result<Account> AccountStore::get_account(const std::string& user) const {
  auto value = impl_->get(kAccounts, user, "accounts get");
  if (!value) return value.status();
  if (!value->has_value()) return not_found("no user " + user);
  Account account;
  if (!decode_account(**value, &account))
    return internal_error("accounts: malformed account " + user);
  return account;
}

Status AccountStore::put_account(const Account& account) {
  if (account.user.empty() || has_nul(account.user)) {
    return invalid_argument("accounts: malformed user id");
  }
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  rocksdb::Status s = impl_->db->Put(impl_->write_options, impl_->cf(kAccounts), account.user,
                                     encode_account(account));
  if (!s.ok()) return from_rocksdb(s, "accounts put");
  return Status::ok();
}

Status AccountStore::delete_account(const std::string& user) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto existing = impl_->get(kAccounts, user, "accounts get");
  if (!existing) return existing.status();
  if (!existing->has_value()) return not_found("no user " + user);
  rocksdb::Status s = impl_->db->Delete(impl_->write_options, impl_->cf(kAccounts), user);
  if (!s.ok()) return from_rocksdb(s, "accounts delete");
  return Status::ok();
}

Status AccountStore::put_refresh(const std::string& token_hash, const RefreshToken& token) {
  if (token_hash.empty() || has_nul(token_hash) || token.user.empty() || has_nul(token.user)) {
    return invalid_argument("accounts: malformed refresh token");
  }
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  rocksdb::WriteBatch batch;
  // Replacing a hash that belonged to another user must not leave a stale index entry.
  auto previous = impl_->load_refresh(token_hash);
  if (previous.is_ok()) {
    Status st = impl_->delete_refresh(&batch, token_hash, previous->user);
    if (!st.is_ok()) return st;
  } else if (previous.status().code() != StatusCode::kNotFound) {
    return previous.status();
  }
  rocksdb::Status s = batch.Put(impl_->cf(kRefresh), token_hash, encode_refresh(token));
  if (s.ok()) s = batch.Put(impl_->cf(kRefreshByUser), index_key(token.user, token_hash), "");
  if (!s.ok()) return from_rocksdb(s, "accounts batch");
  return impl_->write(&batch, "accounts refresh put");
}

Result<RefreshToken> AccountStore::take_refresh(const std::string& token_hash) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto token = impl_->load_refresh(token_hash);
  if (!token) return token.status();
  rocksdb::WriteBatch batch;
  Status st = impl_->delete_refresh(&batch, token_hash, token->user);
  if (!st.is_ok()) return st;
  st = impl_->write(&batch, "accounts refresh take");
  if (!st.is_ok()) return st;
  // An expired token is consumed (garbage) but never honoured.
  if (token->expires_ms <= SystemClock::instance().now_ms()) {
    return not_found("refresh token expired");
  }
  return token;
}

Status AccountStore::revoke_refresh(const std::string& token_hash) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto token = impl_->load_refresh(token_hash);
  // Revoking an unknown or used token is a no-op: the outcome is the same.
  if (!token) return token.status().code() == StatusCode::kNotFound ? Status::ok() : token.status();
  rocksdb::WriteBatch batch;
  Status st = impl_->delete_refresh(&batch, token_hash, token->user);
  if (!st.is_ok()) return st;
  return impl_->write(&batch, "accounts refresh revoke");
}

Status AccountStore::revoke_all_refresh(const std::string& user) {
  if (user.empty() || has_nul(user)) return invalid_argument("accounts: malformed user id");
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  const std::string start = index_key(user, "");
  std::string end(user);
  end.push_back('\1');
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(read_options, impl_->cf(kRefreshByUser)));
  for (it->Seek(start); it->Valid(); it->Next()) {
    rocksdb::Slice hash(it->key().data() + start.size(), it->key().size() - start.size());
    rocksdb::Status s = batch.Delete(impl_->cf(kRefresh), hash);
    if (s.ok()) s = batch.Delete(impl_->cf(kRefreshByUser), it->key());
    if (!s.ok()) return from_rocksdb(s, "accounts batch");
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "accounts refresh scan");
  if (batch.Count() == 0) return Status::ok();
  return impl_->write(&batch, "accounts refresh revoke_all");
}

Status AccountStore::revoke_refresh_by_access_jti(const std::string& jti, size_t* revoked) {
  if (revoked != nullptr) *revoked = 0;
  if (jti.empty()) return Status::ok();
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(kRefresh)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    RefreshToken token;
    if (!decode_refresh(std::string_view(it->value().data(), it->value().size()), &token) ||
        token.access_jti != jti) {
      continue;
    }
    Status st = impl_->delete_refresh(&batch, it->key().ToString(), token.user);
    if (!st.is_ok()) return st;
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "accounts refresh scan");
  if (revoked != nullptr) *revoked = batch.Count() / 2;
  if (batch.Count() == 0) return Status::ok();
  return impl_->write(&batch, "accounts refresh revoke_by_jti");
}

Status AccountStore::put_revoked(const std::string& jti, int64_t exp_s) {
  if (jti.empty() || jti.size() > kMaxJtiBytes || has_nul(jti)) {
    return invalid_argument("accounts: malformed jti");
  }
  rocksdb::Status s = impl_->db->Put(impl_->write_options, impl_->cf(kRevoked), jti,
                                     std::to_string(std::max<int64_t>(exp_s, 0)));
  if (!s.ok()) return from_rocksdb(s, "accounts revoked put");
  return Status::ok();
}

Result<bool> AccountStore::is_revoked(const std::string& jti) const {
  if (jti.empty() || jti.size() > kMaxJtiBytes || has_nul(jti)) return false;
  auto value = impl_->get(kRevoked, jti, "accounts revoked get");
  if (!value) return value.status();
  return value->has_value();
}

Status AccountStore::put_report(const Report& report) {
  if (report.id.empty() || has_nul(report.id))
    return invalid_argument("accounts: malformed report id");
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto existing = impl_->get(kReports, report.id, "accounts report get");
  if (!existing) return existing.status();
  if (existing->has_value()) return already_exists("report " + report.id + " exists");
  rocksdb::Status s =
      impl_->db->Put(impl_->write_options, impl_->cf(kReports), report.id, encode_report(report));
  if (!s.ok()) return from_rocksdb(s, "accounts report put");
  return Status::ok();
}

Result<std::vector<Account>> AccountStore::list_accounts(const std::string& after,
                                                         size_t limit) const {
  std::vector<Account> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(kAccounts)));
  if (after.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(after);
    if (it->Valid() && it->key() == rocksdb::Slice(after)) it->Next();
  }
  for (; it->Valid() && out.size() < limit; it->Next()) {
    Account account;
    if (!decode_account(std::string_view(it->value().data(), it->value().size()), &account)) {
      return internal_error("accounts: malformed account " + it->key().ToString());
    }
    out.push_back(std::move(account));
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "accounts scan");
  return out;
}

Result<AccountStore::AccountCounts> AccountStore::count_accounts(const std::string& role) const {
  AccountCounts counts;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(kAccounts)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ++counts.total;
    Account account;
    if (decode_account(std::string_view(it->value().data(), it->value().size()), &account) &&
        std::find(account.roles.begin(), account.roles.end(), role) != account.roles.end()) {
      ++counts.with_role;
    }
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "accounts scan");
  return counts;
}

Result<std::vector<Report>> AccountStore::reports(size_t limit) const {
  std::vector<Report> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(kReports)));
  for (it->SeekToLast(); it->Valid() && out.size() < limit; it->Prev()) {
    Report report;
    if (!decode_report(std::string_view(it->value().data(), it->value().size()), &report)) {
      return internal_error("accounts: malformed report " + it->key().ToString());
    }
    out.push_back(std::move(report));
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "accounts report scan");
  return out;
}

Status AccountStore::checkpoint(const std::string& dir) const {
  return write_checkpoint(impl_->db, dir, "accounts");
}

}  // namespace chat::store
