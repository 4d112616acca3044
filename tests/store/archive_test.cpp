#include "chat/store/archive.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "chat/common/ids.h"
#include "temp_dir.h"

namespace chat::store {
namespace {

using testing::TempDir;

std::string id_of(uint64_t n) { return IdGenerator::format(0x0190000000000000ULL + n); }

std::string envelope_for(const std::string& id, const std::string& conv, const std::string& from,
                         size_t body_size = 20) {
  return R"({"id":")" + id + R"(","conv":")" + conv + R"(","from":")" + from + R"(","body":")" +
         std::string(body_size, 'x') + R"("})";
}

// Extracts the id back out of an envelope built by envelope_for.
std::string id_in(const std::string& envelope) { return envelope.substr(7, 16); }

std::vector<std::string> ids_in(const std::vector<std::string>& envelopes) {
  std::vector<std::string> ids;
  for (const auto& e : envelopes) ids.push_back(id_in(e));
  return ids;
}

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    open();
  }

  void open() {
    archive_.reset();
    ArchiveOptions options;
    options.path = dir_.sub("archive");
    auto archive = Archive::open(options);
    ASSERT_TRUE(archive.is_ok()) << archive.status().to_string();
    archive_ = std::move(archive).value();
  }

  // Appends one message with the next id; returns the id.
  std::string send(const std::string& conv, const std::string& from,
                   const std::vector<std::string>& participants, const std::string& cid = "") {
    std::string id = id_of(++counter_);
    AppendRequest request;
    request.id = id;
    request.conv = conv;
    request.from = from;
    request.client_id = from + ":phone";
    request.cid = cid.empty() ? "c" + std::to_string(counter_) : cid;
    request.envelope = envelope_for(id, conv, from);
    request.participants = participants;
    Status s = archive_->append(request);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return id;
  }

  Page page(const std::string& conv, size_t limit, const std::string& before = "",
            const std::string& after = "") {
    PageQuery query;
    query.limit = limit;
    query.before = before;
    query.after = after;
    auto result = archive_->conversation_page(conv, query);
    EXPECT_TRUE(result.is_ok()) << result.status().to_string();
    return result.is_ok() ? result.value() : Page{};
  }

  Page sync(const std::string& user, const std::string& since, size_t limit) {
    auto result = archive_->sync(user, since, limit);
    EXPECT_TRUE(result.is_ok()) << result.status().to_string();
    return result.is_ok() ? result.value() : Page{};
  }

  TempDir dir_;
  std::unique_ptr<Archive> archive_;
  uint64_t counter_ = 0;
};

TEST_F(ArchiveTest, MediaMessagesAreIndexedByMediaId) {
  auto send_media = [this](const std::string& conv, const std::string& from,
                           const std::vector<std::string>& participants, const std::string& media) {
    std::string id = id_of(++counter_);
    AppendRequest request;
    request.id = id;
    request.conv = conv;
    request.from = from;
    request.client_id = from + ":phone";
    request.cid = "m" + std::to_string(counter_);
    request.envelope = envelope_for(id, conv, from);
    request.participants = participants;
    request.media = media;
    EXPECT_TRUE(archive_->append(request).is_ok());
    return id;
  };
  const std::string a = send_media("dm:alice:bob", "alice", {"alice", "bob"}, "M1");
  send("dm:alice:bob", "bob", {"alice", "bob"});
  const std::string b = send_media("g:G1", "bob", {"bob", "carol"}, "M1");
  send_media("dm:alice:bob", "alice", {"alice", "bob"}, "M10");  // a longer id, same prefix
  auto refs = archive_->media_refs("M1");
  ASSERT_TRUE(refs.is_ok());
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].conv, "dm:alice:bob");
  EXPECT_EQ((*refs)[0].id, a);
  EXPECT_EQ((*refs)[0].from, "alice");
  EXPECT_EQ((*refs)[1].conv, "g:G1");
  EXPECT_EQ((*refs)[1].id, b);
  EXPECT_EQ((*refs)[1].from, "bob");
  EXPECT_EQ(archive_->media_refs("M10")->size(), 1u);
  EXPECT_TRUE(archive_->media_refs("nope")->empty());
  EXPECT_TRUE(archive_->media_refs("")->empty());
  // A media id with a NUL byte is refused, and the message with it.
  AppendRequest bad;
  bad.id = id_of(++counter_);
  bad.conv = "dm:alice:bob";
  bad.from = "alice";
  bad.envelope = "{}";
  bad.participants = {"alice", "bob"};
  bad.media = std::string("M\0x", 3);
  EXPECT_EQ(archive_->append(bad).code(), StatusCode::kInvalidArgument);
}

// 23 messages in dm:alice:bob, interleaved with a conversation whose id has
// the first as a prefix (must not leak into the page).
std::vector<std::string> fill_two_conversations(
    const std::function<std::string(const std::string&, const std::string&,
                                    const std::vector<std::string>&)>& send) {
  std::vector<std::string> ids;
  for (int i = 0; i < 23; ++i) {
    ids.push_back(send("dm:alice:bob", i % 2 ? "alice" : "bob", {"alice", "bob"}));
    if (i % 3 == 0) send("dm:alice:bobby", "bobby", {"alice", "bobby"});
  }
  return ids;
}

TEST_F(ArchiveTest, LatestPageThenWalkBackCollectsEverythingOnce) {
  auto ids = fill_two_conversations([this](auto& c, auto& f, auto& p) { return send(c, f, p); });

  Page latest = page("dm:alice:bob", 5);
  EXPECT_EQ(ids_in(latest.envelopes), std::vector<std::string>(ids.end() - 5, ids.end()));
  ASSERT_TRUE(latest.next.has_value());
  EXPECT_EQ(*latest.next, ids[ids.size() - 5]);

  std::vector<std::string> collected = ids_in(latest.envelopes);
  std::optional<std::string> cursor = latest.next;
  int pages = 1;
  while (cursor) {
    Page p = page("dm:alice:bob", 5, *cursor);
    ASSERT_FALSE(p.envelopes.empty());
    auto page_ids = ids_in(p.envelopes);
    EXPECT_TRUE(std::is_sorted(page_ids.begin(), page_ids.end()));
    collected.insert(collected.begin(), page_ids.begin(), page_ids.end());
    cursor = p.next;
    if (cursor) {
      EXPECT_EQ(*cursor, page_ids.front());
    }
    ASSERT_LT(++pages, 10);
  }
  EXPECT_EQ(pages, 5);  // 5 + 5 + 5 + 5 + 3
  EXPECT_EQ(collected, ids);
}

TEST_F(ArchiveTest, WalkForwardWithAfter) {
  auto ids = fill_two_conversations([this](auto& c, auto& f, auto& p) { return send(c, f, p); });

  std::vector<std::string> collected;
  // Start from before the first message: any id below it works as a cursor.
  std::optional<std::string> cursor = IdGenerator::format(1);
  int pages = 0;
  while (cursor) {
    Page p = page("dm:alice:bob", 4, "", *cursor);
    ASSERT_FALSE(p.envelopes.empty());
    auto page_ids = ids_in(p.envelopes);
    EXPECT_TRUE(std::is_sorted(page_ids.begin(), page_ids.end()));
    collected.insert(collected.end(), page_ids.begin(), page_ids.end());
    cursor = p.next;
    if (cursor) {
      EXPECT_EQ(*cursor, page_ids.back());
    }
    ASSERT_LT(++pages, 10);
  }
  EXPECT_EQ(pages, 6);  // 4 * 5 + 3
  EXPECT_EQ(collected, ids);

  // After an id in the middle: strictly greater.
  Page p = page("dm:alice:bob", 3, "", ids[10]);
  EXPECT_EQ(ids_in(p.envelopes), std::vector<std::string>(ids.begin() + 11, ids.begin() + 14));
  ASSERT_TRUE(p.next.has_value());
  EXPECT_EQ(*p.next, ids[13]);
}

TEST_F(ArchiveTest, PageLimitEdgeCases) {
  // Empty conversation.
  Page empty = page("dm:alice:bob", 10);
  EXPECT_TRUE(empty.envelopes.empty());
  EXPECT_FALSE(empty.next.has_value());

  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(send("dm:alice:bob", "alice", {"alice", "bob"}));

  // limit 0 is treated as 1.
  Page one = page("dm:alice:bob", 0);
  EXPECT_EQ(ids_in(one.envelopes), std::vector<std::string>{ids[3]});
  EXPECT_EQ(one.next, ids[3]);

  // Exactly everything: no next in either direction.
  Page all = page("dm:alice:bob", 4);
  EXPECT_EQ(ids_in(all.envelopes), ids);
  EXPECT_FALSE(all.next.has_value());
  Page all_after = page("dm:alice:bob", 4, "", IdGenerator::format(0));
  EXPECT_EQ(ids_in(all_after.envelopes), ids);
  EXPECT_FALSE(all_after.next.has_value());

  // One short of everything: next set.
  Page three = page("dm:alice:bob", 3);
  EXPECT_EQ(three.next, ids[1]);
  Page three_after = page("dm:alice:bob", 3, "", IdGenerator::format(0));
  EXPECT_EQ(three_after.next, ids[2]);

  // More than everything.
  EXPECT_EQ(ids_in(page("dm:alice:bob", 500).envelopes), ids);

  // Before the first / after the last: empty, no next.
  Page before_first = page("dm:alice:bob", 10, ids[0]);
  EXPECT_TRUE(before_first.envelopes.empty());
  EXPECT_FALSE(before_first.next.has_value());
  Page after_last = page("dm:alice:bob", 10, "", ids[3]);
  EXPECT_TRUE(after_last.envelopes.empty());
  EXPECT_FALSE(after_last.next.has_value());

  // before = the second id: only the first, nothing older.
  Page before_second = page("dm:alice:bob", 10, ids[1]);
  EXPECT_EQ(ids_in(before_second.envelopes), std::vector<std::string>{ids[0]});
  EXPECT_FALSE(before_second.next.has_value());

  // before wins when both are given.
  Page both = page("dm:alice:bob", 10, ids[2], ids[0]);
  EXPECT_EQ(ids_in(both.envelopes), (std::vector<std::string>{ids[0], ids[1]}));

  // A cursor that is not an archived id still bounds the range.
  Page between = page("dm:alice:bob", 10, ids[2] + "0");
  EXPECT_EQ(ids_in(between.envelopes), (std::vector<std::string>{ids[0], ids[1], ids[2]}));
}

TEST_F(ArchiveTest, SyncWalksAllConversationsOfAUser) {
  std::vector<std::string> alice_ids;
  std::vector<std::string> bob_ids;
  for (int i = 0; i < 17; ++i) {
    if (i % 3 == 0) {
      auto id = send("dm:alice:carol", "carol", {"alice", "carol"});
      alice_ids.push_back(id);
    } else {
      auto id = send("dm:alice:bob", i % 2 ? "alice" : "bob", {"alice", "bob"});
      alice_ids.push_back(id);
      bob_ids.push_back(id);
    }
    if (i % 4 == 0) send("dm:bob:carol", "bob", {"bob", "carol"});
  }

  // Walk alice's sync with a small page.
  std::vector<std::string> collected;
  std::string since;
  int pages = 0;
  for (;;) {
    Page p = sync("alice", since, 4);
    if (p.envelopes.empty()) {
      EXPECT_FALSE(p.next.has_value());
      break;
    }
    ASSERT_TRUE(p.next.has_value());
    auto page_ids = ids_in(p.envelopes);
    EXPECT_EQ(*p.next, page_ids.back());
    collected.insert(collected.end(), page_ids.begin(), page_ids.end());
    since = *p.next;
    ASSERT_LT(++pages, 20);
  }
  EXPECT_EQ(collected, alice_ids);

  // Bob sees what he sent and what he received, in id order.
  std::vector<std::string> bob_all;
  for (const auto& e : sync("bob", "", 500).envelopes) {
    if (e.find("dm:alice:bob") != std::string::npos) bob_all.push_back(id_in(e));
  }
  EXPECT_EQ(bob_all, bob_ids);
  bool bob_sent = false, bob_received = false;
  for (const auto& e : sync("bob", "", 500).envelopes) {
    if (e.find(R"("from":"bob")") != std::string::npos) bob_sent = true;
    if (e.find(R"("from":"alice")") != std::string::npos) bob_received = true;
  }
  EXPECT_TRUE(bob_sent);
  EXPECT_TRUE(bob_received);

  // since = the middle of the stream.
  Page tail = sync("alice", alice_ids[9], 500);
  EXPECT_EQ(ids_in(tail.envelopes),
            std::vector<std::string>(alice_ids.begin() + 10, alice_ids.end()));

  // Unknown user, and a user whose id prefixes another's.
  EXPECT_TRUE(sync("nobody", "", 10).envelopes.empty());
  send("dm:al:bob", "al", {"al", "bob"});
  EXPECT_EQ(sync("al", "", 10).envelopes.size(), 1u);
}

TEST_F(ArchiveTest, ConversationsOrderAndUnread) {
  std::string ab1 = send("dm:alice:bob", "alice", {"alice", "bob"});
  std::string ab2 = send("dm:alice:bob", "alice", {"alice", "bob"});
  std::string ab3 = send("dm:alice:bob", "bob", {"alice", "bob"});
  std::string ab4 = send("dm:alice:bob", "bob", {"alice", "bob"});
  std::string ab5 = send("dm:alice:bob", "bob", {"alice", "bob"});
  std::string g1 = send("g:team", "carol", {"alice", "bob", "carol"});
  std::string ac1 = send("dm:alice:carol", "carol", {"alice", "carol"});

  auto alice = archive_->conversations("alice", 10);
  ASSERT_TRUE(alice.is_ok()) << alice.status().to_string();
  ASSERT_EQ(alice->size(), 3u);
  EXPECT_EQ((*alice)[0].conv, "dm:alice:carol");
  EXPECT_EQ((*alice)[0].last_id, ac1);
  EXPECT_EQ((*alice)[0].unread, 1);
  EXPECT_EQ((*alice)[0].last_envelope, envelope_for(ac1, "dm:alice:carol", "carol"));
  EXPECT_EQ((*alice)[1].conv, "g:team");
  EXPECT_EQ((*alice)[1].unread, 1);
  EXPECT_EQ((*alice)[2].conv, "dm:alice:bob");
  EXPECT_EQ((*alice)[2].last_id, ab5);
  EXPECT_EQ((*alice)[2].unread, 3);  // bob's three since alice last sent

  auto bob = archive_->conversations("bob", 10);
  ASSERT_TRUE(bob.is_ok());
  ASSERT_EQ(bob->size(), 2u);
  EXPECT_EQ((*bob)[0].conv, "g:team");
  EXPECT_EQ((*bob)[1].conv, "dm:alice:bob");
  EXPECT_EQ((*bob)[1].unread, 0);  // bob sent last

  // Sending resets the sender's unread.
  send("dm:alice:bob", "alice", {"alice", "bob"});
  alice = archive_->conversations("alice", 10);
  ASSERT_TRUE(alice.is_ok());
  EXPECT_EQ((*alice)[0].conv, "dm:alice:bob");
  EXPECT_EQ((*alice)[0].unread, 0);
  bob = archive_->conversations("bob", 10);
  ASSERT_TRUE(bob.is_ok());
  EXPECT_EQ((*bob)[0].conv, "dm:alice:bob");
  EXPECT_EQ((*bob)[0].unread, 1);

  // limit keeps the most recent.
  auto top = archive_->conversations("alice", 1);
  ASSERT_TRUE(top.is_ok());
  ASSERT_EQ(top->size(), 1u);
  EXPECT_EQ((*top)[0].conv, "dm:alice:bob");

  auto nobody = archive_->conversations("nobody", 10);
  ASSERT_TRUE(nobody.is_ok());
  EXPECT_TRUE(nobody->empty());
  (void)ab1, (void)ab2, (void)ab3, (void)ab4, (void)g1;
}

// Unread counts are read-modify-write through an in-memory cache and updated
// in place in the memtable: after a reopen (WAL replay, empty cache) they must
// continue from the stored values.
TEST_F(ArchiveTest, UnreadCountsSurviveReopen) {
  for (int i = 0; i < 5; ++i) send("dm:alice:bob", "bob", {"alice", "bob"});
  for (int i = 0; i < 120; ++i) send("g:team", "carol", {"alice", "bob", "carol"});
  open();
  send("dm:alice:bob", "bob", {"alice", "bob"});
  auto alice = archive_->conversations("alice", 10);
  ASSERT_TRUE(alice.is_ok()) << alice.status().to_string();
  ASSERT_EQ(alice->size(), 2u);
  EXPECT_EQ((*alice)[0].conv, "dm:alice:bob");
  EXPECT_EQ((*alice)[0].unread, 6);
  EXPECT_EQ((*alice)[1].conv, "g:team");
  EXPECT_EQ((*alice)[1].unread, 120);  // grew from 2 to 3 digits in place
  auto carol = archive_->conversations("carol", 10);
  ASSERT_TRUE(carol.is_ok());
  ASSERT_EQ(carol->size(), 1u);
  EXPECT_EQ((*carol)[0].unread, 0);
}

TEST_F(ArchiveTest, HasConversationAndEnvelope) {
  std::string id = send("dm:alice:bob", "alice", {"alice", "bob"});
  EXPECT_TRUE(archive_->has_conversation("alice", "dm:alice:bob").value());
  EXPECT_TRUE(archive_->has_conversation("bob", "dm:alice:bob").value());
  EXPECT_FALSE(archive_->has_conversation("carol", "dm:alice:bob").value());
  EXPECT_FALSE(archive_->has_conversation("alice", "dm:alice:bo").value());

  auto found = archive_->envelope("dm:alice:bob", id);
  ASSERT_TRUE(found.is_ok());
  EXPECT_EQ(*found, envelope_for(id, "dm:alice:bob", "alice"));
  auto missing = archive_->envelope("dm:alice:bob", id_of(999));
  ASSERT_TRUE(missing.is_ok());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(ArchiveTest, DuplicateLookupReturnsTheOriginal) {
  std::string id = send("dm:alice:bob", "alice", {"alice", "bob"}, "cid-1");
  send("dm:alice:bob", "alice", {"alice", "bob"}, "cid-2");

  auto dup = archive_->find_duplicate("alice:phone", "cid-1");
  ASSERT_TRUE(dup.is_ok()) << dup.status().to_string();
  ASSERT_TRUE(dup->has_value());
  EXPECT_EQ(**dup, envelope_for(id, "dm:alice:bob", "alice"));

  // Idempotency is per sender device.
  auto other_device = archive_->find_duplicate("alice:laptop", "cid-1");
  ASSERT_TRUE(other_device.is_ok());
  EXPECT_FALSE(other_device->has_value());
  auto unknown = archive_->find_duplicate("alice:phone", "cid-3");
  ASSERT_TRUE(unknown.is_ok());
  EXPECT_FALSE(unknown->has_value());
}

TEST_F(ArchiveTest, MaxIdSurvivesReopen) {
  auto empty = archive_->max_id();
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(*empty, "");

  send("dm:alice:bob", "alice", {"alice", "bob"});
  std::string last = send("g:team", "bob", {"alice", "bob"});
  EXPECT_EQ(archive_->max_id().value(), last);

  open();
  EXPECT_EQ(archive_->max_id().value(), last);
  // The writer's floor survives too: the same id is refused after reopening.
  AppendRequest again;
  again.id = last;
  again.conv = "dm:alice:bob";
  again.from = "alice";
  again.envelope = "{}";
  again.participants = {"alice", "bob"};
  EXPECT_EQ(archive_->append(again).code(), StatusCode::kInvalidArgument);
  // Data survives too.
  EXPECT_EQ(page("dm:alice:bob", 10).envelopes.size(), 1u);
  EXPECT_EQ(sync("alice", "", 10).envelopes.size(), 2u);
}

TEST_F(ArchiveTest, RefusesIdsThatDoNotIncrease) {
  std::string last = send("dm:alice:bob", "alice", {"alice", "bob"});
  AppendRequest request;
  request.conv = "dm:alice:bob";
  request.from = "alice";
  request.envelope = "{}";
  request.participants = {"alice", "bob"};

  request.id = last;
  EXPECT_EQ(archive_->append(request).code(), StatusCode::kInvalidArgument);
  request.id = id_of(0);
  EXPECT_EQ(archive_->append(request).code(), StatusCode::kInvalidArgument);
  request.id = "not-an-id";
  EXPECT_EQ(archive_->append(request).code(), StatusCode::kInvalidArgument);
  request.id = id_of(100);
  request.conv = std::string("dm:a\0b", 6);
  EXPECT_EQ(archive_->append(request).code(), StatusCode::kInvalidArgument);

  // Nothing of the refused appends was written.
  EXPECT_EQ(page("dm:alice:bob", 10).envelopes.size(), 1u);
  EXPECT_EQ(archive_->max_id().value(), last);
  request.conv = "dm:alice:bob";
  EXPECT_TRUE(archive_->append(request).is_ok());
}

TEST_F(ArchiveTest, Users) {
  EXPECT_FALSE(archive_->user_exists("alice").value());
  EXPECT_TRUE(archive_->add_user("alice").is_ok());
  EXPECT_TRUE(archive_->add_user("alice").is_ok());  // idempotent
  EXPECT_TRUE(archive_->user_exists("alice").value());
  EXPECT_FALSE(archive_->user_exists("alic").value());
  EXPECT_TRUE(archive_->remove_user("alice").is_ok());
  EXPECT_FALSE(archive_->user_exists("alice").value());
  EXPECT_TRUE(archive_->remove_user("alice").is_ok());
}

// has_user caches what it found; removal must not leave a stale "yes", and a
// user who comes back is found again.
TEST_F(ArchiveTest, HasUserFollowsAddAndRemove) {
  EXPECT_FALSE(archive_->has_user("alice").value());
  EXPECT_TRUE(archive_->add_user("alice").is_ok());
  EXPECT_TRUE(archive_->has_user("alice").value());
  EXPECT_TRUE(archive_->has_user("alice").value());  // now from the cache
  EXPECT_FALSE(archive_->has_user("alic").value());
  EXPECT_TRUE(archive_->remove_user("alice").is_ok());
  EXPECT_FALSE(archive_->has_user("alice").value());
  EXPECT_FALSE(archive_->user_exists("alice").value());
  EXPECT_TRUE(archive_->add_user("alice").is_ok());
  EXPECT_TRUE(archive_->has_user("alice").value());
}

// Bans (issue 5) live in meta: they survive a reopen, and max_id next to
// them is untouched by the ban scan.
TEST_F(ArchiveTest, BansSurviveReopen) {
  EXPECT_TRUE(archive_->banned_users().value().empty());
  EXPECT_FALSE(archive_->is_banned("bob").value());
  std::string id = send("dm:alice:bob", "alice", {"alice", "bob"});
  ASSERT_TRUE(archive_->set_ban("bob", true).is_ok());
  ASSERT_TRUE(archive_->set_ban("carol", true).is_ok());
  ASSERT_TRUE(archive_->set_ban("carol", true).is_ok());  // idempotent
  ASSERT_TRUE(archive_->set_ban("dave", true).is_ok());
  ASSERT_TRUE(archive_->set_ban("dave", false).is_ok());
  EXPECT_FALSE(archive_->set_ban("", true).is_ok());

  open();
  EXPECT_EQ(archive_->banned_users().value(), (std::vector<std::string>{"bob", "carol"}));
  EXPECT_TRUE(archive_->is_banned("bob").value());
  EXPECT_FALSE(archive_->is_banned("dave").value());
  EXPECT_EQ(archive_->max_id().value(), id);
  ASSERT_TRUE(archive_->set_ban("bob", false).is_ok());
  open();
  EXPECT_EQ(archive_->banned_users().value(), (std::vector<std::string>{"carol"}));
}

TEST_F(ArchiveTest, OpenFailureIsUnavailableAndNamesThePath) {
  std::string path = dir_.sub("archive");  // already open: RocksDB's LOCK refuses
  ArchiveOptions options;
  options.path = path;
  auto second = Archive::open(options);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(path), std::string::npos);

  auto reader = ArchiveReader::open(dir_.sub("nothing-here"), dir_.sub("secondary"));
  ASSERT_FALSE(reader.is_ok());
  EXPECT_EQ(reader.status().code(), StatusCode::kUnavailable);
}

TEST_F(ArchiveTest, ReaderSeesAppendsAfterCatchUp) {
  ASSERT_TRUE(archive_->add_user("alice").is_ok());
  std::string first = send("dm:alice:bob", "alice", {"alice", "bob"});

  auto opened = ArchiveReader::open(dir_.sub("archive"), dir_.sub("secondary"));
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  auto reader = std::move(opened).value();
  EXPECT_EQ(reader->conversation_page("dm:alice:bob", PageQuery{})->envelopes.size(), 1u);
  EXPECT_TRUE(reader->user_exists("alice").value());

  std::string second = send("dm:alice:bob", "bob", {"alice", "bob"}, "dup");
  ASSERT_TRUE(archive_->add_user("bob").is_ok());
  ASSERT_TRUE(reader->catch_up().is_ok());

  auto page = reader->conversation_page("dm:alice:bob", PageQuery{});
  ASSERT_TRUE(page.is_ok());
  EXPECT_EQ(ids_in(page->envelopes), (std::vector<std::string>{first, second}));
  auto synced = reader->sync("alice", first, 10);
  ASSERT_TRUE(synced.is_ok());
  EXPECT_EQ(ids_in(synced->envelopes), std::vector<std::string>{second});
  EXPECT_TRUE(reader->user_exists("bob").value());
  auto convs = reader->conversations("alice", 10);
  ASSERT_TRUE(convs.is_ok());
  ASSERT_EQ(convs->size(), 1u);
  EXPECT_EQ((*convs)[0].last_id, second);
  EXPECT_EQ((*convs)[0].unread, 1);
  EXPECT_TRUE(reader->has_conversation("bob", "dm:alice:bob").value());
}

// Enough data to flush memtables several times: the reader must follow the
// primary through flushes and WAL switches, while several threads read and
// catch up at once.
TEST_F(ArchiveTest, ReaderFollowsAcrossFlushesConcurrently) {
  auto opened = ArchiveReader::open(dir_.sub("archive"), dir_.sub("secondary"));
  ASSERT_TRUE(opened.is_ok()) << opened.status().to_string();
  auto reader = std::move(opened).value();

  constexpr int kMessages = 30000;
  std::atomic<int> acknowledged{0};
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      std::string since;
      size_t seen = 0;
      while (!done.load()) {
        int floor = acknowledged.load();
        if (!reader->catch_up().is_ok()) ++failures;
        auto p = reader->sync("alice", since, 500);
        if (!p.is_ok()) {
          ++failures;
          continue;
        }
        seen += p->envelopes.size();
        if (p->next) since = *p->next;
        // Everything acknowledged before catch_up began must be visible.
        if (seen < static_cast<size_t>(floor)) {
          auto rest = reader->sync("alice", since, static_cast<size_t>(floor));
          if (!rest.is_ok())
            ++failures;
          else {
            seen += rest->envelopes.size();
            if (rest->next) since = *rest->next;
          }
          if (seen < static_cast<size_t>(floor)) ++failures;
        }
      }
    });
  }
  std::string last_bob;
  for (int i = 0; i < kMessages; ++i) {
    std::string id = id_of(++counter_);
    if (i % 2) last_bob = id;
    AppendRequest request;
    request.id = id;
    request.conv = i % 2 ? "dm:alice:bob" : "dm:alice:carol";
    request.from = "alice";
    request.envelope = envelope_for(id, request.conv, "alice", 600);
    request.participants = {"alice", i % 2 ? "bob" : "carol"};
    ASSERT_TRUE(archive_->append(request).is_ok());
    acknowledged.store(i + 1);
  }
  done.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);

  ASSERT_TRUE(reader->catch_up().is_ok());
  size_t total = 0;
  std::string since;
  std::string previous;
  for (;;) {
    auto p = reader->sync("alice", since, 1000);
    ASSERT_TRUE(p.is_ok());
    if (!p->next) break;
    for (const auto& e : p->envelopes) {
      EXPECT_LT(previous, id_in(e));
      previous = id_in(e);
    }
    total += p->envelopes.size();
    since = *p->next;
  }
  EXPECT_EQ(total, static_cast<size_t>(kMessages));
  PageQuery query;
  query.limit = 500;
  auto bob = reader->conversation_page("dm:alice:bob", query);
  ASSERT_TRUE(bob.is_ok());
  EXPECT_EQ(bob->envelopes.size(), 500u);
  EXPECT_EQ(id_in(bob->envelopes.back()), last_bob);
}

}  // namespace
}  // namespace chat::store
