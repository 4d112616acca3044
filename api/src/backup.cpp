// BackupRunner (backup.h): the online backup chat-api orchestrates.
#include "chat/api/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>
#include <shared_mutex>
#include <system_error>

#include "chat/api/control.h"
#include "chat/api/log.h"
#include "chat/api/service.h"
#include "chat/common/log_fields.h"
#include "chat/store/accounts.h"
#include "chat/store/key_store.h"
#include "chat/store/media.h"
#include "chat/store/push_store.h"

namespace chat::api {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The data dir's entries a backup holds (and a restore replaces): a backup
// may not go inside any of them.
constexpr const char* kDataEntries[] = {"archive", "api", "media", "keys", "mosquitto"};

std::string errno_text() { return std::strerror(errno); }

bool is_inside(const fs::path& path, const fs::path& dir) {
  auto p = path.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++p) {
    if (d->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *d) return false;
  }
  return true;
}

std::string iso_time(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The broker's answer, read defensively (a wrong type is "" / 0, not a throw).
std::string string_member(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}
uint64_t uint_member(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

struct Tally {
  uint64_t files = 0;
  uint64_t bytes = 0;
};

// Regular files and their sizes under `dir` (recursively).
Tally tally(const fs::path& dir) {
  Tally t;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      ++t.files;
      t.bytes += it->file_size(ec);
    }
  }
  return t;
}

json component(const std::string& path, const char* kind, const Tally& t) {
  return json{{"path", path}, {"kind", kind}, {"files", t.files}, {"bytes", t.bytes}};
}

// Copies a small file (keys), keeping its permission bits.
Status copy_small_file(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::none, ec);
  if (ec) return internal_error("cannot copy " + from.string() + ": " + ec.message());
  fs::permissions(to, fs::status(from, ec).permissions(), ec);
  if (ec) return internal_error("cannot set permissions of " + to.string() + ": " + ec.message());
  return Status::ok();
}

// media/blobs: every file hard-linked into `to` (copied when on another file
// system). Blobs and thumbnails never change once in place, so a link is a
// copy that costs nothing.
struct MediaCopy {
  uint64_t blobs = 0;
  uint64_t thumbnails = 0;
  uint64_t bytes = 0;
  uint64_t linked = 0;
  uint64_t copied = 0;
};

bool is_sha256_name(const std::string& name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Status copy_media(const fs::path& from, const fs::path& to, MediaCopy* out) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return internal_error("cannot create " + to.string() + ": " + ec.message());
  if (!fs::is_directory(from, ec)) return Status::ok();  // no upload yet
  fs::recursive_directory_iterator it(from, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path rel = it->path().lexically_relative(from);
    const fs::path target = to / rel;
    std::error_code e;
    if (it->is_directory(e)) {
      fs::create_directories(target, e);
      if (e) return internal_error("cannot create " + target.string() + ": " + e.message());
      continue;
    }
    if (!it->is_regular_file(e)) continue;
    const uint64_t size = it->file_size(e);
    if (::link(it->path().c_str(), target.c_str()) == 0) {
      ++out->linked;
    } else if (errno == EXDEV || errno == EPERM || errno == EMLINK) {
      fs::copy_file(it->path(), target, fs::copy_options::none, e);
      if (e) return internal_error("cannot copy " + it->path().string() + ": " + e.message());
      ++out->copied;
    } else if (errno == ENOENT) {
      continue;  // deleted meanwhile (its account went): nothing refers to it any more
    } else {
      return internal_error("cannot link " + it->path().string() + ": " + errno_text());
    }
    const std::string name = it->path().filename().string();
    if (is_sha256_name(name)) {
      ++out->blobs;
    } else {
      ++out->thumbnails;
    }
    out->bytes += size;
  }
  if (ec) return internal_error("cannot list " + from.string() + ": " + ec.message());
  return Status::ok();
}

// While the broker writes its checkpoint into the backup directory, the
// directory belongs to the broker's user (Mosquitto started as root runs as
// `mosquitto`: scripts/broker-conf); given back afterwards. Works on the
// directory's descriptor (opened without following symlinks), never on its
// path, so a path swapped meanwhile is never chowned.
class LendDirectory {
 public:
  LendDirectory(int dir_fd, const std::string& dir, const std::string& archive_dir)
      : fd_(dir_fd), dir_(dir) {
    struct stat broker {};
    struct stat own {};
    if (::geteuid() != 0 || ::stat(archive_dir.c_str(), &broker) != 0 || broker.st_uid == 0 ||
        ::fstat(fd_, &own) != 0 || broker.st_uid == own.st_uid) {
      return;
    }
    uid_ = own.st_uid;
    gid_ = own.st_gid;
    if (::fchown(fd_, broker.st_uid, broker.st_gid) == 0) lent_ = true;
  }
  ~LendDirectory() {
    if (lent_ && ::fchown(fd_, uid_, gid_) != 0) {
      logger().warn("backup.chown_failed: dir={} error={}", log_value(dir_),
                    log_value(errno_text()));
    }
  }
  LendDirectory(const LendDirectory&) = delete;
  LendDirectory& operator=(const LendDirectory&) = delete;
  bool lent() const { return lent_; }

 private:
  int fd_;
  std::string dir_;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool lent_ = false;
};

// After the broker's user owned the backup directory: it holds only api/
// (still the very directory we made) and archive/ (a real directory), so
// nothing it could have planted (a symlink out of the backup) is written
// through.
Status check_after_lending(const fs::path& out, const struct stat& api_before) {
  struct stat st {};
  if (::lstat((out / "api").c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
      st.st_dev != api_before.st_dev || st.st_ino != api_before.st_ino) {
    return internal_error(out.string() + "/api was replaced during the archive checkpoint");
  }
  if (::lstat((out / "archive").c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return internal_error(out.string() + "/archive is not a directory after the checkpoint");
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(out, ec)) {
    const std::string name = entry.path().filename().string();
    if (name != "api" && name != "archive") {
      return internal_error(out.string() + " holds an unexpected " + name +
                            " after the archive checkpoint");
    }
  }
  if (ec) return internal_error("cannot list " + out.string() + ": " + ec.message());
  return Status::ok();
}

// Closes a descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

BackupRunner::BackupRunner(BackupOptions options, BackupSources sources)
    : options_(std::move(options)), sources_(sources) {
  if (sources_.clock == nullptr) sources_.clock = &SystemClock::instance();
}

Status BackupRunner::check_target(const std::string& dir) const {
  if (dir.empty() || dir.front() != '/') {
    return invalid_argument("dir must be an absolute path on the server");
  }
  if (dir.size() > 4096 || dir.find('\0') != std::string::npos) {
    return invalid_argument("dir must be a path of at most 4096 bytes without NUL");
  }
  fs::path path(dir);
  for (const auto& part : path) {
    if (part == "." || part == "..") return invalid_argument("dir must not contain . or ..");
  }
  path = path.lexically_normal();
  if (path.filename().empty()) path = path.parent_path();  // a trailing '/'
  if (path == path.root_path()) return invalid_argument("dir must not be /");
  std::error_code ec;
  const fs::path parent = path.parent_path();
  if (!fs::is_directory(parent, ec)) {
    return invalid_argument("the parent directory " + parent.string() + " does not exist");
  }
  const auto type = fs::symlink_status(path, ec).type();
  if (type == fs::file_type::directory) {
    if (!fs::is_empty(path, ec) || ec) {
      return invalid_argument(path.string() + " exists and is not empty");
    }
  } else if (type != fs::file_type::not_found) {
    return invalid_argument(path.string() + " exists and is not a directory");
  }
  // Where it really is (the parent may be or contain a symlink).
  const fs::path real = fs::canonical(parent, ec) / path.filename();
  if (ec) return invalid_argument("cannot resolve " + parent.string() + ": " + ec.message());
  if (!options_.root.empty()) {
    const fs::path root = fs::weakly_canonical(options_.root, ec);
    if (ec || real == root || !is_inside(real, root)) {
      return invalid_argument("dir must be inside CHAT_BACKUP_DIR (" + options_.root + ")");
    }
  }
  const fs::path data = fs::weakly_canonical(fs::absolute(options_.data_dir), ec);
  if (!ec) {
    if (real == data || is_inside(data, real)) {
      return invalid_argument("dir must not be the data directory or contain it");
    }
    for (const char* entry : kDataEntries) {
      if (is_inside(real, data / entry)) {
        return invalid_argument(std::string("dir must not be inside the data directory's ") +
                                entry + "/");
      }
    }
  }
  return Status::ok();
}

Result<json> BackupRunner::run(const std::string& dir) {
  std::unique_lock lock(running_, std::try_to_lock);
  if (!lock.owns_lock()) return already_exists("a backup is already running");
  if (Status s = check_target(dir); !s.is_ok()) return s;
  fs::path path = fs::path(dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  const int64_t start = sources_.clock->now_ms();
  logger().info("backup.started: dir={}", log_value(path.string()));
  auto manifest = take(path.string());
  const int64_t ms = sources_.clock->now_ms() - start;
  if (!manifest) {
    logger().error("backup.failed: dir={} ms={} error={}", log_value(path.string()), ms,
                   log_value(manifest.status().to_string()));
    return manifest;
  }
  logger().info("backup.completed: dir={} ms={} max_id={}", log_value(path.string()), ms,
                log_value((*manifest)["archive"].value("max_id", "")));
  return manifest;
}

Result<json> BackupRunner::take(const std::string& dir) {
  const int64_t started_ms = sources_.clock->now_ms();
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out(dir);
  const fs::path data = fs::absolute(options_.data_dir);
  std::error_code ec;
  // Created here (or the empty directory check_target accepted), then used
  // through a descriptor that refuses a symlink: the backup holds the
  // signing keys and the password hashes, so it is ours alone (0700).
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return invalid_argument("cannot create " + dir + ": " + errno_text());
  }
  Fd dir_fd{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
  if (dir_fd.fd < 0) {
    return invalid_argument("cannot open " + dir +
                            " (a directory, not a symlink): " + errno_text());
  }
  if (::fchmod(dir_fd.fd, 0700) != 0) {
    return internal_error("cannot set permissions of " + dir + ": " + errno_text());
  }
  if (::mkdir((out / "api").c_str(), 0700) != 0) {
    return internal_error("cannot create " + (out / "api").string() + ": " + errno_text());
  }
  struct stat api_dir {};
  if (::lstat((out / "api").c_str(), &api_dir) != 0) {
    return internal_error("cannot stat " + (out / "api").string() + ": " + errno_text());
  }

  // Steps 1-4 (backup.h): no account deleted (so no blob unlinked) until the
  // media files are linked; steps 1-2: no account created either.
  std::optional<std::unique_lock<std::shared_mutex>> no_deletion;
  if (sources_.service != nullptr) no_deletion.emplace(sources_.service->pause_account_deletion());
  json archive_info;
  int64_t checkpoint_ms = 0;
  {
    std::optional<std::unique_lock<std::shared_mutex>> gate;
    if (sources_.service != nullptr) gate.emplace(sources_.service->pause_account_changes());
    const auto c0 = std::chrono::steady_clock::now();
    {
      if (sources_.control == nullptr) return unavailable("no broker connection");
      LendDirectory lend(dir_fd.fd, dir, (data / "archive").string());
      auto answer = sources_.control->call(
          {{"op", "archive.checkpoint"}, {"dir", (out / "archive").string()}},
          options_.broker_timeout);
      if (!answer) {
        std::string hint;
        if (answer.status().message().find("ermission denied") != std::string::npos) {
          hint = " (the broker's user cannot write " + dir +
                 ": see docs/operations.md, \"Backup and restore\")";
        }
        return Status(answer.status().code(), "the broker's archive checkpoint failed: " +
                                                  answer.status().message() + hint);
      }
      archive_info = control_result(*answer);
      if (!archive_info.is_object()) archive_info = json::object();
    }
    if (Status s = check_after_lending(out, api_dir); !s.is_ok()) return s;
    checkpoint_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - c0)
            .count();
    if (sources_.accounts != nullptr) {
      if (Status s = sources_.accounts->checkpoint((out / "api" / "accounts").string());
          !s.is_ok()) {
        return s;
      }
    }
    if (sources_.media != nullptr) {
      if (Status s = sources_.media->checkpoint((out / "api" / "media").string()); !s.is_ok()) {
        return s;
      }
    }
    if (sources_.push != nullptr) {
      if (Status s = sources_.push->checkpoint((out / "api" / "push").string()); !s.is_ok()) {
        return s;
      }
    }
    if (sources_.keys != nullptr) {
      if (Status s = sources_.keys->checkpoint((out / "api" / "e2e-keys").string()); !s.is_ok()) {
        return s;
      }
    }
  }

  // Step 3: the issuer key (tokens stay valid) and the media URL key.
  json components = json::object();
  if (fs::is_directory(data / "keys", ec)) {
    if (::mkdir((out / "keys").c_str(), 0700) != 0) {
      return internal_error("cannot create " + (out / "keys").string() + ": " + errno_text());
    }
    for (const auto& entry : fs::directory_iterator(data / "keys", ec)) {
      if (!entry.is_regular_file()) continue;
      if (Status s = copy_small_file(entry.path(), out / "keys" / entry.path().filename());
          !s.is_ok()) {
        return s;
      }
    }
    components["keys"] = component("keys", "files", tally(out / "keys"));
  }
  const fs::path media_key = data / "api" / "media-url.key";
  if (fs::is_regular_file(media_key, ec)) {
    if (Status s = copy_small_file(media_key, out / "api" / "media-url.key"); !s.is_ok()) return s;
    components["media_key"] =
        component("api/media-url.key", "file", Tally{1, fs::file_size(media_key, ec)});
  }

  // Step 4: the media files, then account deletions may go on.
  if (options_.before_media_copy) options_.before_media_copy();
  MediaCopy media;
  if (Status s = copy_media(data / "media" / "blobs", out / "media" / "blobs", &media);
      !s.is_ok()) {
    return s;
  }
  no_deletion.reset();

  components["archive"] = component("archive", "rocksdb", tally(out / "archive"));
  if (sources_.accounts != nullptr) {
    components["accounts"] = component("api/accounts", "rocksdb", tally(out / "api" / "accounts"));
  }
  if (sources_.media != nullptr) {
    components["media_db"] = component("api/media", "rocksdb", tally(out / "api" / "media"));
  }
  if (sources_.push != nullptr) {
    components["push"] = component("api/push", "rocksdb", tally(out / "api" / "push"));
  }
  if (sources_.keys != nullptr) {
    components["e2e_keys"] = component("api/e2e-keys", "rocksdb", tally(out / "api" / "e2e-keys"));
  }
  json media_json =
      component("media/blobs", "files", Tally{media.blobs + media.thumbnails, media.bytes});
  media_json["blobs"] = media.blobs;
  media_json["thumbnails"] = media.thumbnails;
  media_json["linked"] = media.linked;
  media_json["copied"] = media.copied;
  components["media"] = std::move(media_json);

  // Step 5: the manifest, last.
  const int64_t done_ms = sources_.clock->now_ms();
  json manifest;
  manifest["format"] = "chat-backup";
  manifest["version"] = kBackupFormatVersion;
  manifest["created_ms"] = started_ms;
  manifest["created"] = iso_time(started_ms);
  manifest["completed_ms"] = done_ms;
  manifest["duration_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  manifest["data_dir"] = data.string();
  manifest["archive"] = json{{"max_id", string_member(archive_info, "max_id")},
                             {"sequence", uint_member(archive_info, "sequence")},
                             {"checkpoint_ms", checkpoint_ms}};
  manifest["order"] = json::array(
      {"archive", "accounts", "media_db", "push", "e2e_keys", "keys", "media_key", "media"});
  manifest["components"] = std::move(components);

  const std::string final_path = (out / "manifest.json").string();
  const std::string tmp_path = final_path + ".tmp";
  {
    int fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return internal_error("cannot create " + tmp_path + ": " + errno_text());
    const std::string text = manifest.dump(2) + "\n";
    size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::write(fd, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return internal_error("cannot write " + tmp_path + ": " + errno_text());
      }
      off += static_cast<size_t>(n);
    }
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) return internal_error("cannot fsync " + tmp_path + ": " + errno_text());
  }
  if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    return internal_error("cannot rename " + tmp_path + ": " + errno_text());
  }
  if (::fsync(dir_fd.fd) != 0) return internal_error("cannot fsync " + dir + ": " + errno_text());
  manifest["dir"] = dir;
  return manifest;
}

}  // namespace chat::api
