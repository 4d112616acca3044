#include "chat/api/control.h"

#include <gtest/gtest.h>

namespace chat::api {
namespace {

TEST(ControlTest, BrokerErrorCodesMapToStatusCodes) {
  EXPECT_EQ(control_error_code("already_exists"), StatusCode::kAlreadyExists);
  EXPECT_EQ(control_error_code("not_found"), StatusCode::kNotFound);
  EXPECT_EQ(control_error_code("invalid_argument"), StatusCode::kInvalidArgument);
  EXPECT_EQ(control_error_code("permission_denied"), StatusCode::kPermissionDenied);
  EXPECT_EQ(control_error_code("unavailable"), StatusCode::kUnavailable);
  EXPECT_EQ(control_error_code("something_new"), StatusCode::kInternal);
}

TEST(ControlTest, CallWithoutBrokerIsUnavailable) {
  ControlClientOptions options;
  options.port = 1;  // never started: no connection is attempted
  options.mint_password = [] { return std::string("x"); };
  ControlClient client(options);
  EXPECT_FALSE(client.connected());
  auto answer = client.call({{"op", "user.add"}, {"user", "bob"}}, std::chrono::milliseconds(50));
  ASSERT_FALSE(answer.is_ok());
  EXPECT_EQ(answer.status().code(), StatusCode::kUnavailable);
}

TEST(ControlTest, NoBrokerListeningKeepsRetryingAndStopsCleanly) {
  ControlClientOptions options;
  options.port = 1;  // nothing listens on port 1
  int minted = 0;
  options.mint_password = [&minted] {
    ++minted;
    return std::string("token");
  };
  options.backoff_min = std::chrono::milliseconds(10);
  options.backoff_max = std::chrono::milliseconds(20);
  ControlClient client(options);
  client.start();
  EXPECT_FALSE(client.wait_connected(std::chrono::milliseconds(300)));
  client.stop();
  // A fresh token per attempt.
  EXPECT_GE(minted, 2);
}

}  // namespace
}  // namespace chat::api
