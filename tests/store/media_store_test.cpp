#include <gtest/gtest.h>

#include "chat/store/media.h"
#include "temp_dir.h"

namespace chat::store {
namespace {

MediaRecord record(const std::string& id, const std::string& uploader, char sha) {
  MediaRecord r;
  r.id = id;
  r.uploader = uploader;
  r.content_type = "image/png";
  r.sha256 = std::string(64, sha);
  r.size = 42;
  r.created_ms = 1000;
  r.thumbnail = true;
  return r;
}

TEST(MediaStoreTest, RecordsIndexesAndReferenceCounts) {
  testing::TempDir dir;
  ASSERT_TRUE(dir.ok());
  auto store = MediaStore::open(dir.sub("media"));
  ASSERT_TRUE(store.is_ok()) << store.status().to_string();
  MediaStore& m = **store;

  ASSERT_TRUE(m.put(record("a1", "alice", 'a')).is_ok());
  ASSERT_TRUE(m.put(record("a2", "alice", 'b')).is_ok());
  ASSERT_TRUE(m.put(record("b1", "bob", 'a')).is_ok());
  EXPECT_EQ(m.put(record("a1", "bob", 'c')).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(m.put(record("x", "bob", 'g')).code(), StatusCode::kInvalidArgument);  // not hex
  EXPECT_EQ(m.put(record("", "bob", 'a')).code(), StatusCode::kInvalidArgument);

  auto got = m.get("a1");
  ASSERT_TRUE(got.is_ok() && got->has_value());
  EXPECT_EQ((*got)->uploader, "alice");
  EXPECT_EQ((*got)->size, 42u);
  EXPECT_TRUE((*got)->thumbnail);
  EXPECT_FALSE(m.get("zz")->has_value());
  EXPECT_EQ(m.by_uploader("alice")->size(), 2u);
  EXPECT_EQ(m.by_uploader("ali")->size(), 0u);  // a prefix is another user
  EXPECT_EQ(*m.count_sha256(std::string(64, 'a')), 2u);

  EXPECT_EQ(*m.remove("a1"), 1u);  // bob's b1 still names the same bytes
  EXPECT_EQ(*m.remove("a2"), 0u);
  EXPECT_EQ(*m.remove("a2"), 0u);  // absent: fine
  EXPECT_TRUE(m.by_uploader("alice")->empty());
  EXPECT_EQ(*m.count_sha256(std::string(64, 'a')), 1u);
}

}  // namespace
}  // namespace chat::store
