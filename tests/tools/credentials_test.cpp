#include "chatctl/credentials.h"

#include <gtest/gtest.h>

#include "fake_api.h"
#include "test_dir.h"

namespace chat::tools {
namespace {

using testing::FakeApi;
using testing::TestDir;

TEST(RefreshMargin, SixtySecondsOrHalfTheLifetime) {
  Profile p;
  p.access_token = "t";
  p.access_lifetime = 3600;
  EXPECT_EQ(refresh_margin_seconds(p), 60);
  p.access_lifetime = 30;
  EXPECT_EQ(refresh_margin_seconds(p), 15);
  p.access_lifetime = 0;
  EXPECT_EQ(refresh_margin_seconds(p), 60);

  p.access_lifetime = 3600;
  p.access_expires_at = 1000;
  EXPECT_FALSE(needs_refresh(p, 900));
  EXPECT_TRUE(needs_refresh(p, 940));
  EXPECT_TRUE(needs_refresh(p, 2000));
  p.access_token.clear();
  EXPECT_TRUE(needs_refresh(p, 0));
}

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      std::lock_guard<std::mutex> lock(fake_.mu());
      fake_.passwords["alice"] = "correct horse";
    }
    auto grant = parse_token_grant(*api_.password_grant("alice", "correct horse", "d1"));
    ASSERT_TRUE(grant.is_ok());
    Profile p;
    p.user = "alice";
    p.device = "d1";
    apply_token_grant(*grant, clock_.now_s(), &p);
    ASSERT_TRUE(store_.save(p).is_ok());
  }

  Profile saved() { return *store_.load("alice"); }

  FakeApi fake_;
  TestDir dir_;
  ProfileStore store_{dir_.path()};
  ApiClient api_{*parse_api_url(fake_.url()), ""};
  FakeClock clock_;
  Credentials credentials_{store_, api_, clock_, "alice"};
};

TEST_F(CredentialsTest, FreshTokenIsUsedAsIs) {
  Profile before = saved();
  auto p = credentials_.fresh();
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->access_token, before.access_token);
  std::lock_guard<std::mutex> lock(fake_.mu());
  EXPECT_EQ(fake_.refresh_calls, 0);
}

TEST_F(CredentialsTest, ExpiringTokenIsRefreshedAndTheRotatedRefreshTokenSaved) {
  Profile before = saved();
  clock_.advance_ms((3600 - 30) * 1000);
  auto p = credentials_.fresh();
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_NE(p->access_token, before.access_token);
  EXPECT_NE(p->refresh_token, before.refresh_token);
  EXPECT_EQ(p->access_expires_at, clock_.now_s() + 3600);
  EXPECT_EQ(saved().refresh_token, p->refresh_token);

  // The rotated token works for the next refresh.
  clock_.advance_ms(3590 * 1000);
  auto again = credentials_.fresh();
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_NE(again->refresh_token, p->refresh_token);
  std::lock_guard<std::mutex> lock(fake_.mu());
  EXPECT_EQ(fake_.refresh_calls, 2);
}

TEST_F(CredentialsTest, RejectedTokenIsReplacedOnce) {
  Profile before = saved();
  auto p = credentials_.fresh(before.access_token);
  ASSERT_TRUE(p.is_ok());
  EXPECT_NE(p->access_token, before.access_token);
  // Rejecting the old token again does not refresh: the profile already moved on.
  auto q = credentials_.fresh(before.access_token);
  ASSERT_TRUE(q.is_ok());
  EXPECT_EQ(q->access_token, p->access_token);
  std::lock_guard<std::mutex> lock(fake_.mu());
  EXPECT_EQ(fake_.refresh_calls, 1);
}

TEST_F(CredentialsTest, RefusedRefreshAsksToLogInAgain) {
  {
    std::lock_guard<std::mutex> lock(fake_.mu());
    fake_.refresh.clear();  // e.g. the password was changed elsewhere
  }
  clock_.advance_ms(3600 * 1000);
  auto p = credentials_.fresh();
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(p.status().message().find("chatctl login alice"), std::string::npos)
      << p.status().message();
}

TEST_F(CredentialsTest, UnreachableApi) {
  Profile before = saved();
  ApiClient unreachable(*parse_api_url("http://127.0.0.1:1"), "");
  Credentials offline(store_, unreachable, clock_, "alice");
  // Inside the margin but not expired: keep using the current token.
  clock_.advance_ms((3600 - 30) * 1000);
  auto p = offline.fresh();
  ASSERT_TRUE(p.is_ok()) << p.status().to_string();
  EXPECT_EQ(p->access_token, before.access_token);
  // Expired: nothing to fall back on.
  clock_.advance_ms(60 * 1000);
  p = offline.fresh();
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnavailable);
}

TEST_F(CredentialsTest, NotLoggedIn) {
  Credentials bob(store_, api_, clock_, "bob");
  auto p = bob.fresh();
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
  EXPECT_NE(p.status().message().find("chatctl login bob"), std::string::npos);

  ASSERT_TRUE(store_
                  .update("alice", false,
                          [](Profile& q) {
                            q.forget_tokens();
                            return Status::ok();
                          })
                  .is_ok());
  p = credentials_.fresh();
  ASSERT_FALSE(p.is_ok());
  EXPECT_EQ(p.status().code(), StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace chat::tools
