#include "chat/broker/presence.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

namespace chat::broker {
namespace {

using json = nlohmann::json;

class RecordingPort final : public BrokerPort {
 public:
  void publish(std::string_view, const std::string& topic, std::string_view payload, int,
               bool retain) override {
    if (retain) published.push_back({topic, json::parse(payload)});
  }
  void kick_client(const std::string&) override {}
  void kick_user(const std::string&) override {}
  void log(LogLevel, const std::string&) override {}
  std::vector<std::pair<std::string, json>> published;
};

class PresenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("presence-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    store::ArchiveOptions o;
    o.path = dir_.string();
    auto a = store::Archive::open(o);
    ASSERT_TRUE(a.is_ok());
    archive_ = std::move(*a);
    tracker_ = std::make_unique<PresenceTracker>(clock_, *archive_, port_);
  }
  void TearDown() override {
    tracker_.reset();
    archive_.reset();
    std::filesystem::remove_all(dir_);
  }
  void run_for(int64_t ms) {
    for (int64_t t = 0; t < ms; t += 100) {
      clock_.advance_ms(100);
      tracker_->flush();
    }
  }
  std::vector<std::string> statuses() {
    std::vector<std::string> out;
    for (auto& [t, p] : port_.published) out.push_back(t + "=" + p["status"].get<std::string>());
    return out;
  }

  FakeClock clock_{1'700'000'000'000};
  std::filesystem::path dir_;
  std::unique_ptr<store::Archive> archive_;
  RecordingPort port_;
  std::unique_ptr<PresenceTracker> tracker_;
};

TEST_F(PresenceTest, OnlineWhileAnyDeviceOfflineWithinTwoSecondsOfTheLast) {
  tracker_->device_connected("alice");
  tracker_->flush();
  ASSERT_EQ(statuses(), (std::vector<std::string>{"presence/alice=online"}));
  tracker_->device_connected("alice");  // a second device
  run_for(3000);
  tracker_->device_disconnected("alice");
  run_for(3000);
  EXPECT_EQ(statuses().size(), 1u);  // one device still there
  int64_t left = clock_.now_ms();
  tracker_->device_disconnected("alice");
  run_for(1400);
  EXPECT_EQ(statuses().size(), 1u);
  run_for(600);  // within 2 s of leaving
  ASSERT_EQ(statuses().size(), 2u);
  EXPECT_EQ(port_.published.back().second["status"], "offline");
  EXPECT_EQ(port_.published.back().second["ts"], left);  // last seen
}

TEST_F(PresenceTest, QuickReconnectPublishesNothingAndStormsAreThrottled) {
  tracker_->device_connected("bob");
  tracker_->flush();
  for (int i = 0; i < 20; ++i) {  // a reconnect storm: 20 flaps in 2 s
    tracker_->device_disconnected("bob");
    run_for(100);
    tracker_->device_connected("bob");
  }
  run_for(3000);
  EXPECT_EQ(statuses(), (std::vector<std::string>{"presence/bob=online"}));
  // Offline then straight back online: at most one change per second.
  tracker_->device_disconnected("bob");
  run_for(2000);
  tracker_->device_connected("bob");
  tracker_->flush();
  auto s = statuses();
  ASSERT_EQ(s.size(), 2u);
  run_for(1000);
  EXPECT_EQ(statuses().size(), 3u);
}

TEST_F(PresenceTest, RecoverPublishesOfflineForUsersRecordedOnline) {
  tracker_->device_connected("carol");
  tracker_->flush();
  // The broker dies here; a new one starts on the same archive.
  RecordingPort port2;
  PresenceTracker after(clock_, *archive_, port2);
  after.recover();
  ASSERT_EQ(port2.published.size(), 1u);
  EXPECT_EQ(port2.published[0].first, "presence/carol");
  EXPECT_EQ(port2.published[0].second["status"], "offline");
}

}  // namespace
}  // namespace chat::broker
