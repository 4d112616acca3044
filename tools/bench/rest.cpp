#include "bench/rest.h"

#include <httplib.h>

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "chat/common/url.h"

namespace chat::bench {
namespace {

std::unique_ptr<httplib::Client> client(const std::string& base_url) {
  auto c = std::make_unique<httplib::Client>(base_url);
  c->set_connection_timeout(10, 0);
  c->set_read_timeout(60, 0);
  c->set_write_timeout(10, 0);
  c->set_keep_alive(true);
  return c;
}

std::string describe(const httplib::Result& r) {
  if (!r) return "no answer (" + httplib::to_string(r.error()) + ")";
  return std::to_string(r->status) + " " + r->body.substr(0, 200);
}

std::string mint_one(httplib::Client& c, const std::string& user, const std::string& password) {
  nlohmann::json body = {{"user", user}, {"password", password}};
  auto r = c.Post("/v1/users", body.dump(), "application/json");
  if (!r || (r->status != 201 && r->status != 409)) {
    throw RestError("POST /v1/users " + user + ": " + describe(r));
  }
  auto t = c.Post(
      "/v1/oauth/token",
      "grant_type=password&username=" + url_encode(user) + "&password=" + url_encode(password),
      "application/x-www-form-urlencoded");
  if (!t || t->status != 200) {
    throw RestError("POST /v1/oauth/token " + user + ": " + describe(t) +
                    (r->status == 409 ? " (the user existed with another password?)" : ""));
  }
  auto j = nlohmann::json::parse(t->body, nullptr, false);
  if (!j.is_object() || !j.contains("access_token") || !j["access_token"].is_string()) {
    throw RestError("POST /v1/oauth/token " + user + ": no access_token in " + t->body);
  }
  return j["access_token"].get<std::string>();
}

}  // namespace

std::vector<std::string> mint_tokens(const std::string& base_url,
                                     const std::vector<std::string>& users,
                                     const std::string& password, int threads) {
  std::vector<std::string> tokens(users.size());
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::string error;
  auto work = [&] {
    auto c = client(base_url);
    while (true) {
      size_t i = next.fetch_add(1);
      if (i >= users.size()) return;
      try {
        tokens[i] = mint_one(*c, users[i], password);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> l(mu);
        if (error.empty()) error = e.what();
        next.store(users.size());  // stop the others
        return;
      }
    }
  };
  std::vector<std::thread> pool;
  int n = std::max(1, std::min<int>(threads, static_cast<int>(users.size())));
  for (int i = 0; i < n; ++i) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (!error.empty()) throw RestError(error);
  return tokens;
}

std::optional<std::string> create_group(const std::string& base_url, const std::string& token,
                                        const std::string& name,
                                        const std::vector<std::string>& members) {
  auto c = client(base_url);
  nlohmann::json body = {{"name", name}, {"members", members}};
  httplib::Headers h{{"Authorization", "Bearer " + token}};
  auto r = c->Post("/v1/groups", h, body.dump(), "application/json");
  if (r && (r->status == 404 || r->status == 405)) return std::nullopt;
  if (!r || r->status != 201) throw RestError("POST /v1/groups: " + describe(r));
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
    throw RestError("POST /v1/groups: no id in " + r->body);
  }
  return j["id"].get<std::string>();
}

}  // namespace chat::bench
