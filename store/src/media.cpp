// chat-api's media metadata on RocksDB. Contract: chat/store/media.h.
//
// Schema (default column family, one byte of scope then \0):
//   m\0<id>             ->
//   {"id","uploader","content_type","sha256","size","created_ms","thumbnail"} u\0<uploader>\0<id>
//   -> ""   (by uploader: account deletion) s\0<sha256>\0<id>   -> ""   (by content: blob reference
//   count)
// Mutations take write_mu (put checks the id first; remove recounts).
#include "chat/store/media.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>

#include "checkpoint.h"
#include "rocks_db.h"

namespace chat::store {
namespace {

constexpr std::string_view kSep("\0", 1);

std::string key(char scope, std::string_view a, std::string_view b = {}, bool two = false) {
  std::string k(1, scope);
  k.append(kSep);
  k.append(a);
  if (two) {
    k.append(kSep);
    k.append(b);
  }
  return k;
}

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string encode(const MediaRecord& r) {
  return nlohmann::json{{"id", r.id},
                        {"uploader", r.uploader},
                        {"content_type", r.content_type},
                        {"sha256", r.sha256},
                        {"size", r.size},
                        {"created_ms", r.created_ms},
                        {"thumbnail", r.thumbnail}}
      .dump();
}

bool decode(std::string_view text, MediaRecord* out) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  auto str = [&j](const char* name, std::string* field) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return false;
    *field = it->get<std::string>();
    return true;
  };
  if (!str("id", &out->id) || !str("uploader", &out->uploader) ||
      !str("content_type", &out->content_type) || !str("sha256", &out->sha256)) {
    return false;
  }
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_unsigned()) return false;
  out->size = size->get<uint64_t>();
  auto created = j.find("created_ms");
  out->created_ms =
      created != j.end() && created->is_number_integer() ? created->get<int64_t>() : 0;
  auto thumb = j.find("thumbnail");
  out->thumbnail = thumb != j.end() && thumb->is_boolean() && thumb->get<bool>();
  return true;
}

}  // namespace

struct MediaStore::Impl {
  rocksdb::DB* db = nullptr;  // owned
  rocksdb::WriteOptions write_options;
  std::mutex write_mu;

  ~Impl() {
    if (db == nullptr) return;
    db->Close().PermitUncheckedError();  // the WAL holds every write
    delete db;
  }

  // Keys under `prefix` (which ends with the separator): the part after it.
  Result<std::vector<std::string>> scan(const std::string& prefix, std::string_view what) const {
    std::vector<std::string> out;
    std::string end = prefix;
    end.back() = '\1';
    rocksdb::Slice upper(end);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    for (it->Seek(prefix); it->Valid(); it->Next()) {
      out.emplace_back(it->key().data() + prefix.size(), it->key().size() - prefix.size());
    }
    if (!it->status().ok()) return from_rocksdb(it->status(), what);
    return out;
  }
};

MediaStore::MediaStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MediaStore::~MediaStore() = default;

Result<std::unique_ptr<MediaStore>> MediaStore::open(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_background_jobs = 1;
  options.keep_log_file_num = 4;
  options.max_log_file_size = 8 << 20;
  options.write_buffer_size = 2 << 20;
  // Not RocksDB's file logger: it aborts on a full disk (info_log.h).
  options.info_log = make_info_log(path + "/LOG");
  auto impl = std::make_unique<Impl>();
  rocksdb::Status s = rocksdb::DB::Open(options, path, &impl->db);
  if (!s.ok()) return unavailable("media: cannot open " + path + ": " + s.ToString());
  return std::unique_ptr<MediaStore>(new MediaStore(std::move(impl)));
}

Status MediaStore::put(const MediaRecord& r) {
  if (r.id.empty() || r.uploader.empty() || has_nul(r.id) || has_nul(r.uploader) ||
      !is_sha256_hex(r.sha256)) {
    return invalid_argument("media: malformed record");
  }
  std::lock_guard lock(impl_->write_mu);
  std::string existing;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), key('m', r.id), &existing);
  if (s.ok()) return already_exists("media id taken");
  if (!s.IsNotFound()) return from_rocksdb(s, "media get");
  rocksdb::WriteBatch batch;
  s = batch.Put(key('m', r.id), encode(r));
  if (s.ok()) s = batch.Put(key('u', r.uploader, r.id, true), "");
  if (s.ok()) s = batch.Put(key('s', r.sha256, r.id, true), "");
  if (s.ok()) s = impl_->db->Write(impl_->write_options, &batch);
  if (!s.ok()) return from_rocksdb(s, "media put");
  return Status::ok();
}

Result<std::optional<MediaRecord>> MediaStore::get(const std::string& id) const {
  if (id.empty() || has_nul(id)) return std::optional<MediaRecord>();
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), key('m', id), &value);
  if (s.IsNotFound()) return std::optional<MediaRecord>();
  if (!s.ok()) return from_rocksdb(s, "media get");
  MediaRecord r;
  if (!decode(value, &r)) return internal_error("media: malformed record " + id);
  return std::optional<MediaRecord>(std::move(r));
}

Result<std::vector<MediaRecord>> MediaStore::by_uploader(const std::string& uploader) const {
  std::vector<MediaRecord> out;
  if (uploader.empty() || has_nul(uploader)) return out;
  auto ids = impl_->scan(key('u', uploader, "", true), "media uploader scan");
  if (!ids) return ids.status();
  for (const auto& id : *ids) {
    auto r = get(id);
    if (!r) return r.status();
    if (r->has_value()) out.push_back(std::move(**r));
  }
  return out;
}

Result<size_t> MediaStore::remove(const std::string& id) {
  std::lock_guard lock(impl_->write_mu);
  auto r = get(id);
  if (!r) return r.status();
  if (!r->has_value()) return size_t{0};
  const MediaRecord& rec = **r;
  rocksdb::WriteBatch batch;
  rocksdb::Status s = batch.Delete(key('m', rec.id));
  if (s.ok()) s = batch.Delete(key('u', rec.uploader, rec.id, true));
  if (s.ok()) s = batch.Delete(key('s', rec.sha256, rec.id, true));
  if (s.ok()) s = impl_->db->Write(impl_->write_options, &batch);
  if (!s.ok()) return from_rocksdb(s, "media remove");
  return count_sha256(rec.sha256);
}

Result<size_t> MediaStore::count_sha256(const std::string& sha256) const {
  if (!is_sha256_hex(sha256)) return size_t{0};
  auto ids = impl_->scan(key('s', sha256, "", true), "media sha scan");
  if (!ids) return ids.status();
  return ids->size();
}

Status MediaStore::checkpoint(const std::string& dir) const {
  return write_checkpoint(impl_->db, dir, "media store");
}

}  // namespace chat::store
