#include "chatctl/random_ids.h"

#include <gtest/gtest.h>

#include <set>

#include "chat/common/ids.h"

namespace chat::tools {
namespace {

TEST(MessageCid, IsAUlidAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < 10'000; ++i) {
    std::string cid = new_message_cid(1'700'000'000'000);
    ASSERT_TRUE(is_ulid(cid)) << cid;
    ASSERT_TRUE(seen.insert(cid).second) << "repeated " << cid;
  }
}

TEST(MessageCid, SortsByTime) {
  std::string earlier = new_message_cid(1'700'000'000'000);
  std::string later = new_message_cid(1'700'000'000'001);
  EXPECT_LT(earlier.substr(0, 10), later.substr(0, 10));
  EXPECT_EQ(new_message_cid(0).substr(0, 10), "0000000000");
  // 48 bits of the largest time fit in the first 10 characters ("7ZZZZZZZZZ").
  EXPECT_EQ(new_message_cid((int64_t{1} << 48) - 1).substr(0, 10), "7ZZZZZZZZZ");
}

TEST(IsUlid, RejectsOtherStrings) {
  EXPECT_TRUE(is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
  EXPECT_FALSE(is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FA"));   // 25
  EXPECT_FALSE(is_ulid("81ARZ3NDEKTSV4RRFFQ69G5FAV"));  // overflows 128 bits
  EXPECT_FALSE(is_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAI"));  // I is not Crockford
  EXPECT_FALSE(is_ulid("01arz3ndektsv4rrffq69g5fav"));
}

TEST(DeviceId, HasTheDefaultShape) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = new_device_id();
    ASSERT_EQ(id.size(), 12u);
    EXPECT_EQ(id.substr(0, 4), "cli-");
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 4), std::string::npos) << id;
    EXPECT_TRUE(is_valid_device_id(id));
    seen.insert(id);
  }
  EXPECT_GT(seen.size(), 95u);
}

}  // namespace
}  // namespace chat::tools
