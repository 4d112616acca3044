// chat-bench --e2e: the payload is an `e2e` message the broker accepts, and
// the stamp survives the broker's per-user slicing (chat::E2eEnvelopes, the
// code the router delivers with).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "bench/options.h"
#include "bench/payload.h"
#include "chat/common/envelope.h"

namespace chat::bench {
namespace {

std::vector<std::string> members(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("g100r" + std::to_string(i) + ":bench");
  return out;
}

// Parses and validates like the broker: the message, then the e2e body.
ClientMessage accepted(const std::string& payload, bool group_topic) {
  ClientMessage m;
  Refusal why{RefusalCode::kInvalidPayload, ""};
  EXPECT_TRUE(parse_client_message(payload, kDefaultMaxPayload, &m, &why)) << why.reason;
  EXPECT_EQ(m.type, "e2e");
  EXPECT_EQ(check_e2e_body(m.body, group_topic), "");
  return m;
}

TEST(BenchE2ePayload, DirectMessageIsAValidE2eBodyAndTheStampRoundTrips) {
  E2ePayload e({"p1r0:bench"}, 200, "cAbCdEfGh-");
  std::string p;
  ASSERT_TRUE(e.build(&p, Stamp{0, 12345, 987654321012}));
  // About --payload bytes for its one entry (the cid's length varies a little).
  EXPECT_NEAR(static_cast<double>(p.size()), 200.0, 8.0);
  ClientMessage m = accepted(p, /*group_topic=*/false);
  EXPECT_EQ(m.cid, "cAbCdEfGh-B|0|12345|987654321012|");
  EXPECT_LE(m.cid.size(), kMaxCidChars);
  ASSERT_EQ(m.body["to"].size(), 1u);
  const auto& entry = m.body["to"]["p1r0:bench"];
  EXPECT_EQ(entry["type"], 1);
  EXPECT_EQ(entry["body"].get<std::string>().size(), e.ciphertext_chars());
  Stamp s;
  ASSERT_TRUE(parse_stamp(p.data(), p.size(), &s));
  EXPECT_EQ(s.pub, 0u);
  EXPECT_EQ(s.seq, 12345u);
  EXPECT_EQ(s.sent_us, 987654321012u);
}

TEST(BenchE2ePayload, GroupHasOneEntryPerMemberDeviceAndSurvivesPerUserSlicing) {
  const auto devices = members(99);
  E2ePayload e(devices, 100, "cAbCdEfGh-");
  std::string p;
  ASSERT_TRUE(e.build(&p, Stamp{0, 7, 1234567890123}));
  EXPECT_NEAR(static_cast<double>(p.size()), 9900.0, 99 * 4.0);
  ClientMessage m = accepted(p, /*group_topic=*/true);
  ASSERT_EQ(m.body["to"].size(), 99u);
  // Distinct stand-ins, each valid base64.
  EXPECT_NE(m.body["to"][devices[0]]["body"], m.body["to"][devices[1]]["body"]);

  // What member 42 receives: the envelope with only its own entry.
  EnvelopeFields f;
  f.id = "0633a1b2c4d5e000";
  f.ts = 1;
  f.conv = "g:abc";
  f.from = "g100s0";
  f.dev = "bench";
  f.to = "g:abc";
  f.cid = m.cid;
  f.type = m.type;
  E2eEnvelopes split(f, m.body);
  const std::string delivered = split.for_user("g100r42");
  EXPECT_LT(delivered.size(), p.size() / 10);
  auto env = nlohmann::json::parse(delivered);
  ASSERT_EQ(env["body"]["to"].size(), 1u);
  EXPECT_TRUE(env["body"]["to"].contains("g100r42:bench"));
  Stamp s;
  ASSERT_TRUE(parse_stamp(delivered.data(), delivered.size(), &s));
  EXPECT_EQ(s.pub, 0u);
  EXPECT_EQ(s.seq, 7u);
  EXPECT_EQ(s.sent_us, 1234567890123u);
}

TEST(BenchE2ePayload, TinyPayloadStillHasACiphertextAndLongCidsAreRefused) {
  E2ePayload e({"a:b"}, 1, "c-");
  EXPECT_EQ(e.ciphertext_chars(), 4u);
  std::string p;
  ASSERT_TRUE(e.build(&p, Stamp{1, 2, 3}));
  accepted(p, false);

  E2ePayload wide({"a:b"}, 100, std::string(50, 'c'));
  EXPECT_FALSE(wide.build(&p, Stamp{4294967295u, 99999999999ULL, 99999999999999ULL}));
  EXPECT_GT(wide.cid(Stamp{4294967295u, 99999999999ULL, 99999999999999ULL}).size(), kMaxCidChars);
}

TEST(BenchE2eOptions, ChatTargetOnly) {
  bool help = false;
  Config c;
  EXPECT_EQ(parse_args({"--target", "chat", "--group", "100", "--e2e"}, &c, &help), "");
  EXPECT_TRUE(c.e2e);
  Config bare;
  std::string err = parse_args({"--e2e", "--pairs", "1"}, &bare, &help);
  EXPECT_NE(err.find("--target chat"), std::string::npos) << err;
  Config idle;
  EXPECT_NE(parse_args({"--target", "chat", "--idle", "10", "--e2e"}, &idle, &help), "");
  Config paho;
  EXPECT_NE(parse_args({"--target", "chat", "--client", "paho", "--e2e"}, &paho, &help), "");
  EXPECT_NE(usage().find("--e2e"), std::string::npos);
}

}  // namespace
}  // namespace chat::bench
