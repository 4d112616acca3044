// chat-api's parsing of client text (request_parsing.h). The fuzz harness
// fuzz/http_parsing_fuzz.cpp checks the same invariants on random input.
#include "chat/api/request_parsing.h"

#include <gtest/gtest.h>

namespace chat::api {
namespace {

TEST(RequestParsing, ErrorBodiesAreJsonWhateverBytesTheyQuote) {
  // Found by the hostile tests: a 400 quoting a path segment that was not
  // UTF-8 made nlohmann throw while writing the body (a 500 instead).
  auto body = nlohmann::json::parse(error_body("invalid_argument", "user \"\xff\xfe\" is bad"),
                                    nullptr, false);
  ASSERT_TRUE(body.is_object());
  EXPECT_EQ(body["error"], "invalid_argument");
  EXPECT_NE(body["message"].get<std::string>().find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

TEST(RequestParsing, JsonBodiesAreBoundedAndUnambiguous) {
  EXPECT_TRUE(parse_json_object_body(R"({"user":"alice"})").is_ok());
  EXPECT_FALSE(parse_json_object_body("[1]").is_ok());
  auto dup = parse_json_object_body(R"({"user":"alice","user":"bob"})");
  ASSERT_FALSE(dup.is_ok());
  EXPECT_EQ(dup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.status().message().find("repeats"), std::string::npos);
  std::string deep = "{\"a\":" + std::string(10'000, '[') + std::string(10'000, ']') + "}";
  auto too_deep = parse_json_object_body(deep);
  ASSERT_FALSE(too_deep.is_ok());
  EXPECT_NE(too_deep.status().message().find("deeper"), std::string::npos);
}

TEST(RequestParsing, Limits) {
  EXPECT_EQ(*parse_limit_text(std::nullopt, 50, 500), 50u);
  EXPECT_EQ(*parse_limit_text("7", 50, 500), 7u);
  EXPECT_EQ(*parse_limit_text("99999999999999999999999", 50, 500), 500u);
  EXPECT_FALSE(parse_limit_text("0", 50, 500).is_ok());
  EXPECT_FALSE(parse_limit_text("-1", 50, 500).is_ok());
  EXPECT_FALSE(parse_limit_text("", 50, 500).is_ok());
}

TEST(RequestParsing, Ranges) {
  ByteRange r;
  EXPECT_EQ(resolve_range("bytes=0-99", 1000, &r), RangeAnswer::kPartial);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.last, 99u);
  EXPECT_EQ(resolve_range("bytes=-2000", 1000, &r), RangeAnswer::kWhole);
  EXPECT_EQ(resolve_range("bytes=999-", 1000, &r), RangeAnswer::kPartial);
  EXPECT_EQ(r.first, 999u);
  EXPECT_EQ(resolve_range("bytes=1000-", 1000, &r), RangeAnswer::kUnsatisfiable);
  EXPECT_EQ(resolve_range("bytes=0-1,4-5", 1000, &r), RangeAnswer::kUnsatisfiable);
  EXPECT_EQ(resolve_range("bytes=99999999999999999999-", 1000, &r), RangeAnswer::kUnsatisfiable);
}

TEST(RequestParsing, FormsAndBearer) {
  auto form = parse_form("grant_type=password&username=alice&password=a+b%21&empty=");
  ASSERT_TRUE(form.is_ok());
  EXPECT_EQ(form->at("password"), "a b!");
  EXPECT_EQ(form->count("empty"), 0u);
  EXPECT_FALSE(parse_form("a=1&a=2").is_ok());
  EXPECT_FALSE(parse_form("a=%zz").is_ok());
  EXPECT_EQ(bearer_token("Bearer   abc"), "abc");
  EXPECT_EQ(bearer_token("bEaReR x"), "x");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearer "), "");
}

}  // namespace
}  // namespace chat::api
