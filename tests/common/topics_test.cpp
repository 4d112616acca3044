#include "chat/common/topics.h"

#include <gtest/gtest.h>

namespace chat::topics {
namespace {

struct SendCase {
  const char* topic;
  SendKind kind;
  const char* target;
};

TEST(Topics, ParseSendTopic) {
  const SendCase cases[] = {
      {"dm/bob", SendKind::kDirect, "bob"},
      {"g/G1abc", SendKind::kGroup, "G1abc"},
      {"dm/bob/receipt", SendKind::kDirectReceipt, "bob"},
      {"g/G1/receipt", SendKind::kGroupReceipt, "G1"},
      {"dm/bob/typing", SendKind::kDirectTyping, "bob"},
      {"g/G1/typing", SendKind::kGroupTyping, "G1"},
      {"dm/Bob", SendKind::kInvalid, ""},
      {"dm/", SendKind::kInvalid, ""},
      {"dm//receipt", SendKind::kInvalid, ""},
      {"dm/bob/", SendKind::kInvalid, ""},
      {"dm/bob/other", SendKind::kInvalid, ""},
      {"dm/bob/receipt/x", SendKind::kInvalid, ""},
      {"dm/+", SendKind::kInvalid, ""},
      {"dm/#", SendKind::kInvalid, ""},
      {"g/a.b", SendKind::kInvalid, ""},
      {"u/bob/msg", SendKind::kInvalid, ""},
      {"presence/bob", SendKind::kInvalid, ""},
      {"$CONTROL/chat/v1", SendKind::kInvalid, ""},
      {"", SendKind::kInvalid, ""},
  };
  for (const auto& c : cases) {
    auto t = parse_send_topic(c.topic);
    EXPECT_EQ(t.kind, c.kind) << c.topic;
    if (c.kind != SendKind::kInvalid) {
      EXPECT_EQ(t.target, c.target) << c.topic;
    }
  }
}

TEST(Topics, SendTopicsRoundTrip) {
  EXPECT_EQ(direct("bob"), "dm/bob");
  EXPECT_EQ(group("G1", kReceipt), "g/G1/receipt");
  EXPECT_EQ(parse_send_topic(direct("bob", kTyping)).kind, SendKind::kDirectTyping);
  EXPECT_EQ(parse_send_topic(group("G1")).kind, SendKind::kGroup);
}

TEST(Topics, InboxAndPresence) {
  EXPECT_EQ(inbox("bob", kInboxMsg), "u/bob/msg");
  EXPECT_EQ(presence("bob"), "presence/bob");
  std::string u;
  EXPECT_TRUE(parse_presence("presence/bob", &u));
  EXPECT_EQ(u, "bob");
  EXPECT_FALSE(parse_presence("presence/+", &u));
  EXPECT_FALSE(parse_presence("presence/#", &u));
  EXPECT_FALSE(parse_presence("presence/", &u));
  EXPECT_FALSE(parse_presence("presence/bob/x", &u));
}

TEST(Topics, OwnInboxFilter) {
  EXPECT_TRUE(is_own_inbox_filter("u/alice/#", "alice"));
  EXPECT_TRUE(is_own_inbox_filter("u/alice/msg", "alice"));
  EXPECT_TRUE(is_own_inbox_filter("u/alice/event", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("u/bob/#", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("u/alice", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("u/alice/+", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("u/+/#", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("u/#", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("u/alicex/#", "alice"));
  EXPECT_FALSE(is_own_inbox_filter("#", "alice"));
}

TEST(Topics, Conversations) {
  EXPECT_EQ(dm_conversation("bob", "alice"), "dm:alice:bob");
  EXPECT_EQ(dm_conversation("alice", "bob"), "dm:alice:bob");
  auto c = parse_conversation("dm:alice:bob");
  EXPECT_EQ(c.kind, ConvKind::kDirect);
  EXPECT_EQ(c.a, "alice");
  EXPECT_EQ(c.b, "bob");
  EXPECT_EQ(parse_conversation("dm:bob:alice").kind, ConvKind::kInvalid);
  EXPECT_EQ(parse_conversation("dm:bob:bob").kind, ConvKind::kInvalid);
  EXPECT_EQ(parse_conversation("dm:bob").kind, ConvKind::kInvalid);
  EXPECT_EQ(parse_conversation("g:G1").kind, ConvKind::kGroup);
  EXPECT_EQ(parse_conversation("g:").kind, ConvKind::kInvalid);
  EXPECT_EQ(parse_conversation("x:y").kind, ConvKind::kInvalid);
}

}  // namespace
}  // namespace chat::topics
