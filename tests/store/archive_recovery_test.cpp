// The archive writer after a failed write (disk full): it refuses appends
// while unwritable, resumes RocksDB at most every resume_interval_ms, loses
// nothing that was acknowledged, and a retried message lands exactly once.
// Faults come from a RocksDB FileSystem wrapper that fails every write with
// NoSpace while "full"; tests/integration/disk_full_test.cpp does the same
// with a real full tmpfs under the broker.
#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "chat/common/ids.h"
#include "chat/store/archive.h"
#include "temp_dir.h"

namespace chat::store {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// Every write to a file fails with NoSpace while `full` is set, like a file
// system without a free block (creating a file still works there, as on a
// full ext4 or tmpfs with inodes left).
class FullableFs final : public rocksdb::FileSystemWrapper {
 public:
  explicit FullableFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : rocksdb::FileSystemWrapper(base) {}
  const char* Name() const override { return "chat.FullableFs"; }

  std::atomic<bool> full{false};
  std::atomic<int> refused{0};  // writes refused so far
  // The free space GetFreeSpace reports (the archive's reserve check); -1:
  // the real file system's.
  std::atomic<int64_t> free_bytes{-1};
  // While set, creating a table file (a flush's output) blocks: a flush that
  // never finishes, as RocksDB 7.8's stuck Resume() waits for one.
  std::atomic<bool> hang_flushes{false};
  std::atomic<int> hung{0};  // flushes that blocked

  rocksdb::IOStatus GetFreeSpace(const std::string& path, const rocksdb::IOOptions& options,
                                 uint64_t* diskfree, rocksdb::IODebugContext* dbg) override {
    const int64_t injected = free_bytes;
    if (injected < 0) return target()->GetFreeSpace(path, options, diskfree, dbg);
    *diskfree = static_cast<uint64_t>(injected);
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* out,
                                    rocksdb::IODebugContext* dbg) override {
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".sst") == 0 && hang_flushes) {
      ++hung;
      while (hang_flushes) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, &file, dbg);
    if (s.ok()) *out = std::make_unique<File>(std::move(file), this, name);
    return s;
  }

 private:
  rocksdb::IOStatus no_space(const std::string& name) {
    ++refused;
    return rocksdb::IOStatus::NoSpace("injected: no space left on device", name);
  }

  class File final : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> file, FullableFs* fs, std::string name)
        : rocksdb::FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return fs_->no_space(name_);
      return target()->Append(data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return fs_->no_space(name_);
      return target()->Append(data, options, info, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override {
      if (fs_->full) return fs_->no_space(name_);
      return target()->PositionedAppend(data, offset, options, dbg);
    }

   private:
    FullableFs* fs_;
    std::string name_;
  };
};

std::string id_of(uint64_t n) { return IdGenerator::format(0x0190000000000000ULL + n); }

class ArchiveRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    fs_ = std::make_shared<FullableFs>(rocksdb::FileSystem::Default());
    env_ = rocksdb::NewCompositeEnv(fs_);
    open();
  }

  void open(uint64_t min_free_bytes = 0) {
    archive_.reset();
    ArchiveOptions options;
    options.path = dir_.sub("archive");
    options.env = env_.get();
    options.resume_interval_ms = 50;
    options.resume_timeout_ms = 300;
    options.min_free_bytes = min_free_bytes;
    auto archive = Archive::open(options);
    ASSERT_TRUE(archive.is_ok()) << archive.status().to_string();
    archive_ = std::move(archive).value();
  }

  // Appends a DM from alice's phone with the next id; `cid` is its client id.
  Status send(const std::string& cid, size_t body = 100) {
    AppendRequest request;
    request.id = id_of(++counter_);
    request.conv = "dm:alice:bob";
    request.from = "alice";
    request.client_id = "alice:phone";
    request.cid = cid;
    request.envelope = R"({"id":")" + request.id + R"(","from":"alice","cid":")" + cid +
                       R"(","body":")" + std::string(body, 'x') + R"("})";
    request.participants = {"alice", "bob"};
    return archive_->append(request);
  }

  // Sends until the archive takes it (the resume runs on a thread of its
  // own: the first append after the interval only starts it).
  Status send_until_ok(const std::string& cid, size_t body = 100) {
    Status s;
    for (int i = 0; i < 500; ++i) {
      s = send(cid, body);
      if (s.is_ok()) return s;
      std::this_thread::sleep_for(10ms);
    }
    return s;
  }

  // The cids of every message in the conversation, oldest first.
  std::vector<std::string> cids(ArchiveView& view) {
    PageQuery query;
    query.limit = 10000;
    auto page = view.conversation_page("dm:alice:bob", query);
    EXPECT_TRUE(page.is_ok()) << page.status().to_string();
    std::vector<std::string> out;
    if (!page.is_ok()) return out;
    for (const auto& e : page->envelopes) {
      const size_t at = e.find(R"("cid":")") + 7;
      out.push_back(e.substr(at, e.find('"', at) - at));
    }
    return out;
  }

  TempDir dir_;
  std::shared_ptr<FullableFs> fs_;
  std::unique_ptr<rocksdb::Env> env_;
  std::unique_ptr<Archive> archive_;
  uint64_t counter_ = 0;
  std::atomic<std::shared_ptr<std::string>> archive_health_;  // last_error, for a helper thread
};

TEST_F(ArchiveRecoveryTest, FailedAppendMakesItUnwritableUntilResumed) {
  ASSERT_TRUE(send("c1").is_ok());
  EXPECT_TRUE(archive_->health().writable);

  fs_->full = true;
  Status failed = send("c2");
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.to_string();
  ArchiveHealth h = archive_->health();
  EXPECT_FALSE(h.writable);
  EXPECT_EQ(h.write_failures, 1u);
  EXPECT_NE(h.last_error.find("no space"), std::string::npos) << h.last_error;

  // Inside the interval: refused without touching RocksDB.
  const int refused = fs_->refused;
  Status again = send("c2");
  EXPECT_EQ(again.code(), StatusCode::kUnavailable);
  EXPECT_NE(again.message().find("next recovery attempt"), std::string::npos) << again.message();
  EXPECT_EQ(fs_->refused, refused);
  EXPECT_EQ(archive_->health().write_failures, 2u);

  // Still full after the interval: the resume (started by this append, on
  // its own thread) fails and it stays unwritable.
  std::this_thread::sleep_for(60ms);
  Status starting = send("c2");
  EXPECT_EQ(starting.code(), StatusCode::kUnavailable);
  EXPECT_NE(starting.message().find("recovery started"), std::string::npos) << starting.message();
  bool failed_resume = false;
  for (int i = 0; i < 500 && !failed_resume; ++i) {
    std::this_thread::sleep_for(10ms);
    failed_resume = send("c2").message().find("recovery failed") != std::string::npos;
  }
  EXPECT_TRUE(failed_resume);
  EXPECT_FALSE(archive_->health().writable);
  EXPECT_EQ(archive_->health().recoveries, 0u);

  // Space again: an append after the interval resumes, a later one lands.
  fs_->full = false;
  std::this_thread::sleep_for(60ms);
  Status retried = send_until_ok("c2");
  ASSERT_TRUE(retried.is_ok()) << retried.to_string();
  h = archive_->health();
  EXPECT_TRUE(h.writable);
  EXPECT_EQ(h.recoveries, 1u);
  EXPECT_TRUE(h.last_error.empty());
  ASSERT_TRUE(send("c3").is_ok());

  // Exactly what was acknowledged, once each; the same after a restart.
  EXPECT_EQ(cids(*archive_), (std::vector<std::string>{"c1", "c2", "c3"}));
  auto dup = archive_->find_duplicate("alice:phone", "c2");
  ASSERT_TRUE(dup.is_ok());
  EXPECT_TRUE(dup->has_value());
  open();
  EXPECT_EQ(cids(*archive_), (std::vector<std::string>{"c1", "c2", "c3"}));
}

TEST_F(ArchiveRecoveryTest, TryRecoverResumesWithoutTraffic) {
  ASSERT_TRUE(send("c1").is_ok());
  fs_->full = true;
  ASSERT_FALSE(send("c2").is_ok());
  EXPECT_EQ(archive_->try_recover().code(), StatusCode::kUnavailable);  // inside the interval
  fs_->full = false;
  std::this_thread::sleep_for(60ms);
  Status recovered = archive_->try_recover();
  for (int i = 0; i < 500 && !recovered.is_ok(); ++i) {
    std::this_thread::sleep_for(10ms);
    recovered = archive_->try_recover();
  }
  ASSERT_TRUE(recovered.is_ok()) << recovered.to_string();
  EXPECT_TRUE(archive_->health().writable);
  EXPECT_TRUE(archive_->try_recover().is_ok());  // writable: nothing to do
  EXPECT_EQ(archive_->health().recoveries, 1u);
  ASSERT_TRUE(send("c2").is_ok());
  EXPECT_EQ(cids(*archive_), (std::vector<std::string>{"c1", "c2"}));
}

// Memtables fill while the disk is full (large messages): the flush fails in
// the background as well, and the resume still brings everything back.
TEST_F(ArchiveRecoveryTest, RecoversAfterFailedFlushes) {
  std::vector<std::string> acked;
  for (int i = 0; i < 20; ++i) {
    std::string cid = "a" + std::to_string(i);
    ASSERT_TRUE(send(cid, 60000).is_ok());
    acked.push_back(cid);
  }
  fs_->full = true;
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    if (!send("b" + std::to_string(i), 60000).is_ok()) ++refused;
  }
  EXPECT_EQ(refused, 200);
  fs_->full = false;
  std::this_thread::sleep_for(60ms);
  for (int i = 0; i < 200; ++i) {
    std::string cid = "b" + std::to_string(i);
    Status s = send_until_ok(cid, 60000);
    ASSERT_TRUE(s.is_ok()) << i << ": " << s.to_string();
    acked.push_back(cid);
  }
  EXPECT_EQ(cids(*archive_), acked);

  // A reader opened now, and the writer after a restart, agree.
  auto reader = ArchiveReader::open(dir_.sub("archive"), dir_.sub("secondary"));
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  ASSERT_TRUE((*reader)->catch_up().is_ok());
  EXPECT_EQ(cids(**reader), acked);
  reader->reset();
  open();
  EXPECT_EQ(cids(*archive_), acked);
}

// A reader that followed the primary before the failure keeps up across it.
TEST_F(ArchiveRecoveryTest, ReaderFollowsAcrossFailureAndResume) {
  ASSERT_TRUE(send("c1").is_ok());
  auto reader = ArchiveReader::open(dir_.sub("archive"), dir_.sub("secondary"));
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  ASSERT_TRUE((*reader)->catch_up().is_ok());
  EXPECT_EQ(cids(**reader), (std::vector<std::string>{"c1"}));

  fs_->full = true;
  ASSERT_FALSE(send("c2").is_ok());
  Status during = (*reader)->catch_up();
  // The failed write is not visible, whatever the catch-up answers.
  if (during.is_ok()) EXPECT_EQ(cids(**reader), (std::vector<std::string>{"c1"}));

  fs_->full = false;
  std::this_thread::sleep_for(60ms);
  ASSERT_TRUE(send_until_ok("c2").is_ok());
  ASSERT_TRUE(send("c3").is_ok());
  ASSERT_TRUE((*reader)->catch_up().is_ok());
  EXPECT_EQ(cids(**reader), (std::vector<std::string>{"c1", "c2", "c3"}));
}

// The free-space reserve: below it appends are refused before RocksDB sees
// them (nothing fails inside RocksDB, so nothing needs a Resume), and they
// are taken again once the space is back above the reserve plus an eighth.
TEST_F(ArchiveRecoveryTest, ReserveRefusesAppendsWithoutTouchingRocksDb) {
  constexpr uint64_t kMiB = 1 << 20;
  fs_->free_bytes = 100 * kMiB;
  open(/*min_free_bytes=*/64 * kMiB);
  ASSERT_TRUE(send("c1").is_ok());
  EXPECT_TRUE(archive_->health().writable);
  EXPECT_EQ(archive_->health().free_bytes, 100 * kMiB);

  fs_->free_bytes = 63 * kMiB;
  std::this_thread::sleep_for(110ms);  // the check is cached for 100 ms
  Status refused = send("c2");
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable) << refused.to_string();
  EXPECT_NE(refused.message().find("reserve"), std::string::npos) << refused.message();
  ArchiveHealth h = archive_->health();
  EXPECT_FALSE(h.writable);
  EXPECT_TRUE(h.low_space);
  EXPECT_TRUE(h.last_error.empty()) << h.last_error;  // nothing failed
  EXPECT_EQ(h.write_failures, 1u);

  // Back above the reserve but not above the hysteresis: still refused.
  fs_->free_bytes = 66 * kMiB;
  std::this_thread::sleep_for(110ms);
  EXPECT_EQ(archive_->try_recover().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(archive_->health().low_space);

  // Room again: writable without a Resume (recoveries stays 0).
  fs_->free_bytes = 73 * kMiB;
  std::this_thread::sleep_for(110ms);
  ASSERT_TRUE(archive_->try_recover().is_ok());
  h = archive_->health();
  EXPECT_TRUE(h.writable);
  EXPECT_FALSE(h.low_space);
  EXPECT_EQ(h.recoveries, 0u);
  ASSERT_TRUE(send("c2").is_ok());
  EXPECT_EQ(cids(*archive_), (std::vector<std::string>{"c1", "c2"}));
  EXPECT_EQ(fs_->refused, 0);  // RocksDB never hit a full disk
}

// A Resume() that never finishes (its flush hangs, as RocksDB 7.8's waits for
// a flush it never scheduled): after resume_timeout_ms the writer cancels it,
// closes and reopens the database, and nothing acknowledged is lost.
TEST_F(ArchiveRecoveryTest, StuckResumeIsReplacedByReopen) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(send("c" + std::to_string(i), 2000).is_ok());
  fs_->full = true;
  ASSERT_FALSE(send("x").is_ok());
  fs_->hang_flushes = true;
  fs_->full = false;

  // Lets the hung flush go once the writer gave up on the Resume (closing the
  // database waits for the background flush).
  std::thread releaser([this] {
    for (int i = 0; i < 1000; ++i) {
      if (archive_health_.load() != nullptr &&
          archive_health_.load()->find("reopening") != std::string::npos)
        break;
      std::this_thread::sleep_for(5ms);
    }
    fs_->hang_flushes = false;
  });
  std::this_thread::sleep_for(60ms);
  Status recovered = archive_->try_recover();
  for (int i = 0; i < 500 && !recovered.is_ok(); ++i) {
    std::this_thread::sleep_for(10ms);
    auto h = std::make_shared<std::string>(archive_->health().last_error);
    archive_health_.store(h);
    recovered = archive_->try_recover();
  }
  fs_->hang_flushes = false;
  releaser.join();
  ASSERT_TRUE(recovered.is_ok()) << recovered.to_string();
  EXPECT_GE(fs_->hung, 1);
  ArchiveHealth h = archive_->health();
  EXPECT_TRUE(h.writable);
  EXPECT_EQ(h.reopens, 1u);
  EXPECT_EQ(h.recoveries, 1u);
  EXPECT_FALSE(h.recovery_stuck);
  ASSERT_TRUE(send("x", 2000).is_ok());
  std::vector<std::string> expected{"c0", "c1", "c2", "c3", "c4", "x"};
  EXPECT_EQ(cids(*archive_), expected);
  open();
  EXPECT_EQ(cids(*archive_), expected);
}

}  // namespace
}  // namespace chat::store
