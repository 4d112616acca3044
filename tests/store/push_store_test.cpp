// chat-api's push store (targets, queue, feed cursor) and the archive's push
// records (docs/push.md).
#include "chat/store/push_store.h"

#include <gtest/gtest.h>

#include "chat/common/ids.h"
#include "chat/store/archive.h"
#include "push_db_raw.h"
#include "temp_dir.h"

namespace chat::store {
namespace {

using testing::TempDir;

PushTargetRecord target(const std::string& user, const std::string& device,
                        const std::string& token, const std::string& platform = "fcm") {
  return PushTargetRecord{user, device, platform, token, 1000};
}

PushJob job(const std::string& id, const std::string& user, const std::string& device,
            int64_t due_ms) {
  PushJob j;
  j.message_id = id;
  j.user = user;
  j.device = device;
  j.conv = "dm:alice:" + user;
  j.from = "alice";
  j.type = "text";
  j.created_ms = due_ms;
  j.due_ms = due_ms;
  return j;
}

class PushStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    reopen();
  }
  void reopen() {
    store_.reset();
    auto s = PushStore::open(dir_.sub("push"));
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }
  std::vector<std::string> devices_of(const std::string& user) {
    auto targets = store_->targets_of(user);
    EXPECT_TRUE(targets.is_ok());
    std::vector<std::string> out;
    for (const auto& t : *targets) out.push_back(t.device);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<PushStore> store_;
};

TEST_F(PushStoreTest, TargetsAreStoredPerDeviceAndReplacedOnReRegistration) {
  auto first = store_->put_target(target("bob", "phone", "tok-1"), 10);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_TRUE(first->created);
  auto again = store_->put_target(target("bob", "phone", "tok-2", "apns"), 10);
  ASSERT_TRUE(again.is_ok());
  EXPECT_FALSE(again->created);
  auto stored = store_->target("bob", "phone");
  ASSERT_TRUE(stored.is_ok() && stored->has_value());
  EXPECT_EQ((*stored)->token, "tok-2");
  EXPECT_EQ((*stored)->platform, "apns");
  // The old token no longer belongs to anyone: a new device may take it
  // without displacing bob's phone.
  auto other = store_->put_target(target("carol", "tab", "tok-1"), 10);
  ASSERT_TRUE(other.is_ok());
  EXPECT_TRUE(other->displaced_user.empty());
  EXPECT_EQ(devices_of("bob"), std::vector<std::string>{"phone"});
}

TEST_F(PushStoreTest, ASharedTokenMovesToTheNewestRegistration) {
  ASSERT_TRUE(store_->put_target(target("bob", "phone", "shared"), 10).is_ok());
  auto moved = store_->put_target(target("carol", "phone", "shared"), 10);
  ASSERT_TRUE(moved.is_ok());
  EXPECT_EQ(moved->displaced_user, "bob");
  EXPECT_EQ(moved->displaced_device, "phone");
  EXPECT_TRUE(devices_of("bob").empty());
  EXPECT_EQ(devices_of("carol"), std::vector<std::string>{"phone"});
  // The same platform only: the same string on the other platform is another token.
  auto apns = store_->put_target(target("bob", "ipad", "shared", "apns"), 10);
  ASSERT_TRUE(apns.is_ok());
  EXPECT_TRUE(apns->displaced_user.empty());
}

TEST_F(PushStoreTest, TheCapCountsOtherDevicesOnly) {
  ASSERT_TRUE(store_->put_target(target("bob", "a", "t-a"), 2).is_ok());
  ASSERT_TRUE(store_->put_target(target("bob", "b", "t-b"), 2).is_ok());
  auto third = store_->put_target(target("bob", "c", "t-c"), 2);
  EXPECT_EQ(third.status().code(), StatusCode::kResourceExhausted);
  // Replacing an existing device's token is not a new device.
  EXPECT_TRUE(store_->put_target(target("bob", "b", "t-b2"), 2).is_ok());
  // A token that moves from one of bob's devices to a new one keeps the count.
  EXPECT_TRUE(store_->put_target(target("bob", "c", "t-a"), 2).is_ok());
  EXPECT_EQ(devices_of("bob"), (std::vector<std::string>{"b", "c"}));
}

TEST_F(PushStoreTest, DeleteIfTokenKeepsANewerRegistration) {
  ASSERT_TRUE(store_->put_target(target("bob", "phone", "old"), 10).is_ok());
  ASSERT_TRUE(store_->put_target(target("bob", "phone", "new"), 10).is_ok());
  auto removed = store_->delete_target_if_token("bob", "phone", "old");
  ASSERT_TRUE(removed.is_ok());
  EXPECT_FALSE(*removed);
  removed = store_->delete_target_if_token("bob", "phone", "new");
  ASSERT_TRUE(removed.is_ok());
  EXPECT_TRUE(*removed);
  EXPECT_EQ(store_->delete_target("bob", "phone").code(), StatusCode::kNotFound);
  // Its token index went with it: another device takes the token without displacing anyone.
  auto again = store_->put_target(target("carol", "x", "new"), 10);
  ASSERT_TRUE(again.is_ok());
  EXPECT_TRUE(again->displaced_user.empty());
}

TEST_F(PushStoreTest, AllDevicesAndDeleteTargetsOf) {
  ASSERT_TRUE(store_->put_target(target("bob", "phone", "t1"), 10).is_ok());
  ASSERT_TRUE(store_->put_target(target("bob", "tablet", "t2"), 10).is_ok());
  ASSERT_TRUE(store_->put_target(target("bo", "x", "t3"), 10).is_ok());  // a prefix of "bob"
  auto all = store_->all_devices();
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ((*all)["bob"], (std::vector<std::string>{"phone", "tablet"}));
  EXPECT_EQ((*all)["bo"], std::vector<std::string>{"x"});
  auto removed = store_->delete_targets_of("bob");
  ASSERT_TRUE(removed.is_ok());
  EXPECT_EQ(*removed, 2u);
  EXPECT_TRUE(devices_of("bob").empty());
  EXPECT_EQ(devices_of("bo"), std::vector<std::string>{"x"});
}

TEST_F(PushStoreTest, MalformedTargetsAreRefused) {
  EXPECT_EQ(store_->put_target(target("", "phone", "t"), 10).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->put_target(target("bob", "phone", ""), 10).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->put_target(target("bob", std::string("a\0b", 3), "t"), 10).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(PushStoreTest, EnqueueIsIdempotentPerMessageAndTargetAndMovesTheCursor) {
  size_t queued = 0;
  ASSERT_TRUE(store_
                  ->enqueue({job("0000000000000001", "bob", "phone", 100),
                             job("0000000000000001", "bob", "tablet", 100)},
                            "0000000000000001", &queued)
                  .is_ok());
  EXPECT_EQ(queued, 2u);
  EXPECT_EQ(*store_->cursor(), "0000000000000001");
  // The same record again (a retried write): nothing new, and a job keeps its attempts.
  PushJob tried = job("0000000000000001", "bob", "phone", 5000);
  tried.attempts = 3;
  ASSERT_TRUE(store_->reschedule(tried).is_ok());
  ASSERT_TRUE(
      store_->enqueue({job("0000000000000001", "bob", "phone", 100)}, "0000000000000001", &queued)
          .is_ok());
  EXPECT_EQ(queued, 0u);
  EXPECT_EQ(store_->queue_depth(), 2u);
  // The cursor never moves backwards.
  ASSERT_TRUE(store_->enqueue({}, "0000000000000000").is_ok());
  EXPECT_EQ(*store_->cursor(), "0000000000000001");
  // Everything survives a restart, the depth gauge included.
  reopen();
  EXPECT_EQ(store_->queue_depth(), 2u);
  EXPECT_EQ(*store_->cursor(), "0000000000000001");
  auto due = store_->due_jobs(10'000, 10);
  ASSERT_TRUE(due.is_ok());
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].device, "tablet");  // due at 100, then phone at 5000
  EXPECT_EQ((*due)[1].attempts, 3);
}

TEST_F(PushStoreTest, InFlightIsStoredAndClearedByReschedule) {
  PushJob job;
  job.message_id = "m1";
  job.user = "bob";
  job.device = "phone";
  job.conv = "dm:alice:bob";
  job.from = "alice";
  job.type = "text";
  job.created_ms = 100;
  job.due_ms = 100;
  ASSERT_TRUE(store_->enqueue({job}, "m1").is_ok());
  ASSERT_TRUE(store_->mark_in_flight(job).is_ok());
  reopen();  // the mark survives a restart
  auto due = store_->due_jobs(100, 10);
  ASSERT_TRUE(due.is_ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_TRUE((*due)[0].in_flight);
  EXPECT_EQ((*due)[0].created_ms, 100);
  PushJob next = (*due)[0];
  next.in_flight = false;
  next.attempts = 1;
  next.due_ms = 200;
  ASSERT_TRUE(store_->reschedule(next).is_ok());
  due = store_->due_jobs(200, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_FALSE((*due)[0].in_flight);
  EXPECT_EQ((*due)[0].attempts, 1);
  ASSERT_TRUE(store_->complete(next).is_ok());
  EXPECT_EQ(store_->mark_in_flight(next).code(), StatusCode::kNotFound);
}

TEST_F(PushStoreTest, ADamagedDueKeyIsAnErrorNotACrash) {
  store_.reset();
  // Write a due key that is not 16 hex digits straight into the database.
  ASSERT_TRUE(chat::testing::put_raw_push_key(dir_.sub("push"), chat::testing::PushFamily::kDue,
                                              std::string("-zz\0m:b:p", 9), ""));
  reopen();
  auto next = store_->next_due_ms();  // std::stoull threw here: std::terminate
  EXPECT_FALSE(next.is_ok());
}

TEST_F(PushStoreTest, DueJobsComeInDueOrderAndOnlyWhenDue) {
  ASSERT_TRUE(store_
                  ->enqueue({job("0000000000000002", "bob", "a", 300),
                             job("0000000000000003", "bob", "b", 100),
                             job("0000000000000004", "bob", "c", 200)},
                            "0000000000000004")
                  .is_ok());
  auto due = store_->due_jobs(200, 10);
  ASSERT_TRUE(due.is_ok());
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].device, "b");
  EXPECT_EQ((*due)[1].device, "c");
  EXPECT_EQ(**store_->next_due_ms(), 100);
  // Rescheduled: it moves to its new place.
  PushJob b = (*due)[0];
  b.attempts = 1;
  b.due_ms = 1000;
  ASSERT_TRUE(store_->reschedule(b).is_ok());
  EXPECT_EQ(**store_->next_due_ms(), 200);
  ASSERT_TRUE(store_->complete((*due)[1]).is_ok());
  ASSERT_TRUE(store_->complete((*due)[1]).is_ok());  // twice is fine
  EXPECT_EQ(store_->queue_depth(), 2u);
  due = store_->due_jobs(999, 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].device, "a");
  due = store_->due_jobs(1000, 10);
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[1].attempts, 1);
  EXPECT_EQ(store_->reschedule(job("0000000000000009", "x", "y", 1)).code(), StatusCode::kNotFound);
}

// ---- the archive's side ----------------------------------------------------

class ArchivePushTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    ArchiveOptions o;
    o.path = dir_.sub("archive");
    auto a = Archive::open(o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    archive_ = std::move(a).value();
  }
  std::string append(const std::string& push) {
    AppendRequest r;
    r.id = ids_.next();
    r.conv = "dm:alice:bob";
    r.from = "alice";
    r.client_id = "alice:phone";
    r.cid = "c" + r.id;
    r.envelope = R"({"id":")" + r.id + R"("})";
    r.participants = {"alice", "bob"};
    r.push = push;
    Status s = archive_->append(r);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return r.id;
  }

  FakeClock clock_;
  IdGenerator ids_{clock_};
  TempDir dir_;
  std::unique_ptr<Archive> archive_;
};

TEST_F(ArchivePushTest, PushRecordsAreWrittenWithTheMessageAndReadAfterACursor) {
  const std::string a = append(R"({"targets":["bob:phone"]})");
  append("");  // no push record
  const std::string c = append(R"({"targets":["bob:tablet"]})");
  auto all = archive_->push_records("", 10);
  ASSERT_TRUE(all.is_ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, a);
  EXPECT_EQ((*all)[0].json, R"({"targets":["bob:phone"]})");
  EXPECT_EQ((*all)[1].id, c);
  auto after = archive_->push_records(a, 10);
  ASSERT_TRUE(after.is_ok());
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].id, c);
  EXPECT_EQ(archive_->push_records("", 1)->size(), 1u);

  // A reader (chat-api's secondary) sees them too.
  auto reader = ArchiveReader::open(dir_.sub("archive"), dir_.sub("secondary"));
  ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
  ASSERT_TRUE((*reader)->catch_up().is_ok());
  EXPECT_EQ((*reader)->push_records("", 10)->size(), 2u);

  size_t deleted = 0;
  ASSERT_TRUE(archive_->delete_push_records(a, &deleted).is_ok());
  EXPECT_EQ(deleted, 1u);
  ASSERT_TRUE(archive_->delete_push_records(a, &deleted).is_ok());  // again: nothing
  EXPECT_EQ(deleted, 0u);
  auto left = archive_->push_records("", 10);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].id, c);
  ASSERT_TRUE(archive_->delete_push_records(c, &deleted).is_ok());
  EXPECT_EQ(deleted, 1u);
  EXPECT_TRUE(archive_->push_records("", 10)->empty());
  EXPECT_EQ(archive_->delete_push_records("not-an-id").code(), StatusCode::kInvalidArgument);
}

TEST_F(ArchivePushTest, PushDevicesAreKeptPerUser) {
  ASSERT_TRUE(archive_->set_push_devices("bob", {"phone", "tablet"}).is_ok());
  ASSERT_TRUE(archive_->set_push_devices("carol", {"x"}).is_ok());
  ASSERT_TRUE(archive_->set_ban("bob", true).is_ok());  // another meta scope stays apart
  auto all = archive_->push_devices();
  ASSERT_TRUE(all.is_ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].first, "bob");
  EXPECT_EQ((*all)[0].second, (std::vector<std::string>{"phone", "tablet"}));
  ASSERT_TRUE(archive_->set_push_devices("bob", {}).is_ok());
  all = archive_->push_devices();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].first, "carol");
  EXPECT_EQ(archive_->set_push_devices("", {"x"}).code(), StatusCode::kInvalidArgument);
  // Push devices and push records do not see each other's keys.
  EXPECT_TRUE(archive_->push_records("", 10)->empty());
}

}  // namespace
}  // namespace chat::store
