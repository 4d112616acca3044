// FakeApi: a small in-memory stand-in for chat-api's REST surface (CONTRACT
// §2, §4), served by a real cpp-httplib server on a free port, so chatctl's
// HTTP code runs against real sockets. Only what chatctl calls is there.
#pragma once

#include <httplib.h>

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace chat::tools::testing {

class FakeApi {
 public:
  FakeApi() {
    routes();
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server_.is_running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  ~FakeApi() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  FakeApi(const FakeApi&) = delete;
  FakeApi& operator=(const FakeApi&) = delete;

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // State, guarded by mu().
  std::mutex& mu() { return mu_; }
  std::map<std::string, std::string> passwords;  // user -> password
  std::map<std::string, std::string> access;     // access token -> user
  std::map<std::string, std::string> refresh;    // refresh token -> user
  std::vector<std::string> revoked;              // refresh tokens revoked
  std::string last_device;                       // `device` of the last password grant
  int64_t token_ttl = 3600;
  int refresh_calls = 0;
  std::vector<nlohmann::json> archive;                  // envelopes, in id order
  std::vector<std::string> requests;                    // "METHOD path?query" log
  std::map<std::string, nlohmann::json> groups;         // gid -> {"id","name","members","admins"}
  std::map<std::string, std::set<std::string>> blocks;  // user -> blocked users
  // user -> device -> {"device","platform","token_hint"} (POST /v1/devices)
  std::map<std::string, std::map<std::string, nlohmann::json>> devices;
  std::string last_push_token;         // the token of the last POST /v1/devices
  bool groups_route_missing = false;   // answer 404 to GET /v1/groups (an older server)
  std::set<std::string> admins;        // users whose tokens carry the admin role
  std::set<std::string> banned;        // users banned through the admin API
  std::set<std::string> locked;        // accounts answering the lockout
  std::set<std::string> revoked_jtis;  // jtis revoked through the admin API
  std::set<std::string> connected = {"bob:phone", "bob:laptop"};  // GET /v1/admin/clients
  // The e2e key directory (docs/e2e.md): user -> device -> {"registration_id",
  // "identity_key", "signed_prekey", "prekeys": [...], "capabilities"}.
  std::map<std::string, std::map<std::string, nlohmann::json>> keys;

  void add_message(const std::string& id, const std::string& from, const std::string& to,
                   const std::string& body) {
    std::string a = from < to ? from : to, b = from < to ? to : from;
    std::lock_guard<std::mutex> lock(mu_);
    archive.push_back({{"v", 1},
                       {"id", id},
                       {"ts", 1'700'000'000'000},
                       {"conv", "dm:" + a + ":" + b},
                       {"from", from},
                       {"dev", "d"},
                       {"to", to},
                       {"cid", "c-" + id},
                       {"type", "text"},
                       {"body", body}});
  }

 private:
  static void reply(httplib::Response& res, int status, const nlohmann::json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }
  static void error(httplib::Response& res, int status, const std::string& code,
                    const std::string& message = "") {
    nlohmann::json body = {{"error", code}};
    if (!message.empty()) body["message"] = message;
    reply(res, status, body);
  }

  // The user of a valid bearer token, or "" (after answering 401). Needs mu_.
  std::string authenticate(const httplib::Request& req, httplib::Response& res) {
    std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.rfind(prefix, 0) == 0) {
      auto it = access.find(header.substr(prefix.size()));
      if (it != access.end()) return it->second;
    }
    res.set_header("WWW-Authenticate", "Bearer");
    error(res, 401, "unauthorized", "a valid bearer token is required");
    return "";
  }

  nlohmann::json grant(const std::string& user) {
    std::string at = "at-" + std::to_string(++serial_) + "-" + user;
    std::string rt = "rt-" + std::to_string(++serial_) + "-" + user;
    access[at] = user;
    refresh[rt] = user;
    return {{"access_token", at},
            {"token_type", "Bearer"},
            {"expires_in", token_ttl},
            {"refresh_token", rt}};
  }

  static bool has(const nlohmann::json& list, const std::string& v) {
    for (const auto& x : list) {
      if (x == v) return true;
    }
    return false;
  }
  static void erase_value(nlohmann::json& list, const std::string& v) {
    nlohmann::json kept = nlohmann::json::array();
    for (const auto& x : list) {
      if (x != v) kept.push_back(x);
    }
    list = kept;
  }

  void group_routes() {
    server_.Post("/v1/groups", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string user = authenticate(req, res);
      if (user.empty()) return;
      auto j = nlohmann::json::parse(req.body, nullptr, false);
      if (!j.is_object() || !j["name"].is_string() || j["name"].get<std::string>().empty())
        return error(res, 400, "invalid_argument", "name required");
      nlohmann::json members = nlohmann::json::array({user});
      if (j.contains("members")) {
        for (const auto& m : j["members"]) {
          if (!m.is_string()) return error(res, 400, "invalid_argument", "members must be ids");
          if (!passwords.count(m.get<std::string>()))
            return error(res, 404, "not_found", "no such user: " + m.get<std::string>());
          if (!has(members, m)) members.push_back(m);
        }
      }
      std::string gid = "G" + std::to_string(groups.size() + 1);
      groups[gid] = {{"id", gid}, {"name", j["name"]}, {"members", members}, {"admins", {user}}};
      reply(res, 201, groups[gid]);
    });
    server_.Get("/v1/groups", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string user = authenticate(req, res);
      if (user.empty()) return;
      if (groups_route_missing) return error(res, 404, "not_found");
      nlohmann::json list = nlohmann::json::array();
      for (const auto& [gid, g] : groups) {
        if (has(g["members"], user)) list.push_back(g);
      }
      reply(res, 200, {{"groups", list}});
    });
    server_.Get(R"(/v1/groups/([^/]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  std::lock_guard<std::mutex> lock(mu_);
                  std::string user = authenticate(req, res);
                  if (user.empty()) return;
                  auto it = groups.find(req.matches[1]);
                  if (it == groups.end()) return error(res, 404, "not_found", "no such group");
                  if (!has(it->second["members"], user))
                    return error(res, 403, "permission_denied", "members only");
                  reply(res, 200, it->second);
                });
    auto change = [this](const std::string& list, bool add) {
      return [this, list, add](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        std::string me = authenticate(req, res);
        if (me.empty()) return;
        auto it = groups.find(req.matches[1]);
        if (it == groups.end()) return error(res, 404, "not_found", "no such group");
        std::string user = req.matches[2];
        auto& g = it->second;
        bool admin = has(g["admins"], me);
        if (!admin && !(list == "members" && !add && user == me))
          return error(res, 403, "permission_denied", "only group admins may do that");
        if (add) {
          if (list == "admins" && !has(g["members"], user))
            return error(res, 404, "not_found", user + " is not a member");
          if (list == "members" && !passwords.count(user))
            return error(res, 404, "not_found", "no such user: " + user);
          if (has(g[list], user)) return error(res, 409, "already_exists", user + " is already in");
          g[list].push_back(user);
        } else {
          if (!has(g["members"], user))
            return error(res, 404, "not_found", user + " is not a member");
          erase_value(g["members"], user);
          erase_value(g["admins"], user);
        }
        res.status = 204;
      };
    };
    server_.Put(R"(/v1/groups/([^/]+)/members/([^/]+))", change("members", true));
    server_.Put(R"(/v1/groups/([^/]+)/admins/([^/]+))", change("admins", true));
    server_.Delete(R"(/v1/groups/([^/]+)/members/([^/]+))", change("members", false));

    auto block = [this](bool on) {
      return [this, on](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        std::string me = authenticate(req, res);
        if (me.empty()) return;
        std::string peer = req.matches[1];
        if (!passwords.count(peer)) return error(res, 404, "not_found", "no such user: " + peer);
        if (on) {
          blocks[me].insert(peer);
        } else {
          blocks[me].erase(peer);
        }
        res.status = 204;
      };
    };
    server_.Post(R"(/v1/blocks/([^/]+))", block(true));
    server_.Delete(R"(/v1/blocks/([^/]+))", block(false));
    server_.Get("/v1/blocks", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string me = authenticate(req, res);
      if (me.empty()) return;
      nlohmann::json list = nlohmann::json::array();
      for (const auto& peer : blocks[me]) list.push_back(peer);
      reply(res, 200, {{"blocked", list}});
    });

    // Push targets (docs/api.md): the caller's own devices.
    server_.Post("/v1/devices", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string me = authenticate(req, res);
      if (me.empty()) return;
      auto body = nlohmann::json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("device") || !body.contains("token")) {
        return error(res, 400, "invalid_argument", "device, platform and token required");
      }
      const std::string device = body["device"], token = body["token"];
      last_push_token = token;
      nlohmann::json d = {{"device", device},
                          {"platform", body.value("platform", "")},
                          {"token_hint", "..." + token.substr(token.size() - 3)},
                          {"created_ms", 1}};
      const bool created = devices[me].count(device) == 0;
      devices[me][device] = d;
      reply(res, created ? 201 : 200, d);
    });
    server_.Get("/v1/devices", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string me = authenticate(req, res);
      if (me.empty()) return;
      nlohmann::json list = nlohmann::json::array();
      for (const auto& [id, d] : devices[me]) list.push_back(d);
      reply(res, 200, {{"devices", list}});
    });
    server_.Delete(R"(/v1/devices/([^/]+))",
                   [this](const httplib::Request& req, httplib::Response& res) {
                     std::lock_guard<std::mutex> lock(mu_);
                     std::string me = authenticate(req, res);
                     if (me.empty()) return;
                     if (devices[me].erase(req.matches[1]) == 0) {
                       return error(res, 404, "not_found", "this device has no push target");
                     }
                     res.status = 204;
                   });
  }

  // The admin API (docs/api.md "Admin"): 403 for non-admins.
  void admin_routes() {
    // The admin's user, or "" after answering 401/403. Needs mu_.
    auto admin = [this](const httplib::Request& req, httplib::Response& res) -> std::string {
      std::string user = authenticate(req, res);
      if (user.empty()) return "";
      if (!admins.count(user)) {
        error(res, 403, "permission_denied", "the admin API needs the admin role");
        return "";
      }
      return user;
    };
    server_.Get("/v1/admin/users",
                [this, admin](const httplib::Request& req, httplib::Response& res) {
                  std::lock_guard<std::mutex> lock(mu_);
                  if (admin(req, res).empty()) return;
                  nlohmann::json users = nlohmann::json::array();
                  for (const auto& [user, password] : passwords) {
                    users.push_back({{"user", user},
                                     {"created_ms", 1'700'000'000'000},
                                     {"admin", admins.count(user) > 0},
                                     {"banned", banned.count(user) > 0},
                                     {"deleted", false}});
                  }
                  reply(res, 200, {{"users", users}, {"next", nullptr}});
                });
    server_.Get("/v1/admin/clients",
                [this, admin](const httplib::Request& req, httplib::Response& res) {
                  std::lock_guard<std::mutex> lock(mu_);
                  if (admin(req, res).empty()) return;
                  nlohmann::json clients = nlohmann::json::array();
                  for (const auto& c : connected) {
                    clients.push_back({{"clientid", c},
                                       {"user", c.substr(0, c.find(':'))},
                                       {"device", c.substr(c.find(':') + 1)},
                                       {"connected_ms", 1'700'000'000'000}});
                  }
                  reply(res, 200, {{"clients", clients}});
                });
    server_.Get("/v1/admin/stats",
                [this, admin](const httplib::Request& req, httplib::Response& res) {
                  std::lock_guard<std::mutex> lock(mu_);
                  if (admin(req, res).empty()) return;
                  reply(res, 200,
                        {{"users", passwords.size()},
                         {"banned", banned.size()},
                         {"deleted", 0},
                         {"connected_clients", connected.size()},
                         {"broker", nullptr}});
                });
    auto ban = [this, admin](bool on) {
      return [this, admin, on](const httplib::Request& req, httplib::Response& res) {
        std::lock_guard<std::mutex> lock(mu_);
        if (admin(req, res).empty()) return;
        std::string user = req.matches[1].str();
        if (!passwords.count(user)) return error(res, 404, "not_found", "no such user");
        if (on) {
          banned.insert(user);
        } else {
          banned.erase(user);
        }
        res.status = 204;
      };
    };
    server_.Post(R"(/v1/admin/users/([^/]+)/ban)", ban(true));
    server_.Delete(R"(/v1/admin/users/([^/]+)/ban)", ban(false));
    // Revoking "jti-<user>-<device>" closes <user>:<device> when connected.
    server_.Post(R"(/v1/admin/tokens/([^/]+)/revoke)", [this, admin](const httplib::Request& req,
                                                                     httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      if (admin(req, res).empty()) return;
      std::string jti = req.matches[1].str();
      revoked_jtis.insert(jti);
      nlohmann::json closed = nlohmann::json::array();
      for (auto it = connected.begin(); it != connected.end();) {
        std::string c = *it;
        if ("jti-" + c.replace(c.find(':'), 1, "-") == jti) {
          closed.push_back(*it);
          it = connected.erase(it);
        } else {
          ++it;
        }
      }
      reply(res, 200, {{"jti", jti}, {"closed", closed}, {"refresh_tokens_revoked", 1}});
    });
    server_.Post(R"(/v1/admin/clients/([^/]+)/kick)", [this, admin](const httplib::Request& req,
                                                                    httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      if (admin(req, res).empty()) return;
      if (connected.erase(req.matches[1].str()) == 0) {
        return error(res, 404, "not_found", req.matches[1].str() + " is not connected");
      }
      res.status = 204;
    });
  }

  // The key directory, without rate limits or signature checks.
  void key_routes() {
    server_.Put("/v1/keys", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string me = authenticate(req, res);
      if (me.empty()) return;
      auto j = nlohmann::json::parse(req.body, nullptr, false);
      if (!j.is_object() || !j["device"].is_string())
        return error(res, 400, "invalid_argument", "device required");
      const std::string device = j["device"];
      auto& d = keys[me][device];
      const bool created = d.is_null();
      if (created) {
        if (!j.contains("identity_key") || !j.contains("signed_prekey")) {
          keys[me].erase(device);
          return error(res, 400, "invalid_argument", "identity_key required");
        }
        d = {{"registration_id", j["registration_id"]},
             {"identity_key", j["identity_key"]},
             {"prekeys", nlohmann::json::array()},
             {"capabilities", j.value("capabilities", nlohmann::json::array())}};
      } else if (j.contains("identity_key") && j["identity_key"] != d["identity_key"]) {
        return error(res, 409, "identity_mismatch", "another identity");
      }
      if (j.contains("signed_prekey")) d["signed_prekey"] = j["signed_prekey"];
      for (const auto& p : j.value("prekeys", nlohmann::json::array())) d["prekeys"].push_back(p);
      reply(res, created ? 201 : 200,
            {{"device", device},
             {"count", d["prekeys"].size()},
             {"signed_prekey_id", d["signed_prekey"]["id"]}});
    });
    server_.Get("/v1/keys/count", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string me = authenticate(req, res);
      if (me.empty()) return;
      auto it = keys[me].find(req.get_param_value("device"));
      if (it == keys[me].end()) return error(res, 404, "not_found", "no keys");
      reply(res, 200,
            {{"device", it->first},
             {"count", it->second["prekeys"].size()},
             {"signed_prekey_id", it->second["signed_prekey"]["id"]}});
    });
    server_.Get(R"(/v1/users/([^/]+)/devices)",
                [this](const httplib::Request& req, httplib::Response& res) {
                  std::lock_guard<std::mutex> lock(mu_);
                  if (authenticate(req, res).empty()) return;
                  std::string user = req.matches[1];
                  if (!passwords.count(user)) return error(res, 404, "not_found", "no such user");
                  nlohmann::json list = nlohmann::json::array();
                  for (const auto& [device, d] : keys[user]) {
                    list.push_back({{"device", device},
                                    {"registration_id", d["registration_id"]},
                                    {"identity_key", d["identity_key"]},
                                    {"capabilities", d["capabilities"]},
                                    {"created", 1}});
                  }
                  reply(res, 200, {{"user", user}, {"devices", list}});
                });
    server_.Get(R"(/v1/keys/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      if (authenticate(req, res).empty()) return;
      std::string user = req.matches[1];
      if (!passwords.count(user)) return error(res, 404, "not_found", "no such user");
      std::string only = req.get_param_value("device");
      nlohmann::json list = nlohmann::json::array();
      for (auto& [device, d] : keys[user]) {
        if (!only.empty() && device != only) continue;
        nlohmann::json prekey;  // null once used up
        if (!d["prekeys"].empty()) {
          prekey = d["prekeys"][0];
          d["prekeys"].erase(0);
        }
        list.push_back({{"device", device},
                        {"registration_id", d["registration_id"]},
                        {"identity_key", d["identity_key"]},
                        {"signed_prekey", d["signed_prekey"]},
                        {"prekey", prekey},
                        {"capabilities", d["capabilities"]}});
      }
      reply(res, 200, {{"user", user}, {"devices", list}});
    });
    server_.Delete(R"(/v1/keys/([^/]+))",
                   [this](const httplib::Request& req, httplib::Response& res) {
                     std::lock_guard<std::mutex> lock(mu_);
                     std::string me = authenticate(req, res);
                     if (me.empty()) return;
                     if (keys[me].erase(req.matches[1]) == 0)
                       return error(res, 404, "not_found", "no such device");
                     res.status = 204;
                   });
  }

  void routes() {
    group_routes();
    admin_routes();
    key_routes();
    // Logged before routing: cpp-httplib calls its logger only after the
    // response is written, when the client may already be looking at the log.
    server_.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string query;
      for (const auto& [k, v] : req.params) query += (query.empty() ? "?" : "&") + k + "=" + v;
      requests.push_back(req.method + " " + req.path + (req.method == "GET" ? query : ""));
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server_.Post("/v1/users", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      auto j = nlohmann::json::parse(req.body, nullptr, false);
      if (!j.is_object() || !j["user"].is_string() || !j["password"].is_string()) {
        return error(res, 400, "invalid_request", "user and password are required");
      }
      std::string user = j["user"], password = j["password"];
      if (password.size() < 8) return error(res, 400, "invalid_password", "at least 8 characters");
      if (passwords.count(user)) return error(res, 409, "user_exists", "the user id is taken");
      passwords[user] = password;
      reply(res, 201, {{"user", user}});
    });
    server_.Post("/v1/oauth/token", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string type = req.get_param_value("grant_type");
      if (type == "password") {
        std::string user = req.get_param_value("username");
        if (locked.count(user)) {  // chat-api's lockout answer (docs/api.md)
          res.set_header("Retry-After", "4");
          return reply(
              res, 400,
              {{"error", "invalid_grant"},
               {"error_description", "too many failed logins for this account; retry after 4 s"},
               {"message", "too many failed logins for this account; retry after 4 s"}});
        }
        auto it = passwords.find(user);
        if (it == passwords.end() || it->second != req.get_param_value("password")) {
          return error(res, 400, "invalid_grant");
        }
        last_device = req.get_param_value("device");
        return reply(res, 200, grant(user));
      }
      if (type == "refresh_token") {
        ++refresh_calls;
        auto it = refresh.find(req.get_param_value("refresh_token"));
        if (it == refresh.end()) return error(res, 400, "invalid_grant");
        std::string user = it->second;
        refresh.erase(it);  // rotation: the old one stops working
        return reply(res, 200, grant(user));
      }
      error(res, 400, "unsupported_grant_type");
    });
    server_.Post("/v1/oauth/revoke", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string token = req.get_param_value("token");
      revoked.push_back(token);
      refresh.erase(token);
      res.status = 200;
    });
    server_.Get("/v1/conversations", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string user = authenticate(req, res);
      if (user.empty()) return;
      nlohmann::json list = nlohmann::json::array();
      if (!archive.empty())
        list.push_back({{"conv", archive.back()["conv"]}, {"last", archive.back()}, {"unread", 1}});
      reply(res, 200, {{"conversations", list}});
    });
    server_.Get(R"(/v1/conversations/([^/]+)/messages)",
                [this](const httplib::Request& req, httplib::Response& res) {
                  std::lock_guard<std::mutex> lock(mu_);
                  std::string user = authenticate(req, res);
                  if (user.empty()) return;
                  std::string conv = req.matches[1];
                  if (conv.find(":" + user) == std::string::npos)
                    return error(res, 403, "forbidden", "not a participant");
                  nlohmann::json page = nlohmann::json::array();
                  for (const auto& m : archive) {
                    if (m["conv"] == conv) page.push_back(m);
                  }
                  reply(res, 200, {{"messages", page}, {"next", nullptr}});
                });
    server_.Get("/v1/sync", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      std::string user = authenticate(req, res);
      if (user.empty()) return;
      std::string since = req.get_param_value("since");
      size_t limit = req.has_param("limit") ? std::stoul(req.get_param_value("limit")) : 500;
      nlohmann::json page = nlohmann::json::array();
      for (const auto& m : archive) {
        if (page.size() >= limit) break;
        if (m["id"].get<std::string>() > since) page.push_back(m);
      }
      nlohmann::json next = page.empty() ? nlohmann::json() : page.back()["id"];
      reply(res, 200, {{"messages", page}, {"next", next}});
    });
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  int serial_ = 0;
  std::mutex mu_;
};

}  // namespace chat::tools::testing
