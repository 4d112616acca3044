// The message archive on RocksDB. Schema and contracts: chat/store/archive.h.
//
// Keys are "<scope>\0<rest>": no id (user, conversation, client id, server id)
// contains a NUL, and NUL sorts below every other byte, so the keys of one
// scope are exactly the range ["<scope>\0", "<scope>\1").
#include "chat/store/archive.h"

#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/convenience.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/memtablerep.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "chat/common/ids.h"
#include "checkpoint.h"
#include "info_log.h"
#include "rocks_db.h"

namespace chat::store {
namespace {

constexpr char kMessagesFamily[] = "messages";
constexpr char kInboxFamily[] = "inbox";
constexpr char kConvsFamily[] = "convs";
constexpr char kDedupFamily[] = "dedup";
constexpr char kUsersFamily[] = "users";
constexpr char kMetaFamily[] = "meta";
constexpr char kGroupsFamily[] = "groups";
constexpr char kMembersFamily[] = "members";
constexpr char kUserGroupsFamily[] = "user_groups";
constexpr char kMarkersFamily[] = "markers";
constexpr char kBlocksFamily[] = "blocks";
constexpr char kPresenceFamily[] = "presence";

// Index into Impl::families; the order of kFamilyNames.
enum Family : size_t {
  kMessages,
  kInbox,
  kConvs,
  kDedup,
  kUsers,
  kMeta,
  kGroups,
  kMembers,
  kUserGroups,
  kMarkers,
  kBlocks,
  kPresence,
  kFamilyCount
};
constexpr const char* kFamilyNames[kFamilyCount] = {
    kMessagesFamily,   kInboxFamily,   kConvsFamily,  kDedupFamily,
    kUsersFamily,      kMetaFamily,    kGroupsFamily, kMembersFamily,
    kUserGroupsFamily, kMarkersFamily, kBlocksFamily, kPresenceFamily};

constexpr char kMetaSchemaVersion[] = "schema_version";
constexpr char kMetaMaxId[] = "max_id";
// Banned users live in meta under this scope: ban\0<user> -> "".
constexpr char kMetaBanScope[] = "ban";
// Account origin marks live in meta under this scope: origin\0<user> -> mark.
constexpr char kMetaOriginScope[] = "origin";
// Revoked access tokens: revoked\0<jti> -> "<exp seconds>" ("0": unknown).
constexpr char kMetaRevokedScope[] = "revoked";
// Media messages by the media id they reference, under this scope:
// mediaref\0<media id>\0<conv>\0<msg id> -> <sender>.
constexpr char kMetaMediaRefScope[] = "mediaref";
// Push records (docs/push.md): push\0<message id> -> record JSON, written with
// the message; and the devices with push targets: pushdev\0<user> -> JSON array.
constexpr char kMetaPushScope[] = "push";
constexpr char kMetaPushDevicesScope[] = "pushdev";
constexpr size_t kMaxJtiBytes = 256;
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
// User ids of Archive::has_user's cache (~60 bytes each): about 6 MiB at most.
constexpr size_t kMaxKnownUsers = 100'000;
// Hash buckets of the writer's convs memtable (8 bytes each, per memtable).
constexpr size_t kConvsMemtableBuckets = 16384;
// Free space a resume after a failed write wants beyond the memtables it
// flushes (new WAL, MANIFEST, OPTIONS).
constexpr uint64_t kResumeHeadroom = 4 << 20;
// mark_read counts unread messages exactly up to this, then reports this.
constexpr int64_t kUnreadCap = 10'000;

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
    if (name == kConvsFamily) {
      // An in-place update starts with a lookup; in one skip list over every
      // user's summaries that search dominated a group fan-out (one per
      // member). A hash of skip lists by "<user>\0" makes it a bucket probe
      // plus a short search: ~1.7x the append rate with 100 participants.
      // Every convs read stays inside one user's prefix (point gets, and
      // conversations() scans "<user>\0" with an upper bound at the prefix's
      // end), which is what prefix-mode iteration guarantees.
      options.prefix_extractor = std::make_shared<ScopePrefix>();
      options.memtable_factory.reset(rocksdb::NewHashSkipListRepFactory(kConvsMemtableBuckets));
    }
  } else if (writer && (name == kMessagesFamily || name == kInboxFamily || name == kDedupFamily)) {
    // New keys of one conversation / inbox / device land right after the
    // previous one: remember that spot per scope instead of searching the
    // whole skip list (memtable only; reads and files are unaffected).
    options.memtable_insert_with_hint_prefix_extractor = std::make_shared<ScopePrefix>();
    if (name == kDedupFamily) {
      // Every message looks up its (client id, cid) first and nearly always
      // misses: a whole-key Bloom filter over the memtable answers most of
      // those misses without searching its skip list (the files have their own).
      options.memtable_prefix_bloom_size_ratio = 0.05;
      options.memtable_whole_key_filtering = true;
    }
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
// refuses to open a directory without naming every family in it). `missing`
// (optional) receives ours that do not exist yet, which are left out of the
// result: the writer creates them in one CreateColumnFamilies call, because
// DB::Open's create_missing_column_families rewrites the OPTIONS file once per
// family (12 of them made a first open take ~200 ms).
std::vector<rocksdb::ColumnFamilyDescriptor> families_to_open(
    const rocksdb::DBOptions& db_options, const std::string& path,
    const std::shared_ptr<rocksdb::Cache>& cache, bool writer, bool* exists,
    std::vector<rocksdb::ColumnFamilyDescriptor>* missing = nullptr) {
  std::vector<std::string> names;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  *exists = listed.ok();
  std::set<std::string> all(names.begin(), names.end());
  all.insert(rocksdb::kDefaultColumnFamilyName);
  std::set<std::string> absent;
  for (const char* name : kFamilyNames) {
    if (all.insert(name).second) absent.insert(name);
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> out;
  for (const auto& name : all) {
    if (missing != nullptr && absent.count(name)) {
      missing->emplace_back(name, family_options(name, cache, writer));
    } else {
      out.emplace_back(name, family_options(name, cache, writer));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Visible ranges: walking a conversation through a member's periods.

// Sorted by `from`, disjoint, non-empty ranges. Touching or overlapping ranges
// merge; (a, b] with b <= a is empty and dropped. No ranges at all: everything.
std::vector<IdRange> normalize_ranges(const std::vector<IdRange>& in) {
  if (in.empty()) return {IdRange{}};
  std::vector<IdRange> ranges;
  ranges.reserve(in.size());
  for (const auto& r : in) {
    if (!r.to.empty() && !r.from.empty() && r.to <= r.from) continue;
    ranges.push_back(r);
  }
  // "" sorts first, as -infinity should.
  std::sort(ranges.begin(), ranges.end(),
            [](const IdRange& a, const IdRange& b) { return a.from < b.from; });
  std::vector<IdRange> out;
  for (auto& r : ranges) {
    if (!out.empty()) {
      IdRange& last = out.back();
      if (last.to.empty()) break;  // open: it already covers everything after
      if (r.from.empty() || r.from <= last.to) {
        if (r.to.empty() || r.to > last.to) last.to = std::move(r.to);
        continue;
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

// Visits the messages of `conv` inside `ranges` (normalized) with id > after
// ("" none), oldest first, until visit(id, value) returns false. Seeks to each
// range's start instead of stepping over the messages between ranges.
// `it` iterates the messages family within the conversation's scope.
template <typename Visit>
rocksdb::Status walk_forward(rocksdb::Iterator* it, const std::string& conv,
                             const std::vector<IdRange>& ranges, const std::string& after,
                             Visit&& visit) {
  std::string seek_key;
  bool positioned = false;  // `it` is on the first key > the end of the previous range
  for (const auto& r : ranges) {
    if (!after.empty() && !r.to.empty() && r.to <= after) continue;
    const std::string& lo = (!after.empty() && after > r.from) ? after : r.from;
    if (positioned) {
      if (!it->Valid()) break;  // nothing after the previous range
    }
    // A positioned iterator is on the first key after some bound <= lo; when
    // that key is also > lo it is the first key > lo, so no seek is needed.
    if (!positioned || !(lo.empty() || key_rest(it->key(), conv.size()) > lo)) {
      if (lo.empty()) {
        seek_key = scope_begin(conv);
      } else {
        make_key(&seek_key, conv, lo);
        seek_key.append(kSep);  // the smallest key after lo's own
      }
      it->Seek(seek_key);
      positioned = true;
    }
    for (; it->Valid(); it->Next()) {
      std::string_view id = key_rest(it->key(), conv.size());
      if (!r.to.empty() && id > r.to) break;
      if (!visit(id, it->value())) return rocksdb::Status::OK();
    }
    if (!it->status().ok()) return it->status();
  }
  return it->status();
}

// The same backwards: ids < before ("" none), newest first.
template <typename Visit>
rocksdb::Status walk_backward(rocksdb::Iterator* it, const std::string& conv,
                              const std::vector<IdRange>& ranges, const std::string& before,
                              Visit&& visit) {
  std::string seek_key;
  bool positioned = false;  // `it` is on the last key <= the start of the previous range
  for (auto r = ranges.rbegin(); r != ranges.rend(); ++r) {
    if (!before.empty() && !r->from.empty() && r->from >= before) continue;
    if (positioned && !it->Valid()) break;  // nothing before the previous range
    // A positioned iterator sits on the last key <= the previous (later)
    // range's start, which is >= r->to and < before: when that key is <= r->to
    // it is already the last candidate of this range.
    if (!positioned || r->to.empty() || key_rest(it->key(), conv.size()) > r->to) {
      const bool by_before = !before.empty() && (r->to.empty() || before <= r->to);
      if (by_before) {
        make_key(&seek_key, conv, before);
        it->SeekForPrev(seek_key);
        if (it->Valid() && key_rest(it->key(), conv.size()) == before) it->Prev();
      } else if (!r->to.empty()) {
        make_key(&seek_key, conv, r->to);
        it->SeekForPrev(seek_key);
      } else {
        it->SeekToLast();
      }
      positioned = true;
    }
    for (; it->Valid(); it->Prev()) {
      std::string_view id = key_rest(it->key(), conv.size());
      if (!r->from.empty() && id <= r->from) break;
      if (!visit(id, it->value())) return rocksdb::Status::OK();
    }
    if (!it->status().ok()) return it->status();
  }
  return it->status();
}

// The top-level "from" of an envelope, without building the document: a SAX
// pass that stops at that key's value (the broker writes it near the start).
class FromFinder {
 public:
  using json = nlohmann::json;
  std::string from;
  bool found = false;

  bool null() { return value(); }
  bool boolean(bool) { return value(); }
  bool number_integer(json::number_integer_t) { return value(); }
  bool number_unsigned(json::number_unsigned_t) { return value(); }
  bool number_float(json::number_float_t, const json::string_t&) { return value(); }
  bool binary(json::binary_t&) { return value(); }
  bool string(json::string_t& s) {
    if (expect_from_) {
      from = std::move(s);
      found = true;
      return false;  // done: stop parsing
    }
    return true;
  }
  bool start_object(std::size_t) {
    if (expect_from_) return false;  // not a string: no sender
    ++depth_;
    return true;
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    if (expect_from_) return false;
    ++depth_;
    return true;
  }
  bool end_array() {
    --depth_;
    return true;
  }
  bool key(json::string_t& k) {
    expect_from_ = depth_ == 1 && k == "from";
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }

 private:
  bool value() { return !expect_from_; }
  int depth_ = 0;
  bool expect_from_ = false;
};

// The sender of an envelope; nullopt when it has none (counted as someone else).
std::optional<std::string> envelope_sender(const rocksdb::Slice& envelope) {
  FromFinder finder;
  nlohmann::json::sax_parse(envelope.data(), envelope.data() + envelope.size(), &finder);
  if (!finder.found) return std::nullopt;
  return std::move(finder.from);
}

// ---------------------------------------------------------------------------
// Group records (not on the append path: nlohmann both ways).

std::string encode_group(const GroupInfo& g) {
  nlohmann::json j = {{"id", g.id},           {"name", g.name},
                      {"creator", g.creator}, {"created_ms", g.created_ms},
                      {"members", g.members}, {"admins", g.admins}};
  // A name that is not UTF-8 must not throw out of the writer.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool string_array(const nlohmann::json& j, std::vector<std::string>* out) {
  out->clear();
  if (!j.is_array()) return false;
  for (const auto& e : j) {
    if (!e.is_string()) return false;
    out->push_back(e.get<std::string>());
  }
  return true;
}

bool decode_group(std::string_view text, GroupInfo* g) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) return false;
  g->id = id->get<std::string>();
  auto name = j.find("name");
  g->name = (name != j.end() && name->is_string()) ? name->get<std::string>() : std::string();
  auto creator = j.find("creator");
  g->creator =
      (creator != j.end() && creator->is_string()) ? creator->get<std::string>() : std::string();
  auto created = j.find("created_ms");
  g->created_ms =
      (created != j.end() && created->is_number_integer()) ? created->get<int64_t>() : 0;
  auto members = j.find("members");
  auto admins = j.find("admins");
  if (members == j.end() || !string_array(*members, &g->members)) return false;
  if (admins == j.end() || !string_array(*admins, &g->admins)) return false;
  return true;
}

std::string encode_membership(const Membership& m) {
  nlohmann::json periods = nlohmann::json::array();
  for (const auto& p : m.periods) periods.push_back({p.from, p.to});
  return nlohmann::json{{"periods", std::move(periods)}}.dump();
}

bool decode_membership(std::string_view text, Membership* m) {
  m->periods.clear();
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  auto periods = j.find("periods");
  if (periods == j.end() || !periods->is_array()) return false;
  for (const auto& p : *periods) {
    if (!p.is_array() || p.size() != 2 || !p[0].is_string() || !p[1].is_string()) return false;
    m->periods.push_back(IdRange{p[0].get<std::string>(), p[1].get<std::string>()});
  }
  return true;
}

// Inserts into / erases from a sorted vector; false when nothing changed.
bool sorted_insert(std::vector<std::string>* v, const std::string& s) {
  auto pos = std::lower_bound(v->begin(), v->end(), s);
  if (pos != v->end() && *pos == s) return false;
  v->insert(pos, s);
  return true;
}

bool sorted_erase(std::vector<std::string>* v, const std::string& s) {
  auto pos = std::lower_bound(v->begin(), v->end(), s);
  if (pos == v->end() || *pos != s) return false;
  v->erase(pos);
  return true;
}

bool sorted_contains(const std::vector<std::string>& v, const std::string& s) {
  return std::binary_search(v.begin(), v.end(), s);
}

// Ids that are scopes or rest of keys: non-empty, no NUL.
bool valid_key_part(std::string_view s) { return !s.empty() && !has_nul(s); }

constexpr std::string_view kGroupConvPrefix = "g:";

// One open RocksDB instance and its column families. The writer's lives as
// long as the Archive. A reader's is replaced when the primary restarts (see
// ArchiveReader::catch_up); every read pins the instance it started on
// (ArchiveView::Impl::pin), so a replaced one is closed only when the last
// read still using it ends.
struct Db {
  rocksdb::DB* db = nullptr;                          // owned; closed by ~Db after the handles
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // owned, every family opened
  rocksdb::ColumnFamilyHandle* families[kFamilyCount] = {};

  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() {
    if (db == nullptr) return;
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

  // Point get: nullopt when absent.
  Result<std::optional<std::string>> get(Family f, const rocksdb::Slice& key,
                                         std::string_view what) const {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf(f), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return from_rocksdb(s, what);
    return std::optional<std::string>(std::move(value));
  }

  // Visits (rest of key, value) of every key in `scope` ("" = the whole
  // family, keys whole), in key order.
  template <typename Visit>
  Status scan(Family f, std::string_view scope, std::string_view what, Visit&& visit) const {
    rocksdb::ReadOptions read_options;
    std::string start;
    std::string end;
    rocksdb::Slice upper;
    if (!scope.empty()) {
      start = scope_begin(scope);
      end = scope_end(scope);
      upper = rocksdb::Slice(end);
      read_options.iterate_upper_bound = &upper;
    }
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, cf(f)));
    for (it->Seek(start); it->Valid(); it->Next()) {
      std::string_view key = scope.empty() ? std::string_view(it->key().data(), it->key().size())
                                           : key_rest(it->key(), scope.size());
      visit(key, std::string_view(it->value().data(), it->value().size()));
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), what);
    return Status::ok();
  }

  Result<std::optional<GroupInfo>> load_group(const std::string& gid) const {
    auto text = get(kGroups, gid, "archive group get");
    if (!text) return text.status();
    if (!text->has_value()) return std::optional<GroupInfo>();
    GroupInfo group;
    if (!decode_group(**text, &group)) {
      return internal_error("archive: malformed groups value for " + gid);
    }
    return std::optional<GroupInfo>(std::move(group));
  }

  Result<Membership> load_membership(const std::string& gid, const std::string& user) const {
    auto text = get(kMembers, make_key(gid, user), "archive members get");
    if (!text) return text.status();
    Membership membership;
    if (text->has_value() && !decode_membership(**text, &membership)) {
      return internal_error("archive: malformed members value for " + gid + "/" + user);
    }
    return membership;
  }
};

// The name of the MANIFEST that the CURRENT file of the database at `path`
// names (CURRENT's content: "MANIFEST-<number>\n"). A primary's every open
// writes a new MANIFEST with a greater number and then replaces CURRENT
// (atomically, by rename), so a changed content means a new primary (or, at
// most once per GiB of manifest, a rolled-over MANIFEST). One open + read of
// a ~16-byte file.
bool read_current_manifest(const std::string& current_file, std::string* out) {
  int fd = ::open(current_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[256];
  size_t size = 0;
  bool ok = true;
  while (size < sizeof(buffer)) {
    ssize_t n = ::read(fd, buffer + size, sizeof(buffer) - size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ok = false;
    if (n <= 0) break;
    size += static_cast<size_t>(n);
  }
  ::close(fd);
  if (!ok || size == 0) return false;
  out->assign(buffer, size);
  return true;
}

// What changes whenever the primary writes anything: the MANIFEST CURRENT
// names, and the name and size of its newest WAL file (every write appends to
// the WAL before it is acknowledged; flushes start a new one). Two equal
// signatures mean no write happened in between, so a catch-up can be skipped.
// Empty when the directory cannot be listed (then always catch up).
std::string primary_signature(const std::string& dir, const std::string& manifest) {
  std::error_code ec;
  std::string newest;
  uintmax_t size = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() < 5 || name.compare(name.size() - 4, 4, ".log") != 0) continue;
    // WAL names are zero-padded numbers, so the greatest name is the newest.
    if (name > newest) {
      newest = name;
      size = it->file_size(ec);
      if (ec) return "";
    }
  }
  if (ec || newest.empty()) return "";
  return manifest + "/" + newest + "/" + std::to_string(size);
}

// Options of a secondary instance (ArchiveReader), which is reopened after
// every primary restart.
rocksdb::DBOptions secondary_db_options() {
  rocksdb::DBOptions db_options;
  // Required by secondaries: they cannot reopen table files the primary deletes.
  db_options.max_open_files = -1;
  // The secondary's own info LOG lives in the secondary directory. Every
  // (re)open starts a new one and keeps the previous as LOG.old.<time>; the
  // rolling logger (enabled by max_log_file_size) deletes all but the newest
  // keep_log_file_num at each start, so reopens cannot pile them up. (Unused
  // while open_secondary sets info_log: see info_log.h.)
  db_options.keep_log_file_num = 3;
  db_options.max_log_file_size = 8 << 20;
  return db_options;
}

// Opens a secondary instance over the primary at `primary_path` with every
// column family. kUnavailable when it cannot (no archive yet, or a primary in
// the middle of its recovery).
Result<std::shared_ptr<Db>> open_secondary(const std::string& primary_path,
                                           const std::string& secondary_path,
                                           const std::shared_ptr<rocksdb::Cache>& cache) {
  rocksdb::DBOptions db_options = secondary_db_options();
  // Not RocksDB's file logger: it aborts on a full disk (info_log.h). That
  // one also created the secondary directory, which holds nothing else.
  std::error_code ignored;  // no directory: no log, the open still works
  std::filesystem::create_directories(secondary_path, ignored);
  db_options.info_log = make_info_log(secondary_path + "/LOG");
  bool existed = false;
  auto descriptors = families_to_open(db_options, primary_path, cache, /*writer=*/false, &existed);
  if (!existed) {
    return unavailable("archive reader: no archive at " + primary_path);
  }
  auto db = std::make_shared<Db>();
  rocksdb::Status s = rocksdb::DB::OpenAsSecondary(db_options, primary_path, secondary_path,
                                                   descriptors, &db->handles, &db->db);
  if (!s.ok()) {
    return unavailable("archive reader: cannot open " + primary_path + " (secondary " +
                       secondary_path + "): " + s.ToString());
  }
  if (!db->bind_families()) {
    // The primary creates every family at first open; a missing one means the
    // directory is not an archive (or predates this schema).
    return unavailable("archive reader: missing column family in " + primary_path);
  }
  return db;
}

}  // namespace

struct ArchiveView::Impl {
  std::string path;

  // The open database. Reads pin it (pin()); only ArchiveReader::catch_up
  // replaces it.
  std::atomic<std::shared_ptr<Db>> current;

  // Writer state: touched only by the single writer thread (Archive), except
  // `writer`, which is set at open and never changes (reads may use it).
  Db* writer = nullptr;  // the writer's database: `current`, which it never replaces
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
  // Users known to exist (Archive::has_user). Valid for the same reason as
  // unread_cache: users are added and removed only through this writer.
  std::unordered_set<std::string> known_users;
  // Push records up to this id were deleted (delete_push_records starts here,
  // not at the scope's first key: the tombstones before it are not walked).
  std::string push_deleted_upto;
  // Write health (Archive::health, try_recover). Writer thread only, except
  // that health() copies it under health_mu.
  mutable std::mutex health_mu;
  ArchiveHealth health;
  ArchiveOptions options;  // as opened (reopen uses them again)
  std::chrono::milliseconds resume_interval{500};
  std::chrono::milliseconds resume_timeout{5000};
  std::chrono::steady_clock::time_point next_resume;  // no Resume() before this
  // A failed write left RocksDB refusing writes until a Resume() (or reopen).
  bool failed = false;
  // The free-space reserve (ArchiveOptions::min_free_bytes).
  bool low_space = false;
  std::chrono::steady_clock::time_point next_space_check;  // statvfs at most every 100 ms
  // A DB::Resume() running on its own thread: RocksDB 7.8's Resume can block
  // for good, and the broker's one thread must never wait on it. Cause (7.8
  // source): a flush scheduled before the failure whose background job runs
  // after it returns the error without taking its request off the flush
  // queue, so the column family stays "queued" while no job is counted for
  // it; Resume's FlushMemTable then queues nothing new for that family and
  // WaitForFlushMemTables waits forever. The thread holds the database open.
  struct ResumeAttempt {
    std::atomic<bool> done{false};
    rocksdb::Status result;  // written before `done`
    std::chrono::steady_clock::time_point started;
    bool cancelled = false;  // writer thread only: CancelAllBackgroundWork was called
  };
  std::shared_ptr<ResumeAttempt> resuming;

  // health.writable and low_space from the writer's state. Writer thread only.
  void publish_health() {
    std::lock_guard<std::mutex> lock(health_mu);
    health.low_space = low_space;
    health.writable = !failed && !low_space && !health.recovery_stuck;
  }

  // Reads the free space of the archive's file system (at most every 100 ms)
  // and updates low_space. Writer thread only.
  void check_space(std::chrono::steady_clock::time_point now) {
    next_space_check = now + std::chrono::milliseconds(100);
    // statvfs through the Env (tests inject a value): f_bavail, or f_bfree as root.
    rocksdb::Env* env = options.env != nullptr ? options.env : rocksdb::Env::Default();
    uint64_t free_bytes = 0;
    if (!env->GetFreeSpace(path, &free_bytes).ok()) return;  // unknown: keep the last state
    const uint64_t reserve = options.min_free_bytes;
    // Hysteresis: refusing starts below the reserve, ends above it plus an eighth.
    const bool low = free_bytes < (low_space ? reserve + reserve / 8 : reserve);
    {
      std::lock_guard<std::mutex> lock(health_mu);
      health.free_bytes = free_bytes;
    }
    if (low != low_space) {
      low_space = low;
      publish_health();
    }
  }

  Status low_space_status() const {
    return unavailable("archive: refusing writes below the free-space reserve (" +
                       std::to_string(health.free_bytes >> 20) + " MiB free, reserve " +
                       std::to_string(options.min_free_bytes >> 20) + " MiB)");
  }

  // Ok when the writer may write: above the free-space reserve, and writable
  // or made so by a Resume() (started at most every resume_interval, on a
  // thread of its own) or by a reopen. Writer thread only.
  Status ensure_writable() {
    if (options.min_free_bytes != 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_space_check) check_space(now);
    }
    if (!failed) return low_space ? low_space_status() : Status::ok();
    if (health.recovery_stuck) {
      return unavailable("archive: recovery stuck after a failed write (" + health.last_error +
                         "); restart the broker");
    }
    const auto now = std::chrono::steady_clock::now();
    if (resuming) {
      if (!resuming->done.load(std::memory_order_acquire)) {
        if (!resuming->cancelled && now - resuming->started >= resume_timeout) {
          // Wakes the stuck Resume (WaitForFlushMemTables gives up once the
          // database is shutting down); the database is then unusable and is
          // reopened below. No flush at shutdown: it would wait the same way.
          resuming->cancelled = true;
          {
            std::lock_guard<std::mutex> lock(health_mu);
            health.last_error += "; Resume() stuck for " + std::to_string(resume_timeout.count()) +
                                 " ms: closing and reopening the database";
          }
          rocksdb::DB* db = w().db;
          db->SetDBOptions({{"avoid_flush_during_shutdown", "true"}}).PermitUncheckedError();
          rocksdb::CancelAllBackgroundWork(db, /*wait=*/false);
        } else if (resuming->cancelled && now - resuming->started >= 2 * resume_timeout) {
          std::lock_guard<std::mutex> lock(health_mu);
          health.recovery_stuck = true;
          health.writable = false;
        }
        return unavailable("archive: not writable after a failed write (" + health.last_error +
                           "); recovery in progress");
      }
      const rocksdb::Status r = resuming->result;
      const bool cancelled = resuming->cancelled;
      resuming.reset();
      if (cancelled) return reopen_writer();
      if (!r.ok()) {
        next_resume = now + resume_interval;
        return unavailable("archive: not writable, recovery failed: " + r.ToString());
      }
      failed = false;
      {
        std::lock_guard<std::mutex> lock(health_mu);
        health.last_error.clear();
        ++health.recoveries;
      }
      publish_health();
      return low_space ? low_space_status() : Status::ok();
    }
    if (now < next_resume) {
      return unavailable(
          "archive: not writable after a failed write (" + health.last_error +
          "); next recovery attempt in " +
          std::to_string(
              std::chrono::duration_cast<std::chrono::milliseconds>(next_resume - now).count()) +
          " ms");
    }
    // Resume flushes every memtable: with no room for that it fails at best.
    // Wait for the room instead.
    uint64_t memtables = 0;
    w().db->GetAggregatedIntProperty("rocksdb.cur-size-all-mem-tables", &memtables);
    struct statvfs fs_stats {};
    if (::statvfs(path.c_str(), &fs_stats) == 0) {
      const uint64_t free_bytes =
          static_cast<uint64_t>(fs_stats.f_bavail) * static_cast<uint64_t>(fs_stats.f_frsize);
      const uint64_t needed = memtables + kResumeHeadroom;
      if (free_bytes < needed) {
        next_resume = now + resume_interval;
        return unavailable("archive: not writable after a failed write (" + health.last_error +
                           "); waiting for free space: " + std::to_string(free_bytes >> 10) +
                           " KiB free, " + std::to_string(needed >> 10) + " KiB needed");
      }
    }
    auto attempt = std::make_shared<ResumeAttempt>();
    attempt->started = now;
    resuming = attempt;
    std::shared_ptr<Db> db = current.load();
    std::thread([attempt, db]() mutable {
      attempt->result = db->db->Resume();
      db.reset();  // before `done`: a reopen must find the database unreferenced
      attempt->done.store(true, std::memory_order_release);
    }).detach();
    return unavailable("archive: not writable after a failed write (" + health.last_error +
                       "); recovery started");
  }

  // Closes the database (its Resume was cancelled) and opens it again, as a
  // broker restart would: the WAL is replayed, the failed write was never
  // acknowledged. Blocks the writer thread for the open (the WAL replay and
  // its flush). On failure the archive stays unwritable with recovery_stuck.
  // Writer thread only; defined after the open helpers.
  Status reopen_writer();

  // Records an append that failed; a failed write makes the archive
  // unwritable until ensure_writable() resumes it. Writer thread only.
  void note_write_failure(const rocksdb::Status* s) {
    {
      std::lock_guard<std::mutex> lock(health_mu);
      ++health.write_failures;
      if (s == nullptr || failed) return;  // already unwritable: keep the first cause
      health.last_error = s->ToString();
    }
    failed = true;
    next_resume = std::chrono::steady_clock::now() + resume_interval;
    publish_health();
  }

  // Reader state (ArchiveReader). A catch-up numbered n > begun-at-call-start
  // began after the caller did, so its result serves the caller too.
  std::mutex catch_up_mu;
  std::atomic<uint64_t> catch_ups_begun{0};
  uint64_t catch_ups_done = 0;  // guarded by catch_up_mu
  Status last_catch_up;         // guarded by catch_up_mu
  std::string secondary_path;
  std::string current_file;  // <path>/CURRENT
  // The block cache, shared by successive instances (the reader's, and the
  // writer's across a reopen_writer).
  std::shared_ptr<rocksdb::Cache> cache;
  // What CURRENT said just before `current` was opened (guarded by catch_up_mu).
  std::string followed_manifest;
  std::string caught_up_signature;  // primary_signature() before the last good catch-up
  // The last reopen failed; the next catch-up tries again (guarded by catch_up_mu).
  bool reopen_pending = false;

  ~Impl() {
    scratch_read.Reset();  // may pin a block of the cache the writer's DB owns
  }

  // The database a read uses from start to end (it stays open while pinned).
  std::shared_ptr<const Db> pin() const { return current.load(); }

  // The writer's database. Writer only.
  const Db& w() const { return *writer; }

  // The unread count stored for a convs key (0 when absent). Writer thread only.
  Result<int64_t> stored_unread(const std::string& key) {
    auto cached = unread_cache.find(key);
    if (cached != unread_cache.end()) return cached->second;
    scratch_read.Reset();
    rocksdb::Status s = w().db->Get(rocksdb::ReadOptions(), w().cf(kConvs), key, &scratch_read);
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

  // Group operations' common checks: `at` is an id not below any id so far
  // (the broker takes it from its generator). Writer thread only.
  Status check_boundary(const std::string& at) const {
    if (!is_valid_message_id(at)) return invalid_argument("archive: malformed boundary id");
    if (at < max_id) {
      return invalid_argument("archive: boundary id " + at + " below the greatest id " + max_id);
    }
    return Status::ok();
  }

  // Writes a group operation's batch; `at` becomes the id floor (meta max_id)
  // so that after a restart the generator never hands out an id <= at.
  Status write_group_batch(rocksdb::WriteBatch* b, const std::string& at, std::string_view what) {
    rocksdb::Status s;
    if (at > max_id) {
      s = b->Put(w().cf(kMeta), kMetaMaxId, at);
      if (!s.ok()) return from_rocksdb(s, what);
    }
    s = w().db->Write(write_options, b);
    if (!s.ok()) return from_rocksdb(s, what);
    if (at > max_id) max_id = at;
    return Status::ok();
  }

  // One catch-up of a reader (catch_up_mu held). See ArchiveReader::catch_up.
  Status catch_up_locked();
  // Replaces `current` by a fresh secondary instance (catch_up_mu held).
  Status reopen();
};

// ---------------------------------------------------------------------------
// ArchiveView: reads.

ArchiveView::ArchiveView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ArchiveView::~ArchiveView() = default;

Result<Page> ArchiveView::conversation_page(const std::string& conv, const PageQuery& query) const {
  const size_t limit = std::max<size_t>(query.limit, 1);
  const std::vector<IdRange> ranges = normalize_ranges(query.visible);
  Page page;
  if (ranges.empty()) return page;  // every visible range is empty

  // One instance for the whole read (catch_up may replace it meanwhile).
  const std::shared_ptr<const Db> db = impl_->pin();
  const std::string lower = scope_begin(conv);
  const std::string end = scope_end(conv);
  rocksdb::Slice lower_bound(lower);
  rocksdb::Slice upper_bound(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_bound;
  read_options.iterate_upper_bound = &upper_bound;
  std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(read_options, db->cf(kMessages)));

  // Collects `limit` visible messages, then looks for one more: `next` is
  // set only when another visible message exists in that direction.
  std::string last_id;  // the last collected: the newest (forward) or oldest (backward)
  bool more = false;
  auto collect = [&](std::string_view id, const rocksdb::Slice& value) {
    if (page.envelopes.size() == limit) {
      more = true;
      return false;
    }
    page.envelopes.emplace_back(value.data(), value.size());
    last_id.assign(id);
    return true;
  };

  if (query.before.empty() && !query.after.empty()) {
    // Forward: the first `limit` visible ids > after.
    rocksdb::Status s = walk_forward(it.get(), conv, ranges, query.after, collect);
    if (!s.ok()) return from_rocksdb(s, "archive page scan");
  } else {
    // Backward: the latest `limit` visible ids (< before when given), newest
    // first, then reversed.
    rocksdb::Status s = walk_backward(it.get(), conv, ranges, query.before, collect);
    if (!s.ok()) return from_rocksdb(s, "archive page scan");
    std::reverse(page.envelopes.begin(), page.envelopes.end());
  }
  if (more && !page.envelopes.empty()) page.next = std::move(last_id);
  return page;
}

Result<Page> ArchiveView::sync(const std::string& user, const std::string& since,
                               size_t limit) const {
  limit = std::max<size_t>(limit, 1);
  // One instance for the whole read (catch_up may replace it meanwhile).
  const std::shared_ptr<const Db> db = impl_->pin();
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
    std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(read_options, db->cf(kInbox)));
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
  db->db->MultiGet(rocksdb::ReadOptions(), db->cf(kMessages), keys.size(), keys.data(),
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
  // One instance for the whole read (catch_up may replace it meanwhile).
  const std::shared_ptr<const Db> db = impl_->pin();
  const std::string start = scope_begin(user);
  const std::string end = scope_end(user);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;

  // Keys from the scan, values by MultiGet: the writer updates convs values in
  // place, and only point reads are guarded against that (see family_options).
  std::vector<std::string> convs_keys;
  {
    std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(read_options, db->cf(kConvs)));
    for (it->Seek(start); it->Valid(); it->Next()) convs_keys.push_back(it->key().ToString());
    if (!it->status().ok()) return from_rocksdb(it->status(), "archive convs scan");
  }
  std::vector<ConversationSummary> all;
  if (convs_keys.empty()) return all;
  {
    std::vector<rocksdb::Slice> keys(convs_keys.begin(), convs_keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db->db->MultiGet(rocksdb::ReadOptions(), db->cf(kConvs), keys.size(), keys.data(),
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
  db->db->MultiGet(rocksdb::ReadOptions(), db->cf(kMessages), keys.size(), keys.data(),
                   values.data(), statuses.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;  // see sync(): cannot happen
    if (!statuses[i].ok()) return from_rocksdb(statuses[i], "archive convs get");
    all[i].last_envelope = values[i].ToString();
  }
  return all;
}

Result<std::vector<std::string>> ArchiveView::dm_peers(const std::string& user,
                                                       size_t limit) const {
  std::vector<std::string> peers;
  if (!valid_key_part(user)) return peers;
  const std::shared_ptr<const Db> db = impl_->pin();
  // convs keys <user>\0dm:<a>:<b>: only the direct ones ("dm;" follows "dm:").
  const std::string start = make_key(user, "dm:");
  const std::string end = make_key(user, "dm;");
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(read_options, db->cf(kConvs)));
  for (it->Seek(start); it->Valid() && peers.size() < limit; it->Next()) {
    const std::string_view conv = key_rest(it->key(), user.size());
    const size_t colon = conv.find(':', 3);
    if (colon == std::string_view::npos) continue;
    const std::string_view a = conv.substr(3, colon - 3);
    const std::string_view b = conv.substr(colon + 1);
    peers.emplace_back(a == user ? b : a);
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "archive convs scan");
  return peers;
}

Result<bool> ArchiveView::user_exists(const std::string& user) const {
  auto found = impl_->pin()->get(kUsers, user, "archive user get");
  if (!found) return found.status();
  return found->has_value();
}

Result<bool> ArchiveView::has_conversation(const std::string& user, const std::string& conv) const {
  auto found = impl_->pin()->get(kConvs, make_key(user, conv), "archive convs get");
  if (!found) return found.status();
  return found->has_value();
}

Result<std::optional<std::string>> ArchiveView::envelope(const std::string& conv,
                                                         const std::string& id) const {
  return impl_->pin()->get(kMessages, make_key(conv, id), "archive message get");
}

Result<std::vector<GroupInfo>> ArchiveView::groups() const {
  std::vector<GroupInfo> all;
  bool malformed = false;
  std::string bad;
  Status st = impl_->pin()->scan(kGroups, "", "archive groups scan",
                                 [&](std::string_view gid, std::string_view value) {
                                   GroupInfo group;
                                   if (decode_group(value, &group)) {
                                     all.push_back(std::move(group));
                                   } else if (!malformed) {
                                     malformed = true;
                                     bad.assign(gid);
                                   }
                                 });
  if (!st.is_ok()) return st;
  if (malformed) return internal_error("archive: malformed groups value for " + bad);
  return all;
}

Result<std::optional<GroupInfo>> ArchiveView::group(const std::string& gid) const {
  if (gid.empty()) return std::optional<GroupInfo>();
  return impl_->pin()->load_group(gid);
}

Result<Membership> ArchiveView::membership(const std::string& gid, const std::string& user) const {
  if (!valid_key_part(gid) || !valid_key_part(user)) return Membership{};
  return impl_->pin()->load_membership(gid, user);
}

Result<std::vector<std::string>> ArchiveView::groups_of(const std::string& user) const {
  std::vector<std::string> gids;
  if (!valid_key_part(user)) return gids;
  Status st =
      impl_->pin()->scan(kUserGroups, user, "archive user_groups scan",
                         [&](std::string_view gid, std::string_view) { gids.emplace_back(gid); });
  if (!st.is_ok()) return st;
  return gids;
}

Result<std::string> ArchiveView::read_marker(const std::string& user,
                                             const std::string& conv) const {
  if (!valid_key_part(user) || !valid_key_part(conv)) return std::string();
  auto marker = impl_->pin()->get(kMarkers, make_key(user, conv), "archive markers get");
  if (!marker) return marker.status();
  return marker->value_or(std::string());
}

Result<bool> ArchiveView::is_blocked(const std::string& blocker, const std::string& blocked) const {
  if (!valid_key_part(blocker) || !valid_key_part(blocked)) return false;
  auto found = impl_->pin()->get(kBlocks, make_key(blocker, blocked), "archive blocks get");
  if (!found) return found.status();
  return found->has_value();
}

Result<std::vector<std::string>> ArchiveView::blocked_by(const std::string& blocker) const {
  std::vector<std::string> blocked;
  if (!valid_key_part(blocker)) return blocked;
  Status st = impl_->pin()->scan(
      kBlocks, blocker, "archive blocks scan",
      [&](std::string_view user, std::string_view) { blocked.emplace_back(user); });
  if (!st.is_ok()) return st;
  return blocked;
}

Result<std::vector<std::pair<std::string, std::string>>> ArchiveView::presence_all() const {
  std::vector<std::pair<std::string, std::string>> all;
  Status st = impl_->pin()->scan(kPresence, "", "archive presence scan",
                                 [&](std::string_view user, std::string_view value) {
                                   all.emplace_back(std::string(user), std::string(value));
                                 });
  if (!st.is_ok()) return st;
  return all;
}

Result<std::vector<std::string>> ArchiveView::banned_users() const {
  std::vector<std::string> users;
  Status st = impl_->pin()->scan(
      kMeta, kMetaBanScope, "archive bans scan",
      [&](std::string_view user, std::string_view) { users.emplace_back(user); });
  if (!st.is_ok()) return st;
  return users;
}

Result<std::vector<std::pair<std::string, std::string>>> ArchiveView::user_marks() const {
  std::vector<std::pair<std::string, std::string>> marks;
  Status st = impl_->pin()->scan(
      kMeta, kMetaOriginScope, "archive origin scan",
      [&](std::string_view user, std::string_view mark) { marks.emplace_back(user, mark); });
  if (!st.is_ok()) return st;
  return marks;
}

Result<bool> ArchiveView::is_banned(const std::string& user) const {
  if (!valid_key_part(user)) return false;
  auto found = impl_->pin()->get(kMeta, make_key(kMetaBanScope, user), "archive bans get");
  if (!found) return found.status();
  return found->has_value();
}

Result<std::vector<std::pair<std::string, int64_t>>> ArchiveView::revoked_tokens() const {
  std::vector<std::pair<std::string, int64_t>> out;
  Status st = impl_->pin()->scan(kMeta, kMetaRevokedScope, "archive revoked scan",
                                 [&](std::string_view jti, std::string_view value) {
                                   int64_t exp = 0;
                                   std::from_chars(value.data(), value.data() + value.size(), exp);
                                   out.emplace_back(std::string(jti), exp);
                                 });
  if (!st.is_ok()) return st;
  return out;
}

Result<std::vector<ArchiveView::MediaRef>> ArchiveView::media_refs(
    const std::string& media_id) const {
  std::vector<MediaRef> out;
  if (!valid_key_part(media_id)) return out;
  Status st = impl_->pin()->scan(
      kMeta, make_key(kMetaMediaRefScope, media_id), "archive media refs scan",
      [&](std::string_view conv_and_id, std::string_view from) {
        const size_t sep = conv_and_id.find('\0');
        if (sep == std::string_view::npos) return;
        out.push_back(MediaRef{std::string(conv_and_id.substr(0, sep)),
                               std::string(conv_and_id.substr(sep + 1)), std::string(from)});
      });
  if (!st.is_ok()) return st;
  return out;
}

Result<std::vector<PushRecord>> ArchiveView::push_records(const std::string& after,
                                                          size_t limit) const {
  std::vector<PushRecord> out;
  if (has_nul(after) || limit == 0) return out;
  const auto db = impl_->pin();
  const std::string end = scope_end(kMetaPushScope);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(db->db->NewIterator(read_options, db->cf(kMeta)));
  std::string start = make_key(kMetaPushScope, after);
  if (!after.empty()) start.append(kSep);  // the first key after `after`'s own
  for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
    out.push_back(PushRecord{std::string(key_rest(it->key(), sizeof kMetaPushScope - 1)),
                             it->value().ToString()});
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "archive push records scan");
  return out;
}

Result<std::vector<std::pair<std::string, std::vector<std::string>>>> ArchiveView::push_devices()
    const {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  Status st = impl_->pin()->scan(kMeta, kMetaPushDevicesScope, "archive push devices scan",
                                 [&](std::string_view user, std::string_view value) {
                                   auto j = nlohmann::json::parse(value, nullptr, false);
                                   std::vector<std::string> devices;
                                   // A damaged value counts as no devices.
                                   if (!string_array(j, &devices)) devices.clear();
                                   out.emplace_back(std::string(user), std::move(devices));
                                 });
  if (!st.is_ok()) return st;
  return out;
}

// ---------------------------------------------------------------------------
// Archive: the single writer.

Archive::Archive(std::unique_ptr<Impl> impl) : ArchiveView(std::move(impl)) {}
Archive::~Archive() = default;

namespace {

// Turns RocksDB's automatic recovery from background errors off: after a
// NoSpace error its SstFileManager polls free space every 5 s from its own
// thread, and while that recovery is pending a manual Resume() answers Busy.
// The archive resumes from its writer thread instead (ensure_writable), at a
// pace it chooses.
class ManualRecovery final : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "chat.ManualRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status bg_error,
                            bool* auto_recovery) override {
    bg_error.PermitUncheckedError();
    *auto_recovery = false;
  }
};

// Opens the writer's database (creating it and any missing family), or with
// read_only a stand-in that serves reads only (no lock, nothing written).
Result<std::shared_ptr<Db>> open_writer_db(const ArchiveOptions& options,
                                           const std::shared_ptr<rocksdb::Cache>& cache,
                                           bool read_only = false) {
  rocksdb::DBOptions db_options;
  if (options.env != nullptr) db_options.env = options.env;
  db_options.listeners.push_back(std::make_shared<ManualRecovery>());
  // Not RocksDB's file logger: it aborts on a full disk (info_log.h).
  db_options.info_log = make_info_log(options.path + "/LOG");
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
  std::vector<rocksdb::ColumnFamilyDescriptor> missing;
  auto descriptors =
      families_to_open(db_options, options.path, cache, /*writer=*/true, &existed, &missing);
  auto db = std::make_shared<Db>();
  rocksdb::Status s;
  if (read_only) {
    if (!missing.empty()) return unavailable("archive: missing column family in " + options.path);
    s = rocksdb::DB::OpenForReadOnly(db_options, options.path, descriptors, &db->handles, &db->db);
  } else {
    s = rocksdb::DB::Open(db_options, options.path, descriptors, &db->handles, &db->db);
  }
  if (!s.ok()) {
    return unavailable("archive: cannot open " + options.path + ": " + s.ToString());
  }
  if (!missing.empty()) {
    // Before anything is written: a secondary opened later sees them all.
    std::vector<rocksdb::ColumnFamilyHandle*> created;
    s = db->db->CreateColumnFamilies(missing, &created);
    db->handles.insert(db->handles.end(), created.begin(), created.end());
    if (!s.ok()) {
      return unavailable("archive: cannot create column families in " + options.path + ": " +
                         s.ToString());
    }
  }
  if (!db->bind_families()) {
    return internal_error("archive: missing column family in " + options.path);
  }
  return db;
}

}  // namespace

Status ArchiveView::Impl::reopen_writer() {
  auto give_up = [this](const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(health_mu);
      health.recovery_stuck = true;
      health.last_error = why;
    }
    publish_health();
    return unavailable("archive: " + why + "; restart the broker");
  };
  // A read-only stand-in first (it takes no lock, so it opens next to the
  // old instance): should the real open fail, reads go on from it.
  auto stand_in = open_writer_db(options, cache, /*read_only=*/true);
  if (!stand_in) {
    // Keep the cancelled instance: it still serves reads.
    return give_up("reopen after a stuck recovery failed: " + stand_in.status().message());
  }
  scratch_read.Reset();  // may pin a block of the old instance
  writer = stand_in->get();
  current.store(*stand_in);  // the old instance closes here (nothing else holds it)
  auto db = open_writer_db(options, cache);
  if (!db) return give_up("reopen after a stuck recovery failed: " + db.status().message());
  writer = db->get();
  current.store(std::move(*db));
  // The failed batch may have reached the WAL whole: reread what it could change.
  auto stored_max = w().get(kMeta, kMetaMaxId, "archive meta get");
  if (stored_max && stored_max->has_value() && **stored_max > max_id) max_id = **stored_max;
  unread_cache.clear();
  known_users.clear();
  failed = false;
  {
    std::lock_guard<std::mutex> lock(health_mu);
    health.last_error.clear();
    ++health.reopens;
    ++health.recoveries;
  }
  publish_health();
  return low_space ? low_space_status() : Status::ok();
}

Result<std::unique_ptr<Archive>> Archive::open(const ArchiveOptions& options) {
  auto cache = rocksdb::NewLRUCache(kBlockCacheSize);
  auto db = open_writer_db(options, cache);
  if (!db) return db.status();
  auto impl = std::make_unique<Impl>();
  impl->path = options.path;
  impl->options = options;
  impl->cache = cache;
  impl->writer = db->get();
  impl->current.store(std::move(*db));
  impl->write_options.sync = options.sync_writes;
  impl->resume_interval = std::chrono::milliseconds(options.resume_interval_ms);
  impl->resume_timeout = std::chrono::milliseconds(options.resume_timeout_ms);
  rocksdb::Status s;
  const Db& w = impl->w();

  auto version = w.get(kMeta, kMetaSchemaVersion, "archive meta get");
  if (!version) return version.status();
  if (!version->has_value()) {
    s = w.db->Put(impl->write_options, w.cf(kMeta), kMetaSchemaVersion, kSchemaVersion);
    if (!s.ok()) return from_rocksdb(s, "archive: writing schema version in " + options.path);
  } else if (**version != kSchemaVersion) {
    return internal_error("archive: unsupported schema version " + **version + " in " +
                          options.path);
  }

  auto max_id = w.get(kMeta, kMetaMaxId, "archive meta get");
  if (!max_id) return max_id.status();
  if (max_id->has_value()) impl->max_id = std::move(**max_id);
  return std::unique_ptr<Archive>(new Archive(std::move(impl)));
}

Result<std::optional<std::string>> Archive::find_duplicate(const std::string& client_id,
                                                           const std::string& cid) const {
  // The dedup value "<conv>\0<id>" is the message's key.
  auto message_key = impl_->w().get(kDedup, make_key(client_id, cid), "archive dedup get");
  if (!message_key) return message_key.status();
  if (!message_key->has_value()) return std::optional<std::string>();
  return impl_->w().get(kMessages, **message_key, "archive message get");
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
  if (has_nul(request.media)) return invalid_argument("archive: malformed media id");
  if (Status st = d.ensure_writable(); !st.is_ok()) {
    d.note_write_failure(nullptr);
    return st;
  }

  d.batch.Clear();
  rocksdb::Status s;
  // messages: "<conv>\0<id>" -> envelope. d.scratch_message_key keeps it for the dedup value.
  make_key(&d.scratch_message_key, request.conv, request.id);
  s = d.batch.Put(d.w().cf(kMessages), d.scratch_message_key, request.envelope);
  if (!s.ok()) return from_rocksdb(s, "archive batch");

  size_t pending = 0;  // entries of d.pending_unread in use (kept to reuse their buffers)
  for (const auto& user : request.participants) {
    make_key(&d.scratch_key, user, request.id);
    s = d.batch.Put(d.w().cf(kInbox), d.scratch_key, request.conv);
    if (!s.ok()) return from_rocksdb(s, "archive batch");

    make_key(&d.scratch_key, user, request.conv);
    int64_t unread = 0;
    if (user != request.from) {
      auto stored = d.stored_unread(d.scratch_key);
      if (!stored) return stored.status();
      unread = *stored + 1;
    }
    encode_summary(&d.scratch_value, request.id, unread);
    s = d.batch.Put(d.w().cf(kConvs), d.scratch_key, d.scratch_value);
    if (!s.ok()) return from_rocksdb(s, "archive batch");
    if (pending == d.pending_unread.size()) d.pending_unread.emplace_back();
    d.pending_unread[pending].first.assign(d.scratch_key);
    d.pending_unread[pending].second = unread;
    ++pending;
  }

  if (!request.client_id.empty() && !request.cid.empty()) {
    make_key(&d.scratch_key, request.client_id, request.cid);
    s = d.batch.Put(d.w().cf(kDedup), d.scratch_key, d.scratch_message_key);
    if (!s.ok()) return from_rocksdb(s, "archive batch");
  }
  if (!request.media.empty()) {
    make_key(&d.scratch_key, kMetaMediaRefScope, request.media);
    d.scratch_key.append(kSep);
    d.scratch_key.append(d.scratch_message_key);  // <conv>\0<id>
    s = d.batch.Put(d.w().cf(kMeta), d.scratch_key, request.from);
    if (!s.ok()) return from_rocksdb(s, "archive batch");
  }
  if (!request.push.empty()) {
    make_key(&d.scratch_key, kMetaPushScope, request.id);
    s = d.batch.Put(d.w().cf(kMeta), d.scratch_key, request.push);
    if (!s.ok()) return from_rocksdb(s, "archive batch");
  }
  s = d.batch.Put(d.w().cf(kMeta), kMetaMaxId, request.id);
  if (!s.ok()) return from_rocksdb(s, "archive batch");

  s = d.w().db->Write(d.write_options, &d.batch);
  if (!s.ok()) {
    d.note_write_failure(&s);
    return from_rocksdb(s, "archive write");
  }
  d.max_id = request.id;
  // Only now: the cache must mirror what is in the database.
  if (d.unread_cache.size() + pending > kMaxCachedUnread) d.unread_cache.clear();
  for (size_t i = 0; i < pending; ++i) {
    d.unread_cache.insert_or_assign(d.pending_unread[i].first, d.pending_unread[i].second);
  }
  return Status::ok();
}

Result<bool> Archive::has_user(const std::string& user) {
  Impl& d = *impl_;
  if (d.known_users.count(user) != 0) return true;
  auto found = d.w().get(kUsers, user, "archive user get");
  if (!found) return found.status();
  if (!found->has_value()) return false;
  if (d.known_users.size() >= kMaxKnownUsers) d.known_users.clear();
  d.known_users.insert(user);
  return true;
}

Status Archive::add_user(const std::string& user) {
  if (user.empty()) return invalid_argument("archive: empty user id");
  rocksdb::Status s = impl_->w().db->Put(impl_->write_options, impl_->w().cf(kUsers), user, "{}");
  if (!s.ok()) return from_rocksdb(s, "archive user put");
  return Status::ok();
}

Status Archive::remove_user(const std::string& user) {
  // Forget first: should the delete fail, the next has_user reads the truth.
  impl_->known_users.erase(user);
  rocksdb::Status s = impl_->w().db->Delete(impl_->write_options, impl_->w().cf(kUsers), user);
  if (!s.ok()) return from_rocksdb(s, "archive user delete");
  return Status::ok();
}

Status Archive::create_group(const GroupInfo& group, const std::string& at) {
  Impl& d = *impl_;
  if (!valid_key_part(group.id)) return invalid_argument("archive: malformed group id");
  if (!valid_key_part(group.creator)) return invalid_argument("archive: malformed group creator");
  for (const auto* list : {&group.members, &group.admins}) {
    for (const auto& user : *list) {
      if (!valid_key_part(user)) return invalid_argument("archive: malformed group member");
    }
  }
  Status st = d.check_boundary(at);
  if (!st.is_ok()) return st;

  GroupInfo stored = group;
  stored.members.push_back(group.creator);
  stored.admins.push_back(group.creator);
  for (auto* list : {&stored.members, &stored.admins}) {
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
  for (const auto& admin : stored.admins) {
    if (!sorted_contains(stored.members, admin)) {
      return invalid_argument("archive: admin " + admin + " is not a member");
    }
  }

  auto existing = d.w().get(kGroups, group.id, "archive group get");
  if (!existing) return existing.status();
  if (existing->has_value()) return already_exists("archive: group " + group.id + " exists");

  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(d.w().cf(kGroups), group.id, encode_group(stored));
  Membership membership;
  membership.periods.push_back(IdRange{at, ""});
  const std::string periods = encode_membership(membership);
  for (const auto& user : stored.members) {
    if (s.ok()) s = batch.Put(d.w().cf(kMembers), make_key(group.id, user), periods);
    if (s.ok()) s = batch.Put(d.w().cf(kUserGroups), make_key(user, group.id), "");
  }
  if (!s.ok()) return from_rocksdb(s, "archive batch");
  return d.write_group_batch(&batch, at, "archive create_group");
}

Status Archive::add_member(const std::string& gid, const std::string& user, const std::string& at) {
  Impl& d = *impl_;
  if (!valid_key_part(gid) || !valid_key_part(user)) {
    return invalid_argument("archive: malformed group or user id");
  }
  Status st = d.check_boundary(at);
  if (!st.is_ok()) return st;
  auto group = d.w().load_group(gid);
  if (!group) return group.status();
  if (!group->has_value()) return not_found("archive: no group " + gid);
  GroupInfo& info = **group;
  if (sorted_contains(info.members, user)) {
    return already_exists("archive: " + user + " is already a member of " + gid);
  }
  auto membership = d.w().load_membership(gid, user);
  if (!membership) return membership.status();
  // A stale open period (cannot happen: members and periods change together)
  // is closed where it stands rather than left overlapping the new one.
  if (membership->current()) membership->periods.back().to = at;
  membership->periods.push_back(IdRange{at, ""});
  sorted_insert(&info.members, user);

  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(d.w().cf(kGroups), gid, encode_group(info));
  if (s.ok())
    s = batch.Put(d.w().cf(kMembers), make_key(gid, user), encode_membership(*membership));
  if (s.ok()) s = batch.Put(d.w().cf(kUserGroups), make_key(user, gid), "");
  if (!s.ok()) return from_rocksdb(s, "archive batch");
  return d.write_group_batch(&batch, at, "archive add_member");
}

Status Archive::remove_member(const std::string& gid, const std::string& user,
                              const std::string& at) {
  Impl& d = *impl_;
  if (!valid_key_part(gid) || !valid_key_part(user)) {
    return invalid_argument("archive: malformed group or user id");
  }
  Status st = d.check_boundary(at);
  if (!st.is_ok()) return st;
  auto group = d.w().load_group(gid);
  if (!group) return group.status();
  if (!group->has_value()) return not_found("archive: no group " + gid);
  GroupInfo& info = **group;
  if (!sorted_erase(&info.members, user)) {
    return not_found("archive: " + user + " is not a member of " + gid);
  }
  sorted_erase(&info.admins, user);
  auto membership = d.w().load_membership(gid, user);
  if (!membership) return membership.status();
  if (membership->current()) membership->periods.back().to = at;

  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(d.w().cf(kGroups), gid, encode_group(info));
  if (s.ok())
    s = batch.Put(d.w().cf(kMembers), make_key(gid, user), encode_membership(*membership));
  if (!s.ok()) return from_rocksdb(s, "archive batch");
  return d.write_group_batch(&batch, at, "archive remove_member");
}

Status Archive::set_admin(const std::string& gid, const std::string& user, bool admin) {
  Impl& d = *impl_;
  if (!valid_key_part(gid) || !valid_key_part(user)) {
    return invalid_argument("archive: malformed group or user id");
  }
  auto group = d.w().load_group(gid);
  if (!group) return group.status();
  if (!group->has_value()) return not_found("archive: no group " + gid);
  GroupInfo& info = **group;
  if (!sorted_contains(info.members, user)) {
    return not_found("archive: " + user + " is not a member of " + gid);
  }
  const bool changed = admin ? sorted_insert(&info.admins, user) : sorted_erase(&info.admins, user);
  if (!changed) return Status::ok();
  rocksdb::Status s = d.w().db->Put(d.write_options, d.w().cf(kGroups), gid, encode_group(info));
  if (!s.ok()) return from_rocksdb(s, "archive set_admin");
  return Status::ok();
}

Status Archive::mark_read(const std::string& user, const std::string& conv, const std::string& id) {
  Impl& d = *impl_;
  if (!valid_key_part(user) || !valid_key_part(conv)) {
    return invalid_argument("archive: malformed user or conversation id");
  }
  if (!is_valid_message_id(id)) return invalid_argument("archive: malformed id");
  // An id past the newest message reads everything there is (a marker never
  // points into the future, where it would swallow messages not yet sent).
  const std::string& marker = id > d.max_id ? d.max_id : id;
  const std::string key = make_key(user, conv);
  auto old_marker = d.w().get(kMarkers, key, "archive markers get");
  if (!old_marker) return old_marker.status();
  if (marker.empty() || (old_marker->has_value() && **old_marker >= marker)) {
    return Status::ok();  // never backwards
  }

  // Unread: messages after the marker that someone else sent. In a group,
  // only those inside the user's membership periods (the ones they can read).
  std::vector<IdRange> ranges{IdRange{}};
  if (conv.starts_with(kGroupConvPrefix)) {
    auto membership = d.w().load_membership(conv.substr(kGroupConvPrefix.size()), user);
    if (!membership) return membership.status();
    if (!membership->periods.empty()) ranges = normalize_ranges(membership->periods);
  }
  int64_t unread = 0;
  {
    const std::string lower = scope_begin(conv);
    const std::string end = scope_end(conv);
    rocksdb::Slice lower_bound(lower);
    rocksdb::Slice upper_bound(end);
    rocksdb::ReadOptions read_options;
    read_options.iterate_lower_bound = &lower_bound;
    read_options.iterate_upper_bound = &upper_bound;
    std::unique_ptr<rocksdb::Iterator> it(d.w().db->NewIterator(read_options, d.w().cf(kMessages)));
    rocksdb::Status s = walk_forward(it.get(), conv, ranges, marker,
                                     [&](std::string_view, const rocksdb::Slice& v) {
                                       auto sender = envelope_sender(v);
                                       if (!sender || *sender != user) ++unread;
                                       return unread < kUnreadCap;
                                     });
    if (!s.ok()) return from_rocksdb(s, "archive unread scan");
  }

  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Put(d.w().cf(kMarkers), key, marker);
  if (!s.ok()) return from_rocksdb(s, "archive batch");
  // The summary keeps its last id; only an existing one is rewritten (a
  // convs entry means "has a message in conv", which a marker must not fake).
  auto summary_text = d.w().get(kConvs, key, "archive convs get");
  if (!summary_text) return summary_text.status();
  bool has_summary = false;
  if (summary_text->has_value()) {
    Summary summary;
    if (decode_summary(**summary_text, &summary)) {
      encode_summary(&d.scratch_value, summary.last, unread);
      s = batch.Put(d.w().cf(kConvs), key, d.scratch_value);
      if (!s.ok()) return from_rocksdb(s, "archive batch");
      has_summary = true;
    }
  }
  s = d.w().db->Write(d.write_options, &batch);
  if (!s.ok()) return from_rocksdb(s, "archive mark_read");
  // Only now, as in append(): the cache mirrors the database.
  if (has_summary) {
    if (d.unread_cache.size() + 1 > kMaxCachedUnread) d.unread_cache.clear();
    d.unread_cache.insert_or_assign(key, unread);
  }
  return Status::ok();
}

Status Archive::set_block(const std::string& blocker, const std::string& blocked,
                          bool blocked_flag) {
  if (!valid_key_part(blocker) || !valid_key_part(blocked)) {
    return invalid_argument("archive: malformed user id");
  }
  const std::string key = make_key(blocker, blocked);
  rocksdb::Status s =
      blocked_flag ? impl_->w().db->Put(impl_->write_options, impl_->w().cf(kBlocks), key, "")
                   : impl_->w().db->Delete(impl_->write_options, impl_->w().cf(kBlocks), key);
  if (!s.ok()) return from_rocksdb(s, "archive set_block");
  return Status::ok();
}

Status Archive::put_presence(const std::string& user, const std::string& presence_json) {
  if (!valid_key_part(user)) return invalid_argument("archive: malformed user id");
  rocksdb::Status s =
      impl_->w().db->Put(impl_->write_options, impl_->w().cf(kPresence), user, presence_json);
  if (!s.ok()) return from_rocksdb(s, "archive presence put");
  return Status::ok();
}

Status Archive::set_ban(const std::string& user, bool banned) {
  if (!valid_key_part(user) || user.empty()) return invalid_argument("archive: malformed user id");
  const std::string key = make_key(kMetaBanScope, user);
  rocksdb::Status s = banned
                          ? impl_->w().db->Put(impl_->write_options, impl_->w().cf(kMeta), key, "")
                          : impl_->w().db->Delete(impl_->write_options, impl_->w().cf(kMeta), key);
  if (!s.ok()) return from_rocksdb(s, "archive set_ban");
  return Status::ok();
}

Status Archive::set_user_mark(const std::string& user, const std::string& mark) {
  if (!valid_key_part(user) || user.empty()) return invalid_argument("archive: malformed user id");
  const std::string key = make_key(kMetaOriginScope, user);
  rocksdb::Status s =
      mark.empty() ? impl_->w().db->Delete(impl_->write_options, impl_->w().cf(kMeta), key)
                   : impl_->w().db->Put(impl_->write_options, impl_->w().cf(kMeta), key, mark);
  if (!s.ok()) return from_rocksdb(s, "archive set_user_mark");
  return Status::ok();
}

Status Archive::set_revoked(const std::string& jti, int64_t exp_s) {
  if (jti.empty() || jti.size() > kMaxJtiBytes || !valid_key_part(jti)) {
    return invalid_argument("archive: malformed jti");
  }
  rocksdb::Status s = impl_->w().db->Put(impl_->write_options, impl_->w().cf(kMeta),
                                         make_key(kMetaRevokedScope, jti),
                                         std::to_string(std::max<int64_t>(exp_s, 0)));
  if (!s.ok()) return from_rocksdb(s, "archive set_revoked");
  return Status::ok();
}

Status Archive::forget_revoked(const std::string& jti) {
  if (jti.empty() || jti.size() > kMaxJtiBytes || !valid_key_part(jti)) {
    return invalid_argument("archive: malformed jti");
  }
  rocksdb::Status s = impl_->w().db->Delete(impl_->write_options, impl_->w().cf(kMeta),
                                            make_key(kMetaRevokedScope, jti));
  if (!s.ok()) return from_rocksdb(s, "archive forget_revoked");
  return Status::ok();
}

Status Archive::set_push_devices(const std::string& user, const std::vector<std::string>& devices) {
  if (!valid_key_part(user)) return invalid_argument("archive: malformed user id");
  for (const auto& device : devices) {
    if (!valid_key_part(device)) return invalid_argument("archive: malformed device id");
  }
  const std::string key = make_key(kMetaPushDevicesScope, user);
  rocksdb::Status s = devices.empty()
                          ? impl_->w().db->Delete(impl_->write_options, impl_->w().cf(kMeta), key)
                          : impl_->w().db->Put(impl_->write_options, impl_->w().cf(kMeta), key,
                                               nlohmann::json(devices).dump());
  if (!s.ok()) return from_rocksdb(s, "archive set_push_devices");
  return Status::ok();
}

Status Archive::delete_push_records(const std::string& upto, size_t* deleted) {
  if (deleted != nullptr) *deleted = 0;
  if (!is_valid_message_id(upto)) return invalid_argument("archive: malformed push record id");
  Impl& d = *impl_;
  if (upto <= d.push_deleted_upto) return Status::ok();
  // Keys up to and including push\0<upto>: the bound is the first key after it.
  std::string end = make_key(kMetaPushScope, upto);
  end.append(kSep);
  rocksdb::Slice upper(end);
  rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(d.w().db->NewIterator(read_options, d.w().cf(kMeta)));
  rocksdb::WriteBatch batch;
  std::string start = make_key(kMetaPushScope, d.push_deleted_upto);
  if (!d.push_deleted_upto.empty()) start.append(kSep);
  for (it->Seek(start); it->Valid(); it->Next()) {
    rocksdb::Status s = batch.Delete(d.w().cf(kMeta), it->key());
    if (!s.ok()) return from_rocksdb(s, "archive batch");
  }
  if (!it->status().ok()) return from_rocksdb(it->status(), "archive push records scan");
  it.reset();
  if (batch.Count() > 0) {
    rocksdb::Status s = d.w().db->Write(d.write_options, &batch);
    if (!s.ok()) return from_rocksdb(s, "archive delete_push_records");
  }
  d.push_deleted_upto = upto;
  if (deleted != nullptr) *deleted = batch.Count();
  return Status::ok();
}

ArchiveHealth Archive::health() const {
  std::lock_guard<std::mutex> lock(impl_->health_mu);
  return impl_->health;
}

Status Archive::try_recover() { return impl_->ensure_writable(); }

Result<std::string> Archive::max_id() const {
  // Read from the database rather than the writer's copy so any thread may ask.
  auto max_id = impl_->w().get(kMeta, kMetaMaxId, "archive meta get");
  if (!max_id) return max_id.status();
  return max_id->value_or(std::string());
}

Result<Archive::CheckpointInfo> Archive::checkpoint(const std::string& dir) {
  CheckpointInfo info;
  info.max_id = impl_->max_id;  // no append runs meanwhile (writer thread)
  if (Status s = write_checkpoint(impl_->w().db, dir, "archive", &info.sequence); !s.is_ok()) {
    return s;
  }
  return info;
}

// ---------------------------------------------------------------------------
// ArchiveReader: a secondary instance.

ArchiveReader::ArchiveReader(std::unique_ptr<Impl> impl) : ArchiveView(std::move(impl)) {}
ArchiveReader::~ArchiveReader() = default;

Result<std::unique_ptr<ArchiveReader>> ArchiveReader::open(const std::string& primary_path,
                                                           const std::string& secondary_path) {
  auto impl = std::make_unique<Impl>();
  impl->path = primary_path;
  impl->secondary_path = secondary_path;
  impl->current_file = primary_path + "/CURRENT";
  impl->cache = rocksdb::NewLRUCache(kBlockCacheSize);
  // Read before the open, as in reopen().
  if (!read_current_manifest(impl->current_file, &impl->followed_manifest)) {
    return unavailable("archive reader: no archive at " + primary_path);
  }
  auto db = open_secondary(primary_path, secondary_path, impl->cache);
  if (!db) return db.status();
  impl->current.store(std::move(db).value());
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
  d.last_catch_up = d.catch_up_locked();
  d.catch_ups_done = d.catch_ups_begun.load();
  return d.last_catch_up;
}

// TryCatchUpWithPrimary cannot follow a primary restart. The secondary
// replays the primary's WAL into its own memtables, and RocksDB's reads take
// a memtable's value over any table file's. A new primary recovers the old
// WAL into a table file and continues in a new WAL, so the secondary's
// memtables still hold what it had read of the old WAL (they are dropped only
// once newer WAL records for their family arrive and get flushed) and shadow
// every later value of the same keys in the recovered file: a rewritten
// convs summary, group record, marker, or a deleted block stayed at its
// pre-crash value however often the reader caught up; only new keys (messages)
// showed. A fresh secondary replays MANIFEST and WALs in order, so after a
// restart the reader opens a new instance and swaps it in.
//
// A restart is recognized by CURRENT: every primary open writes a new
// MANIFEST and points CURRENT at it. CURRENT is read after the catch-up, so a
// restart that completed before (or during) it is seen now; one completing
// later was not needed by this call (its WAL was still in place when the
// catch-up read it) and is seen by the next.
Status ArchiveView::Impl::catch_up_locked() {
  if (reopen_pending) return reopen();
  // TryCatchUpWithPrimary costs milliseconds even when there is nothing new;
  // skip it when the primary has written nothing since the last one. The
  // signature is taken before the catch-up, so any write after it shows as a
  // different signature next time.
  std::string before;
  if (read_current_manifest(current_file, &before)) before = primary_signature(path, before);
  if (!before.empty() && before == caught_up_signature) return Status::ok();
  caught_up_signature.clear();
  rocksdb::Status s = current.load()->db->TryCatchUpWithPrimary();
  std::string manifest;
  if (!read_current_manifest(current_file, &manifest)) {
    return unavailable("archive catch-up of " + path + ": cannot read " + current_file);
  }
  if (s.ok() && manifest == followed_manifest) {
    caught_up_signature = before;
    return Status::ok();
  }
  // A new primary, or a failed catch-up (which may have left the instance
  // half-way): start over from the files.
  return reopen();
}

Status ArchiveView::Impl::reopen() {
  reopen_pending = true;  // until a reopen succeeds
  // Read before the open: if the primary restarts again meanwhile, the next
  // catch-up finds a different name and reopens once more.
  std::string manifest;
  if (!read_current_manifest(current_file, &manifest)) {
    return unavailable("archive catch-up of " + path + ": cannot read " + current_file);
  }
  // Opened next to the old instance, which serves reads until the swap (and
  // stays if this fails: say, a primary in the middle of its recovery).
  auto fresh = open_secondary(path, secondary_path, cache);
  if (!fresh) return fresh.status();
  std::shared_ptr<Db> old = current.exchange(std::move(fresh).value());
  followed_manifest = std::move(manifest);
  reopen_pending = false;
  // Closed here, or by the last read that pinned it before the swap.
  old.reset();
  return Status::ok();
}

}  // namespace chat::store
