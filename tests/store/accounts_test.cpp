#include "chat/store/accounts.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "chat/common/clock.h"
#include "temp_dir.h"

namespace chat::store {
namespace {

using testing::TempDir;

class AccountStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    open();
  }

  void open() {
    store_.reset();
    auto store = AccountStore::open(dir_.sub("accounts"));
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    store_ = std::move(store).value();
  }

  static Account account(const std::string& user, const std::string& hash = "$argon2id$x") {
    Account a;
    a.user = user;
    a.password_hash = hash;
    a.roles = {"user"};
    a.created_ms = 1'700'000'000'000;
    return a;
  }

  static RefreshToken token(const std::string& user, int64_t ttl_ms = 60'000,
                            const std::string& device = "phone") {
    RefreshToken t;
    t.user = user;
    t.device = device;
    t.expires_ms = SystemClock::instance().now_ms() + ttl_ms;
    return t;
  }

  TempDir dir_;
  std::unique_ptr<AccountStore> store_;
};

TEST_F(AccountStoreTest, CreateGetPutDelete) {
  EXPECT_EQ(store_->get_account("alice").status().code(), StatusCode::kNotFound);

  Account alice = account("alice");
  alice.roles = {"user", "admin"};
  ASSERT_TRUE(store_->create_account(alice).is_ok());
  EXPECT_EQ(store_->create_account(account("alice", "other")).code(), StatusCode::kAlreadyExists);

  auto got = store_->get_account("alice");
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->user, "alice");
  EXPECT_EQ(got->password_hash, "$argon2id$x");  // the duplicate did not overwrite
  EXPECT_EQ(got->roles, (std::vector<std::string>{"user", "admin"}));
  EXPECT_EQ(got->created_ms, 1'700'000'000'000);

  ASSERT_TRUE(store_->put_account(account("alice", "$argon2id$new")).is_ok());
  EXPECT_EQ(store_->get_account("alice")->password_hash, "$argon2id$new");
  ASSERT_TRUE(store_->put_account(account("bob")).is_ok());  // put creates
  EXPECT_TRUE(store_->get_account("bob").is_ok());

  // Survives reopening.
  open();
  EXPECT_EQ(store_->get_account("alice")->password_hash, "$argon2id$new");

  ASSERT_TRUE(store_->delete_account("alice").is_ok());
  EXPECT_EQ(store_->get_account("alice").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->delete_account("alice").code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->get_account("bob").is_ok());
  // The id is free again.
  EXPECT_TRUE(store_->create_account(account("alice")).is_ok());

  EXPECT_EQ(store_->create_account(account("")).code(), StatusCode::kInvalidArgument);
}

TEST_F(AccountStoreTest, AnExternalAccountKeepsTheProviderSubject) {
  Account erin = account("erin", "");
  erin.roles = {"external"};
  erin.external_sub = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6";
  ASSERT_TRUE(store_->create_account(erin).is_ok());
  ASSERT_TRUE(store_->create_account(account("alice")).is_ok());
  open();
  EXPECT_EQ(store_->get_account("erin")->external_sub, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
  EXPECT_EQ(store_->get_account("alice")->external_sub, "");
  // Rewriting the record (a ban, say) keeps it.
  Account got = *store_->get_account("erin");
  got.roles.push_back("banned");
  ASSERT_TRUE(store_->put_account(got).is_ok());
  EXPECT_EQ(store_->get_account("erin")->external_sub, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
}

TEST_F(AccountStoreTest, RevokedAccessTokensAndTheirRefreshTokens) {
  RefreshToken phone = token("alice");
  phone.access_jti = "jti-phone";
  RefreshToken laptop = token("alice", 60'000, "laptop");
  laptop.access_jti = "jti-laptop";
  ASSERT_TRUE(store_->put_refresh("h-phone", phone).is_ok());
  ASSERT_TRUE(store_->put_refresh("h-laptop", laptop).is_ok());
  ASSERT_TRUE(store_->put_refresh("h-old", token("alice")).is_ok());  // no jti recorded

  size_t revoked = 99;
  ASSERT_TRUE(store_->revoke_refresh_by_access_jti("jti-phone", &revoked).is_ok());
  EXPECT_EQ(revoked, 1u);
  ASSERT_TRUE(store_->revoke_refresh_by_access_jti("", &revoked).is_ok());
  EXPECT_EQ(revoked, 0u);
  ASSERT_TRUE(store_->put_revoked("jti-phone", 0).is_ok());
  EXPECT_EQ(store_->put_revoked("", 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->put_revoked(std::string("a\0b", 3), 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->put_revoked(std::string(257, 'x'), 0).code(), StatusCode::kInvalidArgument);

  open();  // both survive a restart
  EXPECT_TRUE(*store_->is_revoked("jti-phone"));
  EXPECT_FALSE(*store_->is_revoked("jti-laptop"));
  EXPECT_FALSE(*store_->is_revoked(""));
  EXPECT_EQ(store_->take_refresh("h-phone").status().code(), StatusCode::kNotFound);
  auto kept = store_->take_refresh("h-laptop");
  ASSERT_TRUE(kept.is_ok());
  EXPECT_EQ(kept->access_jti, "jti-laptop");
  auto old = store_->take_refresh("h-old");
  ASSERT_TRUE(old.is_ok());
  EXPECT_EQ(old->access_jti, "");
}

TEST_F(AccountStoreTest, ConcurrentCreatesOfOneUserLetExactlyOneWin) {
  constexpr int kThreads = 8;
  std::atomic<int> created{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Status s = store_->create_account(account("carol", "hash-" + std::to_string(t)));
      if (s.is_ok())
        ++created;
      else if (s.code() == StatusCode::kAlreadyExists)
        ++refused;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(refused.load(), kThreads - 1);
}

TEST_F(AccountStoreTest, RefreshTokensWorkOnce) {
  ASSERT_TRUE(store_->put_refresh("hash-1", token("alice")).is_ok());
  auto taken = store_->take_refresh("hash-1");
  ASSERT_TRUE(taken.is_ok()) << taken.status().to_string();
  EXPECT_EQ(taken->user, "alice");
  EXPECT_EQ(taken->device, "phone");
  EXPECT_EQ(store_->take_refresh("hash-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->take_refresh("never-issued").status().code(), StatusCode::kNotFound);
}

TEST_F(AccountStoreTest, ConcurrentTakesOfOneTokenLetExactlyOneWin) {
  ASSERT_TRUE(store_->put_refresh("hash-1", token("alice")).is_ok());
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      if (store_->take_refresh("hash-1").is_ok()) ++taken;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.load(), 1);
}

TEST_F(AccountStoreTest, ExpiredRefreshTokenIsNotFound) {
  ASSERT_TRUE(store_->put_refresh("old", token("alice", -1)).is_ok());
  EXPECT_EQ(store_->take_refresh("old").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->take_refresh("old").status().code(), StatusCode::kNotFound);
}

TEST_F(AccountStoreTest, RevokeOneAndAll) {
  ASSERT_TRUE(store_->put_refresh("a1", token("alice", 60'000, "phone")).is_ok());
  ASSERT_TRUE(store_->put_refresh("a2", token("alice", 60'000, "laptop")).is_ok());
  ASSERT_TRUE(store_->put_refresh("a3", token("alice")).is_ok());
  ASSERT_TRUE(store_->put_refresh("b1", token("bob")).is_ok());
  // A user id that prefixes another's must not take the other's tokens along.
  ASSERT_TRUE(store_->put_refresh("al1", token("al")).is_ok());

  ASSERT_TRUE(store_->revoke_refresh("a3").is_ok());
  EXPECT_EQ(store_->take_refresh("a3").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->revoke_refresh("a3").is_ok());  // revoking twice is harmless

  ASSERT_TRUE(store_->revoke_all_refresh("alice").is_ok());
  EXPECT_EQ(store_->take_refresh("a1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->take_refresh("a2").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->take_refresh("b1").is_ok());
  EXPECT_TRUE(store_->take_refresh("al1").is_ok());
  EXPECT_TRUE(store_->revoke_all_refresh("nobody").is_ok());

  // Revocation survives reopening, and new tokens work after a revoke_all.
  open();
  EXPECT_EQ(store_->take_refresh("a1").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(store_->put_refresh("a4", token("alice")).is_ok());
  EXPECT_TRUE(store_->take_refresh("a4").is_ok());
}

TEST_F(AccountStoreTest, ReissuingAHashMovesItsIndexEntry) {
  ASSERT_TRUE(store_->put_refresh("h", token("alice")).is_ok());
  ASSERT_TRUE(store_->put_refresh("h", token("bob")).is_ok());
  // alice's revoke_all must not touch the token that now belongs to bob.
  ASSERT_TRUE(store_->revoke_all_refresh("alice").is_ok());
  auto taken = store_->take_refresh("h");
  ASSERT_TRUE(taken.is_ok());
  EXPECT_EQ(taken->user, "bob");
}

TEST_F(AccountStoreTest, OpenFailureIsUnavailable) {
  auto second = AccountStore::open(dir_.sub("accounts"));  // LOCK held by store_
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(dir_.sub("accounts")), std::string::npos);
}

Report report(const std::string& id, const std::string& user = "mallory") {
  Report r;
  r.id = id;
  r.reporter = "alice";
  r.user = user;
  r.ids = {"0000000000000001", "0000000000000002"};
  r.reason = "spam \xc3\xa9";
  r.created_ms = 1'700'000'000'123;
  return r;
}

TEST_F(AccountStoreTest, ReportsAreStoredAndListedNewestFirst) {
  auto empty = store_->reports(10);
  ASSERT_TRUE(empty.is_ok());
  EXPECT_TRUE(empty->empty());

  ASSERT_TRUE(store_->put_report(report("r2", "bob")).is_ok());
  ASSERT_TRUE(store_->put_report(report("r1")).is_ok());
  ASSERT_TRUE(store_->put_report(report("r3")).is_ok());
  EXPECT_EQ(store_->put_report(report("r3")).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->put_report(report("")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->put_report(report(std::string("a\0b", 3))).code(),
            StatusCode::kInvalidArgument);

  open();  // survives a reopen
  auto all = store_->reports(10);
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, "r3");
  EXPECT_EQ((*all)[1].id, "r2");
  EXPECT_EQ((*all)[2].id, "r1");
  const Report& r2 = (*all)[1];
  EXPECT_EQ(r2.reporter, "alice");
  EXPECT_EQ(r2.user, "bob");
  EXPECT_EQ(r2.ids, (std::vector<std::string>{"0000000000000001", "0000000000000002"}));
  EXPECT_EQ(r2.reason, "spam \xc3\xa9");
  EXPECT_EQ(r2.created_ms, 1'700'000'000'123);

  auto two = store_->reports(2);
  ASSERT_TRUE(two.is_ok());
  ASSERT_EQ(two->size(), 2u);
  EXPECT_EQ((*two)[0].id, "r3");
  EXPECT_EQ((*two)[1].id, "r2");
  auto none = store_->reports(0);
  ASSERT_TRUE(none.is_ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(AccountStoreTest, AnOlderDatabaseGainsTheReportsFamily) {
  // A database as the previous version made it: no "reports" family.
  store_.reset();
  const std::string path = dir_.sub("old");
  {
    rocksdb::DBOptions options;
    options.create_if_missing = true;
    options.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const char* name : {"default", "accounts", "refresh", "refresh_by_user"}) {
      families.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, path, families, &handles, &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], "alice",
                        R"({"user":"alice","password_hash":"h","roles":["user"]})")
                    .ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }
  auto store = AccountStore::open(path);
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  auto alice = (*store)->get_account("alice");
  ASSERT_TRUE(alice.is_ok()) << alice.status().to_string();
  EXPECT_EQ(alice->password_hash, "h");
  ASSERT_TRUE((*store)->put_report(report("r1")).is_ok());
  auto all = (*store)->reports(10);
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(all->size(), 1u);
}

}  // namespace
}  // namespace chat::store
