// MediaLibrary (media.h): uploads streamed to media/tmp, hashed while they
// arrive, then renamed to a content-addressed blob; the access rules; signed
// URLs. Storage layout (docs/media.md):
//   media/tmp/<random>.part                  uploads in progress (removed on failure)
//   media/blobs/<h0h1>/<h2h3>/<sha256>       the bytes, once per content
//   media/blobs/<h0h1>/<h2h3>/<sha256>.thumb.jpg   its thumbnail, if any
// Client file names and ids never become paths: only the hex digest does.
#include "chat/api/media.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <set>

#include "chat/api/log.h"
#include "chat/api/secrets.h"
#include "chat/common/hex.h"
#include "chat/common/jwt.h"
#include "chat/common/log_fields.h"
#include "chat/common/topics.h"

namespace chat::api {
namespace {

namespace fs = std::filesystem;

constexpr size_t kKeyBytes = 32;
constexpr size_t kMediaIdBytes = 16;  // 22 base64url characters
// References of one media id looked at for an access check, oldest first.
constexpr size_t kMaxRefsChecked = 1000;

std::string errno_text() { return std::strerror(errno); }

EVP_MD_CTX* md(void* p) { return static_cast<EVP_MD_CTX*>(p); }

Status fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return internal_error("media: cannot open " + path + ": " + errno_text());
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return internal_error("media: fsync " + path + ": " + errno_text());
  return Status::ok();
}

// The signing key: created once (O_EXCL, 0600), then read.
Result<std::string> load_or_create_key(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const std::string key = random_bytes(kKeyBytes);
    const bool ok =
        ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      return internal_error("media: cannot write " + path);
    }
    return key;
  }
  if (errno != EEXIST) return internal_error("media: cannot create " + path + ": " + errno_text());
  fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return internal_error("media: cannot read " + path + ": " + errno_text());
  std::string key(kKeyBytes + 1, '\0');
  ssize_t n = ::read(fd, key.data(), key.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(kKeyBytes)) {
    return internal_error("media: " + path + " is not a " + std::to_string(kKeyBytes) +
                          "-byte key (delete it to make a new one; signed URLs then change)");
  }
  key.resize(kKeyBytes);
  return key;
}

}  // namespace

// ---- Upload ---------------------------------------------------------------------

MediaLibrary::Upload::~Upload() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());
  if (sha_ != nullptr) EVP_MD_CTX_free(md(sha_));
}

bool MediaLibrary::Upload::drain(size_t n) {
  // Nothing more is stored; reading a little further lets a client that is
  // still sending see the answer instead of a reset connection.
  drained_ += n;
  return drained_ <= kUploadDrainBytes;
}

bool MediaLibrary::Upload::decide_type() {
  type_ = sniff_media_type(head_);
  if (!type_) refused_type_ = true;
  return type_.has_value();
}

bool MediaLibrary::Upload::write(const char* data, size_t n) {
  if (!error_.is_ok()) return false;
  if (too_large_ || refused_type_ || no_space_) return drain(n);
  if (size_ + n > lib_->options_.max_bytes) {
    too_large_ = true;
    return drain(n);
  }
  if (size_ + n >= next_space_check_) {
    if (!lib_->has_room(kSpaceCheckBytes)) {
      no_space_ = true;
      return drain(n);
    }
    next_space_check_ = size_ + n + kSpaceCheckBytes;
  }
  if (head_.size() < kSniffBytes) {
    head_.append(data, std::min(n, kSniffBytes - head_.size()));
    if (head_.size() == kSniffBytes && !decide_type()) return drain(n);
  }
  if (EVP_DigestUpdate(md(sha_), data, n) != 1) {
    error_ = internal_error("media: SHA-256 failed");
    return false;
  }
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::write(fd_, data + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      error_ = unavailable("media: cannot write " + tmp_path_ + ": " + errno_text());
      return false;
    }
    done += static_cast<size_t>(w);
  }
  size_ += n;
  return true;
}

// ---- MediaLibrary -----------------------------------------------------------------

MediaLibrary::MediaLibrary(MediaOptions options, store::MediaStore& media,
                           store::ArchiveReader& archive, const Clock& clock, std::string key)
    : options_(std::move(options)),
      media_(media),
      archive_(archive),
      clock_(clock),
      key_(std::move(key)) {}

MediaLibrary::~MediaLibrary() = default;

Result<std::unique_ptr<MediaLibrary>> MediaLibrary::open(const MediaOptions& options,
                                                         store::MediaStore& media,
                                                         store::ArchiveReader& archive,
                                                         const Clock& clock) {
  std::error_code ec;
  for (const char* sub : {"tmp", "blobs"}) {
    fs::path dir = fs::path(options.dir) / sub;
    fs::create_directories(dir, ec);
    if (ec) return internal_error("media: cannot create " + dir.string() + ": " + ec.message());
  }
  fs::permissions(options.dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  // Uploads a crash interrupted: nobody will finish them.
  for (const auto& entry : fs::directory_iterator(fs::path(options.dir) / "tmp", ec)) {
    std::error_code ignored;
    fs::remove(entry.path(), ignored);
  }
  auto key = load_or_create_key(options.key_path);
  if (!key) return key.status();
  return std::unique_ptr<MediaLibrary>(
      new MediaLibrary(options, media, archive, clock, std::move(key).value()));
}

Result<std::unique_ptr<MediaLibrary::Upload>> MediaLibrary::begin_upload() {
  std::unique_ptr<Upload> up(new Upload());
  up->lib_ = this;
  up->tmp_path_ = (fs::path(options_.dir) / "tmp" /
                   (random_hex(8) + "-" + std::to_string(tmp_seq_.fetch_add(1)) + ".part"))
                      .string();
  up->fd_ = ::open(up->tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (up->fd_ < 0) {
    std::string why = errno_text();
    up->tmp_path_.clear();
    return unavailable("media: cannot create a temporary file: " + why);
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  up->sha_ = ctx;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    return internal_error("media: SHA-256 unavailable");
  }
  return up;
}

bool MediaLibrary::has_room(uint64_t incoming) const {
  if (options_.min_free_bytes == 0) return true;
  struct statvfs fs_stats {};
  if (::statvfs(options_.dir.c_str(), &fs_stats) != 0) {
    logger().warn("media.statvfs_failed: error={}", log_value(errno_text()));
    return true;  // the write itself will fail if the disk is really full
  }
  const uint64_t free_bytes =
      static_cast<uint64_t>(fs_stats.f_bavail) * static_cast<uint64_t>(fs_stats.f_frsize);
  if (free_bytes >= options_.min_free_bytes && free_bytes - options_.min_free_bytes >= incoming) {
    return true;
  }
  logger().warn("media.disk_floor: free_mb={} floor_mb={} incoming={}", free_bytes >> 20,
                options_.min_free_bytes >> 20, incoming);
  return false;
}

std::string MediaLibrary::blob_path(const store::MediaRecord& r) const {
  return (fs::path(options_.dir) / "blobs" / r.sha256.substr(0, 2) / r.sha256.substr(2, 2) /
          r.sha256)
      .string();
}

std::string MediaLibrary::thumbnail_path(const store::MediaRecord& r) const {
  return blob_path(r) + ".thumb.jpg";
}

Result<store::MediaRecord> MediaLibrary::finish(Upload& up, const std::string& uploader) {
  auto refuse = [this](Status s) {
    std::lock_guard lock(counters_mu_);
    ++counters_.refused;
    return s;
  };
  if (up.size_ == 0) return refuse(invalid_argument("the body is empty"));
  if (!up.type_ && !up.decide_type()) {
    return refuse(invalid_argument("this content type is not allowed"));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(md(up.sha_), digest, &len) != 1) {
    return internal_error("media: SHA-256 failed");
  }
  if (::fsync(up.fd_) != 0) return unavailable("media: fsync failed: " + errno_text());
  ::close(up.fd_);
  up.fd_ = -1;

  store::MediaRecord record;
  record.id = random_token(kMediaIdBytes);
  record.uploader = uploader;
  record.content_type = *up.type_;
  record.sha256 = to_hex(digest, len);
  record.size = up.size_;
  record.created_ms = clock_.now_ms();

  const std::string blob = blob_path(record);
  const std::string thumb = thumbnail_path(record);
  // The thumbnail is made from the temporary file, outside the lock (slow).
  // Whatever path finish() leaves by, a thumbnail not moved into place goes.
  std::string thumb_tmp;
  struct RemoveThumbTmp {
    std::string& path;
    ~RemoveThumbTmp() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } remove_thumb_tmp{thumb_tmp};
  std::error_code ec;
  if (has_thumbnail_type(record.content_type) && !fs::exists(thumb, ec)) {
    thumb_tmp = up.tmp_path_ + ".thumb.jpg";
    if (make_thumbnail(up.tmp_path_, thumb_tmp)) {
      std::lock_guard lock(counters_mu_);
      ++counters_.thumbnails;
    } else {
      ::unlink(thumb_tmp.c_str());
      thumb_tmp.clear();
    }
  }
  bool dedup = false;
  {
    std::lock_guard lock(blob_mu_);
    const fs::path dir = fs::path(blob).parent_path();
    fs::create_directories(dir, ec);
    if (ec) return internal_error("media: cannot create " + dir.string() + ": " + ec.message());
    if (fs::exists(blob, ec)) {
      dedup = true;  // the same bytes are stored already; ~Upload removes ours
    } else {
      if (::rename(up.tmp_path_.c_str(), blob.c_str()) != 0) {
        return internal_error("media: cannot store " + blob + ": " + errno_text());
      }
      up.tmp_path_.clear();
    }
    if (!thumb_tmp.empty()) {
      if (Status s = fsync_path(thumb_tmp, O_RDONLY); s.is_ok()) {
        if (::rename(thumb_tmp.c_str(), thumb.c_str()) == 0) thumb_tmp.clear();
      }
    }
    if (!dedup) fsync_path(dir.string(), O_RDONLY | O_DIRECTORY).ignore_error();
    record.thumbnail = fs::exists(thumb, ec);
    if (Status s = media_.put(record); !s.is_ok()) {
      if (!dedup) {
        auto left = media_.count_sha256(record.sha256);
        if (left && *left == 0) {
          ::unlink(blob.c_str());
          ::unlink(thumb.c_str());
        }
      }
      return s;
    }
  }
  {
    std::lock_guard lock(counters_mu_);
    ++counters_.uploads;
    counters_.upload_bytes += record.size;
    if (dedup) ++counters_.deduplicated;
  }
  logger().info("media.stored: id={} user={} type={} size={} dedup={} thumbnail={}", record.id,
                log_value(uploader), record.content_type, record.size, dedup, record.thumbnail);
  return record;
}

// ---- access -----------------------------------------------------------------------

Result<bool> MediaLibrary::referenced_for(const std::string& user,
                                          const store::MediaRecord& record) {
  if (Status s = archive_.catch_up(); !s.is_ok()) return unavailable("archive: " + s.message());
  auto refs = archive_.media_refs(record.id);
  if (!refs) return refs.status();
  // Whether `who` could read message `ref` (a DM participant; a group member
  // in a membership period containing it).
  auto can_read = [this](const std::string& who,
                         const store::ArchiveView::MediaRef& ref) -> Result<bool> {
    topics::Conversation conv = topics::parse_conversation(ref.conv);
    if (conv.kind == topics::ConvKind::kDirect) return who == conv.a || who == conv.b;
    if (conv.kind != topics::ConvKind::kGroup) return false;
    auto membership = archive_.membership(conv.gid, who);
    if (!membership) return membership.status();
    for (const auto& period : membership->periods) {
      if (period.contains(ref.id)) return true;
    }
    return false;
  };
  // A reference counts when its sender could fetch the media then: the
  // uploader, or a reader of an earlier reference that counts (forwarding).
  // Server ids sort in archive order across conversations.
  std::vector<store::ArchiveView::MediaRef> ordered = std::move(refs).value();
  std::sort(ordered.begin(), ordered.end(),
            [](const auto& x, const auto& y) { return x.id < y.id; });
  if (ordered.size() > kMaxRefsChecked) ordered.resize(kMaxRefsChecked);
  std::vector<const store::ArchiveView::MediaRef*> counting;
  for (const auto& ref : ordered) {
    bool counts = ref.from == record.uploader;
    for (size_t i = 0; !counts && i < counting.size(); ++i) {
      auto reads = can_read(ref.from, *counting[i]);
      if (!reads) return reads.status();
      counts = *reads;
    }
    if (!counts) continue;
    auto readable = can_read(user, ref);
    if (!readable) return readable.status();
    if (*readable) return true;
    counting.push_back(&ref);
  }
  return false;
}

Result<store::MediaRecord> MediaLibrary::find_for_user(const std::string& user,
                                                       const std::string& id) {
  if (!is_valid_media_id(id)) return not_found("no such media");
  auto record = media_.get(id);
  if (!record) return record.status();
  if (!record->has_value()) return not_found("no such media");
  if ((*record)->uploader == user) return std::move(**record);
  auto allowed = referenced_for(user, **record);
  if (!allowed) return allowed.status();
  if (!*allowed) return not_found("no such media");
  return std::move(**record);
}

std::string MediaLibrary::sign(const std::string& id, int64_t exp_s) const {
  const std::string message = "chat-media-v1\n" + id + "\n" + std::to_string(exp_s);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len);
  return jwt::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

int64_t MediaLibrary::default_expiry_s() const {
  return clock_.now_ms() / 1000 + options_.url_ttl_s;
}

std::string MediaLibrary::signed_path(const std::string& id, int64_t exp_s,
                                      std::string_view suffix) const {
  return "/v1/media/" + id + std::string(suffix) + "?exp=" + std::to_string(exp_s) +
         "&sig=" + sign(id, exp_s);
}

Result<store::MediaRecord> MediaLibrary::find_signed(const std::string& id, std::string_view exp,
                                                     std::string_view sig) {
  if (!is_valid_media_id(id) || exp.empty() || exp.size() > 12 || sig.size() != 43) {
    return not_found("no such media");
  }
  int64_t exp_s = 0;
  auto [end, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), exp_s);
  if (ec != std::errc() || end != exp.data() + exp.size() || exp_s < 0) {
    return not_found("no such media");
  }
  const std::string expected = sign(id, exp_s);
  if (CRYPTO_memcmp(expected.data(), sig.data(), expected.size()) != 0) {
    return not_found("no such media");
  }
  if (exp_s <= clock_.now_ms() / 1000) return not_found("no such media");
  auto record = media_.get(id);
  if (!record) return record.status();
  if (!record->has_value()) return not_found("no such media");
  return std::move(**record);
}

// ---- deletion ---------------------------------------------------------------------

Status MediaLibrary::delete_user_media(const std::string& user) {
  auto records = media_.by_uploader(user);
  if (!records) return records.status();
  size_t blobs = 0;
  for (const auto& r : *records) {
    std::lock_guard lock(blob_mu_);
    auto left = media_.remove(r.id);
    if (!left) return left.status();
    if (*left == 0) {
      ::unlink(blob_path(r).c_str());
      ::unlink(thumbnail_path(r).c_str());
      ++blobs;
    }
  }
  logger().info("media.deleted: user={} records={} blobs={}", log_value(user), records->size(),
                blobs);
  return Status::ok();
}

void MediaLibrary::note_refused() {
  std::lock_guard lock(counters_mu_);
  ++counters_.refused;
}

MediaCounters MediaLibrary::counters() const {
  std::lock_guard lock(counters_mu_);
  return counters_;
}

}  // namespace chat::api
