// The fixture shared by chat-api's HTTP tests: the real httplib server on a
// free port, a real AccountStore, a real archive (written by the test as the
// broker would) read through a real ArchiveReader, and a fake broker control
// channel that records requests and answers as scripted.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "chat/api/app.h"
#include "chat/api/control.h"
#include "chat/api/http_server.h"
#include "chat/api/passwords.h"
#include "chat/api/service.h"
#include "chat/api/tokens.h"
#include "chat/common/clock.h"
#include "chat/common/envelope.h"
#include "chat/common/ids.h"
#include "chat/common/jwt.h"
#include "chat/common/topics.h"
#include "chat/store/archive.h"

namespace chat::api::test_support {

using nlohmann::json;
namespace fs = std::filesystem;

// The broker's side of the control topic, as the test wants it to behave:
// every request is recorded; then, in this order, a thrown exception, a
// standing failure (fail_with), the next scripted reply, the handler, or a
// plain {"ok":true}.
class FakeControl final : public ControlChannel {
 public:
  using Handler = std::function<Result<json>(const json& request)>;

  Result<json> call(const json& request, std::chrono::milliseconds) override {
    Handler handler;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(request);
      if (throw_) throw std::runtime_error("fake control exploded");
      if (fail_with_) return *fail_with_;
      if (!scripted_.empty()) {
        Result<json> reply = std::move(scripted_.front());
        scripted_.erase(scripted_.begin());
        return reply;
      }
      handler = handler_;
    }
    if (handler) return handler(request);
    return json{{"req", "x"}, {"ok", true}};
  }
  bool connected() const override { return connected_.load(); }

  void set_connected(bool c) { connected_.store(c); }
  void fail_with(std::optional<Status> s) {
    std::lock_guard lock(mu_);
    fail_with_ = std::move(s);
  }
  void set_throw(bool t) {
    std::lock_guard lock(mu_);
    throw_ = t;
  }
  // The next call answers this (a Status is the broker's error reply).
  void script(Result<json> reply) {
    std::lock_guard lock(mu_);
    scripted_.push_back(std::move(reply));
  }
  void set_handler(Handler handler) {
    std::lock_guard lock(mu_);
    handler_ = std::move(handler);
  }
  std::vector<json> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  json last_request() {
    std::lock_guard lock(mu_);
    return requests_.empty() ? json() : requests_.back();
  }
  void clear_requests() {
    std::lock_guard lock(mu_);
    requests_.clear();
  }

 private:
  std::atomic<bool> connected_{true};
  std::mutex mu_;
  std::vector<json> requests_;
  std::optional<Status> fail_with_;
  std::vector<Result<json>> scripted_;
  Handler handler_;
  bool throw_ = false;
};

// A successful control reply carrying `result`.
inline json ok_reply(json result = nullptr) {
  json reply = {{"req", "x"}, {"ok", true}};
  if (!result.is_null()) reply["result"] = std::move(result);
  return reply;
}

constexpr const char* kForm = "application/x-www-form-urlencoded";

class HttpServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    client_.reset();  // closes its keep-alive connection first
    if (server_) {
      server_->stop();
      if (thread_.joinable()) thread_.join();
    }
    server_.reset();
    service_.reset();
    reader_.reset();
    archive_.reset();
    tokens_.reset();
    data_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  // Starts everything; `env` adds or overrides CHAT_* variables.
  void start(std::map<std::string, std::string> env = {}) {
    char tmpl[] = "/tmp/chat-api-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    env.emplace("CHAT_DATA_DIR", dir_);
    env.emplace("CHAT_ADMINS", "root");
    env.emplace("CHAT_ADMIN_PASSWORD", "root-password");
    // Abuse limits off unless a test sets them (rate_limits_test.cpp does).
    env.emplace("CHAT_LOGIN_RATE", "0");
    env.emplace("CHAT_LOGIN_LOCKOUT_AFTER", "0");
    env.emplace("CHAT_RATE_LIMIT_REST", "0");
    auto config = Config::from_lookup([&env](const char* name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    });
    ASSERT_TRUE(config.is_ok()) << config.status().to_string();
    config_ = std::move(config).value();

    auto data = init_data_dir(config_);
    ASSERT_TRUE(data.is_ok()) << data.status().to_string();
    data_ = std::make_unique<DataDir>(std::move(data).value());
    ASSERT_TRUE(fs::exists(config_.jwks_path()));

    store::ArchiveOptions archive_options;
    archive_options.path = config_.archive_path();
    auto archive = store::Archive::open(archive_options);
    ASSERT_TRUE(archive.is_ok()) << archive.status().to_string();
    archive_ = std::move(archive).value();
    auto reader = open_archive_reader(config_, std::chrono::seconds(5));
    ASSERT_TRUE(reader.is_ok()) << reader.status().to_string();
    reader_ = std::move(reader).value();

    auto tokens = TokenIssuer::create(
        data_->signer, {config_.jwt_issuer, config_.jwt_audience, config_.jwt_leeway_s}, clock_);
    ASSERT_TRUE(tokens.is_ok()) << tokens.status().to_string();
    tokens_ = std::move(tokens).value();

    ASSERT_TRUE(ensure_admin_accounts(config_, *data_->accounts, hasher_, clock_).is_ok());
    service_ = std::make_unique<Service>(config_, *data_->accounts, *reader_, control_, *tokens_,
                                         hasher_, clock_);
    HttpOptions options;
    options.threads = 8;
    options.max_body_bytes = config_.max_body_bytes;
    options.web = WebOptions::from_config(config_);
    options.rate_limits = config_.rate_limits;
    options.clock = &clock_;
    if (customize_options_) customize_options_(options);
    if (customize_service_) customize_service_(*service_);
    server_ = std::make_unique<HttpServer>(*service_, options);
    auto port = server_->bind("127.0.0.1", 0);
    ASSERT_TRUE(port.is_ok()) << port.status().to_string();
    port_ = *port;
    thread_ = std::thread([this] { server_->listen().ignore_error(); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!server_->is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_TRUE(server_->is_running());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
  }

  // ---- request helpers ----

  httplib::Result post_json(const std::string& path, const json& body,
                            const std::string& token = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_->Post(path.c_str(), headers, body.dump(), "application/json");
  }

  httplib::Result post_form(const std::string& path, const std::string& body) {
    return client_->Post(path.c_str(), body, kForm);
  }

  httplib::Result get(const std::string& path, const std::string& token = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_->Get(path.c_str(), headers);
  }

  static json body_of(const httplib::Result& r) {
    return json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  }

  void signup(const std::string& user, const std::string& password = "password1") {
    auto r = post_json("/v1/users", {{"user", user}, {"password", password}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 201) << r->body;
  }

  // A password grant that must succeed.
  json login(const std::string& user, const std::string& password = "password1") {
    auto r = post_form("/v1/oauth/token",
                       "grant_type=password&username=" + user + "&password=" + password);
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << r->body;
    return body_of(r);
  }

  std::string token_for(const std::string& user) {
    signup(user);
    return login(user)["access_token"].get<std::string>();
  }

  // Archives a direct message as the broker would; returns its id.
  std::string send(const std::string& from, const std::string& to, const std::string& text = "hi") {
    EnvelopeFields f;
    f.id = ids_.next();
    f.ts = clock_.now_ms();
    f.conv = topics::dm_conversation(from, to);
    f.from = from;
    f.dev = "phone";
    f.to = to;
    f.cid = "c" + std::to_string(++cid_);
    f.type = "text";
    store::AppendRequest req;
    req.id = f.id;
    req.conv = f.conv;
    req.from = from;
    req.client_id = from + ":phone";
    req.cid = f.cid;
    req.envelope = make_envelope(f, text);
    req.participants = {from, to};
    Status s = archive_->append(req);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return f.id;
  }

  httplib::Result put(const std::string& path, const std::string& token = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_->Put(path.c_str(), headers, "", "application/json");
  }

  httplib::Result del(const std::string& path, const std::string& token = "") {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_->Delete(path.c_str(), headers);
  }

  // Archives a group message as the broker would: into every current member's inbox.
  std::string send_group(const std::string& from, const std::string& gid,
                         const std::string& text = "hi") {
    auto group = archive_->group(gid);
    EXPECT_TRUE(group.is_ok() && group->has_value()) << gid;
    if (!group.is_ok() || !group->has_value()) return "";
    EnvelopeFields f;
    f.id = ids_.next();
    f.ts = clock_.now_ms();
    f.conv = topics::group_conversation(gid);
    f.from = from;
    f.dev = "phone";
    f.to = f.conv;
    f.cid = "c" + std::to_string(++cid_);
    f.type = "text";
    store::AppendRequest req;
    req.id = f.id;
    req.conv = f.conv;
    req.from = from;
    req.client_id = from + ":phone";
    req.cid = f.cid;
    req.envelope = make_envelope(f, text);
    req.participants = (*group)->members;
    Status s = archive_->append(req);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return f.id;
  }

  // ---- a broker, as far as the control topic goes (docs/protocol.md) ----

  // From now on the fake control channel applies ops to the archive the way
  // the broker does, with its permission rules and group_max_ members.
  void emulate_broker() {
    control_.set_handler([this](const json& request) { return broker(request); });
  }

  static json group_result(const store::GroupInfo& g) {
    return {{"id", g.id},
            {"name", g.name},
            {"members", g.members},
            {"admins", g.admins},
            {"created_ms", g.created_ms}};
  }

  Result<json> broker(const json& r) {
    const std::string op = r.value("op", "");
    const auto str = [&r](const char* name) { return r.value(name, std::string()); };
    const auto exists = [this](const std::string& user) {
      auto e = archive_->user_exists(user);
      return e.is_ok() && *e;
    };
    const auto is_in = [](const std::vector<std::string>& list, const std::string& v) {
      return std::find(list.begin(), list.end(), v) != list.end();
    };
    if (op == "user.add") {
      if (Status s = archive_->add_user(str("user")); !s.is_ok()) return s;
      return ok_reply();
    }
    if (op == "user.remove") {
      if (!exists(str("user"))) return not_found("no such user");
      if (Status s = archive_->remove_user(str("user")); !s.is_ok()) return s;
      return ok_reply();
    }
    if (op == "user.ban" || op == "user.unban") {
      if (!exists(str("user"))) return not_found("no such user");
      return ok_reply({{"user", str("user")}, {"banned", op == "user.ban"}});
    }
    if (op == "block.set") {  // like the broker, records any valid id
      if (!is_valid_user_id(str("peer")) || str("peer") == str("user")) {
        return invalid_argument("bad peer");
      }
      Status s = archive_->set_block(str("user"), str("peer"), r.value("blocked", false));
      if (!s.is_ok()) return s;
      return ok_reply();
    }
    if (op == "group.create") {
      store::GroupInfo g;
      g.id = "G" + std::to_string(++group_seq_);
      g.name = str("name");
      g.creator = str("by");
      g.created_ms = clock_.now_ms();
      std::set<std::string> members(r["members"].begin(), r["members"].end());
      members.insert(g.creator);
      for (const auto& m : members) {
        if (!exists(m)) return not_found("no such user: " + m);
      }
      if (members.size() > group_max_) return resource_exhausted("too many members");
      g.members.assign(members.begin(), members.end());
      g.admins = {g.creator};
      if (Status s = archive_->create_group(g, ids_.next()); !s.is_ok()) return s;
      return ok_reply(group_result(g));
    }
    if (op == "group.add" || op == "group.remove" || op == "group.admin") {
      const std::string gid = str("gid"), user = str("user"), by = str("by");
      auto found = archive_->group(gid);
      if (!found.is_ok()) return found.status();
      if (!found->has_value()) return not_found("no such group");
      store::GroupInfo g = **found;
      const bool by_admin = is_in(g.admins, by);
      Status s;
      if (op == "group.add") {
        if (!by_admin) return permission_denied("only admins add members");
        if (!exists(user)) return not_found("no such user: " + user);
        if (is_in(g.members, user)) return already_exists("already a member");
        if (g.members.size() >= group_max_) return resource_exhausted("group is full");
        s = archive_->add_member(gid, user, ids_.next());
      } else if (op == "group.remove") {
        if (!by_admin && by != user) return permission_denied("only admins remove others");
        if (!is_in(g.members, user)) return not_found("not a member");
        s = archive_->remove_member(gid, user, ids_.next());
      } else {
        if (!by_admin) return permission_denied("only admins promote");
        if (!is_in(g.members, user)) return not_found("not a member");
        s = archive_->set_admin(gid, user, true);
      }
      if (!s.is_ok()) return s;
      auto after = archive_->group(gid);
      if (!after.is_ok() || !after->has_value()) return internal_error("group vanished");
      return ok_reply(group_result(**after));
    }
    return invalid_argument("unknown op " + op);
  }

  static std::vector<std::string> ids_of(const json& messages) {
    std::vector<std::string> out;
    for (const auto& m : messages) out.push_back(m["id"].get<std::string>());
    return out;
  }

  static json claims_of(const std::string& jwt_text) {
    auto first = jwt_text.find('.');
    auto second = jwt_text.find('.', first + 1);
    auto payload = jwt::base64url_decode(jwt_text.substr(first + 1, second - first - 1));
    EXPECT_TRUE(payload.is_ok());
    return json::parse(*payload);
  }

  // Near real time: the account store checks refresh expiry with the system clock.
  FakeClock clock_{SystemClock::instance().now_ms()};
  IdGenerator ids_{clock_};
  int cid_ = 0;
  int group_seq_ = 0;
  size_t group_max_ = 8;
  std::string dir_;
  Config config_;
  std::unique_ptr<DataDir> data_;
  std::unique_ptr<store::Archive> archive_;
  std::unique_ptr<store::ArchiveReader> reader_;
  std::unique_ptr<TokenIssuer> tokens_;
  PasswordHasher hasher_;
  FakeControl control_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
  std::unique_ptr<httplib::Client> client_;
  // Set before start() to add to the server's options (push_test.cpp: the device registry).
  std::function<void(HttpOptions&)> customize_options_;
  // Set before start() to equip the service before the server is made
  // (media_test.cpp: the media library).
  std::function<void(Service&)> customize_service_;
};

}  // namespace chat::api::test_support
