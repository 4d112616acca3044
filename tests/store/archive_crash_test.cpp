// ArchiveReader across primary crashes: the broker (the primary) runs in a
// child process (archive_writer_helper) and dies by SIGKILL holding the
// archive open; a new child then opens the directory again and recovers the
// WAL. Every write the dead primary acknowledged must become visible to the
// reader's catch_up(), also when the reader had not caught up before the crash.
//
// Synchronisation is by the child's answers on its stdout ("ready", "done")
// and waitpid, never by sleeping.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "chat/common/ids.h"
#include "chat/store/archive.h"
#include "temp_dir.h"

extern char** environ;

namespace chat::store {
namespace {

using testing::TempDir;

constexpr char kConv[] = "dm:alice:bob";

// The helper's ids (archive_writer_helper.cpp).
std::string id_of(uint64_t n) { return IdGenerator::format(0x0190000000000000ULL + n); }

std::vector<std::string> ids_from(uint64_t first, uint64_t last) {
  std::vector<std::string> ids;
  for (uint64_t n = first; n <= last; ++n) ids.push_back(id_of(n));
  return ids;
}

// The id of an envelope written by the helper: {"id":"<16 hex>",...
std::string id_in(const std::string& envelope) { return envelope.substr(7, 16); }

// A primary in a child process. Commands and answers are lines (see the
// helper's header comment).
class Primary {
 public:
  explicit Primary(const std::string& path) {
    int to_child[2];
    int from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0) return;
    if (pipe2(from_child, O_CLOEXEC) != 0) {
      close(to_child[0]);
      close(to_child[1]);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
    std::string program = CHAT_ARCHIVE_WRITER_HELPER;
    std::vector<char*> argv{program.data(), const_cast<char*>(path.c_str()), nullptr};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    if (rc != 0) {
      close(to_child[1]);
      close(from_child[0]);
      first_line_ = "error spawn: " + std::to_string(rc);
      return;
    }
    pid_ = pid;
    to_child_ = to_child[1];
    from_child_ = fdopen(from_child[0], "r");
    first_line_ = read_line();
  }

  ~Primary() {
    if (pid_ > 0) kill();
    if (to_child_ >= 0) close(to_child_);
    if (from_child_ != nullptr) fclose(from_child_);
  }

  Primary(const Primary&) = delete;
  Primary& operator=(const Primary&) = delete;

  // True once the child opened the archive (and recovered it).
  bool ready() const { return first_line_ == "ready"; }
  const std::string& first_line() const { return first_line_; }

  // Appends ids first..first+count-1; returns the child's answer ("done").
  std::string append(uint64_t first, uint64_t count) {
    return command("append " + std::to_string(first) + " " + std::to_string(count));
  }

  // alice blocks (true) or unblocks bob; the child's answer ("done").
  std::string block(bool blocked) { return command(blocked ? "block 1" : "block 0"); }

  // SIGKILL, the archive still open; true when the child died of it.
  bool kill() {
    if (pid_ <= 0) return false;
    write_line("kill");
    int status = 0;
    pid_t waited;
    do {
      waited = waitpid(pid_, &status, 0);
    } while (waited < 0 && errno == EINTR);
    pid_ = -1;
    return waited > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  }

 private:
  std::string command(const std::string& line) {
    if (!write_line(line)) return "error write";
    return read_line();
  }

  bool write_line(std::string line) {
    if (to_child_ < 0) return false;
    line.push_back('\n');
    size_t written = 0;
    while (written < line.size()) {
      ssize_t n = write(to_child_, line.data() + written, line.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;  // the child is gone (SIGPIPE is ignored, see main)
      written += static_cast<size_t>(n);
    }
    return true;
  }

  std::string read_line() {
    if (from_child_ == nullptr) return "error no pipe";
    std::string line;
    for (;;) {
      int c = fgetc(from_child_);
      if (c == EOF) return line.empty() ? "error eof" : line;
      if (c == '\n') return line;
      line.push_back(static_cast<char>(c));
    }
  }

  pid_t pid_ = -1;
  int to_child_ = -1;
  FILE* from_child_ = nullptr;
  std::string first_line_;
};

class ReaderCrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A write to a child that already died must fail, not kill the test.
    signal(SIGPIPE, SIG_IGN);
    ASSERT_TRUE(dir_.ok());
  }

  std::string path() const { return dir_.sub("archive"); }

  std::unique_ptr<ArchiveReader> open_reader(const std::string& name = "secondary") {
    auto opened = ArchiveReader::open(path(), dir_.sub(name));
    EXPECT_TRUE(opened.is_ok()) << opened.status().to_string();
    if (!opened.is_ok()) return nullptr;
    return std::move(opened).value();
  }

  // Every id of the conversation, oldest first, and alice's sync, which must
  // agree.
  static std::vector<std::string> visible(const ArchiveView& view) {
    PageQuery query;
    query.limit = 100000;
    auto page = view.conversation_page(kConv, query);
    EXPECT_TRUE(page.is_ok()) << page.status().to_string();
    std::vector<std::string> ids;
    if (!page.is_ok()) return ids;
    for (const auto& e : page->envelopes) ids.push_back(id_in(e));
    auto synced = view.sync("alice", "", 100000);
    EXPECT_TRUE(synced.is_ok()) << synced.status().to_string();
    if (synced.is_ok()) {
      std::vector<std::string> synced_ids;
      for (const auto& e : synced->envelopes) synced_ids.push_back(id_in(e));
      EXPECT_EQ(synced_ids, ids);
    }
    return ids;
  }

  // catch_up, then everything from id 1 to `last` must be visible: the
  // messages (new keys) and bob's conversation summary, which every append
  // rewrites (an older value of it must not shadow the newest).
  void expect_caught_up(ArchiveReader& reader, uint64_t last) {
    Status s = reader.catch_up();
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(visible(reader), ids_from(1, last));
    auto convs = reader.conversations("bob", 10);
    ASSERT_TRUE(convs.is_ok()) << convs.status().to_string();
    ASSERT_EQ(convs->size(), 1u);
    EXPECT_EQ((*convs)[0].last_id, id_of(last));
    EXPECT_EQ((*convs)[0].unread, static_cast<int64_t>(last));
  }

  TempDir dir_;
};

// One crash and recovery after another, the reader catching up in between.
TEST_F(ReaderCrashTest, ReaderFollowsPrimaryRestarts) {
  {
    Primary primary(path());
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    ASSERT_EQ(primary.append(1, 50), "done");
    ASSERT_TRUE(primary.kill());
  }
  auto reader = open_reader();
  ASSERT_NE(reader, nullptr);
  expect_caught_up(*reader, 50);

  {
    // A new primary recovers, writes, dies; the reader follows.
    Primary primary(path());
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    ASSERT_EQ(primary.append(51, 50), "done");
    expect_caught_up(*reader, 100);
    ASSERT_EQ(primary.append(101, 10), "done");
    ASSERT_TRUE(primary.kill());
  }
  expect_caught_up(*reader, 110);
}

// The reported bug: the primary acknowledges writes and dies before the
// reader catches up; a new primary recovers them from the WAL and writes
// nothing. The reader must see them (a fresh secondary did; the old one never
// did, however often it caught up).
TEST_F(ReaderCrashTest, ReaderSeesWritesRecoveredByTheNextPrimary) {
  {
    Primary primary(path());
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    ASSERT_EQ(primary.append(1, 20), "done");
    ASSERT_TRUE(primary.kill());
  }
  auto reader = open_reader();
  ASSERT_NE(reader, nullptr);
  expect_caught_up(*reader, 20);

  {
    Primary primary(path());
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    ASSERT_EQ(primary.append(21, 30), "done");
    ASSERT_TRUE(primary.kill());  // the reader has not caught up
  }
  {
    Primary primary(path());  // recovers 21..50, writes nothing
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    expect_caught_up(*reader, 50);
    // And the reader follows the new primary's own writes.
    ASSERT_EQ(primary.append(51, 5), "done");
    expect_caught_up(*reader, 55);
    ASSERT_TRUE(primary.kill());
  }
  // No primary running at all.
  expect_caught_up(*reader, 55);
  auto fresh = open_reader("fresh-secondary");
  ASSERT_NE(fresh, nullptr);
  EXPECT_EQ(visible(*fresh), ids_from(1, 55));
}

// The reader had consumed part of the old primary's WAL when it crashed; the
// rest of that WAL and the new primary's writes must both show up.
TEST_F(ReaderCrashTest, ReaderFollowsRestartAfterReadingPartOfTheWal) {
  Primary first(path());
  ASSERT_TRUE(first.ready()) << first.first_line();
  ASSERT_EQ(first.append(1, 20), "done");
  auto reader = open_reader();
  ASSERT_NE(reader, nullptr);
  ASSERT_EQ(first.append(21, 20), "done");
  expect_caught_up(*reader, 40);  // 21..40 read from the live WAL
  ASSERT_EQ(first.append(41, 1), "done");
  ASSERT_TRUE(first.kill());

  Primary second(path());  // recovers 41, writes nothing
  ASSERT_TRUE(second.ready()) << second.first_line();
  expect_caught_up(*reader, 41);
  expect_caught_up(*reader, 41);
  ASSERT_EQ(second.append(42, 19), "done");
  expect_caught_up(*reader, 60);
  ASSERT_TRUE(second.kill());

  // Two restarts in a row without a catch-up in between, the last one alive.
  {
    Primary third(path());
    ASSERT_TRUE(third.ready()) << third.first_line();
    ASSERT_EQ(third.append(61, 10), "done");
    ASSERT_TRUE(third.kill());
  }
  Primary fourth(path());
  ASSERT_TRUE(fourth.ready()) << fourth.first_line();
  expect_caught_up(*reader, 70);
  ASSERT_TRUE(fourth.kill());
}

// A deletion recovered by the next primary (a tombstone in its table file)
// must not be shadowed by the put the reader had read from the old WAL.
TEST_F(ReaderCrashTest, ReaderSeesRecoveredDeletion) {
  Primary first(path());
  ASSERT_TRUE(first.ready()) << first.first_line();
  ASSERT_EQ(first.block(true), "done");
  auto reader = open_reader();
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(reader->catch_up().is_ok());
  EXPECT_TRUE(reader->is_blocked("alice", "bob").value());
  ASSERT_EQ(first.block(false), "done");
  ASSERT_TRUE(first.kill());

  Primary second(path());
  ASSERT_TRUE(second.ready()) << second.first_line();
  Status s = reader->catch_up();
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_FALSE(reader->is_blocked("alice", "bob").value());
  EXPECT_EQ(reader->blocked_by("alice").value(), std::vector<std::string>{});
  ASSERT_TRUE(second.kill());
}

// Readers on other threads keep reading (and catching up) while catch_up
// reopens the secondary under them; the secondary's info logs stay bounded.
TEST_F(ReaderCrashTest, ConcurrentReadsAcrossReopens) {
  {
    Primary primary(path());
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    ASSERT_EQ(primary.append(1, 10), "done");
    ASSERT_TRUE(primary.kill());
  }
  auto reader = open_reader();
  ASSERT_NE(reader, nullptr);

  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> reads{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      size_t seen = 0;
      while (!stop.load()) {
        if (t == 0) {
          // kUnavailable is allowed (a primary in the middle of recovery).
          Status s = reader->catch_up();
          if (!s.is_ok() && s.code() != StatusCode::kUnavailable) ++failures;
        }
        PageQuery query;
        query.limit = 100000;
        auto page = reader->conversation_page(kConv, query);
        auto synced = reader->sync("bob", "", 100000);
        auto convs = reader->conversations("alice", 10);
        if (!page.is_ok() || !synced.is_ok() || !convs.is_ok()) {
          ++failures;
          continue;
        }
        // What was visible stays visible.
        if (page->envelopes.size() < seen) ++failures;
        seen = page->envelopes.size();
        ++reads;
      }
    });
  }

  uint64_t last = 10;
  for (int restart = 0; restart < 6; ++restart) {
    Primary primary(path());
    ASSERT_TRUE(primary.ready()) << primary.first_line();
    ASSERT_EQ(primary.append(last + 1, 10), "done");
    last += 10;
    if (restart % 2 == 0) expect_caught_up(*reader, last);
    ASSERT_TRUE(primary.kill());
  }
  expect_caught_up(*reader, last);
  stop.store(true);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);

  // Each reopen starts a new info LOG in the secondary directory; old ones
  // must not pile up.
  size_t logs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.sub("secondary"))) {
    if (entry.path().filename().string().starts_with("LOG")) ++logs;
  }
  EXPECT_LE(logs, 4u);
}

}  // namespace
}  // namespace chat::store
