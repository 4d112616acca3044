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

TEST_F(OutputTest, ReceiptLines) {
  json receipt = {{"v", 1},           {"conv", "dm:alice:bob"},
                  {"from", "bob"},    {"ids", {"a", "b"}},
                  {"status", "read"}, {"ts", kTs}};
  EXPECT_EQ(format_receipt_line(receipt, 0), "[22:13:20] bob read 2 messages in dm:alice:bob");
  receipt["status"] = "delivered";
  receipt["ids"] = {"a"};
  EXPECT_EQ(format_receipt_line(receipt, 0), "[22:13:20] bob received 1 message in dm:alice:bob");
  receipt.erase("ts");
  receipt["conv"] = "g:team";
  EXPECT_EQ(format_receipt_line(receipt, kTs), "[22:13:20] bob received 1 message in g:team");
  EXPECT_EQ(format_receipt_line(json{{"from", "x\x1b"}, {"status", "odd\n"}}, kTs),
            "[22:13:20] x\\x1b odd\\n 0 messages");
}

TEST_F(OutputTest, TypingLines) {
  json typing = {{"v", 1}, {"conv", "dm:alice:bob"}, {"from", "bob"}, {"state", "composing"}};
  EXPECT_EQ(format_typing_line(typing, kTs), "[22:13:20] bob is typing\u2026");
  typing["conv"] = "g:team";
  EXPECT_EQ(format_typing_line(typing, kTs), "[22:13:20] bob is typing\u2026 in g:team");
  typing["state"] = "paused";
  EXPECT_EQ(format_typing_line(typing, kTs), "");
  EXPECT_EQ(format_typing_line(json("junk"), kTs), "");
  typing = {{"from", "bob\nfake line"}, {"state", "composing"}};
  EXPECT_EQ(format_typing_line(typing, kTs), "[22:13:20] bob\\nfake line is typing\u2026");
}

TEST_F(OutputTest, ErrorAndOtherEvents) {
  json error = {{"v", 1},
                {"type", "error"},
                {"cid", "c9"},
                {"code", "rate_limited"},
                {"reason", "slow down"}};
  EXPECT_EQ(format_event_line(error, kTs), "[22:13:20] ! error rate_limited: slow down (cid c9)");
  json other = {{"v", 1}, {"type", "ban"}, {"until", 5}};
  EXPECT_EQ(format_event_line(other, kTs), R"([22:13:20] event ban: {"until":5})");
  EXPECT_EQ(format_event_line(json("junk"), kTs), "[22:13:20] event ?");
}

TEST_F(OutputTest, GroupEvents) {
  json event = {{"v", 1},         {"type", "group"},    {"action", "member_added"},
                {"group", "Gx7"}, {"name", "Climbing"}, {"user", "carol"},
                {"by", "alice"},  {"ts", kTs}};
  EXPECT_EQ(format_event_line(event, 0), "[22:13:20] alice added carol to Climbing (g:Gx7)");
  event["action"] = "created";
  event["user"] = "alice";
  EXPECT_EQ(format_event_line(event, 0), "[22:13:20] alice created Climbing (g:Gx7)");
  event["action"] = "member_removed";
  event["user"] = "carol";
  EXPECT_EQ(format_event_line(event, 0), "[22:13:20] alice removed carol from Climbing (g:Gx7)");
  event["by"] = "carol";
  EXPECT_EQ(format_event_line(event, 0), "[22:13:20] carol left Climbing (g:Gx7)");
  event["action"] = "admin_added";
  event["by"] = "alice";
  EXPECT_EQ(format_event_line(event, 0),
            "[22:13:20] alice made carol an admin of Climbing (g:Gx7)");
  event["name"] = "\x1b[2JClimbing\xe2\x80\xae";
  EXPECT_EQ(format_event_line(event, 0),
            "[22:13:20] alice made carol an admin of \\x1b[2JClimbing\\u202e (g:Gx7)");
  event.erase("name");
  EXPECT_EQ(format_event_line(event, 0), "[22:13:20] alice made carol an admin of g:Gx7 (g:Gx7)");
  event["action"] = "renamed";  // unknown: shown as a generic event
  EXPECT_EQ(format_event_line(event, 0).rfind("[22:13:20] event group: {", 0), 0u);
}

TEST_F(OutputTest, PresenceLines) {
  json online = {{"v", 1}, {"status", "online"}, {"ts", kTs}};
  EXPECT_EQ(format_presence_line("bob", online, kTs + 5000), "[22:13:25] bob is online");
  json offline = {{"v", 1}, {"status", "offline"}, {"ts", kTs - 3 * 60'000}};
  EXPECT_EQ(format_presence_line("bob", offline, kTs), "[22:13:20] bob was last seen 22:10");
  // Not today: with the date.
  EXPECT_EQ(format_presence_line("bob", offline, kTs + 86'400'000),
            "[22:13:20] bob was last seen 2023-11-14 22:10");
  EXPECT_EQ(format_presence_line("bob", json{{"status", "offline"}}, kTs),
            "[22:13:20] bob is offline");
  EXPECT_EQ(format_presence_line("bob", json{{"status", "away\n"}}, kTs),
            "[22:13:20] bob is away\\n");
}

TEST_F(OutputTest, GroupLines) {
  json group = {{"id", "Gx7"},
                {"name", "Climbing"},
                {"members", {"alice", "bob", "carol"}},
                {"admins", {"alice"}}};
  EXPECT_EQ(format_group_line(group, "alice"), "g:Gx7  Climbing  (3 members, admin)");
  EXPECT_EQ(format_group_line(group, "bob"), "g:Gx7  Climbing  (3 members)");
  EXPECT_EQ(format_group_details(group, "bob"),
            "g:Gx7  Climbing  (3 members)\n  alice (admin)\n  bob\n  carol");
  EXPECT_EQ(format_group_line(json{{"id", "x"}, {"members", {"a"}}}, "a"), "g:x    (1 member)");
  EXPECT_EQ(format_group_details(json::array(), "a"), "g:    (0 members)");
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
