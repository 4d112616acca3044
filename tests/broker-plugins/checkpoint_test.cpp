// The control op archive.checkpoint (backups): the router answers with the
// newest message id, and the copy opens as an archive holding exactly what
// was appended before it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "chat/broker/router.h"

namespace chat::broker {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class RecordingPort final : public BrokerPort {
 public:
  void publish(std::string_view, const std::string&, std::string_view payload, int, bool) override {
    replies.emplace_back(payload);
  }
  void kick_client(const std::string&) override {}
  void kick_user(const std::string&) override {}
  void log(LogLevel, const std::string& line) override { logs.push_back(line); }
  std::vector<std::string> replies;
  std::vector<std::string> logs;
};

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("checkpoint-op-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    store::ArchiveOptions o;
    o.path = (dir_ / "archive").string();
    auto a = store::Archive::open(o);
    ASSERT_TRUE(a.is_ok()) << a.status().to_string();
    archive_ = std::move(*a);
    directory_ = std::make_unique<Directory>(*archive_);
    ASSERT_TRUE(directory_->load().is_ok());
    router_ = std::make_unique<Router>(clock_, *archive_, *directory_, port_, RouterOptions{});
    ASSERT_TRUE(router_->init().is_ok());
    svc_.user = "svc.api";
    svc_.client_id = "svc.api:1";
    svc_.service = true;
  }
  void TearDown() override {
    router_.reset();
    directory_.reset();
    archive_.reset();
    fs::remove_all(dir_);
  }
  json call(const json& request) {
    router_->on_control(svc_, request.dump());
    EXPECT_FALSE(port_.replies.empty());
    return port_.replies.empty() ? json() : json::parse(port_.replies.back());
  }
  void append(const std::string& id) {
    store::AppendRequest r;
    r.id = id;
    r.conv = "dm:alice:bob";
    r.from = "alice";
    r.client_id = "alice:phone";
    r.cid = "c" + id;
    r.envelope = json{{"id", id}, {"from", "alice"}}.dump();
    r.participants = {"alice", "bob"};
    ASSERT_TRUE(archive_->append(r).is_ok());
  }

  fs::path dir_;
  FakeClock clock_{1'700'000'000'000};
  RecordingPort port_;
  std::unique_ptr<store::Archive> archive_;
  std::unique_ptr<Directory> directory_;
  std::unique_ptr<Router> router_;
  DeviceSession svc_;
};

TEST_F(CheckpointTest, CopiesWhatWasAppendedBefore) {
  append("0000000000000001");
  append("0000000000000002");
  const std::string copy = (dir_ / "copy").string();
  json r = call({{"op", "archive.checkpoint"}, {"req", "1"}, {"dir", copy}});
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_EQ(r["result"]["max_id"], "0000000000000002");
  EXPECT_EQ(r["result"]["dir"], copy);
  EXPECT_GT(r["result"]["sequence"].get<uint64_t>(), 0u);
  append("0000000000000003");  // after the copy: not in it

  store::ArchiveOptions o;
  o.path = copy;
  auto restored = store::Archive::open(o);
  ASSERT_TRUE(restored.is_ok()) << restored.status().to_string();
  auto max = (*restored)->max_id();
  ASSERT_TRUE(max.is_ok());
  EXPECT_EQ(*max, "0000000000000002");
  auto page = (*restored)->conversation_page("dm:alice:bob", store::PageQuery{});
  ASSERT_TRUE(page.is_ok());
  EXPECT_EQ(page->envelopes.size(), 2u);
}

TEST_F(CheckpointTest, RefusesABadOrExistingDirectory) {
  auto error_of = [&](const json& request) {
    json r = call(request);
    EXPECT_EQ(r["ok"], false) << r.dump();
    return r.value("error", "");
  };
  EXPECT_EQ(error_of({{"op", "archive.checkpoint"}, {"req", "1"}}), "invalid_argument");
  EXPECT_EQ(error_of({{"op", "archive.checkpoint"}, {"req", "2"}, {"dir", "relative/x"}}),
            "invalid_argument");
  EXPECT_EQ(error_of({{"op", "archive.checkpoint"}, {"req", "3"}, {"dir", 7}}), "invalid_argument");
  EXPECT_EQ(
      error_of(
          {{"op", "archive.checkpoint"}, {"req", "4"}, {"dir", (dir_ / "no" / "parent").string()}}),
      "invalid_argument");
  EXPECT_EQ(error_of({{"op", "archive.checkpoint"}, {"req", "5"}, {"dir", dir_.string()}}),
            "already_exists");
}

}  // namespace
}  // namespace chat::broker
