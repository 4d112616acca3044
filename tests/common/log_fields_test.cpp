#include "chat/common/log_fields.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace chat {
namespace {

using namespace std::string_literals;

TEST(LogValue, PlainWordsPassAsTheyAre) {
  EXPECT_EQ(log_value("alice"), "alice");
  EXPECT_EQ(log_value("alice:phone"), "alice:phone");
  EXPECT_EQ(log_value("/v1/oauth/token"), "/v1/oauth/token");
  EXPECT_EQ(log_value("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(log_value("[::1]:8080"), "[::1]:8080");
}

TEST(LogValue, EmptyIsTwoQuotes) { EXPECT_EQ(log_value(""), R"("")"); }

TEST(LogValue, SpacesAreQuoted) {
  EXPECT_EQ(log_value("token expired"), R"("token expired")");
  EXPECT_EQ(log_value(" "), R"(" ")");
}

TEST(LogValue, QuotesBackslashesAndEqualsAreQuotedAndEscaped) {
  EXPECT_EQ(log_value(R"(say "hi")"), R"("say \"hi\"")");
  EXPECT_EQ(log_value(R"(a\b)"), R"("a\\b")");
  EXPECT_EQ(log_value(R"(\)"), R"("\\")");
  EXPECT_EQ(log_value("a=b"), R"("a=b")");
  // A forged field stays inside one value.
  EXPECT_EQ(log_value(R"(x" user="root)"), R"("x\" user=\"root")");
}

TEST(LogValue, NewlinesCannotStartALine) {
  EXPECT_EQ(log_value("a\nb"), R"("a\nb")");
  EXPECT_EQ(log_value("a\r\nfake: user=root"), R"("a\r\nfake: user=root")");
  EXPECT_EQ(log_value("\t"), R"("\t")");
  EXPECT_EQ(log_value("a\nb").find('\n'), std::string::npos);
}

TEST(LogValue, ControlCharactersAreEscaped) {
  EXPECT_EQ(log_value("\x1b[31mred"), R"("\x1b[31mred")");
  EXPECT_EQ(log_value("a\0b"s), R"("a\x00b")");
  EXPECT_EQ(log_value("\x7f"), R"("\x7f")");
  EXPECT_EQ(log_value("\x01"), R"("\x01")");
  // C1 controls and Unicode line separators, though well-formed UTF-8.
  EXPECT_EQ(log_value("a\xc2\x9b"
                      "b"),
            R"("a\u009bb")");
  EXPECT_EQ(log_value("a\xe2\x80\xa8"
                      "b"),
            R"("a\u2028b")");
}

TEST(LogValue, Utf8PassesThrough) {
  EXPECT_EQ(log_value("zoë"), "zoë");
  EXPECT_EQ(log_value("日本語"), "日本語");
  EXPECT_EQ(log_value("🙂"), "🙂");
  EXPECT_EQ(log_value("zoë smith"), R"("zoë smith")");
}

TEST(LogValue, BytesThatAreNotUtf8AreEscaped) {
  EXPECT_EQ(log_value("a\xff"), R"("a\xff")");
  EXPECT_EQ(log_value("\xc3"), R"("\xc3")");                  // truncated
  EXPECT_EQ(log_value("\xc0\xaf"), R"("\xc0\xaf")");          // overlong
  EXPECT_EQ(log_value("\xed\xa0\x80"), R"("\xed\xa0\x80")");  // surrogate
  EXPECT_EQ(log_value("\x9b"), R"("\x9b")");                  // lone C1 byte
}

TEST(LogError, JsonExceptionsKeepOnlyTheirId) {
  try {
    nlohmann::json doc = nlohmann::json::parse(R"({"body":"secret text)");
    FAIL() << "no exception: " << doc.dump();
  } catch (const std::exception& e) {
    const std::string shown = log_error(e);
    EXPECT_EQ(shown.find("secret"), std::string::npos) << shown;
    EXPECT_EQ(shown, "json error 101");
  }
  EXPECT_EQ(log_error(std::runtime_error("disk full")), "disk full");
}

}  // namespace
}  // namespace chat
