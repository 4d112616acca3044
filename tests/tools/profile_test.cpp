#include "chatctl/profile.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>
#include <vector>

#include "test_dir.h"

namespace chat::tools {
namespace {

using testing::TestDir;

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

Profile sample() {
  Profile p;
  p.user = "alice";
  p.device = "cli-0123abcd";
  p.access_token = "header.payload.signature";
  p.access_expires_at = 1'700'003'600;
  p.access_lifetime = 3600;
  p.refresh_token = "r-1";
  p.sync_cursor = "0000018bcfe56800";
  return p;
}

TEST(ProfileStore, SaveLoadRoundTripWithPrivateModes) {
  TestDir dir;
  std::string home = dir.path() + "/nested/chatctl";
  ProfileStore store(home);
  ASSERT_TRUE(store.save(sample()).is_ok());

  EXPECT_EQ(mode_of(home), 0700u);
  EXPECT_EQ(mode_of(dir.path() + "/nested"), 0700u);
  EXPECT_EQ(mode_of(store.path_for("alice")), 0600u);

  auto loaded = store.load("alice");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().to_string();
  EXPECT_EQ(profile_to_json(*loaded), profile_to_json(sample()));
}

TEST(ProfileStore, ModeIsPrivateWhateverTheUmask) {
  TestDir dir;
  mode_t old = ::umask(0);
  ProfileStore store(dir.path() + "/home");
  Status s = store.save(sample());
  ::umask(old);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(mode_of(dir.path() + "/home"), 0700u);
  EXPECT_EQ(mode_of(store.path_for("alice")), 0600u);
}

TEST(ProfileStore, MissingAndCorruptProfiles) {
  TestDir dir;
  ProfileStore store(dir.path());
  EXPECT_EQ(store.load("bob").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.load("Not A User").status().code(), StatusCode::kInvalidArgument);

  std::ofstream(store.path_for("bob")) << "{not json";
  EXPECT_EQ(store.load("bob").status().code(), StatusCode::kInvalidArgument);
  std::ofstream(store.path_for("bob")) << R"({"user":"bob","access_expires_at":"soon"})";
  EXPECT_EQ(store.load("bob").status().code(), StatusCode::kInvalidArgument);
  std::ofstream(store.path_for("bob")) << R"({"user":"carol"})";
  EXPECT_EQ(store.load("bob").status().code(), StatusCode::kInvalidArgument);
  std::ofstream(store.path_for("bob")) << R"({"user":"bob","device":null})";
  EXPECT_TRUE(store.load("bob").is_ok());
}

TEST(ProfileStore, RememberedServersAreOptional) {
  TestDir dir;
  ProfileStore store(dir.path());
  // A profile from before logins remembered servers.
  std::ofstream(store.path_for("bob"))
      << R"({"user":"bob","device":"cli-0123abcd","refresh_token":"r","sync_cursor":""})";
  auto old = store.load("bob");
  ASSERT_TRUE(old.is_ok()) << old.status().to_string();
  EXPECT_EQ(old->api, "");
  EXPECT_EQ(old->mqtt, "");
  EXPECT_EQ(old->ca_file, "");
  EXPECT_FALSE(profile_to_json(*old).contains("api"));  // not written when empty

  Profile p = sample();
  p.api = "https://chat.example:8443";
  p.mqtt = "ssl://chat.example:8883";
  p.ca_file = "/etc/chat/ca.pem";
  ASSERT_TRUE(store.save(p).is_ok());
  auto loaded = store.load("alice");
  ASSERT_TRUE(loaded.is_ok());
  EXPECT_EQ(loaded->api, p.api);
  EXPECT_EQ(loaded->mqtt, p.mqtt);
  EXPECT_EQ(loaded->ca_file, p.ca_file);
  EXPECT_EQ(profile_to_json(*loaded)["ca"], "/etc/chat/ca.pem");

  std::ofstream(store.path_for("bob")) << R"({"user":"bob","mqtt":1883})";
  auto bad = store.load("bob");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(store.path_for("bob")), std::string::npos);
  EXPECT_NE(bad.status().message().find("\"mqtt\""), std::string::npos) << bad.status().message();
}

TEST(ProfileStore, CurrentUser) {
  TestDir dir;
  ProfileStore store(dir.path());
  EXPECT_EQ(store.current_user().status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(store.set_current_user("alice").is_ok());
  EXPECT_EQ(*store.current_user(), "alice");
  ASSERT_TRUE(store.set_current_user("bob").is_ok());
  EXPECT_EQ(*store.current_user(), "bob");
  EXPECT_FALSE(store.set_current_user("../etc").is_ok());
}

TEST(ProfileStore, UpdateCreatesOnlyWhenAsked) {
  TestDir dir;
  ProfileStore store(dir.path());
  auto missing = store.update("carol", false, [](Profile&) { return Status::ok(); });
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);

  auto created = store.update("carol", true, [](Profile& p) {
    p.device = "d1";
    return Status::ok();
  });
  ASSERT_TRUE(created.is_ok());
  EXPECT_EQ(created->user, "carol");
  EXPECT_EQ(store.load("carol")->device, "d1");

  auto refused = store.update("carol", false, [](Profile& p) {
    p.device = "d2";
    return unavailable("no network");
  });
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store.load("carol")->device, "d1");  // a failed change is not saved
}

TEST(ProfileStore, ConcurrentUpdatesLoseNothing) {
  // Each writer re-reads under the lock, so no increment is lost.
  TestDir dir;
  ProfileStore store(dir.path());
  ASSERT_TRUE(store
                  .update("alice", true,
                          [](Profile& p) {
                            p.sync_cursor = "0";
                            return Status::ok();
                          })
                  .is_ok());
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      ProfileStore mine(dir.path());  // separate opens, as separate processes would have
      for (int i = 0; i < kEach; ++i) {
        auto r = mine.update("alice", false, [](Profile& p) {
          p.sync_cursor = std::to_string(std::stoi(p.sync_cursor) + 1);
          return Status::ok();
        });
        EXPECT_TRUE(r.is_ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store.load("alice")->sync_cursor, std::to_string(kThreads * kEach));
}

TEST(Profile, ForgetTokensKeepsDeviceAndCursor) {
  Profile p = sample();
  EXPECT_TRUE(p.logged_in());
  p.forget_tokens();
  EXPECT_FALSE(p.logged_in());
  EXPECT_EQ(p.device, "cli-0123abcd");
  EXPECT_EQ(p.sync_cursor, "0000018bcfe56800");
  EXPECT_EQ(p.access_expires_at, 0);
}

}  // namespace
}  // namespace chat::tools
