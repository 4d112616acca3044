// Untrusted JSON (strict_json.h) and the payload validator's use of it:
// bounded nesting, no repeated member names (docs/protocol.md, "Hostile input").
#include "chat/common/strict_json.h"

#include <gtest/gtest.h>

#include "chat/common/envelope.h"

namespace chat {
namespace {

std::string nested(int depth) {
  return std::string(static_cast<size_t>(depth), '[') +
         std::string(static_cast<size_t>(depth), ']');
}

TEST(StrictJson, AcceptsOrdinaryDocuments) {
  JsonRefusal why;
  auto doc = parse_untrusted_json(R"({"a":[1,{"b":"c"}],"d":{"a":2}})", 64, &why);
  EXPECT_EQ(why, JsonRefusal::kNone);
  ASSERT_TRUE(doc.is_object());
  EXPECT_EQ(doc["d"]["a"], 2);  // the same name in different objects is fine
}

TEST(StrictJson, RefusesRepeatedNamesAtAnyDepth) {
  JsonRefusal why;
  EXPECT_TRUE(parse_untrusted_json(R"({"a":1,"a":2})", 64, &why).is_discarded());
  EXPECT_EQ(why, JsonRefusal::kDuplicateKey);
  EXPECT_TRUE(parse_untrusted_json(R"([{"x":{"y":1,"y":1}}])", 64, &why).is_discarded());
  EXPECT_EQ(why, JsonRefusal::kDuplicateKey);
}

TEST(StrictJson, RefusesDeepNestingBeforeParsing) {
  JsonRefusal why;
  EXPECT_FALSE(parse_untrusted_json(nested(64), 64, &why).is_discarded());
  EXPECT_TRUE(parse_untrusted_json(nested(65), 64, &why).is_discarded());
  EXPECT_EQ(why, JsonRefusal::kTooDeep);
  EXPECT_TRUE(parse_untrusted_json(nested(100'000), 64, &why).is_discarded());
  EXPECT_EQ(why, JsonRefusal::kTooDeep);
  EXPECT_TRUE(parse_untrusted_json("{\"a\":\xff}", 64, &why).is_discarded());
  EXPECT_EQ(why, JsonRefusal::kMalformed);
}

TEST(StrictJson, ClientMessagesWithRepeatedNamesAreInvalid) {
  ClientMessage m;
  Refusal r;
  EXPECT_FALSE(parse_client_message(R"({"cid":"a","type":"text","body":1,"body":2})",
                                    kDefaultMaxPayload, &m, &r));
  EXPECT_EQ(r.code, RefusalCode::kInvalidPayload);
  EXPECT_NE(r.reason.find("repeats"), std::string::npos);
  EXPECT_FALSE(parse_client_message(R"({"cid":"a","type":"text","body":{"k":1,"k":1}})",
                                    kDefaultMaxPayload, &m, &r));
  EXPECT_TRUE(parse_client_message(R"({"cid":"a","type":"text","body":{"k":{"k":1}}})",
                                   kDefaultMaxPayload, &m, &r));
}

}  // namespace
}  // namespace chat
