// No tokens or passwords in any log (issue 6, item 8). Every Stack checks its
// own log files when it stops (Stack::check_logs_for_secrets), so the whole
// integration suite is the test; this one proves the check catches a leak.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <fstream>

#include "stack.h"

namespace chat::testing {
namespace {

// Every Stack fails its test when a log file holds a secret the test used
// (a token or password): the check itself must catch a leak.
TEST(Secrets, ALeakedTokenInALogFailsTheTest) {
  EXPECT_NONFATAL_FAILURE(
      {
        Stack stack;
        std::string token = stack.register_user("alice");
        std::ofstream(stack.data_dir() + "/logs/chat-api.log", std::ios::app)
            << "oops: " << token << "\n";
      },
      "chat-api.log contains a secret the test used");
}

}  // namespace
}  // namespace chat::testing
