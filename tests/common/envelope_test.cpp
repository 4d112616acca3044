#include "chat/common/envelope.h"

#include <gtest/gtest.h>

namespace chat {
namespace {

struct Case {
  std::string payload;
  bool ok;
  RefusalCode code;
};

TEST(Envelope, ValidatesClientMessages) {
  const Case cases[] = {
      {R"({"cid":"c1","type":"text","body":"hi"})", true, {}},
      {R"({"cid":"c1","type":"x-poll","body":{"q":1}})", true, {}},
      {R"({"cid":"c1","type":"e2e","body":null})", true, {}},
      {R"({"cid":"c1","type":"text"})", false, RefusalCode::kInvalidPayload},
      {R"({"type":"text","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"","type":"text","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":7,"type":"text","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":")" + std::string(65, 'a') + R"(","type":"text","body":"hi"})", false,
       RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"html","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"x-","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"x-A","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"(["cid"])", false, RefusalCode::kInvalidPayload},
      {"not json", false, RefusalCode::kInvalidPayload},
      {"", false, RefusalCode::kInvalidPayload},
      {std::string(R"({"cid":"c1","type":"text","body":")") + "\xff\xfe" + "\"}", false,
       RefusalCode::kInvalidPayload},
  };
  for (const auto& c : cases) {
    ClientMessage m;
    Refusal r{};
    EXPECT_EQ(parse_client_message(c.payload, kDefaultMaxPayload, &m, &r), c.ok) << c.payload;
    if (!c.ok) {
      EXPECT_EQ(r.code, c.code) << c.payload;
    }
  }
}

TEST(Envelope, RefusesDeepNestingAndControlCharactersInCid) {
  std::string deep =
      R"({"cid":"c","type":"text","body":)" + std::string(65, '[') + std::string(65, ']') + "}";
  std::string ok =
      R"({"cid":"c","type":"text","body":)" + std::string(60, '[') + std::string(60, ']') + "}";
  ClientMessage m;
  Refusal r{};
  EXPECT_FALSE(parse_client_message(deep, kDefaultMaxPayload, &m, &r));
  EXPECT_EQ(r.code, RefusalCode::kInvalidPayload);
  EXPECT_TRUE(parse_client_message(ok, kDefaultMaxPayload, &m, &r));
  // A 64 KiB payload of brackets must be refused, not crash.
  std::string bomb = R"({"cid":"c","type":"text","body":)" + std::string(32000, '[') +
                     std::string(32000, ']') + "}";
  EXPECT_FALSE(parse_client_message(bomb, kDefaultMaxPayload, &m, &r));
  // Brackets inside strings do not count.
  std::string quoted = R"({"cid":"c","type":"text","body":")" + std::string(100, '[') + R"(\"]"})";
  EXPECT_TRUE(parse_client_message(quoted, kDefaultMaxPayload, &m, &r));
  EXPECT_FALSE(parse_client_message(R"({"cid":"a\u0000b","type":"text","body":1})",
                                    kDefaultMaxPayload, &m, &r));
  EXPECT_FALSE(
      parse_client_message(R"({"cid":"a\nb","type":"text","body":1})", kDefaultMaxPayload, &m, &r));
  // 64 characters of 2-byte UTF-8 are fine (the limit counts characters).
  std::string accents;
  for (int i = 0; i < 64; ++i) accents += "\u00e9";
  EXPECT_TRUE(parse_client_message(R"({"cid":")" + accents + R"(","type":"text","body":1})",
                                   kDefaultMaxPayload, &m, &r));
}

TEST(Envelope, SizeLimit) {
  std::string body(100, 'a');
  std::string p = R"({"cid":"c","type":"text","body":")" + body + "\"}";
  ClientMessage m;
  Refusal r{};
  EXPECT_TRUE(parse_client_message(p, p.size(), &m, &r));
  EXPECT_FALSE(parse_client_message(p, p.size() - 1, &m, &r));
  EXPECT_EQ(r.code, RefusalCode::kTooLarge);
}

TEST(Envelope, BuildsEnvelopeWithContractFields) {
  EnvelopeFields f{"0000000000000001", 1700, "dm:alice:bob", "alice", "phone", "bob", "c1", "text"};
  auto env = nlohmann::json::parse(make_envelope(f, nlohmann::json("hi")));
  EXPECT_EQ(env["v"], 1);
  EXPECT_EQ(env["id"], "0000000000000001");
  EXPECT_EQ(env["ts"], 1700);
  EXPECT_EQ(env["conv"], "dm:alice:bob");
  EXPECT_EQ(env["from"], "alice");
  EXPECT_EQ(env["dev"], "phone");
  EXPECT_EQ(env["to"], "bob");
  EXPECT_EQ(env["cid"], "c1");
  EXPECT_EQ(env["type"], "text");
  EXPECT_EQ(env["body"], "hi");
}

// make_envelope writes the JSON itself; its bytes must be what nlohmann would
// print (field order, escapes), whatever the strings hold.
TEST(Envelope, EnvelopeBytesMatchNlohmannForAnyString) {
  const std::string tricky[] = {"",
                                "plain",
                                "quote\" backslash\\ slash/",
                                "\b\f\n\r\t",
                                std::string("nul\0ctl\x01\x1f\x7f", 10),
                                "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                                "\"\"\\\\"};
  for (const auto& s : tricky) {
    EnvelopeFields f{"0000000000000001", -5, s, s, s, s, s, s};
    nlohmann::json body = {{"text", s}, {"n", {1, 2.5, nullptr, true}}};
    nlohmann::ordered_json expected;
    expected["v"] = 1;
    expected["id"] = f.id;
    expected["ts"] = f.ts;
    expected["conv"] = f.conv;
    expected["from"] = f.from;
    expected["dev"] = f.dev;
    expected["to"] = f.to;
    expected["cid"] = f.cid;
    expected["type"] = f.type;
    expected["body"] = body;
    EXPECT_EQ(make_envelope(f, body), expected.dump()) << nlohmann::json(s).dump();
  }
}

TEST(Envelope, ErrorEventAndCidExtraction) {
  auto ev =
      nlohmann::json::parse(make_error_event("c9", RefusalCode::kUnknownPeer, "no such user"));
  EXPECT_EQ(ev["type"], "error");
  EXPECT_EQ(ev["code"], "unknown_peer");
  EXPECT_EQ(ev["cid"], "c9");
  EXPECT_EQ(extract_cid(R"({"cid":"abc","type":"nope"})"), "abc");
  EXPECT_EQ(extract_cid("garbage"), "");
  auto no_cid = nlohmann::json::parse(make_error_event("", RefusalCode::kInvalidPayload, "x"));
  EXPECT_FALSE(no_cid.contains("cid"));
}

TEST(Envelope, MediaMessagesNeedAMediaIdBody) {
  auto parse = [](const std::string& body) {
    ClientMessage m;
    Refusal why;
    const bool ok = parse_client_message(R"({"cid":"c1","type":"media","body":)" + body + "}",
                                         kDefaultMaxPayload, &m, &why);
    return std::make_pair(ok, ok ? media_reference(m) : why.reason);
  };
  EXPECT_EQ(parse(R"({"media":"AbC_-123"})"), std::make_pair(true, std::string("AbC_-123")));
  auto full = parse(
      R"({"media":"x1","content_type":"image/png","size":12,"sha256":"ab","url":"/v1/media/x1",)"
      R"("thumbnail":true,"caption":"hi","extra":[1]})");
  EXPECT_TRUE(full.first) << full.second;
  EXPECT_TRUE(parse(R"({"media":"x1","thumbnail":"/v1/media/x1/thumbnail"})").first);
  for (const char* bad :
       {R"("x1")", R"({"url":"/v1/media/x1"})", R"({"media":7})", R"({"media":""})",
        R"({"media":"../x"})", R"({"media":"x1","size":-1})", R"({"media":"x1","size":"12"})",
        R"({"media":"x1","caption":5})", R"({"media":"x1","thumbnail":1})",
        R"({"media":"x1","content_type":null})"}) {
    EXPECT_FALSE(parse(bad).first) << bad;
  }
  // Other types reference nothing, whatever their body says.
  ClientMessage text;
  Refusal why;
  ASSERT_TRUE(parse_client_message(R"({"cid":"c","type":"text","body":{"media":"x"}})",
                                   kDefaultMaxPayload, &text, &why));
  EXPECT_EQ(media_reference(text), "");
}

}  // namespace
}  // namespace chat
