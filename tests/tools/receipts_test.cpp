#include "chatctl/receipts.h"

#include <gtest/gtest.h>

namespace chat::tools {
namespace {

using nlohmann::json;
using Ids = std::vector<std::string>;

json envelope(const std::string& id, const std::string& from) {
  return {{"id", id}, {"from", from}, {"conv", "dm:alice:bob"}, {"type", "text"}, {"body", "x"}};
}

TEST(ReceiptTopic, DirectAndGroup) {
  EXPECT_EQ(*receipt_topic_for("alice", "dm:alice:bob"), "dm/bob/receipt");
  EXPECT_EQ(*receipt_topic_for("bob", "dm:alice:bob"), "dm/alice/receipt");
  EXPECT_EQ(*receipt_topic_for("alice", "g:Gx7-_q"), "g/Gx7-_q/receipt");
  EXPECT_FALSE(receipt_topic_for("carol", "dm:alice:bob").is_ok());
  EXPECT_FALSE(receipt_topic_for("alice", "dm:bob:alice").is_ok());  // not canonical
  EXPECT_FALSE(receipt_topic_for("alice", "g:bad/gid").is_ok());
  EXPECT_FALSE(receipt_topic_for("alice", "bob").is_ok());
}

TEST(ReceiptPayload, Shape) {
  EXPECT_EQ(receipt_payload({"0000000000000001", "0000000000000002"}, "read"),
            R"({"ids":["0000000000000001","0000000000000002"],"status":"read"})");
}

TEST(IdsToMarkRead, UnreadFromOthersOrAtLeastTheNewest) {
  json page =
      json::array({envelope("0000000000000001", "bob"), envelope("0000000000000002", "alice"),
                   envelope("0000000000000003", "bob"), envelope("0000000000000004", "bob"),
                   envelope("0000000000000005", "alice")});
  EXPECT_EQ(ids_to_mark_read(page, "alice", 2), (Ids{"0000000000000003", "0000000000000004"}));
  EXPECT_EQ(ids_to_mark_read(page, "alice", 0), (Ids{"0000000000000004"}));
  EXPECT_EQ(ids_to_mark_read(page, "alice", 50),
            (Ids{"0000000000000001", "0000000000000003", "0000000000000004"}));
  EXPECT_EQ(ids_to_mark_read(page, "bob", 1), (Ids{"0000000000000005"}));
  EXPECT_TRUE(
      ids_to_mark_read(json::array({envelope("0000000000000001", "alice")}), "alice", 3).empty());
  EXPECT_TRUE(ids_to_mark_read(json("junk"), "alice", 3).empty());
  // Malformed entries are skipped.
  json odd = json::array({json{{"from", "bob"}}, envelope("not-an-id", "bob"), 7,
                          envelope("0000000000000009", "bob")});
  EXPECT_EQ(ids_to_mark_read(odd, "alice", 5), (Ids{"0000000000000009"}));
}

TEST(ReceiptBatcher, OnePublishPerConversationPerInterval) {
  ReceiptBatcher b(1000, 500);
  EXPECT_TRUE(b.empty());
  EXPECT_FALSE(b.next_due_ms().has_value());
  b.add("dm:alice:bob", "01");
  b.add("dm:alice:bob", "02");
  b.add("dm:alice:bob", "01");  // repeat
  b.add("g:team", "03");
  EXPECT_EQ(b.pending_ids(), 3u);

  auto due = b.take_due(10'000);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].conv, "dm:alice:bob");
  EXPECT_EQ(due[0].ids, (Ids{"01", "02"}));
  EXPECT_EQ(due[1].conv, "g:team");
  EXPECT_EQ(due[1].ids, (Ids{"03"}));
  EXPECT_TRUE(b.empty());

  // Within the second: held back, and batched.
  b.add("dm:alice:bob", "04");
  b.add("dm:alice:bob", "05");
  EXPECT_TRUE(b.take_due(10'500).empty());
  EXPECT_EQ(*b.next_due_ms(), 11'000);
  due = b.take_due(11'000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].ids, (Ids{"04", "05"}));

  // Another conversation is not held back by the first.
  b.add("dm:alice:carol", "06");
  EXPECT_EQ(b.take_due(11'001).size(), 1u);
}

TEST(ReceiptBatcher, LargeBacklogGoesInChunks) {
  ReceiptBatcher b(1000, 2);
  for (const char* id : {"1", "2", "3", "4", "5"}) b.add("c", id);
  EXPECT_EQ(b.take_due(0)[0].ids, (Ids{"1", "2"}));
  EXPECT_TRUE(b.take_due(999).empty());
  EXPECT_EQ(b.take_due(1000)[0].ids, (Ids{"3", "4"}));
  EXPECT_EQ(b.take_due(2000)[0].ids, (Ids{"5"}));
  EXPECT_TRUE(b.empty());
}

TEST(ReceiptBatcher, RequeueAndDrop) {
  ReceiptBatcher b(1000, 500);
  b.add("c", "1");
  auto due = b.take_due(0);
  b.add("c", "2");
  b.requeue(due[0]);  // the publish failed: first in line again
  EXPECT_TRUE(b.take_due(500).empty());
  auto again = b.take_due(1000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].ids, (Ids{"1", "2"}));

  b.add("g:old", "9");
  b.drop("g:old");
  EXPECT_TRUE(b.empty());
  b.requeue({"c", {}});
  EXPECT_TRUE(b.empty());
}

TEST(PresencePeers, ConversationsThenGroupMembersCapped) {
  json conversations = json::array({
      {{"conv", "dm:alice:bob"}},
      {{"conv", "g:team"}},
      {{"conv", "dm:aaron:alice"}},
      {{"conv", "dm:alice:bob"}},
      {{"conv", "junk"}},
      {{"unread", 3}},
  });
  std::vector<json> groups = {
      {{"id", "team"}, {"members", {"alice", "carol", "bob", "dave"}}},
      {{"id", "x"}},                                      // no members: skipped
      {{"id", "y"}, {"members", {"Not Valid", "erin"}}},  // invalid ids skipped
  };
  EXPECT_EQ(presence_peers("alice", conversations, groups, 200),
            (Ids{"bob", "aaron", "carol", "dave", "erin"}));
  EXPECT_EQ(presence_peers("alice", conversations, groups, 3), (Ids{"bob", "aaron", "carol"}));
  EXPECT_TRUE(presence_peers("alice", json(), {}, 200).empty());
}

TEST(PresenceTracker, FirstStateThenChanges) {
  PresenceTracker t;
  // Retained state at subscribe time: online is news, offline is not.
  EXPECT_TRUE(t.update("bob", "online", /*retained=*/true));
  EXPECT_FALSE(t.update("carol", "offline", /*retained=*/true));
  EXPECT_EQ(*t.status_of("carol"), "offline");
  // Changes are news, repeats (a retained copy after a reconnect) are not.
  EXPECT_FALSE(t.update("bob", "online", true));
  EXPECT_TRUE(t.update("bob", "offline", false));
  EXPECT_TRUE(t.update("carol", "online", false));
  EXPECT_FALSE(t.update("carol", "online", false));
  // A live offline for someone never seen is news.
  EXPECT_TRUE(t.update("dave", "offline", false));
  EXPECT_FALSE(t.status_of("erin").has_value());
}

}  // namespace
}  // namespace chat::tools
