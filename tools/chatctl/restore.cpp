#include "chatctl/restore.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>
#include <vector>

namespace chat::tools {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// What a backup holds and a restore replaces, relative to the data dir.
constexpr const char* kDataEntries[] = {"archive", "api", "media", "keys", "mosquitto"};
// The RocksDB databases (their LOCK files tell whether the stack runs).
constexpr const char* kDatabases[] = {"archive", "api/accounts", "api/media", "api/push",
                                      "api/e2e-keys"};

struct Tally {
  uint64_t files = 0;
  uint64_t bytes = 0;
};

Tally tally(const fs::path& path) {
  Tally t;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return Tally{1, fs::file_size(path, ec)};
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) {
      ++t.files;
      t.bytes += it->file_size(ec);
    }
  }
  return t;
}

std::string string_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The first entry under `path` that is neither a regular file nor a
// directory (a symlink, a FIFO, ...): a backup holds none, and copying one
// would follow it out of the backup. "" when there is none.
std::string special_entry(const fs::path& path) {
  std::error_code ec;
  auto type = fs::symlink_status(path, ec).type();
  if (type != fs::file_type::directory) {
    return type == fs::file_type::regular || type == fs::file_type::not_found ? "" : path.string();
  }
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    type = it->symlink_status(ec).type();
    if (type != fs::file_type::regular && type != fs::file_type::directory) {
      return it->path().string();
    }
  }
  return ec ? path.string() + " (" + ec.message() + ")" : "";
}

uint64_t uint_field(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// Lowercase hex SHA-256 of a file's bytes; "" when it cannot be read.
std::string file_sha256(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return "";
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &n) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

bool is_sha256_name(const std::string& name) {
  if (name.size() != 64) return false;
  for (char c : name) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string utc_stamp(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace

Result<json> verify_backup(const std::string& backup_dir) {
  const fs::path dir(backup_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return not_found(backup_dir + " is not a directory");
  const fs::path manifest_path = dir / "manifest.json";
  if (!fs::is_regular_file(manifest_path, ec)) {
    return not_found(backup_dir +
                     " has no manifest.json: not a backup, or an incomplete one (a backup writes "
                     "its manifest last)");
  }
  std::ifstream in(manifest_path);
  json manifest = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (manifest.is_discarded() || !manifest.is_object() ||
      string_field(manifest, "format") != "chat-backup") {
    return invalid_argument(manifest_path.string() + " is not a chat backup manifest");
  }
  auto version = manifest.find("version");
  if (version == manifest.end() || !version->is_number_integer() ||
      version->get<int>() != kBackupFormatVersion) {
    return invalid_argument("unsupported backup format version " +
                            (version == manifest.end() ? std::string("(none)") : version->dump()) +
                            " (this chatctl restores version " +
                            std::to_string(kBackupFormatVersion) + ")");
  }
  const auto components = manifest.find("components");
  if (components == manifest.end() || !components->is_object()) {
    return invalid_argument("manifest.json lists no components");
  }
  for (const char* required : {"archive", "accounts", "keys"}) {
    if (!components->contains(required)) {
      return invalid_argument(std::string("manifest.json lacks the ") + required + " component");
    }
  }
  for (const auto& [name, c] : components->items()) {
    if (!c.is_object() || !c.contains("path") || !c["path"].is_string()) {
      return invalid_argument("manifest.json: component " + name + " has no path");
    }
    const std::string rel = c["path"].get<std::string>();
    const fs::path p = (dir / rel).lexically_normal();
    if (rel.empty() || rel.front() == '/' || rel.find("..") != std::string::npos) {
      return invalid_argument("manifest.json: component " + name + " has a bad path");
    }
    if (!fs::exists(p, ec)) {
      return invalid_argument("component " + name + ": " + rel + " is missing");
    }
    if (std::string odd = special_entry(p); !odd.empty()) {
      return invalid_argument("component " + name + ": " + odd +
                              " is not a regular file or directory (a backup holds none)");
    }
    if (string_field(c, "kind") == "rocksdb" && !fs::is_regular_file(p / "CURRENT", ec)) {
      return invalid_argument("component " + name + ": " + rel + " is not a RocksDB copy");
    }
    const Tally t = tally(p);
    if (t.files != uint_field(c, "files") || t.bytes != uint_field(c, "bytes")) {
      return invalid_argument(
          "component " + name + ": expected " + std::to_string(uint_field(c, "files")) +
          " files / " + std::to_string(uint_field(c, "bytes")) + " bytes in " + rel + ", found " +
          std::to_string(t.files) + " / " + std::to_string(t.bytes));
    }
  }
  // Media blobs are named by the SHA-256 of their bytes: check each one.
  const fs::path blobs = dir / "media" / "blobs";
  if (std::string odd = special_entry(blobs); !odd.empty()) {
    return invalid_argument(odd + " is not a regular file or directory (a backup holds none)");
  }
  for (fs::recursive_directory_iterator it(blobs, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    if (!is_sha256_name(name)) continue;  // thumbnails
    if (file_sha256(it->path()) != name) {
      return invalid_argument("media blob " + it->path().string() +
                              " does not match the SHA-256 its name says (damaged)");
    }
  }
  return manifest;
}

std::string stack_holding(const std::string& data_dir) {
  for (const char* db : kDatabases) {
    const std::string lock = (fs::path(data_dir) / db / "LOCK").string();
    int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fd = ::open(lock.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // no database there
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    const int rc = ::fcntl(fd, F_GETLK, &fl);
    ::close(fd);
    if (rc == 0 && fl.l_type != F_UNLCK) {
      return lock + " is locked by pid " + std::to_string(fl.l_pid);
    }
  }
  return "";
}

Result<RestoreReport> restore_backup(const RestoreOptions& options) {
  RestoreReport report;
  auto manifest = verify_backup(options.backup_dir);
  if (!manifest) return manifest.status();
  report.manifest = std::move(manifest).value();

  if (options.data_dir.empty()) {
    return invalid_argument("no data directory: give --data-dir or set CHAT_DATA_DIR");
  }
  const fs::path data = fs::absolute(options.data_dir).lexically_normal();
  const fs::path backup = fs::absolute(options.backup_dir).lexically_normal();
  std::error_code ec;
  if (fs::equivalent(data, backup, ec)) {
    return invalid_argument("the data directory and the backup are the same directory");
  }
  fs::create_directories(data, ec);
  if (ec) return invalid_argument("cannot create " + data.string() + ": " + ec.message());

  if (std::string held = stack_holding(data.string()); !held.empty()) {
    return unavailable("the stack is running on " + data.string() + " (" + held +
                       "): stop it before restoring");
  }

  std::vector<std::string> present;
  for (const char* entry : kDataEntries) {
    if (fs::exists(fs::symlink_status(data / entry, ec))) present.emplace_back(entry);
  }
  if (!present.empty() && !options.force) {
    std::string list;
    for (const auto& p : present) list += (list.empty() ? "" : ", ") + p + "/";
    return already_exists(data.string() + " already holds data (" + list +
                          "); --force moves it aside (into " + data.string() +
                          "/pre-restore-<time>/) and restores");
  }
  auto fault = [&](const std::string& step) {
    return options.fault ? options.fault(step) : Status::ok();
  };

  // 1. Copy into a staging directory on the data dir's file system. A failure
  // here (disk full, a read error) leaves the data dir as it was.
  const fs::path staging = data / (".restore-" + utc_stamp(options.now_ms));
  fs::remove_all(staging, ec);
  if (::mkdir(staging.c_str(), 0700) != 0) {
    return unavailable("cannot create " + staging.string() + ": " + std::strerror(errno));
  }
  struct RemoveStaging {
    const fs::path& path;
    ~RemoveStaging() {
      std::error_code e;
      fs::remove_all(path, e);
    }
  } remove_staging{staging};
  auto copy = [&](const fs::path& from, const fs::path& to) -> Status {
    std::error_code e;
    if (!fs::exists(from, e)) return Status::ok();
    fs::create_directories(to.parent_path(), e);
    fs::copy(from, to, fs::copy_options::recursive, e);
    if (e) return unavailable("cannot copy " + from.string() + ": " + e.message());
    const Tally t = tally(to);
    report.files += t.files;
    report.bytes += t.bytes;
    return Status::ok();
  };
  for (const char* part : {"archive", "keys", "api/accounts", "api/media", "api/push",
                           "api/e2e-keys", "api/media-url.key", "media/blobs"}) {
    if (Status s = copy(backup / part, staging / part); !s.is_ok()) {
      return Status(s.code(), s.message() + "; " + data.string() + " is unchanged");
    }
  }
  fs::create_directories(staging / "media" / "tmp", ec);
  fs::create_directories(staging / "api", ec);
  // The modes chat-api --init gives them: api/ holds credentials (0700);
  // keys/ and the data dir must be readable by the broker's user.
  fs::permissions(staging / "api", fs::perms::owner_all, fs::perm_options::replace, ec);
  if (fs::exists(staging / "keys", ec)) {
    fs::permissions(staging / "keys", fs::perms(0755), fs::perm_options::replace, ec);
  }
  fs::permissions(staging / "archive", fs::perms(0755), fs::perm_options::replace, ec);
  if (Status s = fault("copied"); !s.is_ok()) {
    return Status(s.code(), s.message() + "; " + data.string() + " is unchanged");
  }

  // 2. The existing data aside (--force), 3. the copy into place: renames
  // only. A failure puts back what was moved, so the data dir never holds
  // half of the backup, and the old data is never deleted.
  fs::path aside;
  std::vector<std::string> moved;
  std::vector<std::string> placed;
  auto undo = [&](const std::string& why) -> Status {
    std::string stuck;
    for (auto it = placed.rbegin(); it != placed.rend(); ++it) {
      if (::rename((data / *it).c_str(), (staging / *it).c_str()) != 0) stuck += " " + *it;
    }
    for (auto it = moved.rbegin(); it != moved.rend(); ++it) {
      if (::rename((aside / *it).c_str(), (data / *it).c_str()) != 0) stuck += " " + *it;
    }
    if (!aside.empty()) ::rmdir(aside.c_str());  // only when emptied
    if (!stuck.empty()) {
      return unavailable(why + "; could not put back:" + stuck + " (the previous data is in " +
                         aside.string() + ": move it back by hand)");
    }
    return unavailable(why + "; " + data.string() + " is unchanged");
  };
  if (!present.empty()) {
    aside = data / ("pre-restore-" + utc_stamp(options.now_ms));
    for (int n = 2; fs::exists(fs::symlink_status(aside, ec)); ++n) {
      aside = data / ("pre-restore-" + utc_stamp(options.now_ms) + "-" + std::to_string(n));
    }
    if (::mkdir(aside.c_str(), 0700) != 0) {
      const std::string why = "cannot create " + aside.string() + ": " + std::strerror(errno);
      aside.clear();
      return undo(why);
    }
    for (const auto& entry : present) {
      Status s = fault("aside:" + entry);
      if (s.is_ok() && ::rename((data / entry).c_str(), (aside / entry).c_str()) != 0) {
        s = unavailable("cannot move " + (data / entry).string() +
                        " aside: " + std::strerror(errno));
      }
      if (!s.is_ok()) return undo(s.message());
      moved.push_back(entry);
    }
  }
  for (const char* entry : {"archive", "api", "media", "keys"}) {
    if (!fs::exists(staging / entry, ec)) continue;
    Status s = fault(std::string("place:") + entry);
    if (s.is_ok() && ::rename((staging / entry).c_str(), (data / entry).c_str()) != 0) {
      s = unavailable("cannot move " + (staging / entry).string() +
                      " into place: " + std::strerror(errno));
    }
    if (!s.is_ok()) return undo(s.message());
    placed.emplace_back(entry);
  }
  report.moved_aside = aside.string();
  return report;
}

}  // namespace chat::tools
