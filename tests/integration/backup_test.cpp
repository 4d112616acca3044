// Backups on the real stack (docs/operations.md, "Backup and restore"): an
// online backup taken while two devices stream QoS 1 messages, restored with
// `chatctl admin restore` into another stack's data dir, which then serves
// every message acknowledged before the backup, the accounts and the media;
// and the refusals (bad directories, non-admins, incomplete backups, a
// running stack).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "media_samples.h"
#include "signal_test_keys.h"
#include "stack.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kAdminPassword = "root-password";

StackOptions admin_options(std::map<std::string, std::string> extra = {}) {
  StackOptions o;
  o.env = {{"CHAT_ADMINS", "root"}, {"CHAT_ADMIN_PASSWORD", kAdminPassword}};
  o.env.insert(extra.begin(), extra.end());
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

using chat::test_media::mp4_bytes;

// A temporary directory the broker (which may run as `mosquitto`) can reach.
class WorkDir {
 public:
  WorkDir() {
    char tmpl[] = "/tmp/chat-backup-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
    ::chmod(path_.c_str(), 0755);
  }
  ~WorkDir() {
    std::error_code ec;
    if (!std::getenv("CHAT_KEEP_TEST_DATA")) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// chatctl with its own home; {exit status, stdout+stderr}.
std::pair<int, std::string> chatctl(const std::string& work, const Stack* stack,
                                    std::vector<std::string> args) {
  static std::atomic<int> run{0};
  const std::string log = work + "/chatctl-" + std::to_string(++run) + ".log";
  std::vector<std::string> argv = {CHAT_BIN_DIR "/chatctl", "--home", work + "/chatctl-home"};
  if (stack != nullptr) {
    argv.insert(argv.end(), {"--api", stack->base_url()});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  Process p;
  p.start(argv, {}, log);
  int rc = p.wait(60s);
  return {rc, read_file(log)};
}

json upload(Stack& stack, const std::string& bytes, const std::string& token) {
  httplib::Client c = stack.http_client();
  auto r = c.Post("/v1/media", {{"Authorization", "Bearer " + token}}, bytes,
                  "application/octet-stream");
  EXPECT_TRUE(r);
  if (!r) return json();
  EXPECT_EQ(r->status, 201) << r->body;
  return json::parse(r->body, nullptr, false);
}

// A device publishing numbered QoS 1 messages until stopped, remembering
// which were acknowledged.
class Sender {
 public:
  Sender(Stack& stack, const std::string& user, const std::string& token, const std::string& peer)
      : client_(stack.mqtt_port(), device(user, "load", token)), peer_(peer), prefix_(user + "-") {}
  ~Sender() { stop(); }

  bool start() {
    if (client_.connect() != 0) return false;
    thread_ = std::thread([this] {
      for (int n = 0; !stop_.load(); ++n) {
        const std::string cid = prefix_ + std::to_string(n);
        if (!is_success(client_.publish("dm/" + peer_, text(cid, "load " + cid)))) break;
        std::lock_guard lock(mu_);
        acked_.push_back(cid);
      }
    });
    return true;
  }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> acked() {
    std::lock_guard lock(mu_);
    return acked_;
  }

 private:
  MqttClient client_;
  std::string peer_;
  std::string prefix_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> acked_;
};

// Every cid of the conversation through the history API, paging backwards.
std::set<std::string> history_cids(Stack& s, const std::string& token, const std::string& conv) {
  std::set<std::string> out;
  std::string before;
  for (int page = 0; page < 1000; ++page) {
    std::string path = "/v1/conversations/" + conv + "/messages?limit=500";
    if (!before.empty()) path += "&before=" + before;
    auto [status, body] = s.get(path, token);
    EXPECT_EQ(status, 200) << body.dump();
    if (status != 200) break;
    for (const auto& m : body["messages"]) out.insert(m.value("cid", ""));
    if (body["next"].is_null()) break;
    before = body["next"].get<std::string>();
  }
  return out;
}

TEST(Backup, UnderLoadRestoresIntoANewStack) {
  WorkDir work;
  Stack a(admin_options());
  const std::string root = a.login("root", kAdminPassword);
  const std::string alice = a.register_user("alice");
  const std::string bob = a.register_user("bob");
  a.register_user("carol", "carol's password");

  // A media message before the backup.
  const std::string bytes = mp4_bytes(64 << 10, 3);
  json up = upload(a, bytes, alice);
  const std::string media_id = up.value("id", "");
  ASSERT_FALSE(media_id.empty());
  {
    MqttClient phone(a.mqtt_port(), device("alice", "phone", alice));
    ASSERT_EQ(phone.connect(), 0);
    json body{{"media", media_id},
              {"content_type", up["content_type"]},
              {"size", up["size"]},
              {"sha256", up["sha256"]},
              {"url", up["url"]}};
    ASSERT_TRUE(is_success(
        phone.publish("dm/bob", json{{"cid", "m1"}, {"type", "media"}, {"body", body}}.dump())));
  }

  // A device in the key directory (docs/e2e.md).
  test_support::SignalKeys signal;
  std::string identity;
  {
    httplib::Client c = a.http_client();
    auto r = c.Put("/v1/keys", {{"Authorization", "Bearer " + bob}},
                   signal.upload_body("web1", 3, &identity), "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
  }

  // Two devices stream QoS 1 messages before, during and after the backup.
  Sender from_alice(a, "alice", alice, "bob");
  Sender from_bob(a, "bob", bob, "alice");
  ASSERT_TRUE(from_alice.start());
  ASSERT_TRUE(from_bob.start());
  ASSERT_TRUE(eventually(
      [&] { return from_alice.acked().size() >= 100 && from_bob.acked().size() >= 100; }));

  // Everything acknowledged before the backup starts must be in it.
  std::vector<std::string> before = from_alice.acked();
  for (const auto& cid : from_bob.acked()) before.push_back(cid);
  const std::string dir = work.path() + "/b1";
  auto [status, manifest] = a.post_json("/v1/admin/backups", {{"dir", dir}}, root);
  ASSERT_EQ(status, 201) << manifest.dump() << a.logs();
  const size_t sent_during = from_alice.acked().size() + from_bob.acked().size();
  ASSERT_TRUE(eventually([&] {
    return from_alice.acked().size() + from_bob.acked().size() >= sent_during + 50;
  })) << "traffic stopped during the backup";
  from_alice.stop();
  from_bob.stop();

  EXPECT_EQ(manifest["format"], "chat-backup");
  EXPECT_EQ(manifest["version"], 1);
  EXPECT_EQ(manifest["dir"], dir);
  EXPECT_FALSE(manifest["archive"]["max_id"].get<std::string>().empty());
  EXPECT_GT(manifest["archive"]["sequence"].get<uint64_t>(), 0u);
  EXPECT_EQ(manifest["components"]["media"]["blobs"], 1);
  EXPECT_GE(manifest["components"]["media"]["bytes"].get<uint64_t>(), bytes.size());
  for (const char* c :
       {"archive", "accounts", "media_db", "push", "e2e_keys", "keys", "media_key"}) {
    EXPECT_TRUE(manifest["components"].contains(c)) << c;
  }
  EXPECT_TRUE(fs::is_regular_file(dir + "/manifest.json"));
  EXPECT_TRUE(fs::is_regular_file(dir + "/archive/CURRENT"));

  // A second stack: refused while it runs, restored once stopped.
  Stack b(admin_options());
  auto refused = chatctl(work.path(), nullptr,
                         {"admin", "restore", dir, "--data-dir", b.data_dir(), "--force"});
  EXPECT_EQ(refused.first, 1) << refused.second;
  EXPECT_NE(refused.second.find("the stack is running"), std::string::npos) << refused.second;
  b.kill_api(SIGTERM);
  b.kill_bridge(SIGTERM);
  b.kill_broker(SIGTERM);
  auto occupied =
      chatctl(work.path(), nullptr, {"admin", "restore", dir, "--data-dir", b.data_dir()});
  EXPECT_EQ(occupied.first, 1) << occupied.second;
  EXPECT_NE(occupied.second.find("already holds data"), std::string::npos) << occupied.second;
  auto restored = chatctl(work.path(), nullptr,
                          {"admin", "restore", dir, "--data-dir", b.data_dir(), "--force"});
  ASSERT_EQ(restored.first, 0) << restored.second;
  // The data it replaced is kept aside.
  bool aside = false;
  for (const auto& e : fs::directory_iterator(b.data_dir())) {
    if (e.path().filename().string().rfind("pre-restore-", 0) == 0) {
      aside = fs::exists(e.path() / "archive") && fs::exists(e.path() / "api" / "accounts");
    }
  }
  EXPECT_TRUE(aside);
  b.start_broker();
  b.start_bridge();
  b.start_api();

  // Users log in with their passwords; tokens issued before still work
  // (the issuer key is part of the backup).
  const std::string alice2 = b.login("alice");
  b.login("carol", "carol's password");
  b.login("root", kAdminPassword);
  EXPECT_EQ(b.get("/v1/conversations", bob).first, 200);

  // Every message acknowledged before the backup: via sync and history.
  std::set<std::string> synced;
  for (const auto& m : sync_all(b, alice2)) synced.insert(m.value("cid", ""));
  const std::set<std::string> history = history_cids(b, alice2, "dm:alice:bob");
  size_t missing_sync = 0, missing_history = 0;
  for (const auto& cid : before) {
    missing_sync += synced.count(cid) == 0;
    missing_history += history.count(cid) == 0;
  }
  EXPECT_EQ(missing_sync, 0u) << "of " << before.size();
  EXPECT_EQ(missing_history, 0u) << "of " << before.size();
  EXPECT_EQ(synced.count("m1"), 1u);

  // The media uploaded before the backup: its record, blob and mediaref.
  httplib::Client c = b.http_client();
  auto r = c.Get(("/v1/media/" + media_id).c_str(), {{"Authorization", "Bearer " + bob}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->body == bytes);

  // The key directory too.
  auto [dstatus, devices] = b.get("/v1/users/bob/devices", alice2);
  ASSERT_EQ(dstatus, 200) << devices.dump();
  ASSERT_EQ(devices["devices"].size(), 1u);
  EXPECT_EQ(devices["devices"][0]["identity_key"], identity);

  // And the restored stack takes new messages.
  MqttClient phone(b.mqtt_port(), device("alice", "phone2", alice2));
  ASSERT_EQ(phone.connect(), 0);
  EXPECT_TRUE(is_success(phone.publish("dm/bob", text("after-restore", "hello again"))));
}

TEST(Backup, RefusesBadDirectoriesAndNonAdmins) {
  WorkDir work;
  const std::string root_dir = work.path() + "/backups";
  fs::create_directories(root_dir);
  ::chmod(root_dir.c_str(), 0755);
  Stack s(admin_options({{"CHAT_BACKUP_DIR", root_dir}}));
  const std::string root = s.login("root", kAdminPassword);
  const std::string alice = s.register_user("alice");

  auto backup = [&](const json& body, const std::string& token) {
    return s.post_json("/v1/admin/backups", body, token);
  };
  EXPECT_EQ(backup({{"dir", root_dir + "/x"}}, alice).first, 403);
  EXPECT_EQ(backup({{"dir", root_dir + "/x"}}, "").first, 401);
  EXPECT_FALSE(fs::exists(root_dir + "/x"));

  auto refused = [&](const json& body, const std::string& why) {
    auto [status, answer] = backup(body, root);
    EXPECT_EQ(status, 400) << body.dump() << " " << answer.dump();
    EXPECT_EQ(answer.value("error", ""), "invalid_argument");
    EXPECT_NE(answer.value("message", "").find(why), std::string::npos)
        << body.dump() << " " << answer.dump();
  };
  refused({{"dir", "backups/x"}}, "absolute");
  refused({{"dir", root_dir + "/../x"}}, ". or ..");
  refused({{"dir", root_dir + "/no/such/parent"}}, "does not exist");
  refused({{"dir", work.path() + "/outside"}}, "CHAT_BACKUP_DIR");
  refused({{"dir", s.data_dir() + "/archive/x"}}, "CHAT_BACKUP_DIR");
  fs::create_directories(root_dir + "/full");
  std::ofstream(root_dir + "/full/file") << "x";
  refused({{"dir", root_dir + "/full"}}, "not empty");
  refused({{"dir", root_dir + "/full/file"}}, "not a directory");
  refused({{"dir", 42}}, "absolute path");
  refused(json::array(), "absolute path");

  // An existing empty directory is fine; through chatctl.
  fs::create_directories(root_dir + "/empty");
  ASSERT_EQ(chatctl(work.path(), &s, {"login", "root", "--password", kAdminPassword}).first, 0);
  auto made = chatctl(work.path(), &s, {"admin", "backup", root_dir + "/empty"});
  EXPECT_EQ(made.first, 0) << made.second;
  EXPECT_NE(made.second.find("backup written to " + root_dir + "/empty"), std::string::npos)
      << made.second;
  EXPECT_TRUE(fs::is_regular_file(root_dir + "/empty/manifest.json"));
  auto relative = chatctl(work.path(), &s, {"admin", "backup", "relative/dir"});
  EXPECT_EQ(relative.first, 1) << relative.second;
  EXPECT_NE(relative.second.find("absolute"), std::string::npos) << relative.second;

  // Restore refuses a directory without a manifest (incomplete) and a
  // damaged copy, before touching the target.
  const std::string target = work.path() + "/target";
  fs::create_directories(root_dir + "/incomplete/archive");
  auto no_manifest = chatctl(work.path(), nullptr,
                             {"admin", "restore", root_dir + "/incomplete", "--data-dir", target});
  EXPECT_EQ(no_manifest.first, 1) << no_manifest.second;
  EXPECT_NE(no_manifest.second.find("no manifest.json"), std::string::npos) << no_manifest.second;
  std::ofstream(root_dir + "/empty/keys/extra") << "tampered";
  auto damaged = chatctl(work.path(), nullptr,
                         {"admin", "restore", root_dir + "/empty", "--data-dir", target});
  EXPECT_EQ(damaged.first, 1) << damaged.second;
  EXPECT_NE(damaged.second.find("component keys"), std::string::npos) << damaged.second;
  EXPECT_FALSE(fs::exists(target + "/archive"));
  fs::remove(root_dir + "/empty/keys/extra");
  auto no_data_dir = chatctl(work.path(), nullptr, {"admin", "restore", root_dir + "/empty"});
  EXPECT_EQ(no_data_dir.first, 2) << no_data_dir.second;
  // Onto the running stack: refused, --force or not.
  auto running =
      chatctl(work.path(), nullptr,
              {"admin", "restore", root_dir + "/empty", "--data-dir", s.data_dir(), "--force"});
  EXPECT_EQ(running.first, 1) << running.second;
  EXPECT_NE(running.second.find("is locked by pid"), std::string::npos) << running.second;
  // A good one into an empty directory.
  auto ok = chatctl(work.path(), nullptr,
                    {"admin", "restore", root_dir + "/empty", "--data-dir", target});
  EXPECT_EQ(ok.first, 0) << ok.second;
  EXPECT_TRUE(fs::is_regular_file(target + "/archive/CURRENT"));
  EXPECT_TRUE(fs::is_regular_file(target + "/api/accounts/CURRENT"));
  EXPECT_TRUE(fs::is_regular_file(target + "/keys/issuer.pem"));
}

}  // namespace
}  // namespace chat::testing
