#include "chatctl/output.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

namespace chat::tools {
namespace {

using nlohmann::json;

// 2023-11-14 22:13:20 UTC.
constexpr int64_t kTs = 1'700'000'000'000;

class OutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("TZ", "UTC", 1);
    ::tzset();
  }
};

json envelope(json body, std::string type = "text", std::string conv = "dm:alice:bob",
              std::string to = "bob") {
  return {{"v", 1},          {"id", "0000018bcfe56800"}, {"ts", kTs}, {"conv", conv},
          {"from", "alice"}, {"dev", "cli-1"},           {"to", to},  {"cid", "c1"},
          {"type", type},    {"body", std::move(body)}};
}

TEST_F(OutputTest, Clock) {
  EXPECT_EQ(format_clock(kTs, false), "22:13:20");
  EXPECT_EQ(format_clock(kTs, true), "2023-11-14 22:13:20");
}

TEST_F(OutputTest, DirectMessageLine) {
  EXPECT_EQ(format_message_line(envelope("hello")), "[22:13:20] alice -> bob: hello");
  EXPECT_EQ(format_message_line(envelope("hello"), true),
            "[2023-11-14 22:13:20] alice -> bob: hello");
}

TEST_F(OutputTest, GroupMessageShowsTheConversation) {
  EXPECT_EQ(format_message_line(envelope("hi all", "text", "g:team", "g:team")),
            "[22:13:20] [g:team] alice -> g:team: hi all");
}

TEST_F(OutputTest, OtherBodyTypes) {
  EXPECT_EQ(format_body("text", json{{"a", 1}}), R"({"a":1})");
  EXPECT_EQ(format_body("media", json{{"url", "/v1/media/x"}, {"size", 3}}), "[media] /v1/media/x");
  EXPECT_EQ(format_body("e2e", "b64..."), "[e2e] (encrypted)");
  EXPECT_EQ(format_body("reaction", "0000018bcfe56800"), "[reaction] 0000018bcfe56800");
  EXPECT_EQ(format_body("text", json()), "null");
}

TEST_F(OutputTest, MalformedEnvelopesDoNotThrow) {
  EXPECT_EQ(format_message_line(json::object()), "[00:00:00]  -> : null");
  EXPECT_EQ(format_message_line(json::array({1, 2})), "[00:00:00]  -> : null");
  json odd = {
      {"ts", "yesterday"}, {"from", 7}, {"to", json::array()}, {"body", "x"}, {"type", "text"}};
  EXPECT_EQ(format_message_line(odd), "[00:00:00]  -> : x");
}

TEST_F(OutputTest, ControlCharactersAreEscaped) {
  EXPECT_EQ(sanitize_for_terminal("a\nb\tc\r"), "a\\nb\\tc\\r");
  EXPECT_EQ(sanitize_for_terminal("\x1b[2J"), "\\x1b[2J");
  EXPECT_EQ(sanitize_for_terminal("del\x7f"), "del\\x7f");
  EXPECT_EQ(sanitize_for_terminal("\xc2\x9b"
                                  "31m"),
            "\\u009b31m");  // C1 CSI
  EXPECT_EQ(sanitize_for_terminal("abc\xe2\x80\xae"
                                  "fed"),
            "abc\\u202efed");  // RTL override
  EXPECT_EQ(sanitize_for_terminal("bad \xff byte"), "bad \\xff byte");
  EXPECT_EQ(sanitize_for_terminal("h\xc3\xa9llo \xf0\x9f\x91\x8b"),
            "h\xc3\xa9llo \xf0\x9f\x91\x8b");
  EXPECT_EQ(format_message_line(envelope("line1\nline2")),
            "[22:13:20] alice -> bob: line1\\nline2");
}

TEST_F(OutputTest, ReceiptTypingEventLines) {
  json receipt = {{"v", 1},           {"conv", "dm:alice:bob"},
                  {"from", "bob"},    {"ids", {"a", "b"}},
                  {"status", "read"}, {"ts", kTs}};
  EXPECT_EQ(format_receipt_line(receipt, 0), "[22:13:20] * bob read 2 messages in dm:alice:bob");
  receipt["status"] = "delivered";
  receipt["ids"] = {"a"};
  EXPECT_EQ(format_receipt_line(receipt, 0), "[22:13:20] * bob received 1 message in dm:alice:bob");

  json typing = {{"v", 1}, {"conv", "dm:alice:bob"}, {"from", "bob"}, {"state", "composing"}};
  EXPECT_EQ(format_typing_line(typing, kTs), "[22:13:20] * bob is typing (dm:alice:bob)");
  typing["state"] = "paused";
  EXPECT_EQ(format_typing_line(typing, kTs), "[22:13:20] * bob stopped typing (dm:alice:bob)");

  json error = {{"v", 1},
                {"type", "error"},
                {"cid", "c9"},
                {"code", "rate_limited"},
                {"reason", "slow down"}};
  EXPECT_EQ(format_event_line(error, kTs), "[22:13:20] ! error rate_limited: slow down (cid c9)");
  json joined = {{"v", 1}, {"type", "member_added"}, {"group", "team"}};
  EXPECT_EQ(format_event_line(joined, kTs), R"([22:13:20] * event member_added: {"group":"team"})");
  EXPECT_EQ(format_event_line(json("junk"), kTs), "[22:13:20] * event ?");
}

TEST_F(OutputTest, ConversationLine) {
  json conv = {{"conv", "dm:alice:bob"}, {"unread", 2}, {"last", envelope("hi")}};
  EXPECT_EQ(format_conversation_line(conv),
            "dm:alice:bob  2 unread  [2023-11-14 22:13:20] alice -> bob: hi");
  EXPECT_EQ(format_conversation_line(json{{"conv", "g:x"}}), "g:x  0 unread");
}

TEST_F(OutputTest, HttpErrors) {
  EXPECT_EQ(format_http_error(409, R"({"error":"user_exists","message":"the user id is taken"})"),
            "the user id is taken (user_exists, HTTP 409)");
  EXPECT_EQ(format_http_error(400, R"({"error":"invalid_grant"})"), "invalid_grant (HTTP 400)");
  EXPECT_EQ(format_http_error(403, R"({"message":"not a participant"})"),
            "not a participant (HTTP 403)");
  EXPECT_EQ(format_http_error(502, "<html>\x1b[31mBad</html>\n"),
            "HTTP 502 bad gateway: <html>\\x1b[31mBad</html>");
  EXPECT_EQ(format_http_error(418, ""), "HTTP 418");
  std::string long_body(1000, 'x');
  EXPECT_EQ(format_http_error(500, long_body),
            "HTTP 500 internal server error: " + std::string(200, 'x') + "...");
}

}  // namespace
}  // namespace chat::tools
