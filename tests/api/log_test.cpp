// chat-api's log lines (docs/operations.md "Logs"): `<event>: key=value`,
// client-chosen text quoted so it cannot forge fields or lines, and never a
// password, token or query string.
#include "chat/api/log.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <spdlog/sinks/base_sink.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "http_fixture.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)

// Every message the "api" logger writes, without the pattern's prefix.
class CaptureSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    text_.clear();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    text_.append(msg.payload.data(), msg.payload.size());
    text_ += '\n';
  }
  void flush_() override {}

 private:
  std::string text_;
};

// Attached once, before any server thread of this binary logs through it.
CaptureSink& capture() {
  static std::shared_ptr<CaptureSink> sink = [] {
    auto s = std::make_shared<CaptureSink>();
    logger().sinks().push_back(s);
    return s;
  }();
  return *sink;
}

// The access log line is written after the response: wait for it.
std::string wait_for(const std::string& needle) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string text = capture().text();
  while (text.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = capture().text();
  }
  return text;
}

bool has_line_starting_with(const std::string& text, const std::string& prefix) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

TEST_F(HttpServerTest, LogLinesAreKeyValueAndCarryNoSecrets) {
  capture().clear();
  start();
  const std::string password = "Hunter2-Secret-Pass";
  signup("alice", password);
  json grant = login("alice", password);
  ASSERT_TRUE(grant.contains("access_token"));
  const std::string access = grant["access_token"].get<std::string>();
  const std::string refresh = grant["refresh_token"].get<std::string>();
  auto r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + refresh);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = get("/v1/conversations", access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  std::string log = wait_for("path=/v1/conversations status=200");
  EXPECT_NE(log.find("account.created: user=alice\n"), std::string::npos) << log;
  EXPECT_NE(log.find("http: ip=127.0.0.1 method=POST path=/v1/oauth/token status=200 bytes="),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("http: ip=127.0.0.1 method=GET path=/v1/conversations status=200 bytes="),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(" ms="), std::string::npos) << log;

  // A percent-encoded newline in the path and a query string: the path is
  // quoted on its one line, the query string is not logged at all.
  r = get("/v1/nothing%0Afake:%20user=root%22?token=sekrit-query-value");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  log = wait_for("status=404");
  EXPECT_NE(log.find(R"(method=GET path="/v1/nothing\nfake: user=root\"" status=404)"),
            std::string::npos)
      << log;
  EXPECT_FALSE(has_line_starting_with(log, "fake")) << log;

  // An exception's message, quoted; the request body never.
  control_.set_throw(true);
  r = post_json("/v1/users", {{"user", "bob"}, {"password", password}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  control_.set_throw(false);
  log = wait_for("path=/v1/users status=500");
  EXPECT_NE(log.find(R"(http.exception: method=POST path=/v1/users error="fake control exploded")"),
            std::string::npos)
      << log;

  for (const std::string& secret :
       {password, access, refresh, std::string("sekrit-query-value"), std::string("Bearer")}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << secret << "\n" << log;
  }
  // Every line is `<event>: ...`.
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const size_t colon = line.find(": ");
    ASSERT_NE(colon, std::string::npos) << line;
    EXPECT_EQ(line.find(' '), colon + 1) << line;
  }
}

}  // namespace
}  // namespace chat::api
