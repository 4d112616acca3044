// E2eStore: the Signal state of a chatctl device on disk. Survives a reload,
// private file modes, and no lost update when processes share it.
#include "chatctl/signal_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "chatctl/e2e.h"
#include "test_dir.h"

namespace chat::tools {
namespace {

using testing::TestDir;

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(E2eStore, KeepsEverythingAcrossReloadsWithPrivateModes) {
  TestDir tmp;
  E2eStore store(E2eStore::dir_for(tmp.path(), "alice", "a1-tx"));
  EXPECT_FALSE(store.exists());
  E2eState bob;
  ASSERT_TRUE(generate_identity(bob, 1).is_ok());
  ASSERT_TRUE(generate_prekeys(bob, 2));
  auto upload = key_upload_body(bob, "b1-tx", true, {1});
  ASSERT_TRUE(upload);
  nlohmann::json device = {{"device", "b1-tx"},
                           {"registration_id", (*upload)["registration_id"]},
                           {"identity_key", (*upload)["identity_key"]},
                           {"signed_prekey", (*upload)["signed_prekey"]},
                           {"prekey", (*upload)["prekeys"][0]}};
  auto bundle = parse_bundle("bob", device);
  ASSERT_TRUE(bundle);

  std::string first;
  ASSERT_TRUE(store
                  .transact([&](E2eState& s) -> Status {
                    Status made = generate_identity(s, 1);
                    if (!made.is_ok()) return made;
                    if (!generate_prekeys(s, 5)) return internal_error("prekeys");
                    Status built = process_bundle(s, *bundle);
                    if (!built.is_ok()) return built;
                    auto ct = encrypt_to(s, "bob:b1-tx", "hi");
                    if (!ct) return ct.status();
                    first = ct->body;
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_TRUE(store.exists());
  EXPECT_EQ(mode_of(store.dir()), 0700u);
  EXPECT_EQ(mode_of(store.dir() + "/keys.json"), 0600u);
  EXPECT_EQ(mode_of(store.dir() + "/sessions"), 0700u);
  EXPECT_EQ(mode_of(store.dir() + "/sessions/bob:b1-tx.1.json"), 0600u);
  EXPECT_EQ(mode_of(store.dir() + "/identities.json"), 0600u);

  // A new transaction reads it all back: the session goes on, bob reads both.
  std::string second;
  ASSERT_TRUE(store
                  .transact([&](E2eState& s) -> Status {
                    EXPECT_EQ(s.prekeys.size(), 5u);
                    EXPECT_TRUE(has_session(s, "bob:b1-tx"));
                    EXPECT_EQ(s.identities.at("bob:b1-tx").key, bob.identity_public);
                    auto ct = encrypt_to(s, "bob:b1-tx", "again");
                    if (!ct) return ct.status();
                    second = ct->body;
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_EQ(*decrypt_from(bob, "alice:a1-tx", kE2ePreKeyMessage, first), "hi");
  EXPECT_EQ(*decrypt_from(bob, "alice:a1-tx", kE2ePreKeyMessage, second), "again");

  // Deleting a session removes its file; a failed operation saves nothing.
  ASSERT_TRUE(store
                  .transact([&](E2eState& s) {
                    s.delete_session(session_key("bob:b1-tx", 1));
                    return Status::ok();
                  })
                  .is_ok());
  EXPECT_FALSE(std::filesystem::exists(store.dir() + "/sessions/bob:b1-tx.1.json"));
  EXPECT_FALSE(store
                   .transact([&](E2eState& s) {
                     s.prekeys.clear();
                     s.keys_dirty = true;
                     return internal_error("changed my mind");
                   })
                   .is_ok());
  ASSERT_TRUE(store
                  .transact([&](E2eState& s) {
                    EXPECT_EQ(s.prekeys.size(), 5u);
                    return Status::ok();
                  })
                  .is_ok());
  ASSERT_TRUE(store.wipe().is_ok());
  EXPECT_FALSE(store.exists());
}

TEST(E2eStore, ADamagedFileIsAnErrorNotACrash) {
  TestDir tmp;
  E2eStore store(tmp.path() + "/s");
  ASSERT_TRUE(store.transact([](E2eState&) { return Status::ok(); }).is_ok());
  FILE* f = std::fopen((store.dir() + "/keys.json").c_str(), "w");
  std::fputs("{\"registration_id\": 5, \"identity_public\": \"not base64!\"}", f);
  std::fclose(f);
  Status s = store.transact([](E2eState&) { return Status::ok(); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.message();
}

// Two processes, many read-modify-writes each: the lock loses none.
TEST(E2eStore, ConcurrentProcessesLoseNoUpdate) {
  TestDir tmp;
  E2eStore store(tmp.path() + "/s");
  constexpr int kEach = 40;
  auto work = [&] {
    for (int i = 0; i < kEach; ++i) {
      Status s = store.transact([](E2eState& st) {
        st.messages["count"] = st.messages.value("count", 0) + 1;
        st.messages_dirty = true;
        return Status::ok();
      });
      if (!s.is_ok()) return false;
    }
    return true;
  };
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(work() ? 0 : 1);
  EXPECT_TRUE(work());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(store
                  .transact([&](E2eState& st) {
                    EXPECT_EQ(st.messages.value("count", 0), 2 * kEach);
                    return Status::ok();
                  })
                  .is_ok());
}

}  // namespace
}  // namespace chat::tools
