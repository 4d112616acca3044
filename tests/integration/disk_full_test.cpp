// Issue 7, fault 2: the disk under the broker's archive fills up while
// devices send (CONTRACT §3 "Delivery guarantee", docs/operations.md
// "Disk full"). The archive lives on a small tmpfs mounted by the test; a
// filler file takes the rest of it: all but less than the free-space reserve
// (CHAT_ARCHIVE_MIN_FREE_MB, the usual case), or every block with the reserve
// off (RocksDB's writes themselves fail). Required: nothing unarchived is
// acknowledged (MQTT 5 and 3.1.1 senders are disconnected without PUBACK),
// the broker stays up, history and sync stay exact, /healthz and /metrics
// say what is going on, and once space is freed everything resumes without a
// restart and the retried messages land exactly once.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "stack.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMetricsToken = "disk-full-metrics-token";
constexpr const char* kArchiveFsSize = "size=24m,mode=0755";

// Why a tmpfs cannot be mounted here ("" when it can): probes once.
std::string mount_unavailable() {
  if (::geteuid() != 0) return "not root: mounting a tmpfs needs CAP_SYS_ADMIN";
  char tmpl[] = "/tmp/chat-mount-probe-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
  std::string why;
  if (::mount("tmpfs", tmpl, "tmpfs", 0, "size=1m") != 0) {
    why = std::string("mount -t tmpfs refused: ") + std::strerror(errno);
  } else {
    ::umount2(tmpl, MNT_DETACH);
  }
  ::rmdir(tmpl);
  return why;
}

// A tmpfs at <data_dir>/archive for the life of the test (declared before
// the Stack, so it is unmounted after the processes stopped).
struct ArchiveDisk {
  std::string path;
  std::string error;
  ~ArchiveDisk() {
    if (path.empty()) return;
    // Keeping the test data: RocksDB's LOG tells what happened on the disk.
    if (std::getenv("CHAT_KEEP_TEST_DATA")) {
      std::error_code ignored;
      fs::copy_file(path + "/LOG", path + "/../logs/archive-rocksdb.LOG", ignored);
    }
    ::umount2(path.c_str(), MNT_DETACH);
  }
  void mount_at(const std::string& data_dir) {
    path = data_dir + "/archive";
    fs::create_directories(path);
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, kArchiveFsSize) != 0) {
      error = std::strerror(errno);
      path.clear();
    }
  }
  // Writes a file until the file system has `leave` bytes free (rounded to
  // 64 KiB), or no block left with 0.
  void fill(uint64_t leave = 0) {
    const std::string filler = path + "/zz-disk-filler";
    int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    std::string block(1 << 16, 'f');
    if (leave != 0) {
      struct statvfs st {};
      ASSERT_EQ(::statvfs(path.c_str(), &st), 0) << std::strerror(errno);
      const uint64_t free_bytes = uint64_t{st.f_bavail} * st.f_frsize;
      ASSERT_GT(free_bytes, leave);
      for (uint64_t left = free_bytes - leave; left >= block.size(); left -= block.size()) {
        ASSERT_EQ(::write(fd, block.data(), block.size()), static_cast<ssize_t>(block.size()))
            << std::strerror(errno);
      }
      ::close(fd);
      return;
    }
    while (true) {
      ssize_t n = ::write(fd, block.data(), block.size());
      if (n > 0) continue;
      ASSERT_TRUE(n < 0 && errno == ENOSPC) << std::strerror(errno);
      break;
    }
    // The last partial block too.
    while (::write(fd, block.data(), 1) == 1) {
    }
    ::close(fd);
  }
  void free_space() { ::unlink((path + "/zz-disk-filler").c_str()); }
};

// The cids of a list of envelopes, counted.
std::map<std::string, int> cid_counts(const std::vector<json>& envelopes) {
  std::map<std::string, int> out;
  for (const auto& e : envelopes) ++out[e.value("cid", "")];
  return out;
}

std::string body_of(size_t n) { return std::string(n, 'x'); }

// With `reserve`, the archive keeps CHAT_ARCHIVE_MIN_FREE_MB=8 free and the
// filler leaves 3 MiB: appends are refused before RocksDB sees them. Without,
// the filler takes every block and RocksDB's own writes fail.
void disk_full_scenario(bool reserve) {
  ArchiveDisk disk;
  StackOptions options;
  options.env = {{"CHAT_METRICS_TOKEN", kMetricsToken},
                 {"CHAT_ARCHIVE_MIN_FREE_MB", reserve ? "8" : "0"}};
  options.prepare = [&disk](const std::string& data_dir) { disk.mount_at(data_dir); };
  Stack s(options);
  ASSERT_TRUE(disk.error.empty()) << "mount at <data_dir>/archive: " << disk.error;
  const pid_t broker = s.broker_pid();

  const std::string alice = s.register_user("alice");
  const std::string bob = s.register_user("bob");
  const std::string carol = s.register_user("carol");
  MqttClient bob_phone(s.mqtt_port(), device("bob", "phone", bob));
  ASSERT_EQ(bob_phone.connect(), 0);
  ASSERT_EQ(bob_phone.subscribe("u/bob/#"), 0x01);

  // Before: ordinary traffic.
  std::vector<std::string> acked;  // cids acknowledged to their senders
  MqttClient a(s.mqtt_port(), device("alice", "phone", alice));
  ASSERT_EQ(a.connect(), 0);
  for (int i = 0; i < 3; ++i) {
    std::string cid = "before-" + std::to_string(i);
    ASSERT_TRUE(is_success(a.publish("dm/bob", text(cid, "hello"))));
    acked.push_back(cid);
  }

  // The disk fills up; alice (MQTT 5) streams 32 KiB messages until one is
  // not acknowledged. Without the reserve, the WAL's preallocated block and
  // the memtable take a few MiB first, then the write (or the flush behind
  // it) fails. With it, the test first waits for the broker to notice (its
  // once-a-second check): the free-space check is cached for 100 ms, in
  // which a sender at full speed could write ~7 MiB, more than this tiny
  // file system has (the production reserve is 256 MiB).
  disk.fill(reserve ? 3 << 20 : 0);
  if (reserve) {
    ASSERT_TRUE(eventually([&] { return s.get("/healthz", "").first == 503; }, 5s)) << s.logs();
  }
  std::string refused_cid;
  for (int i = 0; i < 2000 && refused_cid.empty(); ++i) {
    std::string cid = "stream-" + std::to_string(i);
    int rc = a.publish("dm/bob", text(cid, body_of(32 << 10)));
    if (is_success(rc)) {
      acked.push_back(cid);
    } else {
      // No PUBACK at all: the broker closed the connection (not a refusal code).
      EXPECT_EQ(rc, -1) << "a reason code instead of a silent close: " << rc;
      refused_cid = cid;
    }
  }
  ASSERT_FALSE(refused_cid.empty()) << "the archive never failed on a full disk\n" << s.logs();
  std::cout << "acknowledged before the first refusal: " << acked.size() - 3
            << " messages of 32 KiB after the disk filled\n";
  EXPECT_TRUE(a.wait_disconnected(5s));

  // Retrying at once fails the same way (the archive refuses without trying).
  MqttClient a2(s.mqtt_port(), device("alice", "phone", alice));
  ASSERT_EQ(a2.connect(), 0);
  EXPECT_EQ(a2.publish("dm/bob", text(refused_cid, body_of(32 << 10))), -1);
  EXPECT_TRUE(a2.wait_disconnected(5s));

  // An MQTT 3.1.1 sender: no PUBACK either (3.1.1 has no refusal code; a
  // PUBACK would read as "archived").
  MqttClient c(s.mqtt_port(), device("carol", "laptop", carol, /*v5=*/false));
  ASSERT_EQ(c.connect(), 0);
  EXPECT_EQ(c.publish("dm/bob", text("carol-1", "hi")), -1);
  EXPECT_TRUE(c.wait_disconnected(5s));

  // The broker is up and the same process; health and metrics say why.
  EXPECT_TRUE(port_open(s.mqtt_port()));
  EXPECT_EQ(s.broker_pid(), broker);
  json health;
  EXPECT_TRUE(eventually(
      [&] {
        auto [status, body] = s.get("/healthz", "");
        health = body;
        return status == 503 && body.value("archive", "") == "read_only";
      },
      8s))
      << health.dump() << "\n"
      << s.logs();
  EXPECT_EQ(health.value("error", ""), "unavailable");
  EXPECT_TRUE(eventually([&] { return s.metric("chat_broker_archive_writable") == 0; }, 8s));
  EXPECT_NE(s.log_tail("mosquitto", 1 << 20)
                .find(reserve ? "archive.unwritable: reason=low_space"
                              : "archive.unwritable: reason=write_error"),
            std::string::npos);

  // History and sync during the outage: exactly what was acknowledged (the
  // archive is consistent, only closed for writes), never a refused message.
  {
    auto [status, body] = s.get("/v1/conversations/dm:alice:bob/messages?limit=500", bob);
    ASSERT_EQ(status, 200) << body.dump();
    std::vector<json> page(body["messages"].begin(), body["messages"].end());
    auto counts = cid_counts(page);
    EXPECT_EQ(counts.size(), acked.size());
    for (const auto& cid : acked) EXPECT_EQ(counts[cid], 1) << cid;
    EXPECT_EQ(counts.count(refused_cid), 0u);
    EXPECT_EQ(counts.count("carol-1"), 0u);
  }

  // Space again: the archive recovers on its own (no restart, no traffic).
  disk.free_space();
  // Without the reserve a stuck Resume is given 5 s before the reopen.
  EXPECT_TRUE(eventually([&] { return s.get("/healthz", "").first == 200; }, 20s)) << s.logs();
  EXPECT_EQ(s.broker_pid(), broker);
  // A Resume (or a reopen) only after a failed write; the reserve needs none.
  if (!reserve) EXPECT_GE(s.metric("chat_broker_archive_recoveries_total"), 1);
  EXPECT_EQ(s.metric("chat_broker_archive_writable"), 1);
  // (Published with the change of state; failures alone wait for the 5 s snapshot.)
  EXPECT_GE(s.metric("chat_broker_archive_append_failures_total"), 3);
  {
    const std::string log = s.log_tail("mosquitto", 1 << 20);
    const size_t at = log.find("archive.recovered: ");
    ASSERT_NE(at, std::string::npos) << log;
    // reopens=1 when RocksDB's Resume() hung and the archive was reopened.
    std::cout << log.substr(at, log.find('\n', at) - at) << "\n";
  }

  // The senders retry what was not acknowledged (twice, as a client that
  // lost the first PUBACK would), and go on.
  MqttClient a3(s.mqtt_port(), device("alice", "phone", alice));
  ASSERT_EQ(a3.connect(), 0);
  for (int attempt = 0; attempt < 2; ++attempt) {
    EXPECT_TRUE(is_success(a3.publish("dm/bob", text(refused_cid, body_of(32 << 10)))));
  }
  acked.push_back(refused_cid);
  EXPECT_TRUE(is_success(a3.publish("dm/bob", text("after-0", "back"))));
  acked.push_back("after-0");
  MqttClient c2(s.mqtt_port(), device("carol", "laptop", carol, /*v5=*/false));
  ASSERT_EQ(c2.connect(), 0);
  EXPECT_EQ(c2.publish("dm/bob", text("carol-1", "hi")), 0);
  EXPECT_EQ(c2.publish("dm/bob", text("carol-1", "hi")), 0);

  // Everything acknowledged, exactly once, in bob's sync and live.
  auto all = sync_all(s, bob);
  auto counts = cid_counts(all);
  for (const auto& cid : acked) EXPECT_EQ(counts[cid], 1) << cid;
  EXPECT_EQ(counts["carol-1"], 1);
  EXPECT_EQ(all.size(), acked.size() + 1);
  EXPECT_TRUE(bob_phone.wait_for(
      [&](const std::vector<Received>& msgs) {
        std::set<std::string> cids;
        for (const auto& m : on_topic(msgs, "u/bob/msg")) cids.insert(m.body().value("cid", ""));
        return cids.count(refused_cid) && cids.count("after-0") && cids.count("carol-1");
      },
      10s));
  EXPECT_EQ(s.broker_pid(), broker);
}

TEST(DiskFull, UnarchivedMessagesAreNeverAcknowledgedAndEverythingResumes) {
  if (std::string why = mount_unavailable(); !why.empty()) GTEST_SKIP() << why;
  disk_full_scenario(/*reserve=*/true);
}

TEST(DiskFull, WithoutReserveFailedWritesRecover) {
  if (std::string why = mount_unavailable(); !why.empty()) GTEST_SKIP() << why;
  disk_full_scenario(/*reserve=*/false);
}

}  // namespace
}  // namespace chat::testing
