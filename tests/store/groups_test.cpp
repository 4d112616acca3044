// Groups, membership periods and visible-range paging, read markers and
// unread counts, blocks and presence (chat/store/archive.h).
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chat/common/ids.h"
#include "chat/store/archive.h"
#include "temp_dir.h"

namespace chat::store {
namespace {

using testing::TempDir;

std::string id_of(uint64_t n) { return IdGenerator::format(0x0190000000000000ULL + n); }

std::string envelope_for(const std::string& id, const std::string& conv, const std::string& from) {
  return R"({"id":")" + id + R"(","conv":")" + conv + R"(","from":")" + from +
         R"(","body":"xxxxxxxx"})";
}

// The id back out of an envelope built by envelope_for.
std::string id_in(const std::string& envelope) { return envelope.substr(7, 16); }

std::vector<std::string> ids_in(const std::vector<std::string>& envelopes) {
  std::vector<std::string> ids;
  for (const auto& e : envelopes) ids.push_back(id_in(e));
  return ids;
}

class GroupsTest : public ::testing::Test {
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

  std::unique_ptr<ArchiveReader> open_reader() {
    auto reader = ArchiveReader::open(dir_.sub("archive"), dir_.sub("secondary"));
    EXPECT_TRUE(reader.is_ok()) << reader.status().to_string();
    return reader.is_ok() ? std::move(reader).value() : nullptr;
  }

  // The next id from the same sequence as messages: a group boundary.
  std::string boundary() { return id_of(++counter_); }

  std::string send_envelope(const std::string& conv, const std::string& from,
                            const std::vector<std::string>& participants,
                            const std::string& envelope) {
    AppendRequest request;
    request.id = id_of(++counter_);
    request.conv = conv;
    request.from = from;
    request.client_id = from + ":phone";
    request.cid = "c" + std::to_string(counter_);
    request.envelope = envelope.empty() ? envelope_for(request.id, conv, from) : envelope;
    request.participants = participants;
    Status s = archive_->append(request);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return request.id;
  }

  std::string send(const std::string& conv, const std::string& from,
                   const std::vector<std::string>& participants) {
    return send_envelope(conv, from, participants, "");
  }

  // A group message to the group's current members.
  std::string send_group(const std::string& gid, const std::string& from) {
    auto info = archive_->group(gid);
    EXPECT_TRUE(info.is_ok() && info->has_value());
    return send("g:" + gid, from, (*info)->members);
  }

  GroupInfo make_group(const std::string& gid, const std::string& creator,
                       std::vector<std::string> members) {
    GroupInfo g;
    g.id = gid;
    g.name = "team " + gid;
    g.creator = creator;
    g.created_ms = 1764464000123;
    g.members = std::move(members);
    return g;
  }

  Membership membership(const std::string& gid, const std::string& user) {
    auto m = archive_->membership(gid, user);
    EXPECT_TRUE(m.is_ok()) << m.status().to_string();
    return m.is_ok() ? m.value() : Membership{};
  }

  int64_t unread(const std::string& user, const std::string& conv) {
    auto convs = archive_->conversations(user, 100);
    EXPECT_TRUE(convs.is_ok());
    if (!convs.is_ok()) return -1;
    for (const auto& c : *convs) {
      if (c.conv == conv) return c.unread;
    }
    return -1;
  }

  TempDir dir_;
  std::unique_ptr<Archive> archive_;
  uint64_t counter_ = 0;
};

void expect_periods(const Membership& m,
                    const std::vector<std::pair<std::string, std::string>>& want) {
  ASSERT_EQ(m.periods.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(m.periods[i].from, want[i].first) << i;
    EXPECT_EQ(m.periods[i].to, want[i].second) << i;
  }
}

TEST_F(GroupsTest, CreateGroup) {
  std::string at = boundary();
  GroupInfo g = make_group("g1", "alice", {"carol", "bob", "carol"});
  ASSERT_TRUE(archive_->create_group(g, at).is_ok());

  auto stored = archive_->group("g1");
  ASSERT_TRUE(stored.is_ok());
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->id, "g1");
  EXPECT_EQ((*stored)->name, "team g1");
  EXPECT_EQ((*stored)->creator, "alice");
  EXPECT_EQ((*stored)->created_ms, 1764464000123);
  EXPECT_EQ((*stored)->members, (std::vector<std::string>{"alice", "bob", "carol"}));
  EXPECT_EQ((*stored)->admins, std::vector<std::string>{"alice"});
  for (const char* user : {"alice", "bob", "carol"}) {
    expect_periods(membership("g1", user), {{at, ""}});
    EXPECT_TRUE(membership("g1", user).current());
    EXPECT_EQ(archive_->groups_of(user).value(), std::vector<std::string>{"g1"});
  }
  EXPECT_TRUE(membership("g1", "dave").periods.empty());
  EXPECT_FALSE(archive_->group("nope").value().has_value());

  // Taken id; malformed or stale boundary; an admin who is not a member.
  EXPECT_EQ(archive_->create_group(make_group("g1", "bob", {}), boundary()).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(archive_->create_group(make_group("g2", "bob", {}), "not-an-id").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(archive_->create_group(make_group("g2", "bob", {}), id_of(0)).code(),
            StatusCode::kInvalidArgument);
  GroupInfo bad_admin = make_group("g2", "bob", {"carol"});
  bad_admin.admins = {"zed"};
  EXPECT_EQ(archive_->create_group(bad_admin, boundary()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(archive_->create_group(make_group("", "bob", {}), boundary()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(archive_->group("g2").value().has_value());

  GroupInfo g2 = make_group("g2", "bob", {"carol", "dave"});
  g2.admins = {"dave"};
  ASSERT_TRUE(archive_->create_group(g2, boundary()).is_ok());
  EXPECT_EQ(archive_->group("g2").value()->admins, (std::vector<std::string>{"bob", "dave"}));
  auto all = archive_->groups();
  ASSERT_TRUE(all.is_ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "g1");
  EXPECT_EQ((*all)[1].id, "g2");
  EXPECT_EQ((*all)[1].members, (std::vector<std::string>{"bob", "carol", "dave"}));
  EXPECT_EQ(archive_->groups_of("carol").value(), (std::vector<std::string>{"g1", "g2"}));
}

TEST_F(GroupsTest, AddRemoveReAddKeepPeriods) {
  std::string created = boundary();
  ASSERT_TRUE(archive_->create_group(make_group("g1", "alice", {"bob"}), created).is_ok());
  send_group("g1", "alice");

  EXPECT_EQ(archive_->add_member("nope", "dave", boundary()).code(), StatusCode::kNotFound);
  EXPECT_EQ(archive_->add_member("g1", "bob", boundary()).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(archive_->remove_member("g1", "dave", boundary()).code(), StatusCode::kNotFound);
  EXPECT_EQ(archive_->remove_member("nope", "bob", boundary()).code(), StatusCode::kNotFound);
  EXPECT_EQ(archive_->set_admin("g1", "dave", true).code(), StatusCode::kNotFound);
  EXPECT_EQ(archive_->set_admin("nope", "bob", true).code(), StatusCode::kNotFound);
  EXPECT_EQ(archive_->add_member("g1", "dave", "bad").code(), StatusCode::kInvalidArgument);

  std::string added = boundary();
  ASSERT_TRUE(archive_->add_member("g1", "dave", added).is_ok());
  ASSERT_TRUE(archive_->set_admin("g1", "dave", true).is_ok());
  ASSERT_TRUE(archive_->set_admin("g1", "dave", true).is_ok());  // idempotent
  EXPECT_EQ(archive_->group("g1").value()->admins, (std::vector<std::string>{"alice", "dave"}));
  EXPECT_EQ(archive_->group("g1").value()->members,
            (std::vector<std::string>{"alice", "bob", "dave"}));
  send_group("g1", "dave");

  std::string removed = boundary();
  ASSERT_TRUE(archive_->remove_member("g1", "dave", removed).is_ok());
  EXPECT_EQ(archive_->group("g1").value()->members, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(archive_->group("g1").value()->admins, std::vector<std::string>{"alice"});
  expect_periods(membership("g1", "dave"), {{added, removed}});
  EXPECT_FALSE(membership("g1", "dave").current());
  EXPECT_EQ(archive_->remove_member("g1", "dave", boundary()).code(), StatusCode::kNotFound);
  EXPECT_EQ(archive_->set_admin("g1", "dave", false).code(), StatusCode::kNotFound);
  // A former member still lists the group.
  EXPECT_EQ(archive_->groups_of("dave").value(), std::vector<std::string>{"g1"});

  std::string readded = boundary();
  ASSERT_TRUE(archive_->add_member("g1", "dave", readded).is_ok());
  expect_periods(membership("g1", "dave"), {{added, removed}, {readded, ""}});
  EXPECT_TRUE(membership("g1", "dave").current());
  EXPECT_EQ(archive_->group("g1").value()->admins, std::vector<std::string>{"alice"});
  ASSERT_TRUE(archive_->set_admin("g1", "alice", false).is_ok());
  EXPECT_TRUE(archive_->group("g1").value()->admins.empty());

  // Everyone leaves: the group stays, with its history.
  for (const char* user : {"alice", "bob", "dave"}) {
    ASSERT_TRUE(archive_->remove_member("g1", user, boundary()).is_ok()) << user;
  }
  auto emptied = archive_->group("g1").value();
  ASSERT_TRUE(emptied.has_value());
  EXPECT_TRUE(emptied->members.empty());
  EXPECT_EQ(membership("g1", "bob").periods.size(), 1u);
  EXPECT_EQ(membership("g1", "bob").periods[0].from, created);
  EXPECT_FALSE(membership("g1", "bob").current());
  EXPECT_EQ(archive_->groups().value().size(), 1u);

  // Everything survives a reopen.
  open();
  expect_periods(membership("g1", "dave"),
                 {{added, removed}, {readded, membership("g1", "dave").periods[1].to}});
  EXPECT_FALSE(membership("g1", "dave").periods[1].to.empty());
  EXPECT_EQ(archive_->groups_of("dave").value(), std::vector<std::string>{"g1"});
}

TEST_F(GroupsTest, BoundaryRaisesTheIdFloor) {
  send("dm:alice:bob", "alice", {"alice", "bob"});
  std::string at = boundary();
  ASSERT_TRUE(archive_->create_group(make_group("g1", "alice", {}), at).is_ok());
  EXPECT_EQ(archive_->max_id().value(), at);
  // The same boundary may serve several operations; an older one may not.
  EXPECT_TRUE(archive_->add_member("g1", "bob", at).is_ok());
  // A message cannot take the boundary's id, before or after a restart.
  AppendRequest request;
  request.id = at;
  request.conv = "g:g1";
  request.from = "alice";
  request.envelope = "{}";
  request.participants = {"alice", "bob"};
  EXPECT_EQ(archive_->append(request).code(), StatusCode::kInvalidArgument);
  open();
  EXPECT_EQ(archive_->max_id().value(), at);
  EXPECT_EQ(archive_->append(request).code(), StatusCode::kInvalidArgument);
}

// Reference: what a page must be, computed from the whole conversation.
struct Expected {
  std::vector<std::string> ids;
  std::optional<std::string> next;
};

Expected expected_page(const std::vector<std::string>& all, const std::vector<IdRange>& ranges,
                       size_t limit, const std::string& before, const std::string& after) {
  std::vector<std::string> visible;
  for (const auto& id : all) {
    bool in = ranges.empty();
    for (const auto& r : ranges) in = in || r.contains(id);
    if (in) visible.push_back(id);
  }
  Expected out;
  limit = std::max<size_t>(limit, 1);
  if (before.empty() && !after.empty()) {
    std::vector<std::string> candidates;
    for (const auto& id : visible) {
      if (id > after) candidates.push_back(id);
    }
    size_t n = std::min(limit, candidates.size());
    out.ids.assign(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(n));
    if (candidates.size() > limit) out.next = out.ids.back();
  } else {
    std::vector<std::string> candidates;
    for (const auto& id : visible) {
      if (before.empty() || id < before) candidates.push_back(id);
    }
    size_t n = std::min(limit, candidates.size());
    out.ids.assign(candidates.end() - static_cast<std::ptrdiff_t>(n), candidates.end());
    if (candidates.size() > limit) out.next = out.ids.front();
  }
  return out;
}

// dave's view of g1: 5 messages before he joins, 6 while a member, 7 while
// away (the gap), 8 after rejoining, 4 after leaving again. Another group
// whose id extends g1's interleaves and must never leak in.
class VisiblePagingTest : public GroupsTest {
 protected:
  void SetUp() override {
    GroupsTest::SetUp();
    ASSERT_TRUE(archive_->create_group(make_group("g1", "alice", {"bob"}), boundary()).is_ok());
    ASSERT_TRUE(archive_->create_group(make_group("g10", "alice", {}), boundary()).is_ok());
    auto burst = [&](int n, std::vector<std::string>* into) {
      for (int i = 0; i < n; ++i) {
        std::string id = send_group("g1", i % 2 ? "alice" : "bob");
        all_.push_back(id);
        if (into) into->push_back(id);
        send_group("g10", "alice");
      }
    };
    burst(5, &before_);
    ASSERT_TRUE(archive_->add_member("g1", "dave", boundary()).is_ok());
    burst(6, &visible_);
    ASSERT_TRUE(archive_->remove_member("g1", "dave", boundary()).is_ok());
    burst(7, &gap_);
    ASSERT_TRUE(archive_->add_member("g1", "dave", boundary()).is_ok());
    burst(8, &visible_);
    ASSERT_TRUE(archive_->remove_member("g1", "dave", boundary()).is_ok());
    burst(4, &after_);
    periods_ = membership("g1", "dave").periods;
    ASSERT_EQ(periods_.size(), 2u);
  }

  Page page(size_t limit, const std::string& before, const std::string& after,
            std::vector<IdRange> visible) {
    PageQuery query;
    query.limit = limit;
    query.before = before;
    query.after = after;
    query.visible = std::move(visible);
    auto result = archive_->conversation_page("g:g1", query);
    EXPECT_TRUE(result.is_ok()) << result.status().to_string();
    return result.is_ok() ? result.value() : Page{};
  }

  std::vector<std::string> all_, before_, visible_, gap_, after_;
  std::vector<IdRange> periods_;
};

TEST_F(VisiblePagingTest, WalkBackwardSeesOnlyPeriodsOnce) {
  for (size_t limit : {1u, 2u, 3u, 5u, 6u, 7u, 13u, 14u, 50u}) {
    std::vector<std::string> seen;
    std::string before;
    for (int guard = 0; guard < 100; ++guard) {
      Page p = page(limit, before, "", periods_);
      auto ids = ids_in(p.envelopes);
      seen.insert(seen.begin(), ids.begin(), ids.end());
      if (!p.next) break;
      EXPECT_EQ(ids.size(), limit);
      EXPECT_EQ(*p.next, ids.front());
      before = *p.next;
    }
    EXPECT_EQ(seen, visible_) << "limit " << limit;
  }
}

TEST_F(VisiblePagingTest, WalkForwardSeesOnlyPeriodsOnce) {
  for (size_t limit : {1u, 2u, 3u, 5u, 6u, 7u, 13u, 14u, 50u}) {
    std::vector<std::string> seen;
    std::string after = id_of(0);
    for (int guard = 0; guard < 100; ++guard) {
      Page p = page(limit, "", after, periods_);
      auto ids = ids_in(p.envelopes);
      seen.insert(seen.end(), ids.begin(), ids.end());
      if (!p.next) break;
      EXPECT_EQ(ids.size(), limit);
      EXPECT_EQ(*p.next, ids.back());
      after = *p.next;
    }
    EXPECT_EQ(seen, visible_) << "limit " << limit;
  }
}

TEST_F(VisiblePagingTest, NextIsNullWhenOnlyHiddenMessagesRemain) {
  // Exactly the visible count: hidden messages before, in the gap and after
  // do not make a `next`.
  Page latest = page(visible_.size(), "", "", periods_);
  EXPECT_EQ(ids_in(latest.envelopes), visible_);
  EXPECT_FALSE(latest.next.has_value());
  Page forward = page(visible_.size(), "", id_of(0), periods_);
  EXPECT_EQ(ids_in(forward.envelopes), visible_);
  EXPECT_FALSE(forward.next.has_value());

  // The first period's last page going forward continues into the second.
  Page first = page(6, "", id_of(0), periods_);
  ASSERT_TRUE(first.next.has_value());
  EXPECT_EQ(*first.next, visible_[5]);
  Page second = page(6, "", *first.next, periods_);
  EXPECT_EQ(ids_in(second.envelopes),
            std::vector<std::string>(visible_.begin() + 6, visible_.begin() + 12));

  // Cursors inside the gap.
  EXPECT_EQ(ids_in(page(50, gap_[3], "", periods_).envelopes),
            std::vector<std::string>(visible_.begin(), visible_.begin() + 6));
  EXPECT_EQ(ids_in(page(50, "", gap_[3], periods_).envelopes),
            std::vector<std::string>(visible_.begin() + 6, visible_.end()));
  // Cursors after the last period and before the first.
  EXPECT_TRUE(page(50, "", after_[0], periods_).envelopes.empty());
  EXPECT_FALSE(page(50, "", after_[0], periods_).next.has_value());
  EXPECT_TRUE(page(50, before_[4], "", periods_).envelopes.empty());
  // Without ranges, everything.
  EXPECT_EQ(ids_in(page(100, "", "", {}).envelopes), all_);
}

TEST_F(VisiblePagingTest, MatchesTheReferenceForEveryCursor) {
  std::vector<std::string> cursors = {"", id_of(0), id_of(100000)};
  for (uint64_t n = 1; n <= counter_; ++n) cursors.push_back(id_of(n));
  // Periods as stored, unsorted and overlapping ranges, an empty range, the
  // open range alone, and a range starting from the beginning.
  std::vector<std::vector<IdRange>> range_sets = {
      periods_,
      {periods_[1], periods_[0], IdRange{visible_[1], visible_[3]}},
      {IdRange{gap_[2], gap_[2]}, periods_[0]},
      {IdRange{gap_[4], ""}},
      {IdRange{"", before_[2]}, IdRange{gap_[0], gap_[1]}},
      {IdRange{before_[1], gap_[0]}, IdRange{gap_[0], gap_[3]}},  // touching: one range
  };
  for (size_t r = 0; r < range_sets.size(); ++r) {
    for (size_t limit : {1u, 2u, 4u, 9u}) {
      for (const auto& cursor : cursors) {
        for (bool forward : {false, true}) {
          if (forward && cursor.empty()) continue;
          const std::string before = forward ? "" : cursor;
          const std::string after = forward ? cursor : "";
          Expected want = expected_page(all_, range_sets[r], limit, before, after);
          Page got = page(limit, before, after, range_sets[r]);
          ASSERT_EQ(ids_in(got.envelopes), want.ids)
              << "set " << r << " limit " << limit << " cursor " << cursor << " fwd " << forward;
          ASSERT_EQ(got.next, want.next)
              << "set " << r << " limit " << limit << " cursor " << cursor << " fwd " << forward;
        }
      }
    }
  }
  // Ranges that are all empty: nothing exists.
  Page none = page(10, "", "", {IdRange{visible_[2], visible_[2]}});
  EXPECT_TRUE(none.envelopes.empty());
  EXPECT_FALSE(none.next.has_value());
}

TEST_F(GroupsTest, ReaderOpenedBeforeGroupsSeesThemAfterCatchUp) {
  send("dm:alice:bob", "alice", {"alice", "bob"});
  auto reader = open_reader();
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->groups().value().empty());

  std::string at = boundary();
  ASSERT_TRUE(archive_->create_group(make_group("g1", "alice", {"bob"}), at).is_ok());
  std::string m1 = send_group("g1", "bob");
  ASSERT_TRUE(archive_->mark_read("alice", "g:g1", m1).is_ok());
  ASSERT_TRUE(archive_->set_block("alice", "carol", true).is_ok());
  ASSERT_TRUE(archive_->put_presence("alice", R"({"v":1,"status":"online","ts":5})").is_ok());
  ASSERT_TRUE(reader->catch_up().is_ok());

  auto groups = reader->groups();
  ASSERT_TRUE(groups.is_ok());
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ((*groups)[0].members, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_TRUE(reader->group("g1").value().has_value());
  auto m = reader->membership("g1", "bob");
  ASSERT_TRUE(m.is_ok());
  ASSERT_EQ(m->periods.size(), 1u);
  EXPECT_EQ(m->periods[0].from, at);
  EXPECT_EQ(reader->groups_of("bob").value(), std::vector<std::string>{"g1"});
  EXPECT_EQ(reader->read_marker("alice", "g:g1").value(), m1);
  EXPECT_TRUE(reader->is_blocked("alice", "carol").value());
  EXPECT_EQ(reader->presence_all().value().size(), 1u);
  PageQuery query;
  query.visible = m->periods;
  EXPECT_EQ(ids_in(reader->conversation_page("g:g1", query)->envelopes),
            std::vector<std::string>{m1});
  auto convs = reader->conversations("alice", 10);
  ASSERT_TRUE(convs.is_ok());
  ASSERT_EQ(convs->size(), 2u);
  EXPECT_EQ((*convs)[0].conv, "g:g1");                               // newest first
  EXPECT_EQ((*convs)[0].unread, 0);                                  // read up to m1
  EXPECT_EQ(reader->conversations("bob", 10).value()[0].unread, 0);  // his own
}

TEST_F(GroupsTest, MarkReadRecomputesUnread) {
  const std::string conv = "dm:alice:bob";
  const std::vector<std::string> both = {"alice", "bob"};
  std::string b1 = send(conv, "bob", both);
  send(conv, "bob", both);
  send(conv, "bob", both);
  std::string a1 = send(conv, "alice", both);  // alice's own: resets her count
  send(conv, "alice", both);
  std::string b4 = send(conv, "bob", both);
  std::string b5 = send(conv, "bob", both);
  EXPECT_EQ(unread("alice", conv), 2);
  EXPECT_EQ(archive_->read_marker("alice", conv).value(), "");

  // After b1: bob's b2, b3, b4, b5 (alice's two do not count).
  ASSERT_TRUE(archive_->mark_read("alice", conv, b1).is_ok());
  EXPECT_EQ(archive_->read_marker("alice", conv).value(), b1);
  EXPECT_EQ(unread("alice", conv), 4);

  ASSERT_TRUE(archive_->mark_read("alice", conv, b4).is_ok());
  EXPECT_EQ(unread("alice", conv), 1);
  // Never backwards: an older id changes nothing.
  ASSERT_TRUE(archive_->mark_read("alice", conv, a1).is_ok());
  EXPECT_EQ(archive_->read_marker("alice", conv).value(), b4);
  EXPECT_EQ(unread("alice", conv), 1);

  ASSERT_TRUE(archive_->mark_read("alice", conv, b5).is_ok());
  EXPECT_EQ(unread("alice", conv), 0);
  // The writer's unread cache follows: the next message counts from 0.
  send(conv, "bob", both);
  EXPECT_EQ(unread("alice", conv), 1);
  send(conv, "bob", both);
  EXPECT_EQ(unread("alice", conv), 2);
  open();
  send(conv, "bob", both);
  EXPECT_EQ(unread("alice", conv), 3);
  // The summary's last id is kept.
  EXPECT_EQ(archive_->conversations("alice", 10).value()[0].last_id, id_of(counter_));

  // bob's own messages never count for bob.
  ASSERT_TRUE(archive_->mark_read("bob", conv, b1).is_ok());
  EXPECT_EQ(unread("bob", conv), 2);  // a1 and the message after it

  // An id past the newest message marks everything read.
  ASSERT_TRUE(archive_->mark_read("alice", conv, id_of(1'000'000)).is_ok());
  EXPECT_EQ(archive_->read_marker("alice", conv).value(), id_of(counter_));
  EXPECT_EQ(unread("alice", conv), 0);

  EXPECT_EQ(archive_->mark_read("alice", conv, "nope").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(archive_->mark_read("", conv, b1).code(), StatusCode::kInvalidArgument);

  // A marker alone does not make a conversation.
  ASSERT_TRUE(archive_->mark_read("carol", conv, b1).is_ok());
  EXPECT_EQ(archive_->read_marker("carol", conv).value(), b1);
  EXPECT_FALSE(archive_->has_conversation("carol", conv).value());
  EXPECT_TRUE(archive_->conversations("carol", 10).value().empty());
}

TEST_F(GroupsTest, MarkReadFindsTheTopLevelSender) {
  const std::string conv = "dm:alice:bob";
  const std::vector<std::string> both = {"alice", "bob"};
  std::string first = send(conv, "bob", both);
  // A nested "from" before the real one; escapes; a missing or odd sender.
  send_envelope(conv, "bob", both,
                R"({"v":1,"reply":{"from":"alice","x":[{"from":"alice"}]},"from":"bob"})");
  send_envelope(conv, "alice", both, R"({"v":1,"reply":{"from":"bob"},"body":"x","from":"alice"})");
  send_envelope(conv, "alice", both, R"({ "from" : "al\u0069ce", "body":{"from":"bob"}})");
  send_envelope(conv, "bob", both, R"({"v":1,"body":"no sender"})");
  send_envelope(conv, "bob", both, R"({"from":{"user":"alice"}})");
  send_envelope(conv, "bob", both, R"(not json)");
  ASSERT_TRUE(archive_->mark_read("alice", conv, first).is_ok());
  EXPECT_EQ(unread("alice", conv), 4);  // all but alice's two
}

TEST_F(GroupsTest, GroupUnreadCountsOnlyMembershipPeriods) {
  ASSERT_TRUE(
      archive_->create_group(make_group("g1", "alice", {"bob", "dave"}), boundary()).is_ok());
  std::string first = send_group("g1", "bob");
  send_group("g1", "dave");
  send_group("g1", "bob");
  ASSERT_TRUE(archive_->remove_member("g1", "dave", boundary()).is_ok());
  for (int i = 0; i < 5; ++i) send_group("g1", "bob");  // dave's gap
  ASSERT_TRUE(archive_->add_member("g1", "dave", boundary()).is_ok());
  send_group("g1", "alice");
  send_group("g1", "dave");
  EXPECT_EQ(unread("dave", "g:g1"), 0);  // his own message was last
  ASSERT_TRUE(archive_->mark_read("dave", "g:g1", first).is_ok());
  EXPECT_EQ(unread("dave", "g:g1"), 2);  // bob's third and alice's; not the gap
  ASSERT_TRUE(archive_->mark_read("alice", "g:g1", first).is_ok());
  EXPECT_EQ(unread("alice", "g:g1"), 8);
}

TEST_F(GroupsTest, UnreadIsCappedAtTenThousand) {
  const std::string conv = "dm:alice:bob";
  const std::vector<std::string> both = {"alice", "bob"};
  std::string first = send(conv, "bob", both);
  for (int i = 0; i < 10'050; ++i) send(conv, i % 1000 == 0 ? "alice" : "bob", both);
  ASSERT_TRUE(archive_->mark_read("alice", conv, first).is_ok());
  EXPECT_EQ(unread("alice", conv), 10'000);
  ASSERT_TRUE(archive_->mark_read("bob", conv, first).is_ok());
  EXPECT_EQ(unread("bob", conv), 11);
}

TEST_F(GroupsTest, Blocks) {
  EXPECT_FALSE(archive_->is_blocked("alice", "bob").value());
  ASSERT_TRUE(archive_->set_block("alice", "bob", true).is_ok());
  ASSERT_TRUE(archive_->set_block("alice", "bob", true).is_ok());  // idempotent
  ASSERT_TRUE(archive_->set_block("alice", "aaron", true).is_ok());
  ASSERT_TRUE(archive_->set_block("alicia", "zed", true).is_ok());  // a scope that extends "ali..."
  EXPECT_TRUE(archive_->is_blocked("alice", "bob").value());
  EXPECT_FALSE(archive_->is_blocked("bob", "alice").value());
  EXPECT_EQ(archive_->blocked_by("alice").value(), (std::vector<std::string>{"aaron", "bob"}));
  ASSERT_TRUE(archive_->set_block("alice", "bob", false).is_ok());
  ASSERT_TRUE(archive_->set_block("alice", "bob", false).is_ok());
  EXPECT_FALSE(archive_->is_blocked("alice", "bob").value());
  EXPECT_EQ(archive_->blocked_by("alice").value(), std::vector<std::string>{"aaron"});
  EXPECT_TRUE(archive_->blocked_by("bob").value().empty());
  EXPECT_EQ(archive_->set_block("", "bob", true).code(), StatusCode::kInvalidArgument);
  open();
  EXPECT_EQ(archive_->blocked_by("alice").value(), std::vector<std::string>{"aaron"});
}

TEST_F(GroupsTest, PresenceRoundTrip) {
  EXPECT_TRUE(archive_->presence_all().value().empty());
  const std::string online = R"({"v":1,"status":"online","ts":1764464000123})";
  const std::string away = R"({"v":1, "status":"away", "ts":1764464000999, "x":[1]})";
  ASSERT_TRUE(archive_->put_presence("bob", online).is_ok());
  ASSERT_TRUE(archive_->put_presence("alice", online).is_ok());
  ASSERT_TRUE(archive_->put_presence("alice", away).is_ok());
  EXPECT_EQ(archive_->put_presence("", online).code(), StatusCode::kInvalidArgument);
  open();
  auto all = archive_->presence_all();
  ASSERT_TRUE(all.is_ok());
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(*all, (Pairs{{"alice", away}, {"bob", online}}));
}

TEST_F(GroupsTest, OpensAnArchiveFromBeforeGroups) {
  // An archive written before the group families existed: the writer adds
  // them at open, and a reader opened afterwards finds them all.
  archive_.reset();
  const std::string path = dir_.sub("old");
  {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "messages", "inbox", "convs", "dedup", "users", "meta"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path, families, &handles, &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[6], "schema_version", "1").ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }
  ArchiveOptions options;
  options.path = path;
  auto archive = Archive::open(options);
  ASSERT_TRUE(archive.is_ok()) << archive.status().to_string();
  ASSERT_TRUE((*archive)->create_group(make_group("g1", "alice", {}), id_of(1)).is_ok());
  auto reader = ArchiveReader::open(path, dir_.sub("old-secondary"));
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  EXPECT_EQ((*reader)->groups().value().size(), 1u);
}

}  // namespace
}  // namespace chat::store
