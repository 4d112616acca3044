// FcmProvider and ApnsProvider against the real fake-fcm / fake-apns
// processes (tests/fakes): OAuth token exchange and caching, provider
// tokens, TLS verification with CHAT_PUSH_CA, HTTP/2, every classification.
#include "chat/api/push_providers.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "chat/api/apns.h"
#include "chat/api/config.h"
#include "chat/api/fcm.h"
#include "chat/api/http_client.h"
#include "chat/common/clock.h"
#include "push_fakes.h"

namespace chat::api {
namespace {

using chat::testing::FakeOptions;
using chat::testing::FakeProvider;
using chat::testing::PushTestKeys;
using json = nlohmann::json;
using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int64_t real_now_ms() { return SystemClock::instance().now_ms(); }

PushTarget target(const std::string& platform, const std::string& token) {
  return PushTarget{"bob", "phone", platform, token};
}

PushNotification note(const std::string& id = "0000000001-000001") {
  return PushNotification{id, "dm:alice:bob", "alice", "text", ""};
}

json google_error(int code, const std::string& status, const std::string& fcm_code) {
  json e = {{"code", code}, {"message", "test"}, {"status", status}};
  if (!fcm_code.empty()) {
    e["details"] = json::array({{{"@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError"},
                                 {"errorCode", fcm_code}}});
  }
  return json{{"error", e}};
}

class PushProvidersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { keys_ = new PushTestKeys(); }
  static void TearDownTestSuite() {
    delete keys_;
    keys_ = nullptr;
  }

  std::unique_ptr<FcmProvider> fcm(const FakeProvider& fake, const Clock* clock = nullptr,
                                   const std::string& ca = "") {
    auto credentials = FcmCredentials::parse(slurp(keys_->service_account));
    EXPECT_TRUE(credentials.is_ok()) << credentials.status().message();
    FcmOptions o;
    o.endpoint = fake.url();
    o.token_url = fake.url() + "/token";
    o.http.extra_ca_file = ca.empty() ? keys_->ca : ca;
    o.http.connect_timeout = 2s;
    o.http.total_timeout = 5s;
    o.clock = clock;
    auto p = FcmProvider::create(*credentials, o);
    EXPECT_TRUE(p.is_ok()) << p.status().message();
    return std::move(p).value();
  }

  std::unique_ptr<ApnsProvider> apns(const std::string& endpoint, const Clock* clock = nullptr,
                                     const std::string& ca = "", const std::string& key = "") {
    ApnsOptions o;
    o.endpoint = endpoint;
    o.key_id = keys_->key_id;
    o.team_id = keys_->team_id;
    o.topic = keys_->topic;
    o.http.extra_ca_file = ca.empty() ? keys_->ca : ca;
    o.http.connect_timeout = 2s;
    o.http.total_timeout = 5s;
    o.clock = clock;
    auto p = ApnsProvider::create(slurp(key.empty() ? keys_->apns_key : key), o);
    EXPECT_TRUE(p.is_ok()) << p.status().message();
    return std::move(p).value();
  }

  static PushTestKeys* keys_;
};

PushTestKeys* PushProvidersTest::keys_ = nullptr;

// ---- FCM ---------------------------------------------------------------------

TEST_F(PushProvidersTest, FcmSendsADataOnlyMessageAndReusesTheAccessToken) {
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_);
  auto p = fcm(fake);
  for (const char* id : {"0000000001-000001", "0000000001-000002"}) {
    PushResult r = p->send(target("fcm", "tok-a"), note(id));
    EXPECT_EQ(r.outcome, PushOutcome::kSent) << r.reason << fake.log();
    EXPECT_EQ(r.http_status, 200);
  }
  auto oauth = fake.records("oauth");
  ASSERT_EQ(oauth.size(), 1u) << "the access token is cached";
  EXPECT_EQ(oauth[0]["status"], 200) << oauth[0].dump();  // the fake verified the assertion
  EXPECT_EQ(oauth[0]["grant_type"], "urn:ietf:params:oauth:grant-type:jwt-bearer");
  EXPECT_EQ(oauth[0]["tls"], true);
  auto sends = fake.records("send");
  ASSERT_EQ(sends.size(), 2u);
  for (const auto& s : sends) {
    EXPECT_EQ(s["status"], 200) << s.dump();
    EXPECT_EQ(s["path"], "/v1/projects/chat-test/messages:send");
    EXPECT_EQ(s["headers"]["authorization"], "Bearer " + oauth[0]["issued"].get<std::string>());
  }
  const json& m = sends[1]["body"]["message"];
  EXPECT_EQ(m["token"], "tok-a");
  EXPECT_EQ(m["data"]["type"], "message");
  EXPECT_EQ(m["data"]["id"], "0000000001-000002");
  EXPECT_EQ(m["data"]["conv"], "dm:alice:bob");
  EXPECT_EQ(m["data"]["from"], "alice");
  EXPECT_FALSE(m["data"].contains("preview"));
  EXPECT_EQ(m["android"]["priority"], "high");
  EXPECT_EQ(m["android"]["collapse_key"], "0000000001-000002");
  EXPECT_FALSE(m.contains("notification")) << "content-free: data-only";
}

TEST_F(PushProvidersTest, FcmPreviewBecomesAVisibleNotification) {
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_);
  auto p = fcm(fake);
  PushNotification n = note();
  n.preview = "hello bob";
  ASSERT_EQ(p->send(target("fcm", "tok-a"), n).outcome, PushOutcome::kSent);
  auto sends = fake.records("send");
  ASSERT_EQ(sends.size(), 1u);
  const json& m = sends[0]["body"]["message"];
  EXPECT_EQ(m["data"]["preview"], "hello bob");
  EXPECT_EQ(m["notification"]["body"], "hello bob");
  EXPECT_EQ(m["notification"]["title"], "alice");
}

TEST_F(PushProvidersTest, FcmFetchesANewAccessTokenWhenTheOldOneIsAboutToExpire) {
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_);
  FakeClock clock(real_now_ms());
  auto p = fcm(fake, &clock);
  ASSERT_EQ(p->send(target("fcm", "t"), note()).outcome, PushOutcome::kSent);
  clock.advance_ms(3000 * 1000);  // 50 minutes: still fresh (refreshed 5 min before expiry)
  ASSERT_EQ(p->send(target("fcm", "t"), note()).outcome, PushOutcome::kSent);
  EXPECT_EQ(fake.records("oauth").size(), 1u);
  clock.advance_ms(300 * 1000);  // 55 minutes
  ASSERT_EQ(p->send(target("fcm", "t"), note()).outcome, PushOutcome::kSent);
  EXPECT_EQ(fake.records("oauth").size(), 2u);
}

TEST_F(PushProvidersTest, FcmRefreshesTheAccessTokenOnceOn401) {
  FakeOptions o;
  o.script = {
      {"tok-401",
       json::array({{{"status", 401}, {"body", google_error(401, "UNAUTHENTICATED", "")}}})},
      {"tok-401x2", json::array({{{"status", 401}}, {{"status", 401}}})}};
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_, o);
  auto p = fcm(fake);
  PushResult r = p->send(target("fcm", "tok-401"), note());
  EXPECT_EQ(r.outcome, PushOutcome::kSent) << r.reason;
  auto sends = fake.records("send");
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_NE(sends[0]["headers"]["authorization"], sends[1]["headers"]["authorization"]);
  EXPECT_EQ(fake.records("oauth").size(), 2u);

  r = p->send(target("fcm", "tok-401x2"), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRejected) << r.reason;
  EXPECT_EQ(r.http_status, 401);
  EXPECT_EQ(fake.records("oauth").size(), 3u) << "one refresh per refused token, no loop";
}

TEST_F(PushProvidersTest, FcmClassifiesEveryAnswer) {
  const auto date_in_30s = [] {
    std::time_t t = std::time(nullptr) + 30;
    char buf[64];
    std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", std::gmtime(&t));
    return std::string(buf);
  }();
  FakeOptions o;
  o.script = {
      {"gone",
       json::array({{{"status", 404}, {"body", google_error(404, "NOT_FOUND", "UNREGISTERED")}}})},
      {"unreg400",
       json::array(
           {{{"status", 400}, {"body", google_error(400, "INVALID_ARGUMENT", "UNREGISTERED")}}})},
      {"flaky", json::array({{{"status", 500}}})},
      {"busy",
       json::array({{{"status", 429},
                     {"headers", {{"Retry-After", "7"}}},
                     {"body", google_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")}}})},
      {"down", json::array({{{"status", 503}, {"headers", {{"Retry-After", date_in_30s}}}}})},
      {"bad", json::array({{{"status", 400},
                            {"body", google_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")}}})},
      {"badtoken",
       json::array(
           {{{"status", 400},
             {"body",
              {{"error",
                {{"code", 400},
                 {"message", "The registration token is not a valid FCM registration token"},
                 {"status", "INVALID_ARGUMENT"}}}}}}})},
      {"sender",
       json::array({{{"status", 403},
                     {"body", google_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")}}})},
      {"junk", json::array({{{"status", 418}, {"body", "<html>not json</html>"}}})},
  };
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_, o);
  auto p = fcm(fake);
  auto send = [&](const char* token) { return p->send(target("fcm", token), note()); };

  EXPECT_EQ(send("gone").outcome, PushOutcome::kUnregistered);
  EXPECT_EQ(send("unreg400").outcome, PushOutcome::kUnregistered);
  PushResult r = send("flaky");
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_EQ(r.http_status, 500);
  EXPECT_EQ(send("flaky").outcome, PushOutcome::kSent) << "the script is used up: 200";
  r = send("busy");
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_EQ(r.retry_after, 7s);
  EXPECT_NE(r.reason.find("QUOTA_EXCEEDED"), std::string::npos) << r.reason;
  r = send("down");
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_GE(r.retry_after.count(), 25) << "an HTTP-date Retry-After";
  EXPECT_LE(r.retry_after.count(), 31);
  r = send("bad");
  EXPECT_EQ(r.outcome, PushOutcome::kRejected);
  EXPECT_EQ(r.reason, "fcm: 400 INVALID_ARGUMENT");
  // The same code for a token that is not an FCM token: its message tells.
  r = send("badtoken");
  EXPECT_EQ(r.outcome, PushOutcome::kUnregistered);
  EXPECT_EQ(r.http_status, 400);
  EXPECT_EQ(send("sender").outcome, PushOutcome::kRejected);
  r = send("junk");
  EXPECT_EQ(r.outcome, PushOutcome::kRejected);
  EXPECT_EQ(r.reason, "fcm: 418");
}

TEST_F(PushProvidersTest, FcmTokenEndpointFailures) {
  FakeOptions o;
  o.script = {{"@oauth", json::array({{{"status", 400}, {"body", {{"error", "invalid_grant"}}}},
                                      {{"status", 503}, {"headers", {{"retry-after", "3"}}}},
                                      {{"status", 200}, {"body", {{"token_type", "Bearer"}}}}})}};
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_, o);
  auto p = fcm(fake);
  PushResult r = p->send(target("fcm", "t"), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRejected);
  EXPECT_EQ(r.reason, "fcm oauth: 400 invalid_grant");
  r = p->send(target("fcm", "t"), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_EQ(r.retry_after, 3s);
  r = p->send(target("fcm", "t"), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRetry) << "no access_token in a 200";
  EXPECT_EQ(p->send(target("fcm", "t"), note()).outcome, PushOutcome::kSent);
  EXPECT_EQ(fake.records("send").size(), 1u);
}

TEST_F(PushProvidersTest, FcmFetchesOneTokenForConcurrentSenders) {
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_);
  auto p = fcm(fake);
  std::vector<std::thread> threads;
  std::atomic<int> sent{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 3; ++j) {
        if (p->send(target("fcm", "t" + std::to_string(i)), note()).outcome == PushOutcome::kSent) {
          ++sent;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sent.load(), 24);
  EXPECT_EQ(fake.records("oauth").size(), 1u);
  EXPECT_EQ(fake.records("send").size(), 24u);
}

TEST_F(PushProvidersTest, FcmRefusesAnUntrustedCertificateAndBoundsTimeouts) {
  FakeOptions o;
  o.script = {{"slow", json::array({{{"status", 200}, {"delay_ms", 4000}}})}};
  FakeProvider fake(FakeProvider::Kind::kFcm, *keys_, o);
  {
    auto p = fcm(fake, nullptr, keys_->other_ca);  // trusts a CA that did not sign the fake
    PushResult r = p->send(target("fcm", "t"), note());
    EXPECT_EQ(r.outcome, PushOutcome::kRetry);
    EXPECT_EQ(r.http_status, 0);
    EXPECT_NE(r.reason.find("fcm oauth:"), std::string::npos) << r.reason;
    EXPECT_TRUE(fake.records("oauth").empty()) << "no request went over an unverified connection";
  }
  auto credentials = FcmCredentials::parse(slurp(keys_->service_account));
  FcmOptions fo;
  fo.endpoint = fake.url();
  fo.token_url = fake.url() + "/token";
  fo.http.extra_ca_file = keys_->ca;
  fo.http.total_timeout = 700ms;
  auto p = FcmProvider::create(*credentials, fo);
  ASSERT_TRUE(p.is_ok());
  const auto start = std::chrono::steady_clock::now();
  PushResult r = (*p)->send(target("fcm", "slow"), note());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(r.outcome, PushOutcome::kRetry) << r.reason;
  EXPECT_EQ(r.http_status, 0);

  // Nothing listening: a transport error, retried later.
  fo.endpoint = "http://127.0.0.1:" + std::to_string(chat::testing::free_port());
  fo.token_url = fake.url() + "/token";
  auto closed = FcmProvider::create(*credentials, fo);
  ASSERT_TRUE(closed.is_ok());
  r = (*closed)->send(target("fcm", "t"), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_EQ(r.http_status, 0);
}

// ---- APNs --------------------------------------------------------------------

TEST_F(PushProvidersTest, ApnsSendsOverHttp2WithAProviderToken) {
  FakeProvider fake(FakeProvider::Kind::kApns, *keys_);
  auto p = apns(fake.url());
  const std::string device(64, 'a');
  for (const char* id : {"0000000001-000001", "0000000001-000002"}) {
    PushResult r = p->send(target("apns", device), note(id));
    EXPECT_EQ(r.outcome, PushOutcome::kSent) << r.reason << fake.log();
  }
  auto sends = fake.records("send");
  ASSERT_EQ(sends.size(), 2u);
  const json& s = sends[1];
  EXPECT_EQ(s["status"], 200) << s.dump();
  EXPECT_EQ(s["alpn"], "h2") << "HTTP/2 negotiated by ALPN";
  EXPECT_EQ(s["method"], "POST");
  EXPECT_EQ(s["path"], "/3/device/" + device);
  EXPECT_EQ(s["headers"]["apns-topic"], keys_->topic);
  EXPECT_EQ(s["headers"]["apns-push-type"], "alert");
  EXPECT_EQ(s["headers"]["apns-collapse-id"], "0000000001-000002");
  EXPECT_EQ(s["headers"]["apns-priority"], "10");
  EXPECT_GT(std::stoll(s["headers"]["apns-expiration"].get<std::string>()),
            real_now_ms() / 1000 + 3600);
  EXPECT_EQ(sends[0]["headers"]["authorization"], s["headers"]["authorization"])
      << "one provider token for every request";
  EXPECT_TRUE(s.contains("auth_iat"));
  const json& b = s["body"];
  EXPECT_EQ(b["aps"]["alert"]["title"], "alice");
  EXPECT_EQ(b["aps"]["alert"]["body"], "New message") << "content-free by default";
  EXPECT_EQ(b["aps"]["mutable-content"], 1);
  EXPECT_EQ(b["aps"]["thread-id"], "dm:alice:bob");
  EXPECT_EQ(b["id"], "0000000001-000002");
  EXPECT_EQ(b["conv"], "dm:alice:bob");
  EXPECT_EQ(b["from"], "alice");
}

TEST_F(PushProvidersTest, ApnsReplacesTheProviderTokenAfter50Minutes) {
  FakeProvider fake(FakeProvider::Kind::kApns, *keys_);
  // Start 55 minutes in the past, so every token the clock makes is one the
  // fake (real time) accepts.
  FakeClock clock(real_now_ms() - 55 * 60 * 1000);
  auto p = apns(fake.url(), &clock);
  const std::string device(64, 'b');
  ASSERT_EQ(p->send(target("apns", device), note()).outcome, PushOutcome::kSent) << fake.log();
  clock.advance_ms(49 * 60 * 1000);
  ASSERT_EQ(p->send(target("apns", device), note()).outcome, PushOutcome::kSent);
  clock.advance_ms(2 * 60 * 1000);
  ASSERT_EQ(p->send(target("apns", device), note()).outcome, PushOutcome::kSent);
  auto sends = fake.records("send");
  ASSERT_EQ(sends.size(), 3u);
  EXPECT_EQ(sends[0]["headers"]["authorization"], sends[1]["headers"]["authorization"]);
  EXPECT_NE(sends[1]["headers"]["authorization"], sends[2]["headers"]["authorization"]);
  EXPECT_EQ(sends[2]["auth_iat"].get<int64_t>() - sends[0]["auth_iat"].get<int64_t>(), 51 * 60);
}

TEST_F(PushProvidersTest, ApnsRefreshesAnExpiredOrInvalidProviderTokenOnce) {
  FakeOptions o;
  const std::string once(64, 'c');
  o.script = {
      {once, json::array({{{"status", 403}, {"body", {{"reason", "ExpiredProviderToken"}}}}})}};
  FakeProvider fake(FakeProvider::Kind::kApns, *keys_, o);
  auto p = apns(fake.url());
  PushResult r = p->send(target("apns", once), note());
  EXPECT_EQ(r.outcome, PushOutcome::kSent) << r.reason;
  auto sends = fake.records("send");
  ASSERT_EQ(sends.size(), 2u);
  EXPECT_NE(sends[0]["headers"]["authorization"], sends[1]["headers"]["authorization"]);

  // A clock two hours behind: every token it signs is expired for APNs.
  FakeClock late(real_now_ms() - 2 * 3600 * 1000);
  auto stale = apns(fake.url(), &late);
  r = stale->send(target("apns", std::string(64, 'd')), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRejected);
  EXPECT_EQ(r.reason, "apns: 403 ExpiredProviderToken");
  EXPECT_EQ(fake.records("send").size(), 4u) << "one retry with a new token, no loop";

  // A key APNs does not know under this key id.
  const std::string other_key = keys_->dir + "/other.p8";
  ASSERT_EQ(std::system(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " +
                         other_key + " 2>/dev/null")
                            .c_str()),
            0);
  auto wrong = apns(fake.url(), nullptr, "", other_key);
  r = wrong->send(target("apns", std::string(64, 'e')), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRejected);
  EXPECT_EQ(r.reason, "apns: 403 InvalidProviderToken");
}

TEST_F(PushProvidersTest, ApnsClassifiesEveryAnswer) {
  const std::string gone(64, '1'), bad(64, '2'), not_topic(64, '3'), busy(64, '4'), flaky(64, '5');
  FakeOptions o;
  o.script = {
      {gone, json::array({{{"status", 410}, {"body", {{"reason", "Unregistered"}}}}})},
      {bad, json::array({{{"status", 400}, {"body", {{"reason", "BadDeviceToken"}}}}})},
      {not_topic,
       json::array({{{"status", 400}, {"body", {{"reason", "DeviceTokenNotForTopic"}}}}})},
      {busy, json::array({{{"status", 429},
                           {"headers", {{"retry-after", "3"}}},
                           {"body", {{"reason", "TooManyRequests"}}}}})},
      {flaky, json::array({{{"status", 500}, {"body", {{"reason", "InternalServerError"}}}},
                           {{"status", 503}, {"body", {{"reason", "ServiceUnavailable"}}}}})},
  };
  FakeProvider fake(FakeProvider::Kind::kApns, *keys_, o);
  auto p = apns(fake.url());
  auto send = [&](const std::string& token) { return p->send(target("apns", token), note()); };
  EXPECT_EQ(send(gone).outcome, PushOutcome::kUnregistered);
  EXPECT_EQ(send(bad).outcome, PushOutcome::kUnregistered);
  EXPECT_EQ(send(not_topic).outcome, PushOutcome::kUnregistered);
  PushResult r = send(busy);
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_EQ(r.retry_after, 3s);
  EXPECT_EQ(r.reason, "apns: 429 TooManyRequests");
  EXPECT_EQ(send(flaky).outcome, PushOutcome::kRetry);
  EXPECT_EQ(send(flaky).outcome, PushOutcome::kRetry);
  EXPECT_EQ(send(flaky).outcome, PushOutcome::kSent);
  // Not hex: never sent, the target is unusable.
  const size_t before = fake.records("send").size();
  r = send("not/a/token");
  EXPECT_EQ(r.outcome, PushOutcome::kUnregistered);
  EXPECT_EQ(fake.records("send").size(), before);

  // The fake's own checks: a topic the key is not for.
  ApnsOptions wrong_topic;
  wrong_topic.endpoint = fake.url();
  wrong_topic.key_id = keys_->key_id;
  wrong_topic.team_id = keys_->team_id;
  wrong_topic.topic = "com.example.other";
  wrong_topic.http.extra_ca_file = keys_->ca;
  auto q = ApnsProvider::create(slurp(keys_->apns_key), wrong_topic);
  ASSERT_TRUE(q.is_ok());
  r = (*q)->send(target("apns", std::string(64, 'f')), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRejected);
  EXPECT_EQ(r.reason, "apns: 400 BadTopic");
}

TEST_F(PushProvidersTest, ApnsNeedsHttp2AndAVerifiedCertificate) {
  // h2c with prior knowledge against a plain-http endpoint.
  FakeOptions plain;
  plain.tls = false;
  FakeProvider h2c(FakeProvider::Kind::kApns, *keys_, plain);
  PushResult r = apns(h2c.url())->send(target("apns", std::string(64, 'a')), note());
  EXPECT_EQ(r.outcome, PushOutcome::kSent) << r.reason << h2c.log();
  ASSERT_EQ(h2c.records("send").size(), 1u);
  EXPECT_EQ(h2c.records("send")[0]["alpn"], "h2c");

  // An untrusted certificate: refused before anything is sent.
  FakeProvider fake(FakeProvider::Kind::kApns, *keys_);
  r = apns(fake.url(), nullptr, keys_->other_ca)
          ->send(target("apns", std::string(64, 'a')), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_EQ(r.http_status, 0);
  EXPECT_TRUE(fake.records("send").empty());

  // A server that speaks only HTTP/1.1 (fake-fcm over TLS): not APNs.
  FakeProvider http1(FakeProvider::Kind::kFcm, *keys_);
  r = apns(http1.url())->send(target("apns", std::string(64, 'a')), note());
  EXPECT_EQ(r.outcome, PushOutcome::kRetry);
  EXPECT_NE(r.reason.find("HTTP/2"), std::string::npos) << r.reason;
}

// ---- settings and make_push_providers -------------------------------------

Result<Config> config_of(std::map<std::string, std::string> env) {
  return Config::from_lookup(settings::from_map(std::move(env)));
}

TEST_F(PushProvidersTest, SettingsNeedTheirCompanions) {
  auto c = config_of({});
  ASSERT_TRUE(c.is_ok());
  EXPECT_FALSE(c->push_providers.fcm_enabled());
  EXPECT_FALSE(c->push_providers.apns_enabled());
  EXPECT_EQ(c->push_providers.fcm_endpoint, "https://fcm.googleapis.com");
  EXPECT_EQ(c->push_providers.apns_endpoint, "https://api.push.apple.com");

  auto missing = [](std::map<std::string, std::string> env) {
    auto r = config_of(std::move(env));
    return r.is_ok() ? std::string("ok") : r.status().message();
  };
  EXPECT_EQ(
      missing({{"CHAT_APNS_KEY", "/k.p8"}, {"CHAT_APNS_TEAM_ID", "T"}, {"CHAT_APNS_TOPIC", "a.b"}}),
      "CHAT_APNS_KEY_ID: required with CHAT_APNS_KEY");
  EXPECT_EQ(missing({{"CHAT_APNS_KEY_ID", "K"}}), "CHAT_APNS_KEY: required with CHAT_APNS_KEY_ID");
  EXPECT_EQ(missing({{"CHAT_FCM_ENDPOINT", "http://127.0.0.1:1"}}),
            "CHAT_FCM_CREDENTIALS: required with CHAT_FCM_ENDPOINT");
  EXPECT_NE(missing({{"CHAT_FCM_CREDENTIALS", "/x"}, {"CHAT_FCM_ENDPOINT", "ftp://x"}})
                .find("CHAT_FCM_ENDPOINT: expected"),
            std::string::npos);
  EXPECT_NE(missing({{"CHAT_APNS_KEY", "/k"},
                     {"CHAT_APNS_KEY_ID", "K/1"},
                     {"CHAT_APNS_TEAM_ID", "T"},
                     {"CHAT_APNS_TOPIC", "a"}})
                .find("CHAT_APNS_KEY_ID: expected"),
            std::string::npos);
  auto ok =
      config_of({{"CHAT_FCM_CREDENTIALS", "/x"}, {"CHAT_FCM_ENDPOINT", "http://127.0.0.1:9/"}});
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->push_providers.fcm_endpoint, "http://127.0.0.1:9") << "trailing '/' dropped";
}

TEST_F(PushProvidersTest, MakePushProvidersChecksTheFiles) {
  const std::map<std::string, std::string> apns_env = {{"CHAT_APNS_KEY", keys_->apns_key},
                                                       {"CHAT_APNS_KEY_ID", keys_->key_id},
                                                       {"CHAT_APNS_TEAM_ID", keys_->team_id},
                                                       {"CHAT_APNS_TOPIC", keys_->topic}};
  auto build = [](std::map<std::string, std::string> env) -> std::string {
    auto c = config_of(std::move(env));
    if (!c) return "config: " + c.status().message();
    auto p = make_push_providers(*c);
    if (!p) return p.status().message();
    std::string names;
    for (const auto& [name, provider] : *p) names += name + std::string(" ");
    return names;
  };
  EXPECT_EQ(build({}), "");
  auto both = apns_env;
  both["CHAT_FCM_CREDENTIALS"] = keys_->service_account;
  both["CHAT_PUSH_CA"] = keys_->ca;
  EXPECT_EQ(build(both), "apns fcm ");

  const std::string bad_json = keys_->dir + "/bad-sa.json";
  std::ofstream(bad_json)
      << R"({"project_id":"p","client_email":"e","token_uri":"https://x/token"})";
  std::string e = build({{"CHAT_FCM_CREDENTIALS", bad_json}});
  EXPECT_NE(e.find("CHAT_FCM_CREDENTIALS: "), std::string::npos) << e;
  EXPECT_NE(e.find("private_key"), std::string::npos) << e;
  e = build({{"CHAT_FCM_CREDENTIALS", keys_->dir + "/nope.json"}});
  EXPECT_NE(e.find("CHAT_FCM_CREDENTIALS: cannot read"), std::string::npos) << e;
  // An EC key is no service-account key.
  json sa = json::parse(slurp(keys_->service_account));
  sa["private_key"] = slurp(keys_->apns_key);
  const std::string ec_sa = keys_->dir + "/ec-sa.json";
  std::ofstream(ec_sa) << sa.dump();
  e = build({{"CHAT_FCM_CREDENTIALS", ec_sa}});
  EXPECT_NE(e.find("RSA"), std::string::npos) << e;
  EXPECT_EQ(e.find("BEGIN"), std::string::npos) << "never the key itself";

  auto rsa_as_p8 = apns_env;
  rsa_as_p8["CHAT_APNS_KEY"] = keys_->dir + "/sa.key";
  e = build(rsa_as_p8);
  EXPECT_NE(e.find("CHAT_APNS_KEY: "), std::string::npos) << e;
  EXPECT_NE(e.find("P-256"), std::string::npos) << e;

  auto bad_ca = apns_env;
  bad_ca["CHAT_PUSH_CA"] = keys_->service_account;  // not a certificate
  e = build(bad_ca);
  EXPECT_EQ(e.rfind("CHAT_PUSH_CA: ", 0), 0u) << e;
}

TEST(RetryAfterTest, SecondsAndDates) {
  const auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37
  EXPECT_EQ(parse_retry_after("120", now), 120s);
  EXPECT_EQ(parse_retry_after(" 0 ", now), 0s);
  EXPECT_EQ(parse_retry_after("99999999999999999999999", now), 24h);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now), 60s);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now), 0s) << "in the past";
  EXPECT_EQ(parse_retry_after("-5", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("soon", now), std::nullopt);
  EXPECT_EQ(parse_retry_after("", now), std::nullopt);
  EXPECT_EQ(form_escape("a b+c/=&"), "a%20b%2Bc%2F%3D%26");
}

}  // namespace
}  // namespace chat::api
