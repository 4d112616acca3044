#include "chatctl/profile.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "chat/common/ids.h"

namespace chat::tools {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Reads a whole small file; kNotFound when it does not exist.
Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return not_found(path + ": no such file");
    return unavailable(path + ": " + errno_text(err));
  }
  std::string data;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return unavailable(path + ": " + errno_text(err));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > (1 << 20)) {
      ::close(fd);
      return invalid_argument(path + ": too large for a chatctl file");
    }
  }
  ::close(fd);
  return data;
}

// Replaces `path` atomically with `data`, mode 0600 whatever the umask.
Status write_file_atomically(const std::string& dir, const std::string& path,
                             std::string_view data) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable(tmp + ": " + errno_text(errno));
  auto fail = [&](const std::string& what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return unavailable(what + ": " + errno_text(err));
  };
  if (::fchmod(fd, 0600) != 0) return fail(tmp);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(tmp);
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail(tmp);
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return unavailable(tmp + ": " + errno_text(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return unavailable(path + ": " + errno_text(err));
  }
  // Make the rename itself durable; failure here only weakens crash safety.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::ok();
}

// Exclusive advisory lock on the home directory for the object's lifetime.
class HomeLock {
 public:
  explicit HomeLock(const std::string& dir) {
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) {
      status_ = unavailable(dir + ": " + errno_text(errno));
      return;
    }
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      status_ = unavailable(dir + ": cannot lock: " + errno_text(errno));
      return;
    }
  }
  ~HomeLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }
  HomeLock(const HomeLock&) = delete;
  HomeLock& operator=(const HomeLock&) = delete;

  const Status& status() const { return status_; }

 private:
  int fd_ = -1;
  Status status_;
};

bool read_string(const nlohmann::json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

bool read_int(const nlohmann::json& j, const char* key, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_number_integer()) return false;
  *out = it->get<int64_t>();
  return true;
}

}  // namespace

Status make_private_dirs(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return invalid_argument(dir + " exists and is not a directory");
    return Status::ok();
  }
  auto slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    Status parent = make_private_dirs(dir.substr(0, slash));
    if (!parent.is_ok()) return parent;
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return unavailable(dir + ": " + errno_text(errno));
  }
  // mkdir honours the umask; the contract for our own directories is 0700.
  if (::chmod(dir.c_str(), 0700) != 0) return unavailable(dir + ": " + errno_text(errno));
  return Status::ok();
}

nlohmann::json profile_to_json(const Profile& p) {
  nlohmann::json j{
      {"user", p.user},
      {"device", p.device},
      {"access_token", p.access_token},
      {"access_expires_at", p.access_expires_at},
      {"access_lifetime", p.access_lifetime},
      {"refresh_token", p.refresh_token},
      {"sync_cursor", p.sync_cursor},
  };
  // Optional: absent in profiles written before logins remembered servers.
  if (!p.api.empty()) j["api"] = p.api;
  if (!p.mqtt.empty()) j["mqtt"] = p.mqtt;
  if (!p.ca_file.empty()) j["ca"] = p.ca_file;
  return j;
}

Result<Profile> profile_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return invalid_argument("profile is not a JSON object");
  Profile p;
  bool ok = read_string(j, "user", &p.user) && read_string(j, "device", &p.device) &&
            read_string(j, "access_token", &p.access_token) &&
            read_int(j, "access_expires_at", &p.access_expires_at) &&
            read_int(j, "access_lifetime", &p.access_lifetime) &&
            read_string(j, "refresh_token", &p.refresh_token) &&
            read_string(j, "sync_cursor", &p.sync_cursor);
  if (!ok) return invalid_argument("profile has a field of the wrong type");
  for (auto [key, out] : {std::pair<const char*, std::string*>{"api", &p.api},
                          {"mqtt", &p.mqtt},
                          {"ca", &p.ca_file}}) {
    if (!read_string(j, key, out)) {
      return invalid_argument(std::string("the remembered \"") + key +
                              "\" is not a string: fix the file or remove the field");
    }
  }
  if (!is_valid_user_id(p.user)) return invalid_argument("profile names no valid user");
  if (!p.device.empty() && !is_valid_device_id(p.device)) {
    return invalid_argument("profile has an invalid device id");
  }
  return p;
}

std::string ProfileStore::path_for(std::string_view user) const {
  return home_ + "/" + std::string(user) + ".json";
}

Status ProfileStore::ensure_home() const { return make_private_dirs(home_); }

Result<Profile> ProfileStore::load(std::string_view user) const {
  if (!is_valid_user_id(user))
    return invalid_argument("'" + std::string(user) + "' is not a user id");
  std::string path = path_for(user);
  auto data = read_file(path);
  if (!data) return data.status();
  auto j = nlohmann::json::parse(*data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument(path + ": not valid JSON");
  auto profile = profile_from_json(j);
  if (!profile) return invalid_argument(path + ": " + profile.status().message());
  if (profile->user != user) return invalid_argument(path + ": belongs to '" + profile->user + "'");
  return profile;
}

Status ProfileStore::save(const Profile& profile) const {
  if (!is_valid_user_id(profile.user)) return invalid_argument("profile has no valid user id");
  Status s = ensure_home();
  if (!s.is_ok()) return s;
  std::string text =
      profile_to_json(profile).dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
  text.push_back('\n');
  return write_file_atomically(home_, path_for(profile.user), text);
}

Result<std::string> ProfileStore::current_user() const {
  auto data = read_file(home_ + "/current");
  if (!data) return data.status();
  std::string user = *data;
  while (!user.empty() && (user.back() == '\n' || user.back() == '\r' || user.back() == ' ')) {
    user.pop_back();
  }
  if (user.empty()) return not_found(home_ + "/current is empty");
  if (!is_valid_user_id(user))
    return invalid_argument(home_ + "/current: '" + user + "' is not a user id");
  return user;
}

Status ProfileStore::set_current_user(std::string_view user) const {
  if (!is_valid_user_id(user))
    return invalid_argument("'" + std::string(user) + "' is not a user id");
  Status s = ensure_home();
  if (!s.is_ok()) return s;
  return write_file_atomically(home_, home_ + "/current", std::string(user) + "\n");
}

Result<Profile> ProfileStore::update(std::string_view user, bool create_missing,
                                     const std::function<Status(Profile&)>& change) const {
  Status s = ensure_home();
  if (!s.is_ok()) return s;
  HomeLock lock(home_);
  if (!lock.status().is_ok()) return lock.status();

  Profile profile;
  auto loaded = load(user);
  if (loaded) {
    profile = std::move(*loaded);
  } else if (loaded.status().code() == StatusCode::kNotFound && create_missing) {
    profile.user = std::string(user);
  } else {
    return loaded.status();
  }
  nlohmann::json before = profile_to_json(profile);
  s = change(profile);
  if (!s.is_ok()) return s;
  if (loaded && profile_to_json(profile) == before) return profile;  // nothing to write
  s = save(profile);
  if (!s.is_ok()) return s;
  return profile;
}

}  // namespace chat::tools
