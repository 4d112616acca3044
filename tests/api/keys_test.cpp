// The key directory of end-to-end encryption (docs/e2e.md, "Key directory"):
// KeyStore under concurrent claims, the signature check, and the
// REST routes on the real HTTP server (http_fixture.h) with keys and
// signatures made by libsignal-protocol-c itself.
#include <openssl/rand.h>

#include <set>

#include "chat/api/key_directory.h"
#include "chat/common/base64.h"
#include "chat/store/key_store.h"
#include "http_fixture.h"
#include "signal_test_keys.h"

namespace chat::api {
namespace {

using chat::test_support::SignalKeys;
using test_support::HttpServerTest;
using test_support::json;
namespace fs = std::filesystem;

// A one-time prekey's public key: the directory checks its form only.
std::string fake_public_key() {
  std::string key(33, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), 33);
  key[0] = 0x05;
  return key;
}

// One device's keys as a client holds them.
struct DeviceKeys {
  std::string device;
  int registration_id = 77;
  std::string identity;  // base64
  json signed_prekey;    // {"id","key","signature"}
};

DeviceKeys make_device(SignalKeys& signal, const std::string& device, uint32_t spk_id = 1) {
  const size_t identity = signal.generate();
  const size_t spk = signal.generate();
  DeviceKeys d;
  d.device = device;
  d.identity = base64_encode(signal.public_key(identity));
  const std::string spk_public = signal.public_key(spk);
  d.signed_prekey = {{"id", spk_id},
                     {"key", base64_encode(spk_public)},
                     {"signature", base64_encode(signal.sign(identity, spk_public))}};
  return d;
}

json prekeys(uint32_t first, uint32_t n) {
  json out = json::array();
  for (uint32_t id = first; id < first + n; ++id) {
    out.push_back({{"id", id}, {"key", base64_encode(fake_public_key())}});
  }
  return out;
}

json upload_body(const DeviceKeys& d, const json& pks, json capabilities = json::array()) {
  return json{{"device", d.device},
              {"registration_id", d.registration_id},
              {"identity_key", d.identity},
              {"signed_prekey", d.signed_prekey},
              {"prekeys", pks},
              {"capabilities", std::move(capabilities)}};
}

// ---- signatures ---------------------------------------------------------------------

TEST(KeyDirectorySignature, VerifiesLibsignalSignaturesOnly) {
  SignalKeys signal;
  const size_t identity = signal.generate();
  const size_t other = signal.generate();
  const std::string spk = signal.public_key(signal.generate());
  const std::string sig = signal.sign(identity, spk);
  EXPECT_TRUE(verify_signed_prekey(signal.public_key(identity), spk, sig));
  // Any flipped bit of the signature, the key or the message fails.
  for (size_t byte : {0u, 31u, 32u, 63u}) {
    std::string bad = sig;
    bad[byte] = static_cast<char>(bad[byte] ^ 0x01);
    EXPECT_FALSE(verify_signed_prekey(signal.public_key(identity), spk, bad)) << byte;
  }
  std::string bad_spk = spk;
  bad_spk[5] = static_cast<char>(bad_spk[5] ^ 0x10);
  EXPECT_FALSE(verify_signed_prekey(signal.public_key(identity), bad_spk, sig));
  EXPECT_FALSE(verify_signed_prekey(signal.public_key(other), spk, sig));
  // Malformed input is false, not a crash.
  EXPECT_FALSE(verify_signed_prekey("", spk, sig));
  EXPECT_FALSE(verify_signed_prekey(std::string(33, '\x06'), spk, sig));
  EXPECT_FALSE(verify_signed_prekey(signal.public_key(identity), spk, sig.substr(0, 63)));
}

TEST(KeyDirectoryConfig, ClaimRateSettings) {
  const auto config = [](std::map<std::string, std::string> env) {
    return Config::from_lookup([env](const char* name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    });
  };
  auto defaults = config({});
  ASSERT_TRUE(defaults.is_ok());
  EXPECT_EQ(defaults->key_claim_rate, 30);
  EXPECT_EQ(defaults->key_claim_burst, 60);
  EXPECT_EQ(fs::path(defaults->keys_db_path()), fs::path("var/api/e2e-keys"));
  EXPECT_EQ(defaults->key_device_changes, 20);
  auto set = config({{"CHAT_KEY_CLAIM_RATE", "0"},
                     {"CHAT_KEY_CLAIM_BURST", "5"},
                     {"CHAT_KEY_DEVICE_CHANGES", "0"}});
  ASSERT_TRUE(set.is_ok());
  EXPECT_EQ(set->key_claim_rate, 0);
  EXPECT_EQ(set->key_claim_burst, 5);
  EXPECT_EQ(set->key_device_changes, 0);
  for (auto [name, value] :
       {std::pair{"CHAT_KEY_CLAIM_RATE", "-1"}, std::pair{"CHAT_KEY_CLAIM_RATE", "fast"},
        std::pair{"CHAT_KEY_CLAIM_BURST", "0"}, std::pair{"CHAT_KEY_DEVICE_CHANGES", "-1"},
        std::pair{"CHAT_KEY_DEVICE_CHANGES", "many"}}) {
    auto bad = config({{name, value}});
    ASSERT_FALSE(bad.is_ok()) << name << "=" << value;
    EXPECT_NE(bad.status().message().find(name), std::string::npos) << bad.status().message();
  }
}

// ---- KeyStore ----------------------------------------------------------------------

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/key-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = store::KeyStore::open(dir_ + "/keys");
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  store::KeyUpload device_upload(const std::string& user, const std::string& device,
                                 uint32_t prekeys) {
    store::KeyUpload up;
    up.user = user;
    up.device = device;
    up.identity_key = "ID-" + user + "-" + device;
    up.registration_id = 5;
    up.signed_prekey = store::SignedPreKeyRecord{1, "SPK", "SIG"};
    for (uint32_t id = 1; id <= prekeys; ++id)
      up.prekeys.push_back({id, "PK" + std::to_string(id)});
    up.now_ms = 1000;
    return up;
  }

  std::string dir_;
  std::unique_ptr<store::KeyStore> store_;
};

TEST_F(KeyStoreTest, ParallelClaimsNeverHandOutAPreKeyTwice) {
  constexpr uint32_t kPreKeys = 200;
  ASSERT_TRUE(store_->upload(device_upload("bob", "a", kPreKeys), 1000).is_ok());
  ASSERT_TRUE(store_->upload(device_upload("bob", "b", kPreKeys), 1000).is_ok());
  std::mutex mu;
  std::map<std::string, std::vector<uint32_t>> taken;  // by device
  size_t empty = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 30; ++i) {
        auto claimed = store_->claim("bob", std::nullopt);
        ASSERT_TRUE(claimed.is_ok()) << claimed.status().to_string();
        ASSERT_EQ(claimed->size(), 2u);
        std::lock_guard lock(mu);
        for (const auto& b : *claimed) {
          if (b.prekey) {
            taken[b.device.device].push_back(b.prekey->id);
          } else {
            ++empty;
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  // 240 claims of 200 prekeys per device: each handed out exactly once.
  for (const char* device : {"a", "b"}) {
    auto& ids = taken[device];
    EXPECT_EQ(ids.size(), kPreKeys) << device;
    EXPECT_EQ(std::set<uint32_t>(ids.begin(), ids.end()).size(), ids.size()) << device;
    EXPECT_EQ(*store_->prekey_count("bob", device), 0u);
  }
  EXPECT_EQ(empty, 2u * (8 * 30 - kPreKeys));
}

TEST_F(KeyStoreTest, IdentityCapAndDeletion) {
  ASSERT_TRUE(store_->upload(device_upload("bob", "a", 3), 1000).is_ok());
  EXPECT_FALSE(*store_->upload(device_upload("bob", "a", 0), 1000));  // not created again
  auto other = device_upload("bob", "a", 0);
  other.identity_key = "ANOTHER";
  EXPECT_EQ(store_->upload(other, 1000).status().code(), StatusCode::kAlreadyExists);
  // The cap counts stored ids plus new ones; a repeated id replaces.
  auto more = device_upload("bob", "a", 5);
  EXPECT_EQ(store_->upload(more, 4).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 3u);
  EXPECT_TRUE(store_->upload(more, 5).is_ok());
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 5u);
  // A first upload needs the registration id and the signed prekey.
  auto bare = device_upload("bob", "c", 1);
  bare.signed_prekey.reset();
  EXPECT_EQ(store_->upload(bare, 10).status().code(), StatusCode::kInvalidArgument);
  // A user's devices are capped; a known device still uploads.
  bool full = false;
  EXPECT_EQ(store_->upload(device_upload("bob", "d", 1), 10, 1, &full).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_TRUE(full);
  EXPECT_TRUE(store_->upload(device_upload("bob", "a", 1), 10, 1, &full).is_ok());
  EXPECT_FALSE(full);
  // A device id that is a prefix of another stays apart.
  ASSERT_TRUE(store_->upload(device_upload("bob", "a_b", 2), 1000).is_ok());
  ASSERT_TRUE(store_->upload(device_upload("bo", "b", 2), 1000).is_ok());
  EXPECT_EQ(store_->devices("bob")->size(), 2u);
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 5u);
  auto removed = store_->delete_device("bob", "a");
  ASSERT_TRUE(removed.is_ok());
  EXPECT_EQ(removed->identity_key, "ID-bob-a");
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 0u);
  EXPECT_EQ(*store_->prekey_count("bob", "a_b"), 2u);
  EXPECT_EQ(store_->delete_device("bob", "a").status().code(), StatusCode::kNotFound);
  auto gone = store_->delete_user("bob");
  ASSERT_TRUE(gone.is_ok());
  EXPECT_EQ(gone->size(), 1u);
  EXPECT_TRUE(store_->devices("bob")->empty());
  EXPECT_EQ(store_->devices("bo")->size(), 1u);
}

// A top-up that left identity_key out carries the stored identity it was
// checked against: it may top up a device that still has it, never create
// one (the device was deleted meanwhile), decided under the store's lock.
TEST_F(KeyStoreTest, ATopUpWithoutIdentityNeverRecreatesADevice) {
  auto top_up = device_upload("bob", "a", 2);
  top_up.identity_from_request = false;
  EXPECT_EQ(store_->upload(top_up, 1000).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store_->devices("bob")->empty());
  ASSERT_TRUE(*store_->upload(device_upload("bob", "a", 1), 1000));
  auto topped = store_->upload(top_up, 1000);
  ASSERT_TRUE(topped.is_ok()) << topped.status().to_string();
  EXPECT_FALSE(*topped);
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 2u);
  // Deleted between the directory's read of the identity and the write.
  ASSERT_TRUE(store_->delete_device("bob", "a").is_ok());
  auto late = store_->upload(top_up, 1000);
  EXPECT_EQ(late.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(late.status().message().find("identity_key"), std::string::npos);
  EXPECT_TRUE(store_->devices("bob")->empty());
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 0u);
  // Recreated meanwhile with another identity: a mismatch, nothing stored.
  auto other = device_upload("bob", "a", 1);
  other.identity_key = "ANOTHER";
  ASSERT_TRUE(*store_->upload(other, 1000));
  EXPECT_EQ(store_->upload(top_up, 1000).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ((*store_->device("bob", "a"))->identity_key, "ANOTHER");
}

// The gate of a device change runs only for a creation or a deletion, and a
// refusal leaves everything as it was.
TEST_F(KeyStoreTest, ChangeGateRefusesCreationsAndDeletionsOnly) {
  int calls = 0;
  Status verdict = resource_exhausted("limited");
  const store::KeyStore::ChangeGate gate = [&] {
    ++calls;
    return verdict;
  };
  EXPECT_EQ(store_->upload(device_upload("bob", "a", 2), 1000, 10, nullptr, gate).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(store_->devices("bob")->empty());
  verdict = Status::ok();
  ASSERT_TRUE(*store_->upload(device_upload("bob", "a", 2), 1000, 10, nullptr, gate));
  EXPECT_EQ(calls, 2);
  // A top-up is no change of the device list: the gate is not asked.
  verdict = resource_exhausted("limited");
  ASSERT_FALSE(*store_->upload(device_upload("bob", "a", 3), 1000, 10, nullptr, gate));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(store_->delete_device("bob", "a", gate).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(*store_->prekey_count("bob", "a"), 3u);
  // Absent: 404 before the gate.
  EXPECT_EQ(store_->delete_device("bob", "zz", gate).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(calls, 3);
  verdict = Status::ok();
  EXPECT_TRUE(store_->delete_device("bob", "a", gate).is_ok());
  EXPECT_TRUE(store_->devices("bob")->empty());
}

// ---- the REST routes ---------------------------------------------------------------

class KeyRoutesTest : public HttpServerTest {
 protected:
  void start_keys(std::map<std::string, std::string> env = {}) {
    env.emplace("CHAT_KEY_CLAIM_RATE", "0");  // limits off unless a test sets them
    customize_service_ = [this](Service& service) {
      auto s = store::KeyStore::open(config_.keys_db_path());
      ASSERT_TRUE(s.is_ok()) << s.status().to_string();
      key_store_ = std::move(s).value();
      KeyDirectoryOptions o;
      o.claim_rate_per_min = static_cast<double>(config_.key_claim_rate);
      o.claim_burst = static_cast<double>(config_.key_claim_burst);
      o.device_changes_per_hour = static_cast<double>(config_.key_device_changes);
      o.device_changes_burst =
          config_.key_device_changes > 0 ? static_cast<double>(config_.key_device_changes) : 1.0;
      keys_ = std::make_unique<KeyDirectory>(*key_store_, *reader_, control_, clock_, o);
      service.set_keys(keys_.get());
    };
    start(std::move(env));
    // The broker as far as users and groups go; keys.changed is recorded and answered ok.
    control_.set_handler([this](const json& r) -> Result<json> {
      if (r.value("op", "") == "keys.changed") return test_support::ok_reply();
      return broker(r);
    });
  }

  void TearDown() override {
    client_.reset();
    if (server_) {
      server_->stop();
      if (thread_.joinable()) thread_.join();
    }
    server_.reset();
    keys_.reset();
    key_store_.reset();
    HttpServerTest::TearDown();
  }

  httplib::Result put_keys(const std::string& body, const std::string& token) {
    httplib::Headers headers{{"Authorization", "Bearer " + token}};
    return client_->Put("/v1/keys", headers, body, "application/json");
  }
  httplib::Result put_keys(const json& body, const std::string& token) {
    return put_keys(body.dump(), token);
  }
  size_t count(const std::string& token, const std::string& device) {
    auto r = get("/v1/keys/count?device=" + device, token);
    EXPECT_TRUE(r);
    if (!r) return 0;
    EXPECT_EQ(r->status, 200) << r->body;
    return body_of(r).value("count", size_t{0});
  }
  std::vector<json> key_events() {
    std::vector<json> out;
    for (const auto& r : control_.requests()) {
      if (r.value("op", "") == "keys.changed") out.push_back(r);
    }
    return out;
  }

  SignalKeys signal_;
  std::unique_ptr<store::KeyStore> key_store_;
  std::unique_ptr<KeyDirectory> keys_;
};

TEST_F(KeyRoutesTest, UploadTopUpCountAndEvents) {
  start_keys();
  const std::string bob = token_for("bob");
  DeviceKeys d = make_device(signal_, "laptop");

  auto r = put_keys(upload_body(d, prekeys(1, 10), {"sender_keys"}), bob);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(body_of(r), (json{{"device", "laptop"}, {"count", 10}, {"signed_prekey_id", 1}}));
  auto events = key_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (json{{"op", "keys.changed"},
                             {"user", "bob"},
                             {"device", "laptop"},
                             {"action", "device_added"},
                             {"identity_key", d.identity}}));

  // A top-up: identity left out, more prekeys, id 10 replaced.
  r = put_keys(json{{"device", "laptop"}, {"prekeys", prekeys(10, 6)}}, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["count"], 15);
  // A new signed prekey signed by some other key than the device's identity.
  const size_t stranger = signal_.generate();
  const std::string spk2 = signal_.public_key(signal_.generate());
  DeviceKeys same = d;
  same.signed_prekey = {{"id", 2},
                        {"key", base64_encode(spk2)},
                        {"signature", base64_encode(signal_.sign(stranger, spk2))}};
  r = put_keys(json{{"device", "laptop"}, {"signed_prekey", same.signed_prekey}}, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(body_of(r)["error"], "bad_signature");
  EXPECT_EQ(count(bob, "laptop"), 15u);

  auto c = get("/v1/keys/count?device=laptop", bob);
  ASSERT_TRUE(c);
  EXPECT_EQ(body_of(c), (json{{"device", "laptop"}, {"count", 15}, {"signed_prekey_id", 1}}));
  EXPECT_EQ(key_events().size(), 1u);  // top-ups announce nothing
}

TEST_F(KeyRoutesTest, SignedPreKeyRotationAndSignatureCheck) {
  start_keys();
  const std::string bob = token_for("bob");
  const size_t identity = signal_.generate();
  const std::string identity_b64 = base64_encode(signal_.public_key(identity));
  const std::string spk = signal_.public_key(signal_.generate());
  const std::string sig = signal_.sign(identity, spk);
  json body{{"device", "web1"},
            {"registration_id", 1},
            {"identity_key", identity_b64},
            {"signed_prekey", {{"id", 7}, {"key", base64_encode(spk)}, {"signature", ""}}}};

  // One flipped bit: 400 bad_signature, nothing stored.
  std::string flipped = sig;
  flipped[10] = static_cast<char>(flipped[10] ^ 0x04);
  body["signed_prekey"]["signature"] = base64_encode(flipped);
  auto r = put_keys(body, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "bad_signature");
  EXPECT_TRUE(key_store_->devices("bob")->empty());

  body["signed_prekey"]["signature"] = base64_encode(sig);
  r = put_keys(body, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(body_of(r)["signed_prekey_id"], 7);

  // Rotation without repeating the identity: checked against the stored one.
  const std::string spk2 = signal_.public_key(signal_.generate());
  r = put_keys(json{{"device", "web1"},
                    {"signed_prekey",
                     {{"id", 8},
                      {"key", base64_encode(spk2)},
                      {"signature", base64_encode(signal_.sign(identity, spk2))}}}},
               bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["signed_prekey_id"], 8);
  auto claim = get("/v1/keys/bob", bob);
  ASSERT_TRUE(claim);
  ASSERT_EQ(claim->status, 200) << claim->body;
  EXPECT_EQ(body_of(claim)["devices"][0]["signed_prekey"]["key"], base64_encode(spk2));
}

TEST_F(KeyRoutesTest, ClaimTakesOnePreKeyPerDevice) {
  start_keys();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  DeviceKeys phone = make_device(signal_, "phone");
  DeviceKeys web = make_device(signal_, "web1");
  web.registration_id = 4242;
  ASSERT_EQ(put_keys(upload_body(phone, prekeys(1, 5)), bob)->status, 201);
  ASSERT_EQ(put_keys(upload_body(web, prekeys(100, 5), {"sender_keys"}), bob)->status, 201);

  auto r = get("/v1/keys/bob", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json claim = body_of(r);
  EXPECT_EQ(claim["user"], "bob");
  ASSERT_EQ(claim["devices"].size(), 2u);
  const json& p = claim["devices"][0];  // by device id
  const json& w = claim["devices"][1];
  EXPECT_EQ(p["device"], "phone");
  EXPECT_EQ(p["identity_key"], phone.identity);
  EXPECT_EQ(p["registration_id"], 77);
  EXPECT_EQ(p["signed_prekey"], phone.signed_prekey);
  EXPECT_EQ(p["prekey"]["id"], 1);
  EXPECT_EQ(p["capabilities"], json::array());
  EXPECT_EQ(w["device"], "web1");
  EXPECT_EQ(w["registration_id"], 4242);
  EXPECT_EQ(w["prekey"]["id"], 100);
  EXPECT_EQ(w["capabilities"], json::array({"sender_keys"}));
  EXPECT_EQ(count(bob, "phone"), 4u);
  EXPECT_EQ(count(bob, "web1"), 4u);

  // ?device=: that one alone.
  r = get("/v1/keys/bob?device=web1", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  ASSERT_EQ(body_of(r)["devices"].size(), 1u);
  EXPECT_EQ(body_of(r)["devices"][0]["prekey"]["id"], 101);
  EXPECT_EQ(count(bob, "phone"), 4u);
  EXPECT_EQ(count(bob, "web1"), 3u);
  r = get("/v1/keys/bob?device=tablet", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  r = get("/v1/keys/bob?device=bad%20id", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;

  // A user's own devices may be claimed (a new device encrypts to the others).
  r = get("/v1/keys/bob?device=phone", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(count(bob, "phone"), 3u);

  // Devices list: consumes nothing.
  r = get("/v1/users/bob/devices", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json list = body_of(r);
  EXPECT_EQ(list["user"], "bob");
  ASSERT_EQ(list["devices"].size(), 2u);
  EXPECT_EQ(list["devices"][0], (json{{"device", "phone"},
                                      {"registration_id", 77},
                                      {"identity_key", phone.identity},
                                      {"capabilities", json::array()},
                                      {"created", clock_.now_ms()}}));
  EXPECT_EQ(list["devices"][1]["device"], "web1");
  EXPECT_EQ(count(bob, "phone"), 3u);
  EXPECT_EQ(count(bob, "web1"), 3u);

  // A user without keys: 200, no devices; an unknown user: 404.
  r = get("/v1/keys/alice", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r), (json{{"user", "alice"}, {"devices", json::array()}}));
  for (const char* path :
       {"/v1/keys/nobody", "/v1/users/nobody/devices", "/v1/users/nobody/keys"}) {
    r = get(path, alice);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path << " " << r->body;
  }
  for (const char* path : {"/v1/keys/Bad%20User", "/v1/users/BOB/devices"}) {
    r = get(path, alice);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << path << " " << r->body;
  }
}

TEST_F(KeyRoutesTest, ExhaustedDeviceStillGivesItsSignedPreKey) {
  start_keys();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  DeviceKeys d = make_device(signal_, "phone");
  ASSERT_EQ(put_keys(upload_body(d, prekeys(1, 1)), bob)->status, 201);
  auto r = get("/v1/keys/bob", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["devices"][0]["prekey"]["id"], 1);
  r = get("/v1/keys/bob", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json bundle = body_of(r)["devices"][0];
  EXPECT_TRUE(bundle.contains("prekey"));
  EXPECT_TRUE(bundle["prekey"].is_null());
  EXPECT_EQ(bundle["signed_prekey"], d.signed_prekey);
  EXPECT_EQ(bundle["identity_key"], d.identity);
  EXPECT_EQ(count(bob, "phone"), 0u);
  const KeyClaimCounters c = keys_->counters();
  EXPECT_EQ(c.ok, 1u);
  EXPECT_EQ(c.exhausted, 1u);
  // ... and /metrics shows it.
  auto root = login("root", "root-password")["access_token"].get<std::string>();
  auto m = get("/metrics", root);
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("chat_key_claims_total{result=\"exhausted\"} 1"), std::string::npos);
  EXPECT_NE(m->body.find("route=\"/v1/keys/{user_or_device}\""), std::string::npos);
}

TEST_F(KeyRoutesTest, ClaimFloodIsLimitedAndConsumesNothing) {
  start_keys({{"CHAT_KEY_CLAIM_RATE", "30"}, {"CHAT_KEY_CLAIM_BURST", "3"}});
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  const std::string carol = token_for("carol");
  DeviceKeys phone = make_device(signal_, "phone");
  ASSERT_EQ(put_keys(upload_body(phone, prekeys(1, 50)), bob)->status, 201);
  for (int i = 0; i < 3; ++i) {
    auto r = get("/v1/keys/bob", alice);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << i << " " << r->body;
  }
  EXPECT_EQ(count(bob, "phone"), 47u);
  // Per claimer and target: 429, nothing taken.
  for (int i = 0; i < 5; ++i) {
    auto r = get("/v1/keys/bob", alice);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 429) << r->body;
    EXPECT_EQ(body_of(r)["error"], "rate_limited");
    EXPECT_EQ(r->get_header_value("Retry-After"), "2");  // 30/min: one every 2 s
  }
  EXPECT_EQ(count(bob, "phone"), 47u);
  EXPECT_EQ(keys_->counters().rate_limited, 5u);
  // One claimer's flood does not touch anyone else: carol claims normally.
  auto r = get("/v1/keys/bob?device=phone", carol);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["devices"][0]["prekey"]["id"], 4);
  EXPECT_EQ(count(bob, "phone"), 46u);

  // Many claimers together: the target's budget (10 times the pair's: burst
  // 30, 4 used) runs out, and then everyone gets the bundle without a
  // one-time prekey (signed-prekey fallback): no 429, nothing taken.
  int with_prekey = 0;
  for (int claimer = 0; claimer < 10; ++claimer) {
    for (int i = 0; i < 3; ++i) {
      int64_t wait = 0;
      auto bundles = keys_->claim("m" + std::to_string(claimer), "bob", std::nullopt, &wait);
      ASSERT_TRUE(bundles.is_ok()) << bundles.status().to_string();
      ASSERT_EQ(bundles->size(), 1u);
      if ((*bundles)[0].prekey) ++with_prekey;
    }
  }
  EXPECT_EQ(with_prekey, 26);
  EXPECT_EQ(count(bob, "phone"), 20u);
  r = get("/v1/keys/bob", carol);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json bundle = body_of(r)["devices"][0];
  EXPECT_TRUE(bundle.contains("prekey"));
  EXPECT_TRUE(bundle["prekey"].is_null());
  EXPECT_EQ(bundle["signed_prekey"], phone.signed_prekey);
  EXPECT_EQ(bundle["identity_key"], phone.identity);
  r = get("/v1/keys/bob?device=tablet", carol);  // an unknown device is still 404
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_EQ(count(bob, "phone"), 20u);  // bob's count stops dropping
  const KeyClaimCounters c = keys_->counters();
  EXPECT_EQ(c.limited, 4u + 1u);
  EXPECT_EQ(c.rate_limited, 5u);
  auto root = login("root", "root-password")["access_token"].get<std::string>();
  auto m = get("/metrics", root);
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("chat_key_claims_total{result=\"limited\"} 5"), std::string::npos);
  EXPECT_NE(m->body.find("chat_key_claims_total{result=\"rate_limited\"} 5"), std::string::npos);

  // Another target is not affected.
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "phone"), prekeys(1, 5)), carol)->status,
            201);
  r = get("/v1/keys/carol", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["devices"][0]["prekey"]["id"], 1);
  // Time refills the buckets (the target's 5 a second).
  clock_.advance_ms(2000);
  r = get("/v1/keys/bob", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_FALSE(body_of(r)["devices"][0]["prekey"].is_null());
  EXPECT_EQ(count(bob, "phone"), 19u);
}

TEST_F(KeyRoutesTest, ParallelClaimsNeverReturnTheSamePreKey) {
  start_keys();
  const std::string bob = token_for("bob");
  std::vector<std::string> claimers;
  for (int i = 0; i < 6; ++i) claimers.push_back(token_for("c" + std::to_string(i)));
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "phone"), prekeys(1, 100)), bob)->status,
            201);
  std::mutex mu;
  std::vector<int> ids;
  int nulls = 0;
  int failures = 0;
  std::vector<std::thread> threads;
  for (const auto& token : claimers) {
    threads.emplace_back([&, token] {
      httplib::Client client("127.0.0.1", port_);
      httplib::Headers headers{{"Authorization", "Bearer " + token}};
      for (int i = 0; i < 20; ++i) {
        auto r = client.Get("/v1/keys/bob", headers);
        std::lock_guard lock(mu);
        if (!r || r->status != 200) {
          ++failures;
          continue;
        }
        const json prekey = json::parse(r->body)["devices"][0]["prekey"];
        if (prekey.is_null()) {
          ++nulls;
        } else {
          ids.push_back(prekey["id"].get<int>());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(ids.size(), 100u);
  EXPECT_EQ(std::set<int>(ids.begin(), ids.end()).size(), ids.size());
  EXPECT_EQ(nulls, 20);
  EXPECT_EQ(count(bob, "phone"), 0u);
}

TEST_F(KeyRoutesTest, IdentityNeverChangesSilently) {
  start_keys();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  DeviceKeys first = make_device(signal_, "phone");
  ASSERT_EQ(put_keys(upload_body(first, prekeys(1, 3)), bob)->status, 201);
  DeviceKeys second = make_device(signal_, "phone");  // a new identity, validly signed
  auto r = put_keys(upload_body(second, prekeys(10, 3)), bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409) << r->body;
  EXPECT_EQ(body_of(r)["error"], "identity_mismatch");
  EXPECT_EQ(count(bob, "phone"), 3u);  // nothing of it stored
  auto claim = get("/v1/keys/bob", alice);
  EXPECT_EQ(body_of(claim)["devices"][0]["identity_key"], first.identity);

  // Delete, then upload: the new identity, announced both ways.
  control_.clear_requests();
  r = del("/v1/keys/phone", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  r = del("/v1/keys/phone", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  claim = get("/v1/keys/bob", alice);
  EXPECT_EQ(body_of(claim)["devices"], json::array());
  r = put_keys(upload_body(second, prekeys(10, 3)), bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  auto events = key_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["action"], "device_removed");
  EXPECT_EQ(events[0]["identity_key"], first.identity);
  EXPECT_EQ(events[1]["action"], "device_added");
  EXPECT_EQ(events[1]["identity_key"], second.identity);
  claim = get("/v1/keys/bob", alice);
  EXPECT_EQ(body_of(claim)["devices"][0]["identity_key"], second.identity);
  EXPECT_EQ(body_of(claim)["devices"][0]["prekey"]["id"], 10);
}

TEST_F(KeyRoutesTest, KeysAreAlwaysTheCallersOwn) {
  start_keys();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  DeviceKeys bobs = make_device(signal_, "x");
  DeviceKeys alices = make_device(signal_, "x");
  ASSERT_EQ(put_keys(upload_body(bobs, prekeys(1, 3)), bob)->status, 201);
  // alice's device "x" is alice's: another identity is no conflict with bob's.
  ASSERT_EQ(put_keys(upload_body(alices, prekeys(1, 2)), alice)->status, 201);
  ASSERT_EQ(put_keys(json{{"device", "x"}, {"prekeys", prekeys(50, 3)}}, alice)->status, 200);
  EXPECT_EQ(count(bob, "x"), 3u);
  EXPECT_EQ(count(alice, "x"), 5u);
  // DELETE names only the caller's device.
  ASSERT_EQ(del("/v1/keys/x", alice)->status, 204);
  auto claim = get("/v1/keys/bob", alice);
  ASSERT_EQ(body_of(claim)["devices"].size(), 1u);
  EXPECT_EQ(body_of(claim)["devices"][0]["identity_key"], bobs.identity);
  EXPECT_EQ(count(bob, "x"), 2u);
  auto r = get("/v1/keys/count?device=x", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
}

TEST_F(KeyRoutesTest, EveryRouteNeedsAToken) {
  start_keys();
  token_for("bob");
  std::vector<httplib::Result> results;
  results.push_back(client_->Put("/v1/keys", "{}", "application/json"));
  results.push_back(client_->Get("/v1/keys/bob"));
  results.push_back(client_->Get("/v1/keys/count?device=x"));
  results.push_back(client_->Get("/v1/users/bob/devices"));
  results.push_back(client_->Get("/v1/users/bob/keys"));
  results.push_back(client_->Delete("/v1/keys/x"));
  for (auto& r : results) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << r->body;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  }
}

TEST_F(KeyRoutesTest, BadInputsAreRefusedWithAReason) {
  start_keys();
  const std::string bob = token_for("bob");
  DeviceKeys d = make_device(signal_, "phone");
  const json good = upload_body(d, prekeys(1, 2));
  const std::string key = base64_encode(fake_public_key());
  std::string type6 = fake_public_key();
  type6[0] = 0x06;
  // 64 bytes are 88 characters ending "X==", of whose X the low 4 bits are
  // unused: setting one gives another text for the same bytes (refused).
  std::string non_canonical = d.signed_prekey["signature"].get<std::string>();
  ASSERT_EQ(non_canonical.substr(86), "==");
  non_canonical[85] = non_canonical[85] == 'A' ? 'B' : non_canonical[85] == 'Q' ? 'R' : 'h';
  ASSERT_TRUE(base64_decode_strict(d.signed_prekey["signature"].get<std::string>()));
  json spk_non_canonical = d.signed_prekey;
  spk_non_canonical["signature"] = non_canonical;

  struct Case {
    std::string name;
    std::string body;
    std::string message;  // part of the answer's message
  };
  const auto with = [&good](const char* member, json value) {
    json b = good;
    b[member] = std::move(value);
    return b.dump();
  };
  const auto without = [&good](const char* member) {
    json b = good;
    b.erase(member);
    return b.dump();
  };
  json dup_ids = prekeys(1, 2);
  dup_ids[1]["id"] = 1;
  json spk_no_sig = d.signed_prekey;
  spk_no_sig.erase("signature");
  json spk_short_sig = d.signed_prekey;
  spk_short_sig["signature"] = base64_encode(std::string(63, 'x'));
  json spk_id0 = d.signed_prekey;
  spk_id0["id"] = 0;
  json spk_extra = d.signed_prekey;
  spk_extra["extra"] = 1;
  std::vector<Case> cases = {
      {"not json", "{\"device\":", "JSON object"},
      {"array", "[]", "JSON object"},
      {"duplicate member", R"({"device":"a","device":"b"})", "JSON object"},
      {"unknown member", with("devise", "x"), "unknown member \"devise\""},
      {"no device", without("device"), "device must be"},
      {"bad device", with("device", "a:b"), "device must be"},
      {"long device", with("device", std::string(65, 'a')), "device must be"},
      {"registration 0", with("registration_id", 0), "registration_id must be"},
      {"registration 16381", with("registration_id", 16381), "registration_id must be"},
      {"registration string", with("registration_id", "5"), "registration_id must be"},
      {"registration float", with("registration_id", 5.5), "registration_id must be"},
      {"identity not base64", with("identity_key", "!!!!"), "identity_key is not standard base64"},
      {"identity unpadded", with("identity_key", key.substr(0, 43)), "identity_key is not"},
      {"signature non-canonical", with("signed_prekey", spk_non_canonical),
       "signed_prekey.signature is not standard base64"},
      {"identity url alphabet", with("identity_key", std::string(44, '_')), "identity_key"},
      {"identity 32 bytes", with("identity_key", base64_encode(std::string(32, '\x05'))),
       "identity_key must be a 33-byte public key"},
      {"identity type 6", with("identity_key", base64_encode(type6)),
       "identity_key must be a 33-byte public key starting with 0x05"},
      {"identity number", with("identity_key", 5), "identity_key must be a base64 string"},
      {"spk not object", with("signed_prekey", "x"), "signed_prekey must be an object"},
      {"spk no signature", with("signed_prekey", spk_no_sig), "signed_prekey needs"},
      {"spk short signature", with("signed_prekey", spk_short_sig), "64 bytes"},
      {"spk id 0", with("signed_prekey", spk_id0), "signed_prekey.id must be"},
      {"spk extra", with("signed_prekey", spk_extra), "unknown member \"extra\""},
      {"prekeys not array", with("prekeys", json::object()), "prekeys must be an array"},
      {"prekey id 0", with("prekeys", json::array({{{"id", 0}, {"key", key}}})), "prekeys[0].id"},
      {"prekey id 2^24", with("prekeys", json::array({{{"id", 16777216}, {"key", key}}})),
       "prekeys[0].id must be an integer from 1 to 16777215"},
      {"prekey bad key", with("prekeys", json::array({{{"id", 1}, {"key", "AAAA"}}})),
       "prekeys[0].key must be a 33-byte"},
      {"prekey no key", with("prekeys", json::array({{{"id", 1}}})), "needs \"id\" and \"key\""},
      {"prekey duplicate ids", with("prekeys", dup_ids), "appears twice"},
      {"101 prekeys", with("prekeys", prekeys(1, 101)), "at most 100 prekeys"},
      {"capability bad", with("capabilities", json::array({"Sender Keys"})), "capabilities"},
      {"capability twice", with("capabilities", json::array({"a", "a"})), "appears twice"},
      {"capabilities object", with("capabilities", json::object()), "capabilities must be"},
      {"first upload without signed prekey", without("signed_prekey"), "first upload"},
      {"first upload without registration", without("registration_id"), "first upload"},
      {"first upload without identity", without("identity_key"), "first upload"},
  };
  for (const auto& c : cases) {
    auto r = put_keys(c.body, bob);
    ASSERT_TRUE(r) << c.name;
    EXPECT_EQ(r->status, 400) << c.name << ": " << r->body;
    json body = body_of(r);
    EXPECT_EQ(body["error"], "invalid_argument") << c.name << ": " << r->body;
    EXPECT_NE(body.value("message", "").find(c.message), std::string::npos)
        << c.name << ": " << r->body;
  }
  EXPECT_TRUE(key_store_->devices("bob")->empty());
  EXPECT_TRUE(key_events().empty());

  // Over 1,000 stored: 400 too_many_prekeys, nothing stored.
  ASSERT_EQ(put_keys(good, bob)->status, 201);
  for (uint32_t first = 3; first < 1000; first += 100) {
    const uint32_t n = std::min<uint32_t>(100, 1001 - first);
    ASSERT_EQ(put_keys(json{{"device", "phone"}, {"prekeys", prekeys(first, n)}}, bob)->status,
              200);
  }
  EXPECT_EQ(count(bob, "phone"), 1000u);
  auto r = put_keys(json{{"device", "phone"}, {"prekeys", prekeys(2000, 1)}}, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(body_of(r)["error"], "too_many_prekeys");
  // Re-uploading stored ids replaces them and is within the cap.
  r = put_keys(json{{"device", "phone"}, {"prekeys", prekeys(1, 100)}}, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(count(bob, "phone"), 1000u);

  // A body over the request limit: 413 before anything is parsed.
  r = put_keys(std::string(config_.max_body_bytes + 1, ' '), bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413) << r->body;

  // Count and delete check their device ids too.
  for (const char* path :
       {"/v1/keys/count", "/v1/keys/count?device=", "/v1/keys/count?device=a:b"}) {
    r = get(path, bob);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << path << " " << r->body;
    EXPECT_NE(body_of(r).value("message", "").find("device"), std::string::npos) << r->body;
  }
  r = del("/v1/keys/a:b", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
}

TEST_F(KeyRoutesTest, AFailedEventKeepsTheChange) {
  start_keys();
  const std::string bob = token_for("bob");
  control_.set_handler([this](const json& r) -> Result<json> {
    if (r.value("op", "") == "keys.changed") return unavailable("broker gone");
    return broker(r);
  });
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "phone"), prekeys(1, 1)), bob)->status, 201);
  EXPECT_EQ(key_events().size(), 1u);
  control_.set_connected(false);
  ASSERT_EQ(del("/v1/keys/phone", bob)->status, 204);
  EXPECT_EQ(key_events().size(), 1u);  // not even tried while disconnected
  EXPECT_TRUE(key_store_->devices("bob")->empty());
}

TEST_F(KeyRoutesTest, AccountDeletionRemovesTheKeys) {
  start_keys();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  DeviceKeys phone = make_device(signal_, "phone");
  ASSERT_EQ(put_keys(upload_body(phone, prekeys(1, 3)), bob)->status, 201);
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "web1"), prekeys(1, 3)), bob)->status, 201);
  control_.clear_requests();
  auto r = del("/v1/users/me", bob);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 204) << r->body;
  EXPECT_TRUE(key_store_->devices("bob")->empty());
  EXPECT_EQ(*key_store_->prekey_count("bob", "phone"), 0u);
  auto events = key_events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["device"], "phone");
  EXPECT_EQ(events[0]["action"], "device_removed");
  EXPECT_EQ(events[0]["identity_key"], phone.identity);
  EXPECT_EQ(events[1]["device"], "web1");
  r = get("/v1/keys/bob", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
}

// Each device added or removed sends a keys event to every peer of the
// user: CHAT_KEY_DEVICE_CHANGES bounds them per user (account deletion aside).
TEST_F(KeyRoutesTest, DeviceChangesAreLimitedPerUser) {
  start_keys({{"CHAT_KEY_DEVICE_CHANGES", "3"}});
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  std::vector<DeviceKeys> devices;
  for (const char* name : {"d1", "d2", "d3", "d4"}) devices.push_back(make_device(signal_, name));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(put_keys(upload_body(devices[i], prekeys(1, 2)), bob)->status, 201) << i;
  }
  control_.clear_requests();
  // A fourth new device: 429, nothing stored, nobody told.
  auto r = put_keys(upload_body(devices[3], prekeys(1, 2)), bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(body_of(r)["error"], "rate_limited");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1200");  // 3 an hour: one every 20 min
  EXPECT_EQ(key_store_->devices("bob")->size(), 3u);
  // Top-ups and signed-prekey rotations of known devices are no changes.
  r = put_keys(json{{"device", "d1"}, {"prekeys", prekeys(10, 5)}}, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(count(bob, "d1"), 7u);
  // A removal is a change too: refused, the device stays.
  r = del("/v1/keys/d1", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  EXPECT_EQ(body_of(r)["error"], "rate_limited");
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  EXPECT_EQ(key_store_->devices("bob")->size(), 3u);
  EXPECT_TRUE(key_events().empty());
  // An absent device is 404 whatever the limit.
  r = del("/v1/keys/nothere", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  // Another user has a budget of its own.
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "a1"), prekeys(1, 2)), alice)->status, 201);
  // Time refills: one change every 20 minutes.
  clock_.advance_ms(20 * 60 * 1000);
  r = del("/v1/keys/d1", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  r = put_keys(upload_body(devices[3], prekeys(1, 2)), bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429) << r->body;
  // Account deletion is exempt: every device goes, each announced.
  control_.clear_requests();
  r = del("/v1/users/me", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  EXPECT_TRUE(key_store_->devices("bob")->empty());
  EXPECT_EQ(key_events().size(), 2u);
}

// Account deletion against an upload in flight: the upload that passed its
// checks while the account was being deleted must not leave a device behind
// (here it runs while the directory announces the removals, i.e. after the
// devices were deleted).
TEST_F(KeyRoutesTest, AnUploadRacingAccountDeletionLeavesNoDevice) {
  start_keys();
  const std::string bob = token_for("bob");
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "phone"), prekeys(1, 3)), bob)->status, 201);
  const DeviceKeys late = make_device(signal_, "tablet");
  std::optional<Status> raced;
  control_.set_handler([&](const json& r) -> Result<json> {
    if (r.value("op", "") == "keys.changed") {
      if (!raced && r.value("user", "") == "bob") {
        KeyRefusal why = KeyRefusal::kNone;
        auto up = keys_->upload("bob", upload_body(late, prekeys(1, 2)).dump(), &why);
        raced = up.status();
      }
      return test_support::ok_reply();
    }
    return broker(r);
  });
  auto r = del("/v1/users/me", bob);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 204) << r->body;
  ASSERT_TRUE(raced.has_value());
  EXPECT_EQ(raced->code(), StatusCode::kUnauthenticated) << raced->to_string();
  EXPECT_TRUE(key_store_->devices("bob")->empty());
  EXPECT_EQ(*key_store_->prekey_count("bob", "tablet"), 0u);
  // And a user the archive no longer knows uploads nothing at all.
  KeyRefusal why = KeyRefusal::kNone;
  auto after = keys_->upload("bob", upload_body(late, prekeys(1, 2)).dump(), &why);
  EXPECT_EQ(after.status().code(), StatusCode::kUnauthenticated);
  EXPECT_TRUE(key_store_->devices("bob")->empty());
}

TEST_F(KeyRoutesTest, AUserNamedCountIsClaimedThroughTheUsersPath) {
  start_keys();
  const std::string alice = token_for("alice");
  const std::string count_user = token_for("count");
  ASSERT_EQ(put_keys(upload_body(make_device(signal_, "phone"), prekeys(1, 2)), count_user)->status,
            201);
  auto r = get("/v1/users/count/keys", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["user"], "count");
  EXPECT_EQ(body_of(r)["devices"][0]["prekey"]["id"], 1);
  r = get("/v1/keys/count?device=phone", count_user);  // always the caller's count
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["count"], 1);
}

TEST_F(KeyRoutesTest, WithoutTheDirectoryTheRoutesAnswer503) {
  start();
  const std::string bob = token_for("bob");
  auto r = put_keys(json{{"device", "x"}}, bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
}

}  // namespace
}  // namespace chat::api
