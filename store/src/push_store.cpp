// chat-api's push store on RocksDB. Schema and contracts: chat/store/push_store.h.
#include "chat/store/push_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <utility>

#include "checkpoint.h"
#include "rocks_db.h"

namespace chat::store {
namespace {

enum Family : size_t { kTargets, kTokens, kJobs, kDue, kMeta, kFamilyCount };
constexpr const char* kFamilyNames[kFamilyCount] = {"targets", "tokens", "jobs", "due", "meta"};
constexpr char kCursorKey[] = "cursor";

constexpr std::string_view kSep("\0", 1);

std::string join_key(std::string_view a, std::string_view b) {
  std::string key(a);
  key.append(kSep);
  key.append(b);
  return key;
}

// [<scope>\0, <scope>\1): every key of one scope.
std::string scope_end(std::string_view scope) {
  std::string key(scope);
  key.push_back('\1');
  return key;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }
bool valid_part(std::string_view s) { return !s.empty() && !has_nul(s); }

std::string due_key(int64_t due_ms, std::string_view job_key) {
  char digits[20];
  std::snprintf(digits, sizeof digits, "%016" PRIx64,
                static_cast<uint64_t>(due_ms < 0 ? 0 : due_ms));
  return join_key(digits, job_key);
}

std::string encode_target(const PushTargetRecord& t) {
  return nlohmann::json{{"platform", t.platform}, {"token", t.token}, {"created_ms", t.created_ms}}
      .dump();
}

bool decode_target(std::string_view key, std::string_view text, PushTargetRecord* out) {
  const size_t sep = key.find('\0');
  if (sep == std::string_view::npos) return false;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  auto platform = j.find("platform");
  auto token = j.find("token");
  if (platform == j.end() || !platform->is_string() || token == j.end() || !token->is_string()) {
    return false;
  }
  out->user = std::string(key.substr(0, sep));
  out->device = std::string(key.substr(sep + 1));
  out->platform = platform->get<std::string>();
  out->token = token->get<std::string>();
  auto created = j.find("created_ms");
  out->created_ms =
      created != j.end() && created->is_number_integer() ? created->get<int64_t>() : 0;
  return true;
}

std::string encode_job(const PushJob& job) {
  return nlohmann::json{{"conv", job.conv},
                        {"from", job.from},
                        {"type", job.type},
                        {"attempts", job.attempts},
                        {"created_ms", job.created_ms},
                        {"due_ms", job.due_ms},
                        {"in_flight", job.in_flight}}
      .dump();
}

bool decode_job(std::string_view key, std::string_view text, PushJob* out) {
  // <message id>\0<user>:<device>
  const size_t sep = key.find('\0');
  if (sep == std::string_view::npos) return false;
  std::string_view target = key.substr(sep + 1);
  const size_t colon = target.find(':');
  if (colon == std::string_view::npos) return false;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  const auto str = [&j](const char* name, std::string* field) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return false;
    *field = it->get<std::string>();
    return true;
  };
  const auto num = [&j](const char* name, int64_t* field) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_number_integer()) return false;
    *field = it->get<int64_t>();
    return true;
  };
  out->message_id = std::string(key.substr(0, sep));
  out->user = std::string(target.substr(0, colon));
  out->device = std::string(target.substr(colon + 1));
  int64_t attempts = 0;
  if (!str("conv", &out->conv) || !str("from", &out->from) || !str("type", &out->type) ||
      !num("attempts", &attempts) || !num("created_ms", &out->created_ms) ||
      !num("due_ms", &out->due_ms)) {
    return false;
  }
  out->attempts = static_cast<int>(attempts);
  auto in_flight = j.find("in_flight");  // absent in jobs queued before it existed
  out->in_flight = in_flight != j.end() && in_flight->is_boolean() && in_flight->get<bool>();
  return true;
}

Status check_job(const PushJob& job) {
  if (!valid_part(job.message_id) || !valid_part(job.user) || !valid_part(job.device) ||
      job.user.find(':') != std::string::npos) {
    return invalid_argument("push store: malformed job");
  }
  return Status::ok();
}

}  // namespace

std::string PushJob::key() const { return join_key(message_id, user + ":" + device); }

struct PushStore::Impl : FamilyDb {
  std::mutex write_mu;
  std::atomic<size_t> depth{0};  // jobs queued; changed under write_mu

  // The job stored under `key` (nullopt when there is none). Caller holds write_mu.
  Result<std::optional<PushJob>> load_job(const std::string& key) const {
    auto value = get(kJobs, key, "push store job get");
    if (!value) return value.status();
    if (!value->has_value()) return std::optional<PushJob>();
    PushJob job;
    if (!decode_job(key, **value, &job)) return internal_error("push store: malformed job");
    return std::optional<PushJob>(std::move(job));
  }

  Result<std::optional<PushTargetRecord>> load_target(const std::string& user,
                                                      const std::string& device) const {
    const std::string key = join_key(user, device);
    auto value = get(kTargets, key, "push store target get");
    if (!value) return value.status();
    if (!value->has_value()) return std::optional<PushTargetRecord>();
    PushTargetRecord t;
    if (!decode_target(key, **value, &t)) {
      return internal_error("push store: malformed target " + user + ":" + device);
    }
    return std::optional<PushTargetRecord>(std::move(t));
  }

  // Adds the deletion of a target and (when it still points there) its token
  // index entry. Caller holds write_mu.
  Status delete_target_in(rocksdb::WriteBatch* batch, const PushTargetRecord& t) {
    const std::string key = join_key(t.user, t.device);
    const std::string token_key = join_key(t.platform, t.token);
    auto owner = get(kTokens, token_key, "push store token get");
    if (!owner) return owner.status();
    rocksdb::Status s = batch->Delete(cf(kTargets), key);
    if (s.ok() && owner->has_value() && **owner == key) s = batch->Delete(cf(kTokens), token_key);
    if (!s.ok()) return from_rocksdb(s, "push store batch");
    return Status::ok();
  }

  // Visits the targets of one user (key order = device order).
  template <typename Visit>
  Status scan_user(const std::string& user, Visit&& visit) const {
    const std::string start = join_key(user, "");
    const std::string end = scope_end(user);
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions options;
    options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(options, cf(kTargets)));
    for (it->Seek(start); it->Valid(); it->Next()) {
      PushTargetRecord t;
      if (!decode_target(std::string_view(it->key().data(), it->key().size()),
                         std::string_view(it->value().data(), it->value().size()), &t)) {
        return internal_error("push store: malformed target of " + user);
      }
      visit(std::move(t));
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), "push store targets scan");
    return Status::ok();
  }
};

PushStore::PushStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PushStore::~PushStore() = default;

Result<std::unique_ptr<PushStore>> PushStore::open(const std::string& path) {
  rocksdb::DBOptions db_options;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
  db_options.max_log_file_size = 8 << 20;
  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = 4 << 20;

  auto impl = std::make_unique<Impl>();
  if (Status st = impl->open(path, db_options, cf_options, kFamilyNames, "push store");
      !st.is_ok()) {
    return st;
  }
  // The queue depth gauge starts from what is queued.
  size_t depth = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      impl->db->NewIterator(rocksdb::ReadOptions(), impl->cf(kJobs)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++depth;
  if (!it->status().ok()) return from_rocksdb(it->status(), "push store jobs scan");
  it.reset();
  impl->depth.store(depth);
  return std::unique_ptr<PushStore>(new PushStore(std::move(impl)));
}

// ---- targets -------------------------------------------------------------------

Result<PushTargetChange> PushStore::put_target(const PushTargetRecord& target,
                                               size_t max_per_user) {
  if (!valid_part(target.user) || !valid_part(target.device) || !valid_part(target.platform) ||
      !valid_part(target.token) || target.user.find(':') != std::string::npos) {
    return invalid_argument("push store: malformed target");
  }
  std::lock_guard lock(impl_->write_mu);
  const std::string key = join_key(target.user, target.device);
  const std::string token_key = join_key(target.platform, target.token);
  auto existing = impl_->load_target(target.user, target.device);
  if (!existing) return existing.status();
  auto owner = impl_->get(kTokens, token_key, "push store token get");
  if (!owner) return owner.status();

  PushTargetChange change;
  change.created = !existing->has_value();
  rocksdb::WriteBatch batch;
  std::optional<PushTargetRecord> displaced;
  if (owner->has_value() && **owner != key) {
    const size_t sep = (*owner)->find('\0');
    if (sep != std::string::npos) {
      auto other = impl_->load_target((*owner)->substr(0, sep), (*owner)->substr(sep + 1));
      if (!other) return other.status();
      displaced = std::move(*other);  // nullopt: a stale index entry, overwritten below
    }
  }
  if (change.created) {
    // The cap counts the user's other devices; one that loses this very
    // token now does not count.
    size_t count = 0;
    Status st = impl_->scan_user(target.user, [&](PushTargetRecord t) {
      if (!(displaced && displaced->user == t.user && displaced->device == t.device)) ++count;
    });
    if (!st.is_ok()) return st;
    if (count >= max_per_user) {
      return resource_exhausted("at most " + std::to_string(max_per_user) +
                                " devices with push per user");
    }
  }
  rocksdb::Status s;
  if (displaced) {
    s = batch.Delete(impl_->cf(kTargets), join_key(displaced->user, displaced->device));
    if (!s.ok()) return from_rocksdb(s, "push store batch");
    change.displaced_user = displaced->user;
    change.displaced_device = displaced->device;
  }
  if (existing->has_value() &&
      ((*existing)->platform != target.platform || (*existing)->token != target.token)) {
    // The device's previous token no longer reaches it through us.
    const std::string old_key = join_key((*existing)->platform, (*existing)->token);
    auto old_owner = impl_->get(kTokens, old_key, "push store token get");
    if (!old_owner) return old_owner.status();
    if (old_owner->has_value() && **old_owner == key) {
      s = batch.Delete(impl_->cf(kTokens), old_key);
      if (!s.ok()) return from_rocksdb(s, "push store batch");
    }
  }
  s = batch.Put(impl_->cf(kTargets), key, encode_target(target));
  if (s.ok()) s = batch.Put(impl_->cf(kTokens), token_key, key);
  if (!s.ok()) return from_rocksdb(s, "push store batch");
  if (Status st = impl_->write(&batch, "push store put_target"); !st.is_ok()) return st;
  return change;
}

Status PushStore::delete_target(const std::string& user, const std::string& device) {
  std::lock_guard lock(impl_->write_mu);
  auto existing = impl_->load_target(user, device);
  if (!existing) return existing.status();
  if (!existing->has_value()) return not_found("no push target for " + user + ":" + device);
  rocksdb::WriteBatch batch;
  if (Status st = impl_->delete_target_in(&batch, **existing); !st.is_ok()) return st;
  return impl_->write(&batch, "push store delete_target");
}

Result<bool> PushStore::delete_target_if_token(const std::string& user, const std::string& device,
                                               const std::string& token) {
  std::lock_guard lock(impl_->write_mu);
  auto existing = impl_->load_target(user, device);
  if (!existing) return existing.status();
  if (!existing->has_value() || (*existing)->token != token) return false;
  rocksdb::WriteBatch batch;
  if (Status st = impl_->delete_target_in(&batch, **existing); !st.is_ok()) return st;
  if (Status st = impl_->write(&batch, "push store delete_target"); !st.is_ok()) return st;
  return true;
}

Result<size_t> PushStore::delete_targets_of(const std::string& user) {
  if (!valid_part(user)) return invalid_argument("push store: malformed user id");
  std::lock_guard lock(impl_->write_mu);
  std::vector<PushTargetRecord> targets;
  Status st = impl_->scan_user(user, [&](PushTargetRecord t) { targets.push_back(std::move(t)); });
  if (!st.is_ok()) return st;
  if (targets.empty()) return size_t{0};
  rocksdb::WriteBatch batch;
  for (const auto& t : targets) {
    if (Status d = impl_->delete_target_in(&batch, t); !d.is_ok()) return d;
  }
  if (Status w = impl_->write(&batch, "push store delete_targets_of"); !w.is_ok()) return w;
  return targets.size();
}

Result<std::optional<PushTargetRecord>> PushStore::target(const std::string& user,
                                                          const std::string& device) const {
  if (!valid_part(user) || !valid_part(device)) return std::optional<PushTargetRecord>();
  return impl_->load_target(user, device);
}

Result<std::vector<PushTargetRecord>> PushStore::targets_of(const std::string& user) const {
  std::vector<PushTargetRecord> out;
  if (!valid_part(user)) return out;
  Status st = impl_->scan_user(user, [&](PushTargetRecord t) { out.push_back(std::move(t)); });
  if (!st.is_ok()) return st;
  return out;
}

Result<std::map<std::string, std::vector<std::string>>> PushStore::all_devices() const {
  std::map<std::string, std::vector<std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(kTargets)));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    const size_t sep = key.find('\0');
    if (sep == std::string_view::npos) continue;
    out[std::string(key.substr(0, sep))].emplace_back(key.substr(sep + 1));
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "push store targets scan");
  return out;
}

// ---- the feed ------------------------------------------------------------------

Result<std::string> PushStore::cursor() const {
  auto value = impl_->get(kMeta, kCursorKey, "push store cursor get");
  if (!value) return value.status();
  return value->value_or(std::string());
}

Status PushStore::enqueue(const std::vector<PushJob>& jobs, const std::string& cursor,
                          size_t* queued) {
  if (queued != nullptr) *queued = 0;
  if (has_nul(cursor)) return invalid_argument("push store: malformed cursor");
  for (const auto& job : jobs) {
    if (Status st = check_job(job); !st.is_ok()) return st;
  }
  std::lock_guard lock(impl_->write_mu);
  auto current = impl_->get(kMeta, kCursorKey, "push store cursor get");
  if (!current) return current.status();
  rocksdb::WriteBatch batch;
  std::set<std::string> keys;  // a job twice in one call is queued once
  size_t added = 0;
  for (const auto& job : jobs) {
    const std::string key = job.key();
    if (!keys.insert(key).second) continue;
    auto existing = impl_->get(kJobs, key, "push store job get");
    if (!existing) return existing.status();
    if (existing->has_value()) continue;  // already queued: it keeps its attempts
    rocksdb::Status s = batch.Put(impl_->cf(kJobs), key, encode_job(job));
    if (s.ok()) s = batch.Put(impl_->cf(kDue), due_key(job.due_ms, key), "");
    if (!s.ok()) return from_rocksdb(s, "push store batch");
    ++added;
  }
  if (cursor > current->value_or(std::string())) {
    rocksdb::Status s = batch.Put(impl_->cf(kMeta), kCursorKey, cursor);
    if (!s.ok()) return from_rocksdb(s, "push store batch");
  }
  if (batch.Count() == 0) return Status::ok();
  if (Status st = impl_->write(&batch, "push store enqueue"); !st.is_ok()) return st;
  impl_->depth.fetch_add(added);
  if (queued != nullptr) *queued = added;
  return Status::ok();
}

// ---- the queue -----------------------------------------------------------------

Result<std::vector<PushJob>> PushStore::due_jobs(int64_t now_ms, size_t limit) const {
  std::vector<PushJob> out;
  // Every due key of a job due by now sorts below this bound.
  const std::string end = due_key(now_ms + 1, "");
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions options;
  options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(options, impl_->cf(kDue)));
  for (it->SeekToFirst(); it->Valid() && out.size() < limit; it->Next()) {
    std::string_view key(it->key().data(), it->key().size());
    const size_t sep = key.find('\0');
    if (sep == std::string_view::npos) continue;
    const std::string job_key(key.substr(sep + 1));
    auto value = impl_->get(kJobs, job_key, "push store job get");
    if (!value) return value.status();
    if (!value->has_value()) continue;  // completed between the two reads
    PushJob job;
    if (!decode_job(job_key, **value, &job)) {
      return internal_error("push store: malformed job");
    }
    out.push_back(std::move(job));
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "push store due scan");
  return out;
}

Result<std::optional<int64_t>> PushStore::next_due_ms() const {
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(rocksdb::ReadOptions(), impl_->cf(kDue)));
  it->SeekToFirst();
  if (!it->status().ok()) return from_rocksdb(it->status(), "push store due scan");
  if (!it->Valid()) return std::optional<int64_t>();
  // 16 hex digits (due_key); parsed without exceptions: a damaged key is an error.
  const rocksdb::Slice key = it->key();
  if (key.size() < 17 || key[16] != '\0') return internal_error("push store: damaged due key");
  uint64_t value = 0;
  for (size_t i = 0; i < 16; ++i) {
    const char c = key[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (digit < 0) return internal_error("push store: damaged due key");
    value = value << 4 | static_cast<uint64_t>(digit);
  }
  if (value > static_cast<uint64_t>(INT64_MAX))
    return internal_error("push store: damaged due key");
  return std::optional<int64_t>(static_cast<int64_t>(value));
}

Status PushStore::mark_in_flight(const PushJob& job) {
  if (Status st = check_job(job); !st.is_ok()) return st;
  std::lock_guard lock(impl_->write_mu);
  const std::string key = job.key();
  auto existing = impl_->load_job(key);
  if (!existing) return existing.status();
  if (!existing->has_value()) return not_found("push store: no such job");
  PushJob stored = std::move(**existing);
  stored.in_flight = true;  // due key unchanged: only the value is rewritten
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(impl_->cf(kJobs), key, encode_job(stored));
  if (!s.ok()) return from_rocksdb(s, "push store batch");
  return impl_->write(&batch, "push store mark in flight");
}

Status PushStore::complete(const PushJob& job) {
  if (Status st = check_job(job); !st.is_ok()) return st;
  std::lock_guard lock(impl_->write_mu);
  const std::string key = job.key();
  auto existing = impl_->get(kJobs, key, "push store job get");
  if (!existing) return existing.status();
  if (!existing->has_value()) return Status::ok();
  PushJob stored;
  if (!decode_job(key, **existing, &stored)) stored.due_ms = job.due_ms;
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(impl_->cf(kJobs), key);
  if (s.ok()) s = batch.Delete(impl_->cf(kDue), due_key(stored.due_ms, key));
  if (!s.ok()) return from_rocksdb(s, "push store batch");
  if (Status st = impl_->write(&batch, "push store complete"); !st.is_ok()) return st;
  impl_->depth.fetch_sub(1);
  return Status::ok();
}

Status PushStore::reschedule(const PushJob& job) {
  if (Status st = check_job(job); !st.is_ok()) return st;
  std::lock_guard lock(impl_->write_mu);
  const std::string key = job.key();
  auto existing = impl_->load_job(key);
  if (!existing) return existing.status();
  if (!existing->has_value()) return not_found("push store: no such job");
  PushJob stored = std::move(**existing);
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(impl_->cf(kDue), due_key(stored.due_ms, key));
  if (s.ok()) s = batch.Put(impl_->cf(kJobs), key, encode_job(job));
  if (s.ok()) s = batch.Put(impl_->cf(kDue), due_key(job.due_ms, key), "");
  if (!s.ok()) return from_rocksdb(s, "push store batch");
  return impl_->write(&batch, "push store reschedule");
}

size_t PushStore::queue_depth() const { return impl_->depth.load(); }

Status PushStore::checkpoint(const std::string& dir) const {
  return write_checkpoint(impl_->db, dir, "push store");
}

}  // namespace chat::store
