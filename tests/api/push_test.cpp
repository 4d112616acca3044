// chat-api's push pipeline (docs/push.md): the feed from the archive's push
// records, the worker with an in-process fake provider and an injected clock,
// the device registry, and the /v1/devices routes.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "chat/api/devices.h"
#include "chat/api/push_metrics.h"
#include "chat/api/push_worker.h"
#include "http_fixture.h"
#include "push_db_raw.h"

namespace chat::api {
namespace {

using test_support::FakeControl;
using test_support::HttpServerTest;
using test_support::ok_reply;
using namespace std::chrono_literals;

// Records every send; answers from a script, then kSent.
class FakeProvider final : public PushProvider {
 public:
  explicit FakeProvider(const char* platform) : platform_(platform) {}
  const char* platform() const override { return platform_; }
  PushResult send(const PushTarget& target, const PushNotification& n) override {
    std::unique_lock lock(mu_);
    sends_.push_back({target, n});
    cv_.notify_all();
    if (block_) blocked_cv_.wait(lock, [&] { return !block_; });
    if (script_.empty()) return PushResult{PushOutcome::kSent, 200, 0s, ""};
    PushResult r = script_.front();
    script_.pop_front();
    return r;
  }
  void script(PushResult r) {
    std::lock_guard lock(mu_);
    script_.push_back(r);
  }
  void set_block(bool b) {
    std::lock_guard lock(mu_);
    block_ = b;
    blocked_cv_.notify_all();
  }
  struct Send {
    PushTarget target;
    PushNotification notification;
  };
  std::vector<Send> sends() {
    std::lock_guard lock(mu_);
    return sends_;
  }
  bool wait_sends(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return sends_.size() >= n; });
  }

 private:
  const char* platform_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable blocked_cv_;
  bool block_ = false;
  std::deque<PushResult> script_;
  std::vector<Send> sends_;
};

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// An APNs device token: 64 hex digits.
const std::string kApnsToken(64, 'a');

PushResult retry(int http, std::chrono::seconds after = 0s) {
  return PushResult{PushOutcome::kRetry, http, after, "server error"};
}

class PushPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/chat-push-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store::ArchiveOptions o;
    o.path = dir_ + "/archive";
    auto archive = store::Archive::open(o);
    ASSERT_TRUE(archive.is_ok()) << archive.status().to_string();
    archive_ = std::move(archive).value();
    auto reader = store::ArchiveReader::open(o.path, dir_ + "/secondary");
    ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
    reader_ = std::move(reader).value();
    open_store();
    options_.workers = 2;
    options_.poll_interval = 50ms;
    options_.confirm_interval = 0ms;
  }
  void TearDown() override {
    worker_.reset();
    registry_.reset();
    store_.reset();
    reader_.reset();
    archive_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void open_store() {
    worker_.reset();
    registry_.reset();
    store_.reset();
    auto s = store::PushStore::open(dir_ + "/push");
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s).value();
    registry_ = std::make_unique<DeviceRegistry>(*store_, control_, clock_, 10);
  }
  // A worker with a fake FCM provider (and APNs unless `no_apns`).
  void make_worker(const Clock& clock, bool no_apns = false) {
    worker_.reset();
    PushProviders providers;
    auto fcm = std::make_unique<FakeProvider>("fcm");
    fcm_ = fcm.get();
    providers.emplace("fcm", std::move(fcm));
    if (!no_apns) {
      auto apns = std::make_unique<FakeProvider>("apns");
      apns_ = apns.get();
      providers.emplace("apns", std::move(apns));
    }
    worker_ = std::make_unique<PushWorker>(*store_, *reader_, *registry_, control_,
                                           std::move(providers), metrics_, clock, options_);
  }
  void make_worker(bool no_apns = false) { make_worker(clock_, no_apns); }
  void register_device(const std::string& user, const std::string& device, const std::string& token,
                       const std::string& platform = "fcm") {
    auto r = registry_->register_device(user, device, platform, token);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  }
  // Archives a message with a push record, as the broker's router does.
  std::string archive_message(const std::vector<std::string>& targets,
                              const std::string& type = "text",
                              const nlohmann::json& body = "hello bob") {
    EnvelopeFields f;
    f.id = ids_.next();
    f.ts = clock_.now_ms();
    f.conv = "dm:alice:bob";
    f.from = "alice";
    f.dev = "phone";
    f.to = "bob";
    f.cid = "c" + f.id;
    f.type = type;
    store::AppendRequest req;
    req.id = f.id;
    req.conv = f.conv;
    req.from = f.from;
    req.client_id = "alice:phone";
    req.cid = f.cid;
    req.envelope = make_envelope(f, body);
    req.participants = {"alice", "bob"};
    req.push = nlohmann::json{{"id", f.id},     {"ts", f.ts},   {"conv", f.conv},
                              {"from", f.from}, {"type", type}, {"targets", targets}}
                   .dump();
    Status s = archive_->append(req);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return f.id;
  }
  size_t take() {
    auto taken = worker_->take_records();
    EXPECT_TRUE(taken.is_ok()) << taken.status().to_string();
    return taken.is_ok() ? *taken : 0;
  }
  size_t send_due() {
    auto sent = worker_->send_due();
    EXPECT_TRUE(sent.is_ok()) << sent.status().to_string();
    return sent.is_ok() ? *sent : 0;
  }
  std::vector<nlohmann::json> ops(const std::string& op) {
    std::vector<nlohmann::json> out;
    for (const auto& r : control_.requests()) {
      if (r.value("op", "") == op) out.push_back(r);
    }
    return out;
  }

  FakeClock clock_{1'700'000'000'000};
  IdGenerator ids_{clock_};
  std::string dir_;
  std::unique_ptr<store::Archive> archive_;
  std::unique_ptr<store::ArchiveReader> reader_;
  std::unique_ptr<store::PushStore> store_;
  FakeControl control_;
  PushMetrics metrics_;
  std::unique_ptr<DeviceRegistry> registry_;
  PushWorkerOptions options_;
  std::unique_ptr<PushWorker> worker_;
  FakeProvider* fcm_ = nullptr;
  FakeProvider* apns_ = nullptr;
};

TEST_F(PushPipelineTest, OneNotificationPerMessageAndTargetAcrossARestart) {
  register_device("bob", "phone", "token-phone-123456");
  register_device("bob", "tablet", kApnsToken, "apns");
  make_worker();
  const std::string id = archive_message({"bob:phone", "bob:tablet"});
  EXPECT_EQ(take(), 1u);
  EXPECT_EQ(store_->queue_depth(), 2u);
  EXPECT_EQ(take(), 0u);  // taken over once
  EXPECT_EQ(store_->queue_depth(), 2u);

  // chat-api restarts before sending: the jobs are still there, and the
  // record is not taken over again.
  open_store();
  make_worker();
  EXPECT_EQ(take(), 0u);
  EXPECT_EQ(store_->queue_depth(), 2u);
  EXPECT_EQ(send_due(), 2u);
  ASSERT_EQ(fcm_->sends().size(), 1u);
  ASSERT_EQ(apns_->sends().size(), 1u);
  const auto phone = fcm_->sends()[0];
  EXPECT_EQ(phone.target.user, "bob");
  EXPECT_EQ(phone.target.device, "phone");
  EXPECT_EQ(phone.target.token, "token-phone-123456");
  EXPECT_EQ(phone.notification.message_id, id);
  EXPECT_EQ(phone.notification.conv, "dm:alice:bob");
  EXPECT_EQ(phone.notification.from, "alice");
  EXPECT_EQ(phone.notification.type, "text");
  EXPECT_EQ(phone.notification.preview, "");  // content-free by default
  EXPECT_EQ(apns_->sends()[0].target.device, "tablet");
  EXPECT_EQ(store_->queue_depth(), 0u);
  EXPECT_EQ(send_due(), 0u);
  open_store();
  make_worker();
  EXPECT_EQ(take(), 0u);
  EXPECT_EQ(send_due(), 0u);
  EXPECT_EQ(metrics_.sent_count("fcm"), 1u);
  EXPECT_EQ(metrics_.sent_count("apns"), 1u);

  // The broker is told it may delete the record.
  ASSERT_TRUE(worker_->confirm_records().is_ok());
  auto done = ops("push.done");
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0]["upto"], id);
  ASSERT_TRUE(worker_->confirm_records().is_ok());  // nothing new: not asked again
  EXPECT_EQ(ops("push.done").size(), 1u);
}

TEST_F(PushPipelineTest, RetryHonoursRetryAfter) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  fcm_->script(retry(429, 30s));
  EXPECT_EQ(send_due(), 1u);
  EXPECT_EQ(store_->queue_depth(), 1u);
  EXPECT_EQ(**store_->next_due_ms(), clock_.now_ms() + 30'000);
  clock_.advance_ms(29'000);
  EXPECT_EQ(send_due(), 0u);
  clock_.advance_ms(1'000);
  EXPECT_EQ(send_due(), 1u);
  EXPECT_EQ(fcm_->sends().size(), 2u);
  EXPECT_EQ(store_->queue_depth(), 0u);
  EXPECT_EQ(metrics_.failed_count("fcm", "retry"), 1u);
  EXPECT_EQ(metrics_.sent_count("fcm"), 1u);
}

TEST_F(PushPipelineTest, AServerErrorIsRetriedOnceAfterTheFirstBackoff) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  fcm_->script(retry(500));
  EXPECT_EQ(send_due(), 1u);
  clock_.advance_ms(999);
  EXPECT_EQ(send_due(), 0u);
  clock_.advance_ms(1);
  EXPECT_EQ(send_due(), 1u);
  EXPECT_EQ(fcm_->sends().size(), 2u);
  EXPECT_EQ(fcm_->sends()[0].notification.message_id, fcm_->sends()[1].notification.message_id);
  clock_.advance_ms(3'600'000);
  EXPECT_EQ(send_due(), 0u);  // sent: never again
  EXPECT_EQ(metrics_.sent_count("fcm"), 1u);
}

TEST_F(PushPipelineTest, BackoffDoublesUpToItsCapAndNeverUndercutsRetryAfter) {
  PushWorkerOptions o;
  EXPECT_EQ(push_retry_delay_ms(o, 1, 0s), 1'000);
  EXPECT_EQ(push_retry_delay_ms(o, 2, 0s), 2'000);
  EXPECT_EQ(push_retry_delay_ms(o, 3, 0s), 4'000);
  EXPECT_EQ(push_retry_delay_ms(o, 9, 0s), 256'000);
  EXPECT_EQ(push_retry_delay_ms(o, 10, 0s), 300'000);
  EXPECT_EQ(push_retry_delay_ms(o, 1000, 0s), 300'000);
  EXPECT_EQ(push_retry_delay_ms(o, 1, 10s), 10'000);
  EXPECT_EQ(push_retry_delay_ms(o, 3, 2s), 4'000);
  EXPECT_EQ(push_retry_delay_ms(o, 1, 600s), 600'000);  // beyond the backoff cap: honoured
  EXPECT_EQ(push_retry_delay_ms(o, 1, std::chrono::hours(5)), 3'600'000);  // capped at 1 h
}

TEST_F(PushPipelineTest, GivesUpAfterMaxAttempts) {
  options_.max_attempts = 3;
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  for (int i = 0; i < 5; ++i) fcm_->script(retry(503));
  for (int i = 0; i < 5; ++i) {
    send_due();
    clock_.advance_ms(10 * 60 * 1000);
  }
  EXPECT_EQ(fcm_->sends().size(), 3u);
  EXPECT_EQ(store_->queue_depth(), 0u);
  EXPECT_EQ(metrics_.failed_count("fcm", "retry"), 2u);
  EXPECT_EQ(metrics_.failed_count("fcm", "gave_up"), 1u);
}

TEST_F(PushPipelineTest, ANotificationOlderThanMaxAgeIsGivenUp) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  clock_.advance_ms(options_.max_age_ms + 1);
  EXPECT_EQ(send_due(), 1u);
  EXPECT_TRUE(fcm_->sends().empty());
  EXPECT_EQ(metrics_.failed_count("fcm", "expired"), 1u);
  EXPECT_EQ(store_->queue_depth(), 0u);
}

TEST_F(PushPipelineTest, UnregisteredRemovesTheTargetAndTellsTheBroker) {
  register_device("bob", "phone", "token-phone-123456");
  register_device("bob", "tablet", "token-tablet-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  control_.clear_requests();
  fcm_->script(PushResult{PushOutcome::kUnregistered, 404, 0s, "UNREGISTERED"});
  EXPECT_EQ(send_due(), 1u);
  EXPECT_FALSE(store_->target("bob", "phone")->has_value());
  EXPECT_TRUE(store_->target("bob", "tablet")->has_value());
  auto told = ops("push.devices");
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0]["user"], "bob");
  EXPECT_EQ(told[0]["devices"], nlohmann::json::array({"tablet"}));
  EXPECT_EQ(metrics_.targets_removed(), 1u);
  EXPECT_EQ(metrics_.failed_count("fcm", "unregistered"), 1u);
  // A message archived before the broker heard of it: dropped without a send.
  archive_message({"bob:phone"});
  take();
  EXPECT_EQ(send_due(), 1u);
  EXPECT_EQ(fcm_->sends().size(), 1u);
  EXPECT_EQ(store_->queue_depth(), 0u);
}

TEST_F(PushPipelineTest, UnregisteredKeepsATokenRegisteredMeanwhile) {
  register_device("bob", "phone", "token-old-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  fcm_->set_block(true);
  std::thread sender([this] { send_due(); });
  ASSERT_TRUE(fcm_->wait_sends(1));
  register_device("bob", "phone", "token-new-123456");  // re-registered during the send
  fcm_->script(PushResult{PushOutcome::kUnregistered, 404, 0s, "UNREGISTERED"});
  fcm_->set_block(false);
  sender.join();
  auto t = store_->target("bob", "phone");
  ASSERT_TRUE(t.is_ok() && t->has_value());
  EXPECT_EQ((*t)->token, "token-new-123456");
  EXPECT_EQ(metrics_.targets_removed(), 0u);
}

TEST_F(PushPipelineTest, APlatformWithoutProviderIsDropped) {
  register_device("bob", "tablet", kApnsToken, "apns");
  make_worker(/*no_apns=*/true);
  archive_message({"bob:tablet"});
  take();
  EXPECT_EQ(send_due(), 1u);
  EXPECT_TRUE(fcm_->sends().empty());
  EXPECT_EQ(store_->queue_depth(), 0u);
  EXPECT_EQ(metrics_.failed_count("apns", "provider_missing"), 1u);
}

TEST_F(PushPipelineTest, ARejectedNotificationIsNotRetried) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  fcm_->script(PushResult{PushOutcome::kRejected, 400, 0s, "INVALID_ARGUMENT"});
  send_due();
  clock_.advance_ms(3'600'000);
  send_due();
  EXPECT_EQ(fcm_->sends().size(), 1u);
  EXPECT_EQ(metrics_.failed_count("fcm", "rejected"), 1u);
  EXPECT_TRUE(store_->target("bob", "phone")->has_value());
}

TEST_F(PushPipelineTest, PreviewOnlyWhenAllowedAndOnlyForText) {
  options_.preview = true;
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  const std::string long_text(150, 'x');
  archive_message({"bob:phone"}, "text", long_text);
  archive_message({"bob:phone"}, "e2e", nlohmann::json{{"ct", "secret"}});
  archive_message({"bob:phone"}, "text", nlohmann::json{{"text", "caption-like"}});
  take();
  send_due();
  auto sends = fcm_->sends();
  ASSERT_EQ(sends.size(), 3u);
  EXPECT_EQ(sends[0].notification.preview, std::string(100, 'x') + "\u2026");
  EXPECT_EQ(sends[1].notification.preview, "");
  EXPECT_EQ(sends[2].notification.preview, "caption-like");
}

TEST_F(PushPipelineTest, TheJobIsMarkedInFlightWhileItsSendRuns) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  fcm_->set_block(true);
  std::thread sender([&] { send_due(); });
  ASSERT_TRUE(fcm_->wait_sends(1));
  // What a SIGKILL now would leave behind: the job, marked in flight.
  auto due = store_->due_jobs(clock_.now_ms(), 10);
  ASSERT_TRUE(due.is_ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_TRUE((*due)[0].in_flight);
  fcm_->set_block(false);
  sender.join();
  EXPECT_EQ(store_->queue_depth(), 0u);
}

TEST_F(PushPipelineTest, AJobLeftInFlightByACrashIsDroppedNotResent) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  auto due = store_->due_jobs(clock_.now_ms(), 10);
  ASSERT_TRUE(due.is_ok());
  ASSERT_EQ(due->size(), 1u);
  // The worker marked it and was killed during the send.
  ASSERT_TRUE(store_->mark_in_flight((*due)[0]).is_ok());
  open_store();
  make_worker();
  EXPECT_EQ(send_due(), 1u);
  EXPECT_TRUE(fcm_->sends().empty()) << "at most one notification per message and device";
  EXPECT_EQ(metrics_.failed_count("fcm", "uncertain"), 1u);
  EXPECT_EQ(store_->queue_depth(), 0u);
}

TEST_F(PushPipelineTest, ARetryClearsTheInFlightMarkAndIsSentAgain) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  fcm_->script(retry(503));
  EXPECT_EQ(send_due(), 1u);
  clock_.advance_ms(options_.backoff_min_ms);
  auto due = store_->due_jobs(clock_.now_ms(), 10);
  ASSERT_TRUE(due.is_ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_FALSE((*due)[0].in_flight);
  EXPECT_EQ(send_due(), 1u);
  EXPECT_EQ(fcm_->sends().size(), 2u);
  EXPECT_EQ(metrics_.sent_count("fcm"), 1u);
  EXPECT_EQ(metrics_.failed_count("fcm", "uncertain"), 0u);
}

TEST_F(PushPipelineTest, TheAgeLimitRunsFromTheMessageTime) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  // Taken over late (chat-api was down): queued with the message's time.
  clock_.advance_ms(options_.max_age_ms - 1000);
  EXPECT_EQ(take(), 1u);
  EXPECT_EQ(store_->queue_depth(), 1u);
  clock_.advance_ms(2000);
  EXPECT_EQ(send_due(), 1u);
  EXPECT_TRUE(fcm_->sends().empty());
  EXPECT_EQ(metrics_.failed_count("fcm", "expired"), 1u);

  // Already too old at take-over: never queued.
  archive_message({"bob:phone"});
  clock_.advance_ms(options_.max_age_ms + 1);
  EXPECT_EQ(take(), 1u);
  EXPECT_EQ(store_->queue_depth(), 0u);
  EXPECT_EQ(metrics_.failed_count("fcm", "expired"), 2u);
  EXPECT_TRUE(fcm_->sends().empty());
}

TEST_F(PushPipelineTest, TheNotificationCarriesTheMessageTime) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  const int64_t sent_at = clock_.now_ms();
  archive_message({"bob:phone"});
  clock_.advance_ms(60'000);
  take();
  send_due();
  ASSERT_EQ(fcm_->sends().size(), 1u);
  EXPECT_EQ(fcm_->sends()[0].notification.message_ms, sent_at);
}

TEST_F(PushPipelineTest, AStoreReadErrorBacksOffInsteadOfSpinning) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  archive_message({"bob:phone"});
  take();
  // Damage bob's target record so that reading it fails.
  worker_.reset();
  registry_.reset();
  store_.reset();
  ASSERT_TRUE(chat::testing::put_raw_push_key(dir_ + "/push", chat::testing::PushFamily::kTargets,
                                              std::string("bob\0phone", 9), "{"));
  open_store();
  make_worker();
  EXPECT_EQ(send_due(), 1u);
  EXPECT_TRUE(fcm_->sends().empty());
  EXPECT_EQ(store_->queue_depth(), 1u);
  // Not due again at once (the dispatcher would spin): after the backoff.
  auto next = store_->next_due_ms();
  ASSERT_TRUE(next.is_ok() && next->has_value());
  EXPECT_EQ(**next, clock_.now_ms() + options_.backoff_min_ms);
  auto due = store_->due_jobs(clock_.now_ms(), 10);
  ASSERT_TRUE(due.is_ok());
  EXPECT_TRUE(due->empty());
  clock_.advance_ms(options_.backoff_min_ms);
  due = store_->due_jobs(clock_.now_ms(), 10);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].attempts, 0) << "a store failure is not a send attempt";
}

TEST_F(PushPipelineTest, ASlowBrokerForOneUserDoesNotBlockAnotherRegistration) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  control_.set_handler([&](const nlohmann::json& request) -> Result<nlohmann::json> {
    if (request.value("user", "") == "alice") {
      std::unique_lock lock(mu);
      cv.wait_for(lock, 5s, [&] { return release; });
    }
    return nlohmann::json{{"req", "x"}, {"ok", true}};
  });
  std::thread slow([&] { register_device("alice", "phone", "token-alice-123456"); });
  ASSERT_TRUE(eventually([&] { return !ops("push.devices").empty(); }));
  const auto start = std::chrono::steady_clock::now();
  register_device("bob", "phone", "token-bob-1234567");  // not behind alice's round trip
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  slow.join();
  auto alice = store_->targets_of("alice");
  ASSERT_TRUE(alice.is_ok());
  EXPECT_EQ(alice->size(), 1u);
}

TEST(PushPreview, CutsAtCodePoints) {
  EXPECT_EQ(push_preview(R"({"body":"h\u00e9llo"})", 3), "h\u00e9l\u2026");
  EXPECT_EQ(push_preview(R"({"body":"\ud83d\ude00\ud83d\ude00"})", 1), "\U0001F600\u2026");
  EXPECT_EQ(push_preview(R"({"body":"abc"})", 3), "abc");
  EXPECT_EQ(push_preview(R"({"body":42})", 3), "");
  EXPECT_EQ(push_preview("not json", 3), "");
}

TEST_F(PushPipelineTest, MalformedRecordsAreSkippedAndTheCursorMovesOn) {
  register_device("bob", "phone", "token-phone-123456");
  make_worker();
  store::AppendRequest req;
  req.id = ids_.next();
  req.conv = "dm:alice:bob";
  req.from = "alice";
  req.envelope = "{}";
  req.participants = {"alice", "bob"};
  req.push = R"({"targets":"bob:phone"})";
  ASSERT_TRUE(archive_->append(req).is_ok());
  archive_message({"bob:phone", "not a client id"});
  EXPECT_EQ(take(), 2u);
  EXPECT_EQ(store_->queue_depth(), 1u);
}

TEST_F(PushPipelineTest, TheThreadsDeliverAfterAWakeUpAndStopFinishesSendsInFlight) {
  options_.poll_interval = 10s;  // only the wake-up can be what makes it fast
  register_device("bob", "phone", "token-phone-123456");
  // The worker runs on real time: so are the messages (their age counts).
  clock_.set_ms(SystemClock::instance().now_ms());
  make_worker(SystemClock::instance());
  worker_->start();
  archive_message({"bob:phone"});
  worker_->wake();
  ASSERT_TRUE(fcm_->wait_sends(1, 5s));
  EXPECT_TRUE(eventually([&] { return store_->queue_depth() == 0; }));

  fcm_->set_block(true);
  archive_message({"bob:phone"});
  worker_->wake();
  ASSERT_TRUE(fcm_->wait_sends(2, 5s));
  std::thread stopper([this] { worker_->stop(); });
  std::this_thread::sleep_for(50ms);  // stop() is now waiting for the send in flight
  EXPECT_EQ(store_->queue_depth(), 1u);
  fcm_->set_block(false);
  stopper.join();
  EXPECT_EQ(store_->queue_depth(), 0u);  // the send finished and was recorded
  EXPECT_EQ(metrics_.sent_count("fcm"), 2u);
}

// ---- the device registry -----------------------------------------------------------

TEST_F(PushPipelineTest, ReconcileSendsOnlyTheUsersWhoseListsDiffer) {
  register_device("bob", "phone", "token-phone-123456");
  register_device("carol", "x", "token-carol-123456");
  // The broker's copy (its archive): bob stale, carol right, dave unknown to us.
  ASSERT_TRUE(archive_->set_push_devices("bob", {"old"}).is_ok());
  ASSERT_TRUE(archive_->set_push_devices("carol", {"x"}).is_ok());
  ASSERT_TRUE(archive_->set_push_devices("dave", {"y"}).is_ok());
  control_.clear_requests();
  registry_->request_resync();
  ASSERT_TRUE(registry_->reconcile(*reader_).is_ok());
  EXPECT_FALSE(registry_->resync_pending());
  auto told = ops("push.devices");
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[0]["user"], "bob");
  EXPECT_EQ(told[0]["devices"], nlohmann::json::array({"phone"}));
  EXPECT_EQ(told[1]["user"], "dave");
  EXPECT_EQ(told[1]["devices"], nlohmann::json::array());
  // A broker that does not answer leaves it pending.
  control_.fail_with(unavailable("broker not connected"));
  EXPECT_FALSE(registry_->reconcile(*reader_).is_ok());
  EXPECT_TRUE(registry_->resync_pending());
}

// ---- the routes ----------------------------------------------------------------------

class DeviceRoutesTest : public HttpServerTest {
 protected:
  void start_with_devices(std::map<std::string, std::string> env = {}) {
    customize_options_ = [this](HttpOptions& options) {
      auto s = store::PushStore::open(dir_ + "/api/push");
      ASSERT_TRUE(s.is_ok()) << s.status().to_string();
      push_store_ = std::move(s).value();
      registry_ = std::make_unique<DeviceRegistry>(*push_store_, control_, clock_,
                                                   config_.push.max_devices);
      options.devices = registry_.get();
      options.push_metrics = &metrics_;
    };
    start(std::move(env));
  }
  void TearDown() override {
    HttpServerTest::TearDown();
    registry_.reset();
    push_store_.reset();
  }
  httplib::Result register_device(const std::string& token, const nlohmann::json& body) {
    return post_json("/v1/devices", body, token);
  }

  std::unique_ptr<store::PushStore> push_store_;
  std::unique_ptr<DeviceRegistry> registry_;
  PushMetrics metrics_;
};

TEST_F(DeviceRoutesTest, RegisterListAndRemoveOwnDevices) {
  start_with_devices();
  const std::string bob = token_for("bob");
  control_.clear_requests();
  const std::string token = "fcm-token-abcdefghijklmnop";
  auto r = register_device(bob, {{"device", "phone"}, {"platform", "fcm"}, {"token", token}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(body_of(r)["device"], "phone");
  EXPECT_EQ(body_of(r)["token_hint"], "...klmnop");
  EXPECT_EQ(r->body.find(token), std::string::npos);  // never echoed
  auto last = control_.last_request();
  EXPECT_EQ(last["op"], "push.devices");
  EXPECT_EQ(last["user"], "bob");
  EXPECT_EQ(last["devices"], nlohmann::json::array({"phone"}));

  r = register_device(bob, {{"device", "phone"}, {"platform", "apns"}, {"token", kApnsToken}});
  EXPECT_EQ(r->status, 200) << r->body;  // replaced
  r = register_device(bob, {{"device", "tablet"}, {"platform", "fcm"}, {"token", "t" + token}});
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(control_.last_request()["devices"], nlohmann::json::array({"phone", "tablet"}));

  r = get("/v1/devices", bob);
  ASSERT_EQ(r->status, 200);
  auto list = body_of(r)["devices"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["device"], "phone");
  EXPECT_EQ(list[0]["platform"], "apns");
  EXPECT_EQ(r->body.find(token), std::string::npos);

  // Another user sees only their own.
  const std::string carol = token_for("carol");
  r = get("/v1/devices", carol);
  EXPECT_EQ(body_of(r)["devices"].size(), 0u);
  EXPECT_EQ(del("/v1/devices/phone", carol)->status, 404);

  r = del("/v1/devices/phone", bob);
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(control_.last_request()["devices"], nlohmann::json::array({"tablet"}));
  EXPECT_EQ(del("/v1/devices/phone", bob)->status, 404);
  EXPECT_EQ(get("/v1/devices", "")->status, 401);
}

TEST_F(DeviceRoutesTest, BadInputIsAClearError) {
  start_with_devices();
  const std::string bob = token_for("bob");
  const auto error_of = [&](const nlohmann::json& body) {
    auto r = register_device(bob, body);
    EXPECT_EQ(r->status, 400) << body.dump();
    return body_of(r)["message"].get<std::string>();
  };
  EXPECT_NE(
      error_of({{"device", "bob:phone"}, {"platform", "fcm"}, {"token", "tttttt"}}).find("device"),
      std::string::npos);
  EXPECT_NE(
      error_of({{"device", "phone"}, {"platform", "gcm"}, {"token", "tttttt"}}).find("platform"),
      std::string::npos);
  EXPECT_NE(
      error_of({{"device", "phone"}, {"platform", "fcm"}, {"token", "has space"}}).find("token"),
      std::string::npos);
  EXPECT_NE(error_of({{"device", "phone"}, {"platform", "fcm"}, {"token", std::string(5000, 'a')}})
                .find("token"),
            std::string::npos);
  error_of({{"device", "phone"}, {"platform", "fcm"}});
  auto r =
      client_->Post("/v1/devices", {{"Authorization", "Bearer " + bob}}, "[1]", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(del("/v1/devices/" + std::string(65, 'a'), bob)->status, 400);
}

TEST_F(DeviceRoutesTest, TokensAreCheckedForTheirPlatform) {
  start_with_devices();
  const std::string bob = token_for("bob");
  const auto code_of = [&](const std::string& platform, const std::string& token) {
    auto r = register_device(bob, {{"device", "phone"}, {"platform", platform}, {"token", token}});
    if (!r) return std::string("no response");
    if (r->status != 400) return std::to_string(r->status);
    auto body = body_of(r);
    EXPECT_FALSE(body["message"].get<std::string>().empty());
    return body["error"].get<std::string>();
  };
  EXPECT_EQ(code_of("apns", "token-tablet-123456"), "invalid_token");  // not hex
  EXPECT_EQ(code_of("apns", std::string(62, 'a')), "invalid_token");   // too short
  EXPECT_EQ(code_of("apns", std::string(65, 'a')), "invalid_token");   // odd
  EXPECT_EQ(code_of("apns", std::string(202, 'a')), "invalid_token");  // too long
  EXPECT_EQ(code_of("apns", std::string(63, 'a') + "g"), "invalid_token");
  EXPECT_EQ(code_of("fcm", ""), "invalid_token");
  EXPECT_EQ(code_of("fcm", std::string("abc\x01") + "def"), "invalid_token");
  EXPECT_EQ(code_of("fcm", std::string(4097, 'a')), "invalid_token");
  EXPECT_EQ(code_of("apns", std::string(64, 'A')), "201");
  EXPECT_EQ(code_of("fcm", "fcm-token:APA91b_x-y"), "200");  // replaced
}

TEST_F(DeviceRoutesTest, TheCapIsAConflictNamingTheSetting) {
  start_with_devices({{"CHAT_PUSH_MAX_DEVICES", "2"}});
  const std::string bob = token_for("bob");
  for (const char* d : {"a", "b"}) {
    auto r = register_device(
        bob, {{"device", d}, {"platform", "fcm"}, {"token", std::string("token-") + d}});
    ASSERT_EQ(r->status, 201) << r->body;
  }
  auto r = register_device(bob, {{"device", "c"}, {"platform", "fcm"}, {"token", "token-c"}});
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(body_of(r)["error"], "too_many_devices");
  EXPECT_NE(body_of(r)["message"].get<std::string>().find("CHAT_PUSH_MAX_DEVICES"),
            std::string::npos);
  // Re-registering an existing device is fine at the cap.
  EXPECT_EQ(
      register_device(bob, {{"device", "a"}, {"platform", "fcm"}, {"token", "token-a2"}})->status,
      200);
}

TEST_F(DeviceRoutesTest, ATokenMovesToItsNewestOwnerAndBothListsReachTheBroker) {
  start_with_devices();
  const std::string bob = token_for("bob");
  const std::string carol = token_for("carol");
  ASSERT_EQ(
      register_device(bob, {{"device", "phone"}, {"platform", "fcm"}, {"token", "shared-token"}})
          ->status,
      201);
  control_.clear_requests();
  ASSERT_EQ(
      register_device(carol, {{"device", "phone"}, {"platform", "fcm"}, {"token", "shared-token"}})
          ->status,
      201);
  EXPECT_EQ(body_of(get("/v1/devices", bob))["devices"].size(), 0u);
  auto told = control_.requests();
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[0]["user"], "carol");
  EXPECT_EQ(told[1]["user"], "bob");
  EXPECT_EQ(told[1]["devices"], nlohmann::json::array());
}

TEST_F(DeviceRoutesTest, ABrokerThatDoesNotConfirmIs503AndTheRegistrationIsKept) {
  start_with_devices();
  const std::string bob = token_for("bob");
  control_.fail_with(unavailable("broker not connected"));
  auto r = register_device(bob, {{"device", "phone"}, {"platform", "fcm"}, {"token", "token-1"}});
  EXPECT_EQ(r->status, 503);
  EXPECT_TRUE(registry_->resync_pending());
  control_.fail_with(std::nullopt);
  // Repeating the request is safe.
  r = register_device(bob, {{"device", "phone"}, {"platform", "fcm"}, {"token", "token-1"}});
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(body_of(get("/v1/devices", bob))["devices"].size(), 1u);
}

TEST_F(DeviceRoutesTest, DeletingTheAccountForgetsItsTargets) {
  start_with_devices();
  emulate_broker();
  const std::string bob = token_for("bob");
  ASSERT_EQ(register_device(bob, {{"device", "phone"}, {"platform", "fcm"}, {"token", "token-1"}})
                ->status,
            503);  // the emulated broker does not know push.devices: not confirmed
  control_.set_handler([this](const nlohmann::json& req) -> Result<nlohmann::json> {
    if (req.value("op", "") == "push.devices") return ok_reply();
    return broker(req);
  });
  ASSERT_EQ(del("/v1/users/me", bob)->status, 204);
  EXPECT_TRUE(push_store_->targets_of("bob")->empty());
}

TEST_F(DeviceRoutesTest, MetricsShowThePushCounters) {
  start_with_devices({{"CHAT_METRICS_TOKEN", "metrics-token-0123456789"}});
  metrics_.sent("fcm");
  metrics_.failed("apns", "unregistered");
  metrics_.target_removed();
  auto r = get("/metrics", "metrics-token-0123456789");
  ASSERT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("chat_push_sent_total{platform=\"fcm\"} 1"), std::string::npos);
  EXPECT_NE(r->body.find("chat_push_sent_total{platform=\"apns\"} 0"), std::string::npos);
  EXPECT_NE(r->body.find("chat_push_failed_total{platform=\"apns\",reason=\"unregistered\"} 1"),
            std::string::npos);
  EXPECT_NE(r->body.find("chat_push_targets_removed_total 1"), std::string::npos);
  EXPECT_NE(r->body.find("chat_push_queue_depth 0"), std::string::npos);
}

}  // namespace
}  // namespace chat::api
