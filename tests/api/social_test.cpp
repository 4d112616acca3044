// chat-api's REST edge for groups, blocks, abuse reports and account deletion
// (see http_fixture.h): routes, their error mapping, and group history
// limited to membership periods.
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "http_fixture.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)

class SocialTest : public HttpServerTest {
 protected:
  // Starts everything with the broker emulated and signs up the users.
  void start_with(const std::vector<std::string>& users) {
    start();
    emulate_broker();
    for (const auto& u : users) tokens[u] = token_for(u);
  }

  // POST /v1/groups that must succeed; returns the group id.
  std::string create_group(const std::string& by, const std::vector<std::string>& members,
                           const std::string& name = "Climbing") {
    auto r = post_json("/v1/groups", {{"name", name}, {"members", members}}, tokens[by]);
    EXPECT_TRUE(r);
    if (!r) return "";
    EXPECT_EQ(r->status, 201) << r->body;
    return body_of(r).value("id", "");
  }

  int status_of(const httplib::Result& r) { return r ? r->status : -1; }

  std::map<std::string, std::string> tokens;
};

// ---- groups ----

TEST_F(SocialTest, CreateGroupAsksTheBrokerAndAnswersTheGroup) {
  start_with({"alice", "bob", "carol", "dave"});
  control_.clear_requests();
  auto r = post_json("/v1/groups",
                     {{"name", "Climbing"}, {"members", {"carol", "bob", "carol", "alice"}}},
                     tokens["alice"]);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  json g = body_of(r);
  const std::string gid = g["id"];
  EXPECT_TRUE(is_valid_group_id(gid));
  EXPECT_EQ(g["name"], "Climbing");
  EXPECT_EQ(g["members"], json({"alice", "bob", "carol"}));
  EXPECT_EQ(g["admins"], json({"alice"}));
  EXPECT_TRUE(g["created_ms"].is_number_integer());
  // Distinct, sorted, without the creator (the broker adds `by` itself).
  EXPECT_EQ(control_.requests(), std::vector<json>({{{"op", "group.create"},
                                                     {"name", "Climbing"},
                                                     {"members", {"bob", "carol"}},
                                                     {"by", "alice"}}}));

  // Members read it; others do not.
  r = get("/v1/groups/" + gid, tokens["bob"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r), g);
  r = get("/v1/groups/" + gid, tokens["dave"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(body_of(r)["error"], "permission_denied");
  EXPECT_EQ(status_of(get("/v1/groups/Nope", tokens["alice"])), 404);
  EXPECT_EQ(status_of(get("/v1/groups/bad%21id", tokens["alice"])), 400);
  EXPECT_EQ(status_of(get("/v1/groups/" + gid)), 401);

  // GET /v1/groups: the caller's current groups.
  std::string solo = create_group("bob", {});
  r = get("/v1/groups", tokens["bob"]);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json list = body_of(r)["groups"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0], g);  // by id: G1, G2
  EXPECT_EQ(list[1]["id"], solo);
  EXPECT_EQ(list[1]["members"], json({"bob"}));
  EXPECT_EQ(list[1]["admins"], json({"bob"}));
  r = get("/v1/groups", tokens["dave"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r), json({{"groups", json::array()}}));
}

TEST_F(SocialTest, CreateGroupValidatesBeforeAskingTheBroker) {
  start_with({"alice", "bob"});
  control_.clear_requests();
  std::vector<std::string> many;
  for (int i = 0; i < 1025; ++i) many.push_back("u" + std::to_string(i));
  std::string e101;
  for (int i = 0; i < 101; ++i) e101 += "\xc3\xa9";
  const json bad[] = {
      json::object(),
      {{"members", {"bob"}}},
      {{"name", 7}, {"members", {"bob"}}},
      {{"name", ""}, {"members", {"bob"}}},
      {{"name", std::string(101, 'x')}, {"members", {"bob"}}},
      {{"name", e101}, {"members", {"bob"}}},
      {{"name", "two\nlines"}, {"members", {"bob"}}},
      {{"name", "Climbing"}, {"members", "bob"}},
      {{"name", "Climbing"}, {"members", {"bob", 3}}},
      {{"name", "Climbing"}, {"members", {"Bob"}}},
      {{"name", "Climbing"}, {"members", {""}}},
      {{"name", "Climbing"}, {"members", many}},
  };
  for (const json& body : bad) {
    auto r = post_json("/v1/groups", body, tokens["alice"]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body.dump().substr(0, 200);
    EXPECT_EQ(body_of(r)["error"], "invalid_argument");
  }
  auto r = client_->Post("/v1/groups", {{"Authorization", "Bearer " + tokens["alice"]}}, "[1]",
                         "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_TRUE(control_.requests().empty());
  EXPECT_EQ(status_of(post_json("/v1/groups", {{"name", "x"}, {"members", json::array()}})), 401);

  // Bounds that pass: 100 code points, 1024 distinct members (repeats count once).
  std::string e100;
  for (int i = 0; i < 100; ++i) e100 += "\xc3\xa9";
  control_.script(
      ok_reply({{"id", "Gx"}, {"name", e100}, {"members", {"alice"}}, {"admins", {"alice"}}}));
  r = post_json("/v1/groups", {{"name", e100}}, tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(control_.last_request()["members"], json::array());
  many.pop_back();
  many.push_back("u0");
  control_.script(
      ok_reply({{"id", "Gy"}, {"name", "big"}, {"members", {"alice"}}, {"admins", {"alice"}}}));
  r = post_json("/v1/groups", {{"name", "big"}, {"members", many}}, tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(control_.last_request()["members"].size(), 1024u);
}

TEST_F(SocialTest, CreateGroupMapsBrokerErrors) {
  start_with({"alice", "bob"});
  // An unknown member: 400 naming the user (the emulated broker refuses it).
  auto r = post_json("/v1/groups", {{"name", "x"}, {"members", {"bob", "zed"}}}, tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(body_of(r)["error"], "invalid_argument");
  EXPECT_NE(body_of(r)["message"].get<std::string>().find("zed"), std::string::npos) << r->body;

  // Too many members for the broker: 409 group_full.
  group_max_ = 2;
  r = post_json("/v1/groups", {{"name", "x"}, {"members", {"bob"}}}, tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  control_.script(resource_exhausted("at most 2 members"));
  r = post_json("/v1/groups", {{"name", "x"}, {"members", {"bob"}}}, tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(body_of(r)["error"], "group_full");

  const std::pair<Status, int> cases[] = {
      {unavailable("broker down"), 503},
      {invalid_argument("bad name"), 400},
      {permission_denied("banned"), 403},
      {internal_error("boom"), 500},
  };
  for (const auto& [status, http] : cases) {
    control_.script(status);
    r = post_json("/v1/groups", {{"name", "x"}, {"members", {"bob"}}}, tokens["alice"]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, http) << status.to_string();
  }
  // A success without a usable group is the server's failure.
  control_.script(ok_reply());
  EXPECT_EQ(status_of(post_json("/v1/groups", {{"name", "x"}}, tokens["alice"])), 500);
}

TEST_F(SocialTest, MembershipChangesGoThroughTheBroker) {
  start_with({"alice", "bob", "carol", "dave", "erin"});
  std::string gid = create_group("alice", {"bob"});
  const std::string base = "/v1/groups/" + gid;
  control_.clear_requests();

  // An admin adds; the group shows it at once.
  auto r = put(base + "/members/carol", tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  EXPECT_EQ(control_.last_request(),
            json({{"op", "group.add"}, {"gid", gid}, {"user", "carol"}, {"by", "alice"}}));
  r = get(base, tokens["carol"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["members"], json({"alice", "bob", "carol"}));

  // Not an admin: 403. Already a member: 409. Unknown user: 404.
  r = put(base + "/members/dave", tokens["bob"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(body_of(r)["error"], "permission_denied");
  r = put(base + "/members/carol", tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(body_of(r)["error"], "already_exists");
  EXPECT_EQ(status_of(put(base + "/members/zed", tokens["alice"])), 404);
  EXPECT_EQ(status_of(put("/v1/groups/Gnone/members/dave", tokens["alice"])), 404);

  // Promotion.
  EXPECT_EQ(status_of(put(base + "/admins/bob", tokens["alice"])), 204);
  EXPECT_EQ(control_.last_request(),
            json({{"op", "group.admin"}, {"gid", gid}, {"user", "bob"}, {"by", "alice"}}));
  EXPECT_EQ(status_of(put(base + "/admins/dave", tokens["alice"])), 404);  // not a member
  EXPECT_EQ(status_of(put(base + "/admins/carol", tokens["carol"])), 403);
  r = get(base, tokens["alice"]);
  EXPECT_EQ(body_of(r)["admins"], json({"alice", "bob"}));

  // The group is full at group_max_ members: 409 group_full.
  group_max_ = 3;
  r = put(base + "/members/dave", tokens["bob"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(body_of(r)["error"], "group_full");
  group_max_ = 8;

  // Removal by an admin; leaving by oneself; removing another as non-admin is 403.
  EXPECT_EQ(status_of(del(base + "/members/alice", tokens["carol"])), 403);
  EXPECT_EQ(status_of(del(base + "/members/carol", tokens["bob"])), 204);
  EXPECT_EQ(control_.last_request(),
            json({{"op", "group.remove"}, {"gid", gid}, {"user", "carol"}, {"by", "bob"}}));
  EXPECT_EQ(status_of(del(base + "/members/carol", tokens["bob"])), 404);    // no longer a member
  EXPECT_EQ(status_of(del(base + "/members/alice", tokens["alice"])), 204);  // leaves
  EXPECT_EQ(control_.last_request(),
            json({{"op", "group.remove"}, {"gid", gid}, {"user", "alice"}, {"by", "alice"}}));
  r = get(base, tokens["bob"]);
  EXPECT_EQ(body_of(r)["members"], json({"bob"}));
  EXPECT_EQ(status_of(get(base, tokens["alice"])), 403);  // former members do not read the group
  r = get("/v1/groups", tokens["alice"]);
  EXPECT_EQ(body_of(r)["groups"], json::array());

  // Malformed ids never reach the broker.
  control_.clear_requests();
  EXPECT_EQ(status_of(put("/v1/groups/bad%21/members/dave", tokens["bob"])), 400);
  EXPECT_EQ(status_of(put(base + "/members/Dave", tokens["bob"])), 400);
  EXPECT_EQ(status_of(put(base + "/admins/-x", tokens["bob"])), 400);
  EXPECT_EQ(status_of(del(base + "/members/" + std::string(33, 'a'), tokens["bob"])), 400);
  EXPECT_EQ(status_of(put(base + "/members/dave")), 401);
  EXPECT_EQ(status_of(del(base + "/members/dave")), 401);
  EXPECT_TRUE(control_.requests().empty());
}

TEST_F(SocialTest, MembershipRoutesMapEveryBrokerError) {
  start_with({"alice"});
  const std::pair<Status, int> cases[] = {
      {permission_denied("not an admin"), 403}, {not_found("no such group"), 404},
      {already_exists("member"), 409},          {invalid_argument("bad"), 400},
      {unavailable("timed out"), 503},          {internal_error("boom"), 500},
  };
  const std::pair<std::string, std::string> routes[] = {
      {"PUT", "/v1/groups/G1/members/bob"},
      {"PUT", "/v1/groups/G1/admins/bob"},
      {"DELETE", "/v1/groups/G1/members/bob"},
  };
  for (const auto& [method, path] : routes) {
    for (const auto& [status, http] : cases) {
      control_.script(status);
      auto r = method == "PUT" ? put(path, tokens["alice"]) : del(path, tokens["alice"]);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, http) << method << " " << path << " " << status.to_string();
      EXPECT_EQ(body_of(r)["error"], status_code_name(status.code()));
    }
    control_.script(resource_exhausted("full"));
    auto r = method == "PUT" ? put(path, tokens["alice"]) : del(path, tokens["alice"]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 409);
    EXPECT_EQ(body_of(r)["error"], "group_full");
  }
  control_.set_connected(false);
  control_.fail_with(unavailable("not connected"));
  EXPECT_EQ(status_of(put("/v1/groups/G1/members/bob", tokens["alice"])), 503);
}

TEST_F(SocialTest, GroupHistoryIsLimitedToMembershipPeriods) {
  start_with({"alice", "bob", "carol", "dave"});
  std::string gid = create_group("alice", {"bob"});
  const std::string base = "/v1/groups/" + gid;
  const std::string history = "/v1/conversations/g:" + gid + "/messages";

  std::string m1 = send_group("alice", gid, "one");
  ASSERT_EQ(status_of(put(base + "/members/carol", tokens["alice"])), 204);
  std::string m2 = send_group("bob", gid, "two");
  std::string m3 = send_group("carol", gid, "three");
  ASSERT_EQ(status_of(del(base + "/members/bob", tokens["alice"])), 204);
  std::string m4 = send_group("alice", gid, "four");
  ASSERT_EQ(status_of(put(base + "/members/bob", tokens["alice"])), 204);
  std::string m5 = send_group("bob", gid, "five");
  ASSERT_EQ(status_of(del(base + "/members/carol", tokens["carol"])), 204);  // leaves
  std::string m6 = send_group("alice", gid, "six");

  const auto page = [&](const std::string& user, const std::string& query = "") {
    auto r = get(history + query, tokens[user]);
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 200) << user << " " << r->body;
    return body_of(r);
  };
  using Ids = std::vector<std::string>;
  EXPECT_EQ(ids_of(page("alice")["messages"]), Ids({m1, m2, m3, m4, m5, m6}));
  EXPECT_EQ(ids_of(page("bob")["messages"]), Ids({m1, m2, m3, m5, m6}));
  EXPECT_EQ(ids_of(page("carol")["messages"]), Ids({m2, m3, m4, m5}));
  auto r = get(history, tokens["dave"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(body_of(r)["error"], "permission_denied");
  EXPECT_EQ(status_of(get("/v1/conversations/g:Gnone/messages", tokens["alice"])), 403);

  // Paging skips what the member may not see, in both directions.
  json p = page("bob", "?limit=2");
  EXPECT_EQ(ids_of(p["messages"]), Ids({m5, m6}));
  EXPECT_EQ(p["next"], m5);
  EXPECT_EQ(p["has_more"], true);
  p = page("bob", "?limit=2&before=" + m5);
  EXPECT_EQ(ids_of(p["messages"]), Ids({m2, m3}));
  EXPECT_EQ(p["next"], m2);
  p = page("bob", "?limit=2&before=" + m2);
  EXPECT_EQ(ids_of(p["messages"]), Ids({m1}));
  EXPECT_TRUE(p["next"].is_null());
  p = page("bob", "?limit=2&after=" + m1);
  EXPECT_EQ(ids_of(p["messages"]), Ids({m2, m3}));
  EXPECT_EQ(p["next"], m3);
  p = page("bob", "?limit=2&after=" + m3);
  EXPECT_EQ(ids_of(p["messages"]), Ids({m5, m6}));
  EXPECT_TRUE(p["next"].is_null());
  // A former member pages their periods too, nothing after leaving.
  p = page("carol", "?after=" + m5);
  EXPECT_TRUE(p["messages"].empty());
  p = page("carol", "?limit=1&before=" + m6);
  EXPECT_EQ(ids_of(p["messages"]), Ids({m5}));

  // Sync and the conversation list carry what the broker wrote for each member.
  r = get("/v1/sync", tokens["carol"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(ids_of(body_of(r)["messages"]), Ids({m2, m3, m4, m5}));
  r = get("/v1/conversations", tokens["bob"]);
  ASSERT_TRUE(r);
  json convs = body_of(r)["conversations"];
  ASSERT_EQ(convs.size(), 1u);
  EXPECT_EQ(convs[0]["conv"], "g:" + gid);
  EXPECT_EQ(convs[0]["last"]["id"], m6);
}

// ---- blocks ----

TEST_F(SocialTest, BlocksGoThroughTheBrokerAndListFromTheArchive) {
  start_with({"alice", "bob", "carol"});
  control_.clear_requests();
  auto r = client_->Post("/v1/blocks/bob", {{"Authorization", "Bearer " + tokens["alice"]}}, "",
                         "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  EXPECT_EQ(control_.last_request(),
            json({{"op", "block.set"}, {"user", "alice"}, {"peer", "bob"}, {"blocked", true}}));
  ASSERT_EQ(
      status_of(client_->Post("/v1/blocks/carol", {{"Authorization", "Bearer " + tokens["alice"]}},
                              "", "application/json")),
      204);
  r = get("/v1/blocks", tokens["alice"]);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r), json({{"blocked", {"bob", "carol"}}}));
  r = get("/v1/blocks", tokens["bob"]);
  EXPECT_EQ(body_of(r), json({{"blocked", json::array()}}));

  r = del("/v1/blocks/bob", tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(control_.last_request(),
            json({{"op", "block.set"}, {"user", "alice"}, {"peer", "bob"}, {"blocked", false}}));
  r = get("/v1/blocks", tokens["alice"]);
  EXPECT_EQ(body_of(r), json({{"blocked", {"carol"}}}));

  // Errors: yourself or a malformed id is 400 (never asked), unknown 404, broker down 503.
  control_.clear_requests();
  const auto block = [&](const std::string& who) {
    return client_->Post(("/v1/blocks/" + who).c_str(),
                         {{"Authorization", "Bearer " + tokens["alice"]}}, "", "application/json");
  };
  EXPECT_EQ(status_of(block("alice")), 400);
  EXPECT_EQ(status_of(block("Bob")), 400);
  EXPECT_EQ(status_of(del("/v1/blocks/alice", tokens["alice"])), 400);
  EXPECT_TRUE(control_.requests().empty());
  r = block("zed");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(body_of(r)["error"], "not_found");
  EXPECT_EQ(status_of(del("/v1/blocks/zed", tokens["alice"])), 404);
  EXPECT_TRUE(control_.requests().empty());
  control_.script(not_found("no such user"));
  EXPECT_EQ(status_of(block("bob")), 404);  // the broker's word counts too
  // A blocked user who no longer exists can still be unblocked.
  ASSERT_TRUE(archive_->remove_user("carol").is_ok());
  EXPECT_EQ(status_of(block("carol")), 404);
  EXPECT_EQ(status_of(del("/v1/blocks/carol", tokens["alice"])), 204);
  r = get("/v1/blocks", tokens["alice"]);
  EXPECT_EQ(body_of(r), json({{"blocked", json::array()}}));
  control_.script(unavailable("timed out"));
  EXPECT_EQ(status_of(block("bob")), 503);
  EXPECT_EQ(status_of(get("/v1/blocks")), 401);
  EXPECT_EQ(status_of(del("/v1/blocks/bob")), 401);
}

// ---- reports ----

TEST_F(SocialTest, ReportsAreValidatedAndStored) {
  start_with({"alice", "mallory"});
  control_.clear_requests();
  std::string m1 = send("mallory", "alice", "spam");
  std::string m2 = send("mallory", "alice", "more spam");
  auto r = post_json("/v1/reports",
                     {{"user", "mallory"}, {"ids", {m1, m2, m1}}, {"reason", "spam \xc3\xa9"}},
                     tokens["alice"]);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const std::string first = body_of(r)["id"];
  EXPECT_EQ(first.size(), 20u);
  clock_.advance_ms(5);
  r = post_json("/v1/reports", {{"user", "mallory"}, {"ids", {m2}}, {"reason", "again"}},
                tokens["alice"]);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const std::string second = body_of(r)["id"];
  EXPECT_GT(second, first);                  // ids sort by time
  EXPECT_TRUE(control_.requests().empty());  // the API's own database, not the broker

  auto stored = data_->accounts->reports(10);
  ASSERT_TRUE(stored.is_ok()) << stored.status().to_string();
  ASSERT_EQ(stored->size(), 2u);
  const store::Report& older = (*stored)[1];
  EXPECT_EQ((*stored)[0].id, second);
  EXPECT_EQ(older.id, first);
  EXPECT_EQ(older.reporter, "alice");
  EXPECT_EQ(older.user, "mallory");
  EXPECT_EQ(older.ids, std::vector<std::string>({m1, m2}));  // repeats once
  EXPECT_EQ(older.reason, "spam \xc3\xa9");
  EXPECT_EQ(older.created_ms, clock_.now_ms() - 5);

  std::vector<std::string> many(101, m1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = IdGenerator::format(i + 1);
  std::string e1001;
  for (int i = 0; i < 1001; ++i) e1001 += "\xc3\xa9";
  const json bad[] = {
      json::object(),
      {{"ids", {m1}}, {"reason", "x"}},
      {{"user", "mallory"}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", {m1}}},
      {{"user", "Mallory"}, {"ids", {m1}}, {"reason", "x"}},
      {{"user", "alice"}, {"ids", {m1}}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", json::array()}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", many}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", {"nope"}}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", {1}}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", m1}, {"reason", "x"}},
      {{"user", "mallory"}, {"ids", {m1}}, {"reason", ""}},
      {{"user", "mallory"}, {"ids", {m1}}, {"reason", e1001}},
      {{"user", "mallory"}, {"ids", {m1}}, {"reason", 5}},
  };
  for (const json& body : bad) {
    r = post_json("/v1/reports", body, tokens["alice"]);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body.dump().substr(0, 200);
    EXPECT_EQ(body_of(r)["error"], "invalid_argument");
  }
  EXPECT_EQ(data_->accounts->reports(10)->size(), 2u);

  // The bounds themselves pass.
  many.pop_back();
  e1001.resize(e1001.size() - 2);
  r = post_json("/v1/reports", {{"user", "mallory"}, {"ids", many}, {"reason", e1001}},
                tokens["alice"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body.substr(0, 200);
  EXPECT_EQ(
      status_of(post_json("/v1/reports", {{"user", "mallory"}, {"ids", {m1}}, {"reason", "x"}})),
      401);
}

// ---- account deletion ----

TEST_F(SocialTest, DeleteMeRemovesTheUserAndEndsEveryCredential) {
  start_with({"bob"});
  signup("alice");
  json grant = login("alice");
  const std::string access = grant["access_token"];
  const std::string refresh = grant["refresh_token"];
  std::string m1 = send("alice", "bob", "before deletion");

  // Broker down: nothing changes.
  control_.script(unavailable("timed out"));
  auto r = del("/v1/users/me", access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(status_of(get("/v1/conversations", access)), 200);

  control_.clear_requests();
  r = del("/v1/users/me", access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  EXPECT_EQ(control_.requests(), std::vector<json>({{{"op", "user.remove"}, {"user", "alice"}}}));
  auto exists = archive_->user_exists("alice");
  ASSERT_TRUE(exists.is_ok());
  EXPECT_FALSE(*exists);

  // Every credential ends: the access token, the refresh token, the password.
  r = get("/v1/conversations", access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(status_of(del("/v1/users/me", access)), 401);
  r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + refresh);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "invalid_grant");
  r = post_form("/v1/oauth/token", "grant_type=password&username=alice&password=password1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "invalid_grant");
  // The id is never registered again (the archive still holds its inbox).
  r = post_json("/v1/users", {{"user", "alice"}, {"password", "password2"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);

  // Messages already delivered stay with the others.
  r = get("/v1/conversations/dm:alice:bob/messages", tokens["bob"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(ids_of(body_of(r)["messages"]), std::vector<std::string>({m1}));
}

TEST_F(SocialTest, DeleteMeRetriesAndRefusesConfiguredAdmins) {
  start_with({"alice"});
  // The broker already forgot the user (an earlier attempt that got that far).
  control_.script(not_found("no such user"));
  EXPECT_EQ(status_of(del("/v1/users/me", tokens["alice"])), 204);

  json root = login("root", "root-password");
  control_.clear_requests();
  auto r = del("/v1/users/me", root["access_token"]);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_TRUE(control_.requests().empty());
  EXPECT_EQ(status_of(del("/v1/users/me")), 401);
}

// ---- admin API (issue 5) ----

TEST_F(SocialTest, BanAsksTheBrokerFirstThenRefusesGrantsAndTokens) {
  start_with({"alice", "bob"});
  std::string root = login("root", "root-password")["access_token"].get<std::string>();
  json bob_login = login("bob");
  const std::string bob_token = bob_login["access_token"].get<std::string>();
  const std::string bob_refresh = bob_login["refresh_token"].get<std::string>();

  // The broker did not confirm: nothing changes here.
  control_.script(unavailable("no answer"));
  EXPECT_EQ(status_of(post_json("/v1/admin/users/bob/ban", json::object(), root)), 503);
  EXPECT_EQ(status_of(get("/v1/conversations", bob_token)), 200);

  control_.clear_requests();
  EXPECT_EQ(status_of(post_json("/v1/admin/users/bob/ban", json::object(), root)), 204);
  ASSERT_EQ(control_.requests().size(), 1u);
  EXPECT_EQ(control_.last_request()["op"], "user.ban");
  EXPECT_EQ(control_.last_request()["user"], "bob");
  EXPECT_EQ(status_of(get("/v1/conversations", bob_token)), 401);
  auto refused =
      post_form("/v1/oauth/token", "grant_type=password&username=bob&password=password1");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  EXPECT_EQ(body_of(refused)["error"], "invalid_grant");
  auto refresh =
      post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + bob_refresh);
  ASSERT_TRUE(refresh);
  EXPECT_EQ(body_of(refresh)["error"], "invalid_grant");
  auto users = get("/v1/admin/users", root);
  ASSERT_TRUE(users);
  EXPECT_EQ(body_of(users)["users"][1]["user"], "bob");
  EXPECT_EQ(body_of(users)["users"][1]["banned"], true);

  // Non-admins never reach the broker; admins are never banned.
  control_.clear_requests();
  EXPECT_EQ(status_of(del("/v1/admin/users/bob/ban", tokens["alice"])), 403);
  EXPECT_EQ(status_of(post_json("/v1/admin/users/root/ban", json::object(), root)), 403);
  EXPECT_EQ(status_of(post_json("/v1/admin/users/nobody/ban", json::object(), root)), 404);
  EXPECT_EQ(status_of(post_json("/v1/admin/clients/x/kick", json::object(), root)), 400);
  EXPECT_TRUE(control_.requests().empty());

  EXPECT_EQ(status_of(del("/v1/admin/users/bob/ban", root)), 204);
  EXPECT_EQ(control_.last_request()["op"], "user.unban");
  EXPECT_EQ(status_of(get("/v1/conversations", bob_token)), 200);
  // The refresh token refused during the ban was not spent.
  auto again =
      post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + bob_refresh);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
}

TEST_F(SocialTest, AdminClientsKickAndStatsUseTheBroker) {
  start_with({"alice"});
  std::string root = login("root", "root-password")["access_token"].get<std::string>();
  control_.script(ok_reply({{"clients",
                             {{{"clientid", "alice:phone"},
                               {"user", "alice"},
                               {"device", "phone"},
                               {"jti", "j1"},
                               {"connected_ms", 5}}}},
                            {"banned", json::array()}}));
  auto clients = get("/v1/admin/clients", root);
  ASSERT_TRUE(clients);
  EXPECT_EQ(clients->status, 200);
  EXPECT_EQ(body_of(clients), json({{"clients",
                                     {{{"clientid", "alice:phone"},
                                       {"user", "alice"},
                                       {"device", "phone"},
                                       {"jti", "j1"},
                                       {"connected_ms", 5}}}}}));
  EXPECT_EQ(control_.last_request()["op"], "client.list");

  control_.script(not_found("alice:tablet is not connected"));
  EXPECT_EQ(status_of(post_json("/v1/admin/clients/alice:tablet/kick", json::object(), root)), 404);
  EXPECT_EQ(control_.last_request()["clientid"], "alice:tablet");
  control_.script(ok_reply({{"clientid", "alice:phone"}}));
  EXPECT_EQ(status_of(post_json("/v1/admin/clients/alice:phone/kick", json::object(), root)), 204);

  control_.script(ok_reply({{"clients", json::array()}, {"banned", json::array()}}));
  auto stats = get("/v1/admin/stats", root);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->status, 200);
  EXPECT_EQ(body_of(stats)["users"], 2);  // alice and root
  EXPECT_EQ(body_of(stats)["banned"], 0);
  EXPECT_EQ(body_of(stats)["connected_clients"], 0);
  EXPECT_EQ(status_of(get("/v1/admin/stats", tokens["alice"])), 403);
  EXPECT_EQ(status_of(get("/v1/admin/stats")), 401);
}

TEST_F(SocialTest, AdminRevokesATokenByJtiAfterTheBrokerConfirms) {
  start_with({"alice"});
  std::string root = login("root", "root-password")["access_token"].get<std::string>();
  json phone = login("alice");
  json laptop = login("alice");
  const std::string stolen = phone["access_token"].get<std::string>();
  auto payload = jwt::base64url_decode(
      stolen.substr(stolen.find('.') + 1, stolen.rfind('.') - stolen.find('.') - 1));
  ASSERT_TRUE(payload.is_ok());
  const std::string jti = json::parse(*payload)["jti"].get<std::string>();
  ASSERT_EQ(status_of(get("/v1/conversations", stolen)), 200);

  // The broker does not answer: chat-api refuses the token already (it is
  // the first to know), and the admin repeats the request for the broker.
  control_.script(unavailable("broker down"));
  EXPECT_EQ(status_of(post_json("/v1/admin/tokens/" + jti + "/revoke", json::object(), root)), 503);
  EXPECT_EQ(status_of(get("/v1/conversations", stolen)), 401);

  control_.script(ok_reply({{"jti", jti}, {"closed", {"alice:phone"}}}));
  auto revoked = post_json("/v1/admin/tokens/" + jti + "/revoke", json::object(), root);
  ASSERT_TRUE(revoked);
  EXPECT_EQ(revoked->status, 200) << revoked->body;
  EXPECT_EQ(body_of(revoked),
            json({{"jti", jti}, {"closed", {"alice:phone"}}, {"refresh_tokens_revoked", 0}}))
      << "the first, unanswered request already revoked the refresh token";
  EXPECT_EQ(control_.last_request()["op"], "token.revoke");
  EXPECT_EQ(control_.last_request()["jti"], jti);

  // That token and its refresh token are refused; the other login works.
  EXPECT_EQ(status_of(get("/v1/conversations", stolen)), 401);
  EXPECT_EQ(status_of(post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" +
                                                       phone["refresh_token"].get<std::string>())),
            400);
  EXPECT_EQ(status_of(get("/v1/conversations", laptop["access_token"].get<std::string>())), 200);
  EXPECT_EQ(status_of(post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" +
                                                       laptop["refresh_token"].get<std::string>())),
            200);

  // Only admins; malformed ids are refused before the broker is asked.
  EXPECT_EQ(status_of(post_json("/v1/admin/tokens/x/revoke", json::object(),
                                laptop["access_token"].get<std::string>())),
            403);
  EXPECT_EQ(status_of(post_json("/v1/admin/tokens/" + std::string(257, 'x') + "/revoke",
                                json::object(), root)),
            400);
  EXPECT_EQ(status_of(post_json("/v1/admin/tokens/a%01b/revoke", json::object(), root)), 400);
}

}  // namespace
}  // namespace chat::api
