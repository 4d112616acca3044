// chatctl admin restore's local logic (chatctl/restore.h): manifest checks,
// the running-stack lock test, moving old data aside. The whole round trip
// through a real stack is tests/integration/backup_test.cpp.
#include "chatctl/restore.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_dir.h"

namespace chat::tools {
namespace {

namespace fs = std::filesystem;
using testing::TestDir;
using json = nlohmann::json;

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

// The smallest backup verify_backup accepts: fake RocksDB copies (a CURRENT
// file each), keys, one media blob named by its SHA-256.
json make_backup(const fs::path& dir) {
  write(dir / "archive" / "CURRENT", "MANIFEST-000001\n");
  write(dir / "api" / "accounts" / "CURRENT", "MANIFEST-000001\n");
  write(dir / "keys" / "issuer.pem", "key");
  // sha256("abc")
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  write(dir / "media" / "blobs" / "ba" / "78" / abc, "abc");
  json m{
      {"format", "chat-backup"},
      {"version", 1},
      {"created", "2026-12-01T03:00:00Z"},
      {"archive", {{"max_id", "0000000000000001"}}},
      {"components",
       {{"archive", {{"path", "archive"}, {"kind", "rocksdb"}, {"files", 1}, {"bytes", 16}}},
        {"accounts", {{"path", "api/accounts"}, {"kind", "rocksdb"}, {"files", 1}, {"bytes", 16}}},
        {"keys", {{"path", "keys"}, {"kind", "files"}, {"files", 1}, {"bytes", 3}}},
        {"media", {{"path", "media/blobs"}, {"kind", "files"}, {"files", 1}, {"bytes", 3}}}}}};
  std::ofstream(dir / "manifest.json") << m.dump();
  return m;
}

TEST(Restore, VerifiesTheManifestAndTheFiles) {
  TestDir t;
  const fs::path b = fs::path(t.path()) / "b";
  fs::create_directories(b);
  auto missing = verify_backup(b.string());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("no manifest.json"), std::string::npos);

  json m = make_backup(b);
  EXPECT_TRUE(verify_backup(b.string()).is_ok());

  m["version"] = 2;
  std::ofstream(b / "manifest.json") << m.dump();
  auto newer = verify_backup(b.string());
  ASSERT_FALSE(newer);
  EXPECT_NE(newer.status().message().find("unsupported backup format version 2"),
            std::string::npos);
  m["version"] = 1;
  std::ofstream(b / "manifest.json") << m.dump();

  write(b / "keys" / "issuer.pem", "other key");
  auto resized = verify_backup(b.string());
  ASSERT_FALSE(resized);
  EXPECT_NE(resized.status().message().find("component keys"), std::string::npos);
  write(b / "keys" / "issuer.pem", "key");

  // Same size, other bytes: the blob's name is its SHA-256.
  const std::string abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  write(b / "media" / "blobs" / "ba" / "78" / abc, "abd");
  auto damaged = verify_backup(b.string());
  ASSERT_FALSE(damaged);
  EXPECT_NE(damaged.status().message().find("damaged"), std::string::npos);

  std::ofstream(b / "manifest.json") << "{not json";
  EXPECT_FALSE(verify_backup(b.string()));
}

TEST(Restore, SeesALockHeldByAnotherProcess) {
  TestDir t;
  const fs::path lock = fs::path(t.path()) / "archive" / "LOCK";
  write(lock, "");
  EXPECT_EQ(stack_holding(t.path()), "");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // What RocksDB's LockFile does: an fcntl write lock on the whole file.
    int fd = ::open(lock.c_str(), O_RDWR);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fd < 0 || ::fcntl(fd, F_SETLK, &fl) != 0) ::_exit(1);
    char c = 'x';
    if (::write(ready[1], &c, 1) != 1) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  const std::string held = stack_holding(t.path());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_NE(held.find("archive/LOCK is locked by pid " + std::to_string(child)), std::string::npos)
      << held;
  EXPECT_EQ(stack_holding(t.path()), "");  // released with the process
}

TEST(Restore, MovesExistingDataAsideOnlyWithForce) {
  TestDir t;
  const fs::path b = fs::path(t.path()) / "b";
  make_backup(b);
  const fs::path data = fs::path(t.path()) / "data";
  write(data / "archive" / "old", "old archive");
  write(data / "logs" / "chat-api.log", "kept");

  RestoreOptions o;
  o.backup_dir = b.string();
  o.data_dir = data.string();
  o.now_ms = 1764558000000;  // 2025-12-01T03:00:00Z
  auto refused = restore_backup(o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.status().code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(fs::exists(data / "archive" / "old"));

  o.force = true;
  auto done = restore_backup(o);
  ASSERT_TRUE(done) << done.status().to_string();
  EXPECT_EQ(done->moved_aside, (data / "pre-restore-20251201T030000Z").string());
  EXPECT_TRUE(fs::exists(data / "pre-restore-20251201T030000Z" / "archive" / "old"));
  EXPECT_TRUE(fs::exists(data / "archive" / "CURRENT"));
  EXPECT_TRUE(fs::exists(data / "api" / "accounts" / "CURRENT"));
  EXPECT_TRUE(fs::exists(data / "keys" / "issuer.pem"));
  EXPECT_TRUE(fs::exists(data / "media" / "tmp"));
  EXPECT_TRUE(fs::exists(data / "logs" / "chat-api.log"));
  EXPECT_EQ(fs::status(data / "api").permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(done->files, 4u);
  // No staging directory left behind.
  for (const auto& e : fs::directory_iterator(data)) {
    EXPECT_NE(e.path().filename().string().rfind(".restore-", 0), 0u) << e.path();
  }
}

// A failure at any step leaves the data dir as it was (the old data in
// place, nothing half-restored, no staging or pre-restore directory).
TEST(Restore, AFailureMidwayPutsTheOldDataBack) {
  TestDir t;
  const fs::path b = fs::path(t.path()) / "b";
  make_backup(b);
  const fs::path data = fs::path(t.path()) / "data";
  write(data / "archive" / "old", "old archive");
  write(data / "api" / "accounts" / "old", "old accounts");
  write(data / "mosquitto" / "mosquitto.db", "sessions");

  for (const std::string step :
       {"copied", "aside:api", "aside:mosquitto", "place:archive", "place:media", "place:keys"}) {
    SCOPED_TRACE(step);
    RestoreOptions o;
    o.backup_dir = b.string();
    o.data_dir = data.string();
    o.force = true;
    o.fault = [&step](const std::string& at) {
      return at == step ? unavailable("injected at " + at) : Status::ok();
    };
    auto failed = restore_backup(o);
    ASSERT_FALSE(failed);
    EXPECT_NE(failed.status().message().find("injected at " + step), std::string::npos);
    EXPECT_NE(failed.status().message().find("is unchanged"), std::string::npos)
        << failed.status().message();
    EXPECT_TRUE(fs::exists(data / "archive" / "old"));
    EXPECT_TRUE(fs::exists(data / "api" / "accounts" / "old"));
    EXPECT_TRUE(fs::exists(data / "mosquitto" / "mosquitto.db"));
    EXPECT_FALSE(fs::exists(data / "keys"));
    EXPECT_FALSE(fs::exists(data / "media"));
    for (const auto& e : fs::directory_iterator(data)) {
      const std::string name = e.path().filename().string();
      EXPECT_TRUE(name == "archive" || name == "api" || name == "mosquitto") << name;
    }
  }
}

// A manifest of the wrong shape, or a backup holding a symlink: a clear
// refusal, never a crash, never a file followed out of the backup.
TEST(Restore, RefusesOddManifestsAndSymlinks) {
  TestDir t;
  const fs::path b = fs::path(t.path()) / "b";
  json m = make_backup(b);
  auto refused_with = [&](const json& manifest, const std::string& why) {
    std::ofstream(b / "manifest.json", std::ios::trunc) << manifest.dump();
    auto r = verify_backup(b.string());
    ASSERT_FALSE(r) << manifest.dump();
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  };
  json bad = m;
  bad["format"] = 1;
  refused_with(bad, "not a chat backup manifest");
  bad = m;
  bad["components"]["archive"]["kind"] = 5;
  bad["components"]["archive"]["files"] = "one";
  refused_with(bad, "component archive");
  bad = m;
  bad["components"]["keys"]["path"] = "../b/keys";
  refused_with(bad, "bad path");
  bad = m;
  bad["components"] = json::array();
  refused_with(bad, "no components");

  // A symlink (here to a file outside the backup) where a key should be.
  write(fs::path(t.path()) / "secret", "key");  // same size as the key it replaces
  fs::remove(b / "keys" / "issuer.pem");
  fs::create_symlink(fs::path(t.path()) / "secret", b / "keys" / "issuer.pem");
  refused_with(m, "not a regular file or directory");
}

}  // namespace
}  // namespace chat::tools
