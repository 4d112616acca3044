// The message archive on RocksDB. Schema and contracts: chat/store/archive.h.
//
// Keys are "<scope>\0<rest>": no id (user, conversation, client id, server id)
// contains a NUL, and NUL sorts below every other byte, so the keys of one
// scope are exactly the range ["<scope>\0", "<scope>\1").
#include "chat/store/archive.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chat/common/ids.h"

namespace chat::store {
namespace {

constexpr char kMessagesFamily[] = "messages";
constexpr char kInboxFamily[] = "inbox";
constexpr char kConvsFamily[] = "convs";
constexpr char kDedupFamily[] = "dedup";
constexpr char kUsersFamily[] = "users";
constexpr char kMetaFamily[] = "meta";

// Index into Impl::families; the order of kFamilyNames.
enum Family : size_t { kMessages, kInbox, kConvs, kDedup, kUsers, kMeta, kFamilyCount };
constexpr const char* kFamilyNames[kFamilyCount] = {kMessagesFamily, kInboxFamily, kConvsFamily,
                                                    kDedupFamily,    kUsersFamily, kMetaFamily};

constexpr char kMetaSchemaVersion[] = "schema_version";
constexpr char kMetaMaxId[] = "max_id";
constexpr char kSchemaVersion[] = "1";

// Small-machine sizing: the families share one memtable budget and one block
// cache, so the archive's memory stays under ~100 MiB (plus the unread cache).
// Small memtables also keep skip lists shallow, which the append path likes.
constexpr size_t kWriteBufferSize = 4 << 20;
constexpr size_t kDbWriteBufferSize = 32 << 20;
constexpr uint64_t kMaxTotalWalSize = 64 << 20;
constexpr size_t kBlockCacheSize = 32 << 20;
// ~100 bytes each: about 20 MiB at most.
constexpr size_t kMaxCachedUnread = 200'000;

constexpr std::string_view kSep("\0", 1);

void make_key(std::string* out, std::string_view scope, std::string_view rest) {
  out->clear();
  out->reserve(scope.size() + 1 + rest.size());
  out->append(scope);
  out->append(kSep);
  out->append(rest);
}

std::string make_key(std::string_view scope, std::string_view rest) {
  std::string key;
  make_key(&key, scope, rest);
  return key;
}

// The part of "<scope>\0<rest>" after the separator.
std::string_view key_rest(const rocksdb::Slice& key, size_t scope_size) {
  return std::string_view(key.data() + scope_size + 1, key.size() - scope_size - 1);
}

std::string scope_begin(std::string_view scope) { return make_key(scope, ""); }

std::string scope_end(std::string_view scope) {
  std::string key(scope);
  key.push_back('\1');
  return key;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Maps a RocksDB failure to our codes: I/O and contention are transient
// (kUnavailable), anything else means a bug or a damaged directory.
Status from_rocksdb(const rocksdb::Status& s, std::string_view what) {
  std::string message = std::string(what) + ": " + s.ToString();
  if (s.IsNotFound()) return not_found(std::move(message));
  if (s.IsIOError() || s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsShutdownInProgress() ||
      s.IsIncomplete()) {
    return unavailable(std::move(message));
  }
  return internal_error(std::move(message));
}

// convs values: {"last":"<id>","unread":N}. Written by hand (hot path), read
// with nlohmann so a hand-edited or future value still parses.
void encode_summary(std::string* out, std::string_view last, int64_t unread) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof(digits), unread);
  (void)ec;  // 24 chars always hold an int64
  out->clear();
  out->append("{\"last\":\"");
  out->append(last);
  out->append("\",\"unread\":");
  out->append(digits, end);
  out->push_back('}');
}

struct Summary {
  std::string last;
  int64_t unread = 0;
};

bool decode_summary(std::string_view text, Summary* out) {
  auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return false;
  auto last = json.find("last");
  auto unread = json.find("unread");
  if (last == json.end() || !last->is_string()) return false;
  out->last = last->get<std::string>();
  out->unread = (unread != json.end() && unread->is_number_integer()) ? unread->get<int64_t>() : 0;
  return true;
}

// Prefix "<scope>\0" of a key. Used only as a memtable insert hint: within one
// conversation or inbox, new keys land right after the previous one.
class ScopePrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "chat.ScopePrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    const void* sep = memchr(key.data(), '\0', key.size());
    size_t n =
        sep ? static_cast<size_t>(static_cast<const char*>(sep) - key.data()) + 1 : key.size();
    return rocksdb::Slice(key.data(), n);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    return memchr(key.data(), '\0', key.size()) != nullptr;
  }
};

// Options of one family. `writer`: the primary, which tunes its memtables for
// the append path (a secondary replays the WAL into plain memtables).
rocksdb::ColumnFamilyOptions family_options(const std::string& name,
                                            const std::shared_ptr<rocksdb::Cache>& cache,
                                            bool writer) {
  rocksdb::ColumnFamilyOptions options;
  options.write_buffer_size = kWriteBufferSize;
  options.max_write_buffer_number = 2;
  if (writer && (name == kConvsFamily || name == kMetaFamily)) {
    // Summaries and max_id are rewritten by every append. Updating them in
    // place keeps these memtables at one entry per key instead of one per
    // append; without it the two convs puts cost as much as the rest of the
    // batch. Safe here: Get/MultiGet take RocksDB's per-key lock, and no read
    // iterates over these values (conversations() iterates keys, then MultiGets).
    // Requires allow_concurrent_memtable_write = false (one writer anyway).
    options.inplace_update_support = true;
  } else if (writer && (name == kMessagesFamily || name == kInboxFamily || name == kDedupFamily)) {
    // New keys of one conversation / inbox / device land right after the
    // previous one: remember that spot per scope instead of searching the
    // whole skip list (memtable only; reads and files are unaffected).
    options.memtable_insert_with_hint_prefix_extractor = std::make_shared<ScopePrefix>();
  }
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  // Whole-key blooms serve the point gets (convs, dedup, users, envelope);
  // range scans ignore them.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  return options;
}

// The families this archive opens: ours plus any that exist on disk (RocksDB
// refuses to open a directory without naming every family in it).
std::vector<rocksdb::ColumnFamilyDescriptor> families_to_open(
    const rocksdb::DBOptions& db_options, const std::string& path,
    const std::shared_ptr<rocksdb::Cache>& cache, bool writer, bool* exists) {
  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  *exists = listed.ok();
  std::set<std::string> all(names.begin(), names.end());
  all.insert(rocksdb::kDefaultColumnFamilyName);
  for (const char* name : kFamilyNames) all.insert(name);
  std::vector<rocksdb::ColumnFamilyDescriptor> out;
  for (const auto& name : all) out.emplace_back(name, family_options(name, cache, writer));
  return out;
}

}  // namespace

struct ArchiveView::Impl {
  std::string path;
  rocksdb::DB* db = nullptr;                          // owned; closed by ~Impl after the handles
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // owned, every family opened
  rocksdb::ColumnFamilyHandle* families[kFamilyCount] = {};

  // Writer state: touched only by the single writer thread (Archive).
  rocksdb::WriteOptions write_options;
  std::string max_id;  // greatest id appended; mirrors meta/max_id
  rocksdb::WriteBatch batch;
  // Scratch buffers reused by append() so the hot path rarely allocates.
  std::string scratch_key;
  std::string scratch_message_key;
  std::string scratch_value;
  rocksdb::PinnableSlice scratch_read;
  // convs key -> unread count as stored. Valid because this is the only writer;
  // saves the memtable lookup that dominated the append path. Bounded by
  // clearing: a miss only costs one Get.
  std::unordered_map<std::string, int64_t> unread_cache;
  std::vector<std::pair<std::string, int64_t>> pending_unread;  // an append's updates

  // Reader state (ArchiveReader). A catch-up numbered n > begun-at-call-start
  // began after the caller did, so its result serves the caller too.
  std::mutex catch_up_mu;
  std::atomic<uint64_t> catch_ups_begun{0};
  uint64_t catch_ups_done = 0;  // guarded by catch_up_mu
  Status last_catch_up;         // guarded by catch_up_mu

  ~Impl() {
    if (db == nullptr) return;
    scratch_read.Reset();  // may pin a block of the cache the DB owns
    for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    // Nothing left to report to: the WAL already holds every acknowledged write.
    db->Close().PermitUncheckedError();
    delete db;
  }

  rocksdb::ColumnFamilyHandle* cf(Family f) const { return families[f]; }

  // Binds families[] to the opened handles by name; false if one is missing.
  bool bind_families() {
    for (size_t f = 0; f < kFamilyCount; ++f) {
      for (auto* handle : handles) {
        if (handle->GetName() == kFamilyNames[f]) families[f] = handle;
      }
      if (families[f] == nullptr) return false;
    }
    return true;
  }

  // The unread count stored for a convs key (0 when absent). Writer thread only.
  Result<int64_t> stored_unread(const std::string& key) {
    auto cached = unread_cache.find(key);
    if (cached != unread_cache.end()) return cached->second;
    scratch_read.Reset();
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf(kConvs), key, &scratch_read);
    if (s.IsNotFound()) return int64_t{0};
    if (!s.ok()) return from_rocksdb(s, "archive convs get");
    Summary summary;
    const bool decoded =
        decode_summary(std::string_view(scratch_read.data(), scratch_read.size()), &summary);
    // Unpin now: a pinned block must not outlive this call (nor the DB).
    scratch_read.Reset();
    // A damaged summary restarts its count rather than refusing every later
    // message of the conversation: unread is advisory, the message is not.
    return decoded ? summary.unread : int64_t{0};
  }

  // Point get: nullopt when absent.
  Result<std::optional<std::string>> get(Family f, const rocksdb::Slice& key,
                                         std::string_view what) const {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf(f), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return from_rocksdb(s, what);
    return std::optional<std::string>(std::move(value));
  }
};

// ---------------------------------------------------------------------------
// ArchiveView: reads.

ArchiveView::ArchiveView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveView::~ArchiveView() = default;

Result<Page> ArchiveView::conversation_page(const std::string& conv, const PageQuery& query) const {
  const size_t limit = std::max<size_t>(query.limit, 1);
  const std::string lower = scope_begin(conv);
  const std::string end = scope_end(conv);
  Page page;
  rocksdb::ReadOptions read_options;

  if (query.before.empty() && !query.after.empty()) {
    // Forward: the first `limit` ids > after. "<after>\0" is the smallest key
    // greater than the cursor's own key.
    const std::string start = make_key(conv, query.after) + std::string(kSep);
    rocksdb::Slice upper(end);
    read_options.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(
        impl_->db->NewIterator(read_options, impl_->cf(kMessages)));
    std::string newest_id;
    for (it->Seek(start); it->Valid() && page.envelopes.size() < limit; it->Next()) {
      page.envelopes.emplace_back(it->value().data(), it->value().size());
      newest_id.assign(key_rest(it->key(), conv.size()));
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), "archive page scan");
    if (it->Valid() && !page.envelopes.empty()) page.next = std::move(newest_id);
    return page;
  }

  // Backward: the latest `limit` ids (< before when given), collected newest
  // first and reversed.
  const std::string upper_key = query.before.empty() ? end : make_key(conv, query.before);
  rocksdb::Slice lower_bound(lower);
  rocksdb::Slice upper_bound(upper_key);
  read_options.iterate_lower_bound = &lower_bound;
  read_options.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, impl_->cf(kMessages)));
  std::string oldest_id;
  for (it->SeekToLast(); it->Valid() && page.envelopes.size() < limit; it->Prev()) {
    page.envelopes.emplace_back(it->value().data(), it->value().size());
    oldest_id.assign(key_rest(it->key(), conv.size()));
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "archive page scan");
  std::reverse(page.envelopes.begin(), page.envelopes.end());
  if (it->Valid() && !page.envelopes.empty()) page.next = std::move(oldest_id);
  return page;
}

Result<Page> ArchiveView::sync(const std::string& user, const std::string& since,
                               size_t limit) const {
  limit = std::max<size_t>(limit, 1);
  const std::string start =
      since.empty() ? scope_begin(user) : make_key(user, since) + std::string(kSep);
  const std::string end = scope_end(user);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;

  // inbox values are "<conv>"; the message key is "<conv>\0<id>".
  std::vector<std::string> message_keys;
  message_keys.reserve(std::min<size_t>(limit, 1024));
  std::string last_id;
  {
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, impl_->cf(kInbox)));
    for (it->Seek(start); it->Valid() && message_keys.size() < limit; it->Next()) {
      last_id.assign(key_rest(it->key(), user.size()));
      std::string key(it->value().data(), it->value().size());
      key.append(kSep);
      key.append(last_id);
      message_keys.push_back(std::move(key));
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), "archive sync scan");
  }

  Page page;
  if (message_keys.empty()) return page;
  std::vector<rocksdb::Slice> keys(message_keys.begin(), message_keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  impl_->db->MultiGet(rocksdb::ReadOptions(), impl_->cf(kMessages), keys.size(), keys.data(),
                      values.data(), statuses.data());
  page.envelopes.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    // The message and its inbox entries are one batch, and messages are never
    // deleted, so NotFound cannot happen; skipping keeps sync moving if it does.
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok()) return from_rocksdb(statuses[i], "archive sync get");
    page.envelopes.push_back(values[i].ToString());
  }
  page.next = std::move(last_id);
  return page;
}

Result<std::vector<ConversationSummary>> ArchiveView::conversations(const std::string& user,
                                                                    size_t limit) const {
  limit = std::max<size_t>(limit, 1);
  const std::string start = scope_begin(user);
  const std::string end = scope_end(user);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;

  // Keys from the scan, values by MultiGet: the writer updates convs values in
  // place, and only point reads are guarded against that (see family_options).
  std::vector<std::string> convs_keys;
  {
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read_options, impl_->cf(kConvs)));
    for (it->Seek(start); it->Valid(); it->Next()) convs_keys.push_back(it->key().ToString());
    if (!it->status().ok()) return from_rocksdb(it->status(), "archive convs scan");
  }
  std::vector<ConversationSummary> all;
  if (convs_keys.empty()) return all;
  {
    std::vector<rocksdb::Slice> keys(convs_keys.begin(), convs_keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    impl_->db->MultiGet(rocksdb::ReadOptions(), impl_->cf(kConvs), keys.size(), keys.data(),
                        values.data(), statuses.data());
    all.reserve(keys.size());
    Summary summary;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) continue;  // convs entries are never deleted
      if (!statuses[i].ok()) return from_rocksdb(statuses[i], "archive convs get");
      if (!decode_summary(std::string_view(values[i].data(), values[i].size()), &summary)) {
        return internal_error("archive: malformed convs value for " + user);
      }
      ConversationSummary out;
      out.conv.assign(key_rest(keys[i], user.size()));
      out.last_id = std::move(summary.last);
      out.unread = summary.unread;
      all.push_back(std::move(out));
    }
  }

  auto more_recent = [](const ConversationSummary& a, const ConversationSummary& b) {
    return a.last_id != b.last_id ? a.last_id > b.last_id : a.conv < b.conv;
  };
  if (all.size() > limit) {
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(limit), all.end(),
                      more_recent);
    all.resize(limit);
  } else {
    std::sort(all.begin(), all.end(), more_recent);
  }
  if (all.empty()) return all;

  std::vector<std::string> message_keys;
  message_keys.reserve(all.size());
  for (const auto& summary : all) message_keys.push_back(make_key(summary.conv, summary.last_id));
  std::vector<rocksdb::Slice> keys(message_keys.begin(), message_keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  impl_->db->MultiGet(rocksdb::ReadOptions(), impl_->cf(kMessages), keys.size(), keys.data(),
                      values.data(), statuses.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;  // see sync(): cannot happen
    if (!statuses[i].ok()) return from_rocksdb(statuses[i], "archive convs get");
    all[i].last_envelope = values[i].ToString();
  }
  return all;
}

Result<bool> ArchiveView::user_exists(const std::string& user) const {
  auto found = impl_->get(kUsers, user, "archive user get");
  if (!found) return found.status();
  return found->has_value();
}

Result<bool> ArchiveView::has_conversation(const std::string& user, const std::string& conv) const {
  auto found = impl_->get(kConvs, make_key(user, conv), "archive convs get");
  if (!found) return found.status();
  return found->has_value();
}

Result<std::optional<std::string>> ArchiveView::envelope(const std::string& conv,
                                                         const std::string& id) const {
  return impl_->get(kMessages, make_key(conv, id), "archive message get");
}

// ---------------------------------------------------------------------------
// Archive: the single writer.

Archive::Archive(std::unique_ptr<Impl> impl) : ArchiveView(std::move(impl)) {}
Archive::~Archive() = default;

Result<std::unique_ptr<Archive>> Archive::open(const ArchiveOptions& options) {
  auto cache = rocksdb::NewLRUCache(kBlockCacheSize);
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  // Required by inplace_update_support (see family_options); one writer anyway.
  db_options.allow_concurrent_memtable_write = false;
  // Archived WAL files stay this long so a lagging secondary can still tail them.
  db_options.WAL_ttl_seconds = options.wal_ttl_seconds;
  db_options.db_write_buffer_size = kDbWriteBufferSize;
  // Small families would otherwise pin old WAL files until they fill a memtable.
  db_options.max_total_wal_size = kMaxTotalWalSize;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 4;
  db_options.max_log_file_size = 8 << 20;

  bool existed = false;
  auto descriptors = families_to_open(db_options, options.path, cache, /*writer=*/true, &existed);
  auto impl = std::make_unique<Impl>();
  impl->path = options.path;
  rocksdb::Status s =
      rocksdb::DB::Open(db_options, options.path, descriptors, &impl->handles, &impl->db);
  if (!s.ok()) {
    return unavailable("archive: cannot open " + options.path + ": " + s.ToString());
  }
  if (!impl->bind_families()) {
    return internal_error("archive: missing column family in " + options.path);
  }
  impl->write_options.sync = options.sync_writes;

  auto version = impl->get(kMeta, kMetaSchemaVersion, "archive meta get");
  if (!version) return version.status();
  if (!version->has_value()) {
    s = impl->db->Put(impl->write_options, impl->cf(kMeta), kMetaSchemaVersion, kSchemaVersion);
    if (!s.ok()) return from_rocksdb(s, "archive: writing schema version in " + options.path);
  } else if (**version != kSchemaVersion) {
    return internal_error("archive: unsupported schema version " + **version + " in " +
                          options.path);
  }

  auto max_id = impl->get(kMeta, kMetaMaxId, "archive meta get");
  if (!max_id) return max_id.status();
  if (max_id->has_value()) impl->max_id = std::move(**max_id);
  return std::unique_ptr<Archive>(new Archive(std::move(impl)));
}

Result<std::optional<std::string>> Archive::find_duplicate(const std::string& client_id,
                                                           const std::string& cid) const {
  // The dedup value "<conv>\0<id>" is the message's key.
  auto message_key = impl_->get(kDedup, make_key(client_id, cid), "archive dedup get");
  if (!message_key) return message_key.status();
  if (!message_key->has_value()) return std::optional<std::string>();
  return impl_->get(kMessages, **message_key, "archive message get");
}

Status Archive::append(const AppendRequest& request) {
  Impl& d = *impl_;
  if (!is_valid_message_id(request.id)) return invalid_argument("archive: malformed id");
  if (request.id <= d.max_id) {
    return invalid_argument("archive: id " + request.id + " not greater than " + d.max_id);
  }
  if (request.conv.empty() || has_nul(request.conv)) {
    return invalid_argument("archive: malformed conversation id");
  }
  for (const auto& user : request.participants) {
    if (user.empty() || has_nul(user)) return invalid_argument("archive: malformed participant");
  }
  if (has_nul(request.client_id) || has_nul(request.cid)) {
    return invalid_argument("archive: malformed client id or cid");
  }

  d.batch.Clear();
  rocksdb::Status s;
  // messages: "<conv>\0<id>" -> envelope. d.scratch_message_key keeps it for the dedup value.
  make_key(&d.scratch_message_key, request.conv, request.id);
  s = d.batch.Put(d.cf(kMessages), d.scratch_message_key, request.envelope);
  if (!s.ok()) return from_rocksdb(s, "archive batch");

  size_t pending = 0;  // entries of d.pending_unread in use (kept to reuse their buffers)
  for (const auto& user : request.participants) {
    make_key(&d.scratch_key, user, request.id);
    s = d.batch.Put(d.cf(kInbox), d.scratch_key, request.conv);
    if (!s.ok()) return from_rocksdb(s, "archive batch");

    make_key(&d.scratch_key, user, request.conv);
    int64_t unread = 0;
    if (user != request.from) {
      auto stored = d.stored_unread(d.scratch_key);
      if (!stored) return stored.status();
      unread = *stored + 1;
    }
    encode_summary(&d.scratch_value, request.id, unread);
    s = d.batch.Put(d.cf(kConvs), d.scratch_key, d.scratch_value);
    if (!s.ok()) return from_rocksdb(s, "archive batch");
    if (pending == d.pending_unread.size()) d.pending_unread.emplace_back();
    d.pending_unread[pending].first.assign(d.scratch_key);
    d.pending_unread[pending].second = unread;
    ++pending;
  }

  if (!request.client_id.empty() && !request.cid.empty()) {
    make_key(&d.scratch_key, request.client_id, request.cid);
    s = d.batch.Put(d.cf(kDedup), d.scratch_key, d.scratch_message_key);
    if (!s.ok()) return from_rocksdb(s, "archive batch");
  }
  s = d.batch.Put(d.cf(kMeta), kMetaMaxId, request.id);
  if (!s.ok()) return from_rocksdb(s, "archive batch");

  s = d.db->Write(d.write_options, &d.batch);
  if (!s.ok()) return from_rocksdb(s, "archive write");
  d.max_id = request.id;
  // Only now: the cache must mirror what is in the database.
  if (d.unread_cache.size() + pending > kMaxCachedUnread) d.unread_cache.clear();
  for (size_t i = 0; i < pending; ++i) {
    d.unread_cache.insert_or_assign(d.pending_unread[i].first, d.pending_unread[i].second);
  }
  return Status::ok();
}

Status Archive::add_user(const std::string& user) {
  if (user.empty()) return invalid_argument("archive: empty user id");
  rocksdb::Status s = impl_->db->Put(impl_->write_options, impl_->cf(kUsers), user, "{}");
  if (!s.ok()) return from_rocksdb(s, "archive user put");
  return Status::ok();
}

Status Archive::remove_user(const std::string& user) {
  rocksdb::Status s = impl_->db->Delete(impl_->write_options, impl_->cf(kUsers), user);
  if (!s.ok()) return from_rocksdb(s, "archive user delete");
  return Status::ok();
}

Result<std::string> Archive::max_id() const {
  // Read from the database rather than the writer's copy so any thread may ask.
  auto max_id = impl_->get(kMeta, kMetaMaxId, "archive meta get");
  if (!max_id) return max_id.status();
  return max_id->value_or(std::string());
}

// ---------------------------------------------------------------------------
// ArchiveReader: a secondary instance.

ArchiveReader::ArchiveReader(std::unique_ptr<Impl> impl) : ArchiveView(std::move(impl)) {}
ArchiveReader::~ArchiveReader() = default;

Result<std::unique_ptr<ArchiveReader>> ArchiveReader::open(const std::string& primary_path,
                                                           const std::string& secondary_path) {
  auto cache = rocksdb::NewLRUCache(kBlockCacheSize);
  rocksdb::DBOptions db_options;
  // Required by secondaries: they cannot reopen table files the primary deletes.
  db_options.max_open_files = -1;
  db_options.keep_log_file_num = 4;
  db_options.max_log_file_size = 8 << 20;

  bool existed = false;
  auto descriptors = families_to_open(db_options, primary_path, cache, /*writer=*/false, &existed);
  if (!existed) {
    return unavailable("archive reader: no archive at " + primary_path);
  }
  auto impl = std::make_unique<Impl>();
  impl->path = primary_path;
  rocksdb::Status s = rocksdb::DB::OpenAsSecondary(db_options, primary_path, secondary_path,
                                                   descriptors, &impl->handles, &impl->db);
  if (!s.ok()) {
    return unavailable("archive reader: cannot open " + primary_path + " (secondary " +
                       secondary_path + "): " + s.ToString());
  }
  if (!impl->bind_families()) {
    // The primary creates every family at first open; a missing one means the
    // directory is not an archive (or predates this schema).
    return unavailable("archive reader: missing column family in " + primary_path);
  }
  return std::unique_ptr<ArchiveReader>(new ArchiveReader(std::move(impl)));
}

Status ArchiveReader::catch_up() {
  Impl& d = *impl_;
  const uint64_t begun_before_call = d.catch_ups_begun.load();
  std::lock_guard<std::mutex> lock(d.catch_up_mu);
  // Catch-up number begun_before_call + 1 started after this call did, so a
  // successful one covers every write completed before this call.
  if (d.catch_ups_done > begun_before_call && d.last_catch_up.is_ok()) return Status::ok();
  d.catch_ups_begun.fetch_add(1);
  rocksdb::Status s = d.db->TryCatchUpWithPrimary();
  d.last_catch_up = s.ok() ? Status::ok() : from_rocksdb(s, "archive catch-up of " + d.path);
  d.catch_ups_done = d.catch_ups_begun.load();
  return d.last_catch_up;
}

}  // namespace chat::store
