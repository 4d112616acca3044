// BackupRunner (api/include/chat/api/backup.h) against the real HTTP server,
// account store, media store and blob directory, with the fake control
// channel taking the archive checkpoint on the test's real archive: account
// deletion waits for the media copy, one backup at a time, a failure leaves
// no manifest, and the backup is ours alone (it holds the signing keys).
#include "chat/api/backup.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "chat/api/media.h"
#include "chat/store/key_store.h"
#include "chat/store/media.h"
#include "http_fixture.h"
#include "media_samples.h"

namespace chat::api {
namespace {

using test_support::HttpServerTest;
using test_support::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

using chat::test_media::mp4_bytes;

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class BackupApiTest : public HttpServerTest {
 protected:
  void SetUp() override {
    customize_service_ = [this](Service& service) {
      auto store = store::MediaStore::open(config_.media_db_path());
      ASSERT_TRUE(store.is_ok()) << store.status().to_string();
      media_store_ = std::move(store).value();
      MediaOptions o;
      o.dir = config_.media_dir();
      o.key_path = config_.media_key_path();
      o.max_bytes = config_.media_max_bytes;
      o.url_ttl_s = config_.media_url_ttl_s;
      o.min_free_bytes = 0;
      auto lib = MediaLibrary::open(o, *media_store_, *reader_, clock_);
      ASSERT_TRUE(lib.is_ok()) << lib.status().to_string();
      media_ = std::move(lib).value();
      service.set_media(media_.get());
      auto keys = store::KeyStore::open(config_.keys_db_path());
      ASSERT_TRUE(keys.is_ok()) << keys.status().to_string();
      key_store_ = std::move(keys).value();
    };
    start();
    // The broker's side of archive.checkpoint: a checkpoint of the archive.
    control_.set_handler([this](const json& r) -> Result<json> {
      if (r.value("op", "") != "archive.checkpoint") return json{{"req", "x"}, {"ok", true}};
      auto info = archive_->checkpoint(r.value("dir", ""));
      if (!info) return info.status();
      return json{{"req", "x"},
                  {"ok", true},
                  {"result", {{"max_id", info->max_id}, {"sequence", info->sequence}}}};
    });
    char tmpl[] = "/tmp/chat-backup-api-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    out_ = tmpl;
  }

  void TearDown() override {
    client_.reset();
    if (server_) {
      server_->stop();
      if (thread_.joinable()) thread_.join();
    }
    server_.reset();
    media_.reset();
    media_store_.reset();
    key_store_.reset();
    HttpServerTest::TearDown();
    std::error_code ec;
    fs::remove_all(out_, ec);
  }

  BackupRunner runner(std::function<void()> before_media_copy = {}) {
    BackupOptions o;
    o.data_dir = config_.data_dir;
    o.broker_timeout = 5s;
    o.before_media_copy = std::move(before_media_copy);
    return BackupRunner(o, BackupSources{&control_, data_->accounts.get(), media_store_.get(),
                                         nullptr, service_.get(), &clock_, key_store_.get()});
  }

  json upload(const std::string& bytes, const std::string& token) {
    auto r = client_->Post("/v1/media", {{"Authorization", "Bearer " + token}}, bytes,
                           "application/octet-stream");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 201) << r->body;
    return body_of(r);
  }

  std::unique_ptr<store::MediaStore> media_store_;
  std::unique_ptr<MediaLibrary> media_;
  std::unique_ptr<store::KeyStore> key_store_;
  std::string out_;
};

// The hole this closes: an account deleted after the media database was
// copied but before its blobs were linked left records without blobs (500 on
// fetch after a restore). The deletion now waits for the media copy.
TEST_F(BackupApiTest, AccountDeletionWaitsUntilTheBlobsAreLinked) {
  const std::string alice = token_for("alice");
  const json up = upload(mp4_bytes(32 << 10, 7), alice);
  const std::string id = up.value("id", "");
  const std::string sha = up.value("sha256", "");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(sha.size(), 64u);

  std::atomic<bool> deleted{false};
  std::atomic<int> delete_status{0};
  bool deleted_before_media_copy = true;
  std::thread deleter;
  auto backups = runner([&] {
    deleter = std::thread([&] {
      httplib::Client c("127.0.0.1", port_);
      auto r = c.Delete("/v1/users/me", {{"Authorization", "Bearer " + alice}});
      delete_status = r ? r->status : -1;
      deleted = true;
    });
    // Without the pause the deletion finishes (and unlinks the blob) well
    // within this.
    const auto deadline = std::chrono::steady_clock::now() + 300ms;
    while (!deleted && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    deleted_before_media_copy = deleted;
  });
  const std::string dir = out_ + "/b";
  auto manifest = backups.run(dir);
  if (deleter.joinable()) deleter.join();
  ASSERT_TRUE(manifest) << manifest.status().to_string();
  EXPECT_FALSE(deleted_before_media_copy);
  EXPECT_EQ(delete_status.load(), 204);  // and it went through afterwards
  EXPECT_FALSE(fs::exists(config_.media_dir() + "/blobs/" + sha.substr(0, 2) + "/" +
                          sha.substr(2, 2) + "/" + sha));

  // The backup's media database has the record, and its blob is there.
  EXPECT_TRUE(fs::is_regular_file(dir + "/media/blobs/" + sha.substr(0, 2) + "/" +
                                  sha.substr(2, 2) + "/" + sha));
  EXPECT_EQ((*manifest)["components"]["media"]["blobs"], 1);
  auto copy = store::MediaStore::open(dir + "/api/media");
  ASSERT_TRUE(copy) << copy.status().to_string();
  auto record = (*copy)->get(id);
  ASSERT_TRUE(record);
  ASSERT_TRUE(record->has_value());
  EXPECT_EQ((**record).sha256, sha);
}

TEST_F(BackupApiTest, OneAtATimeAndNothingButUsCanReadIt) {
  token_for("alice");
  store::KeyUpload keys;  // a device in the key directory (docs/e2e.md)
  keys.user = "alice";
  keys.device = "phone";
  keys.identity_key = "IDENTITY";
  keys.registration_id = 7;
  keys.signed_prekey = store::SignedPreKeyRecord{1, "SPK", "SIG"};
  keys.prekeys = {{1, "PK1"}, {2, "PK2"}};
  ASSERT_TRUE(key_store_->upload(keys, 10).is_ok());
  Result<json> second = internal_error("not run");
  BackupRunner* self = nullptr;
  auto backups = runner([&] {
    // Another request thread while this one runs.
    std::thread([&] { second = self->run(out_ + "/second"); }).join();
  });
  self = &backups;
  const std::string dir = out_ + "/first";
  auto manifest = backups.run(dir);
  ASSERT_TRUE(manifest) << manifest.status().to_string();
  ASSERT_FALSE(second);
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(fs::exists(out_ + "/second"));

  // The backup holds the issuer's private key and password hashes.
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(mode_of(dir + "/api"), 0700u);
  EXPECT_EQ(mode_of(dir + "/keys"), 0700u);
  EXPECT_EQ(mode_of(dir + "/manifest.json"), 0600u);
  EXPECT_EQ(mode_of(dir + "/keys/issuer.pem"), mode_of(config_.issuer_key_path()));
  EXPECT_EQ(mode_of(dir + "/keys/issuer.pem") & 077, 0u);
  EXPECT_TRUE(fs::is_regular_file(dir + "/archive/CURRENT"));
  EXPECT_TRUE(fs::is_regular_file(dir + "/api/accounts/CURRENT"));

  // The key directory's copy has the device and its prekeys.
  EXPECT_EQ((*manifest)["components"]["e2e_keys"]["path"], "api/e2e-keys");
  auto copy = store::KeyStore::open(dir + "/api/e2e-keys");
  ASSERT_TRUE(copy) << copy.status().to_string();
  auto device = (*copy)->device("alice", "phone");
  ASSERT_TRUE(device);
  ASSERT_TRUE(device->has_value());
  EXPECT_EQ((**device).identity_key, "IDENTITY");
  EXPECT_EQ(*(*copy)->prekey_count("alice", "phone"), 2u);
}

TEST_F(BackupApiTest, AFailureLeavesNoManifestAndAccountChangesGoOn) {
  control_.fail_with(unavailable("no broker"));
  auto backups = runner();
  const std::string dir = out_ + "/failed";
  auto manifest = backups.run(dir);
  ASSERT_FALSE(manifest);
  EXPECT_NE(manifest.status().message().find("archive checkpoint failed"), std::string::npos)
      << manifest.status().to_string();
  EXPECT_FALSE(fs::exists(dir + "/manifest.json"));
  control_.fail_with(std::nullopt);
  // The gates were released: sign-up and deletion work.
  const std::string bob = token_for("bob");
  auto r = del("/v1/users/me", bob);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  // A symlink where the backup should go is refused, never followed.
  fs::create_directories(out_ + "/elsewhere");
  fs::create_symlink(out_ + "/elsewhere", out_ + "/link");
  auto through_link = backups.run(out_ + "/link");
  ASSERT_FALSE(through_link);
  EXPECT_EQ(through_link.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs::is_empty(out_ + "/elsewhere"));
}

}  // namespace
}  // namespace chat::api
