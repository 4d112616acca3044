// chat-api's REST edge, end to end inside one process (see http_fixture.h):
// health, signup, tokens, history and sync.
#include "chat/api/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "http_fixture.h"

namespace chat::api {
namespace {

using namespace chat::api::test_support;  // NOLINT(google-build-using-namespace)

// ---- health and generic errors ----

TEST_F(HttpServerTest, HealthzOkWhenArchiveAndBrokerAreUp) {
  start();
  auto r = get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(body_of(r), json({{"status", "ok"}}));

  control_.set_connected(false);
  r = get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  json b = body_of(r);
  EXPECT_EQ(b["broker"], "down");
  EXPECT_EQ(b["archive"], "ok");
  EXPECT_EQ(b["error"], "unavailable");
  EXPECT_TRUE(b["message"].is_string());
}

TEST_F(HttpServerTest, UnknownRouteIsJson404) {
  start();
  auto r = get("/v1/nothing-here");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(body_of(r)["error"], "not_found");
}

TEST_F(HttpServerTest, OversizedBodyIsJson413) {
  start();
  std::string big(config_.max_body_bytes + 1, 'x');
  auto r = client_->Post("/v1/users", big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(body_of(r)["error"], "too_large");
}

TEST_F(HttpServerTest, ExceptionIsJson500) {
  start();
  control_.set_throw(true);
  auto r = post_json("/v1/users", {{"user", "alice"}, {"password", "password1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(body_of(r), json({{"error", "internal"}, {"message", "internal error"}}));
}

// ---- signup ----

TEST_F(HttpServerTest, SignupCreatesTheAccountAndTellsTheBroker) {
  start();
  auto r = post_json("/v1/users", {{"user", "alice"}, {"password", "password1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(body_of(r), json({{"user", "alice"}}));
  auto requests = control_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], json({{"op", "user.add"}, {"user", "alice"}}));

  r = post_json("/v1/users", {{"user", "alice"}, {"password", "password2"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(body_of(r)["error"], "already_exists");
}

TEST_F(HttpServerTest, SignupRejectsBadInput) {
  start();
  const json bad[] = {
      {{"user", "Alice"}, {"password", "password1"}},
      {{"user", ""}, {"password", "password1"}},
      {{"user", "-alice"}, {"password", "password1"}},
      {{"user", std::string(33, 'a')}, {"password", "password1"}},
      {{"user", "alice"}, {"password", "short"}},
      {{"user", "alice"}, {"password", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}},
      {{"user", "alice"}, {"password", std::string(1025, 'p')}},
      {{"user", "alice"}, {"password", 12345678}},
      {{"user", "alice"}},
      json::array({"alice", "password1"}),
  };
  for (const json& body : bad) {
    auto r = post_json("/v1/users", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body.dump();
    EXPECT_EQ(body_of(r)["error"], "invalid_argument") << body.dump();
  }
  auto r = client_->Post("/v1/users", "{not json", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  // 8 code points of UTF-8 is long enough; 1024 is the cap.
  signup("bob", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
  signup("carol", std::string(1024, 'p'));
  EXPECT_EQ(control_.requests().size(), 2u);
}

TEST_F(HttpServerTest, ReservedNamesAreNeverRegistrable) {
  start();
  for (const char* name : {"root", "svc.chat-api", "svc.other"}) {
    auto r = post_json("/v1/users", {{"user", name}, {"password", "password1"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << name;
    EXPECT_EQ(body_of(r)["error"], "permission_denied");
  }
  EXPECT_TRUE(control_.requests().empty());
}

TEST_F(HttpServerTest, ClosedSignupNeedsAnAdminToken) {
  start({{"CHAT_SIGNUP", "closed"}});
  auto r = post_json("/v1/users", {{"user", "alice"}, {"password", "password1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);

  r = post_json("/v1/users", {{"user", "alice"}, {"password", "password1"}}, "garbage");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  std::string admin = login("root", "root-password")["access_token"];
  r = post_json("/v1/users", {{"user", "alice"}, {"password", "password1"}}, admin);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;

  std::string alice = login("alice")["access_token"];
  r = post_json("/v1/users", {{"user", "bob"}, {"password", "password1"}}, alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
}

TEST_F(HttpServerTest, SignupIsRolledBackWhenTheBrokerDoesNotConfirm) {
  start();
  control_.fail_with(unavailable("broker not connected"));
  auto r = post_json("/v1/users", {{"user", "alice"}, {"password", "password1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(body_of(r)["error"], "unavailable");
  // No account was left behind.
  r = post_form("/v1/oauth/token", "grant_type=password&username=alice&password=password1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);

  // A broker that already knows the user is a success.
  control_.fail_with(already_exists("user exists"));
  signup("alice");
  control_.fail_with(std::nullopt);
  login("alice");
}

TEST_F(HttpServerTest, AdminsAreCreatedAndAnnounced) {
  start();
  json t = login("root", "root-password");
  EXPECT_EQ(claims_of(t["access_token"])["roles"], json({"admin"}));
  ASSERT_TRUE(service_->announce_admins().is_ok());
  auto requests = control_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0], json({{"op", "user.add"}, {"user", "root"}}));
}

// ---- OAuth 2.0 token endpoint ----

TEST_F(HttpServerTest, PasswordGrantIssuesTokens) {
  start();
  signup("alice");
  auto r = post_form("/v1/oauth/token",
                     "grant_type=password&username=alice&password=password1&device=phone-1");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-store");
  json t = body_of(r);
  EXPECT_EQ(t["token_type"], "Bearer");
  EXPECT_EQ(t["expires_in"], 3600);
  ASSERT_TRUE(t["refresh_token"].is_string());
  EXPECT_EQ(jwt::base64url_decode(t["refresh_token"].get<std::string>())->size(), 32u);

  json claims = claims_of(t["access_token"]);
  EXPECT_EQ(claims["sub"], "alice");
  EXPECT_EQ(claims["iss"], "chat-platform");
  EXPECT_EQ(claims["aud"], "chat");
  EXPECT_EQ(claims["roles"], json({"user"}));
  EXPECT_EQ(claims["iat"], clock_.now_s());
  EXPECT_EQ(claims["exp"], clock_.now_s() + 3600);
  EXPECT_TRUE(claims["jti"].is_string());
  EXPECT_NE(claims["jti"], claims_of(login("alice")["access_token"])["jti"]);

  // The access token verifies against the published JWKS (what the broker reads).
  std::string jwks;
  {
    std::ifstream in(config_.jwks_path());
    jwks.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto keys = jwt::KeySet::from_jwks(jwks);
  ASSERT_TRUE(keys.is_ok());
  jwt::VerifyOptions vo;
  vo.issuer = "chat-platform";
  vo.audience = "chat";
  EXPECT_TRUE(jwt::verify_jwt(t["access_token"].get<std::string>(), *keys, vo, clock_.now_s()));
}

TEST_F(HttpServerTest, PasswordGrantRefusals) {
  start();
  signup("alice");
  const std::string refused[] = {
      "grant_type=password&username=alice&password=wrong-password",
      "grant_type=password&username=nobody&password=password1",
      "grant_type=password&username=Alice&password=password1",
      "grant_type=password&username=svc.chat-api&password=password1",
  };
  for (const auto& form : refused) {
    auto r = post_form("/v1/oauth/token", form);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << form;
    EXPECT_EQ(body_of(r)["error"], "invalid_grant") << form;
  }
  const std::string malformed[] = {
      "grant_type=password&username=alice",
      "username=alice&password=password1",
      "grant_type=password&username=alice&password=password1&device=bad%20device",
      "grant_type=password&grant_type=password&username=alice&password=password1",
      "grant_type=password&username=alice&password=%zz",
  };
  for (const auto& form : malformed) {
    auto r = post_form("/v1/oauth/token", form);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << form;
    EXPECT_EQ(body_of(r)["error"], "invalid_request") << form;
  }
  auto r = client_->Post("/v1/oauth/token",
                         R"({"grant_type":"password","username":"alice","password":"password1"})",
                         "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "invalid_request");

  r = post_form("/v1/oauth/token", "grant_type=client_credentials");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "unsupported_grant_type");

  // Form encoding: '+' and %XX decode.
  signup("bob", "pass word+1");
  r = post_form("/v1/oauth/token", "grant_type=password&username=bob&password=pass+word%2B1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

TEST_F(HttpServerTest, RefreshTokensRotate) {
  start();
  signup("alice");
  json first = login("alice");
  std::string refresh1 = first["refresh_token"];
  auto r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + refresh1);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json second = body_of(r);
  EXPECT_EQ(claims_of(second["access_token"])["sub"], "alice");
  std::string refresh2 = second["refresh_token"];
  EXPECT_NE(refresh1, refresh2);

  // The old one stopped working.
  r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + refresh1);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "invalid_grant");

  r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + refresh2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);

  r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=made-up");
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["error"], "invalid_grant");
  r = post_form("/v1/oauth/token", "grant_type=refresh_token");
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["error"], "invalid_request");
}

TEST_F(HttpServerTest, RevokeEndsARefreshToken) {
  start();
  signup("alice");
  std::string refresh = login("alice")["refresh_token"];
  auto r = post_form("/v1/oauth/revoke", "token=" + refresh);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" + refresh);
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["error"], "invalid_grant");

  // Unknown and repeated revocations are fine (RFC 7009 §2.2).
  r = post_form("/v1/oauth/revoke", "token=" + refresh);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = post_form("/v1/oauth/revoke", "token=never-issued&token_type_hint=refresh_token");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  r = post_form("/v1/oauth/revoke", "token_type_hint=refresh_token");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(body_of(r)["error"], "invalid_request");
}

TEST_F(HttpServerTest, PasswordChangeRevokesEveryRefreshToken) {
  start();
  signup("alice");
  json phone = login("alice");
  json laptop = login("alice");
  std::string access = phone["access_token"];

  auto r = post_json("/v1/users/me/password",
                     {{"old_password", "wrong-password"}, {"new_password", "password2"}}, access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  r = post_json("/v1/users/me/password", {{"old_password", "password1"}, {"new_password", "short"}},
                access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = post_json("/v1/users/me/password", {{"old_password", "password1"}}, access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  r = post_json("/v1/users/me/password",
                {{"old_password", "password1"}, {"new_password", "password2"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  r = post_json("/v1/users/me/password",
                {{"old_password", "password1"}, {"new_password", "password2"}}, access);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;

  for (const json& t : {phone, laptop}) {
    r = post_form("/v1/oauth/token", "grant_type=refresh_token&refresh_token=" +
                                         t["refresh_token"].get<std::string>());
    ASSERT_TRUE(r);
    EXPECT_EQ(body_of(r)["error"], "invalid_grant");
  }
  r = post_form("/v1/oauth/token", "grant_type=password&username=alice&password=password1");
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r)["error"], "invalid_grant");
  login("alice", "password2");
}

// ---- bearer authentication ----

TEST_F(HttpServerTest, BearerRoutesAnswer401WithAChallenge) {
  start();
  std::string alice = token_for("alice");
  const char* routes[] = {"/v1/conversations", "/v1/conversations/dm:alice:bob/messages",
                          "/v1/sync"};
  for (const char* route : routes) {
    auto r = get(route);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << route;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer") << route;
    EXPECT_EQ(body_of(r)["error"], "unauthenticated");

    r = get(route, "garbage");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << route;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer error=\"invalid_token\"");

    r = client_->Get(route, {{"Authorization", "Basic YWxpY2U6cGFzc3dvcmQx"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << route;

    r = get(route, alice);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << route << " " << r->body;
  }

  // A token signed by another key is refused.
  auto other = jwt::Signer::load_or_create(dir_ + "/other.pem", dir_ + "/other.json");
  ASSERT_TRUE(other.is_ok());
  json claims = claims_of(alice);
  auto r = get("/v1/sync", other->sign(claims));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);

  // Expired: past exp by more than the leeway.
  clock_.advance_ms((3600 + config_.jwt_leeway_s + 1) * 1000);
  r = get("/v1/sync", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer error=\"invalid_token\"");
}

// ---- history ----

TEST_F(HttpServerTest, HistoryPagesBackwardAndForward) {
  start();
  std::string alice = token_for("alice");
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(send(i % 2 ? "bob" : "alice", i % 2 ? "alice" : "bob"));
  send("alice", "carol");  // another conversation: never in this history

  const std::string base = "/v1/conversations/dm:alice:bob/messages";
  auto r = get(base, alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), ids);
  EXPECT_TRUE(page["next"].is_null());
  EXPECT_EQ(page["messages"][0]["conv"], "dm:alice:bob");
  EXPECT_EQ(page["messages"][0]["body"], "hi");

  // Backward from the latest page.
  r = get(base + "?limit=3", alice);
  page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), std::vector<std::string>(ids.begin() + 4, ids.end()));
  ASSERT_EQ(page["next"], ids[4]);
  r = get(base + "?limit=3&before=" + ids[4], alice);
  page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), std::vector<std::string>(ids.begin() + 1, ids.begin() + 4));
  ASSERT_EQ(page["next"], ids[1]);
  r = get(base + "?limit=3&before=" + ids[1], alice);
  page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), std::vector<std::string>{ids[0]});
  EXPECT_TRUE(page["next"].is_null());

  // Forward from the first message.
  r = get(base + "?limit=3&after=" + ids[0], alice);
  page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), std::vector<std::string>(ids.begin() + 1, ids.begin() + 4));
  ASSERT_EQ(page["next"], ids[3]);
  r = get(base + "?limit=3&after=" + ids[3], alice);
  page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), std::vector<std::string>(ids.begin() + 4, ids.end()));
  EXPECT_TRUE(page["next"].is_null());
  r = get(base + "?after=" + ids[6], alice);
  page = body_of(r);
  EXPECT_TRUE(page["messages"].empty());
  EXPECT_TRUE(page["next"].is_null());

  // A percent-encoded conversation id is the same route.
  r = get("/v1/conversations/dm%3Aalice%3Abob/messages?limit=1", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(ids_of(body_of(r)["messages"]), std::vector<std::string>{ids[6]});

  // New messages are visible at once (catch-up before reading).
  std::string late = send("bob", "alice");
  r = get(base + "?limit=1", alice);
  EXPECT_EQ(ids_of(body_of(r)["messages"]), std::vector<std::string>{late});
}

TEST_F(HttpServerTest, HistoryChecksParticipantsAndParameters) {
  start();
  std::string carol = token_for("carol");
  std::string alice = token_for("alice");
  send("alice", "bob");

  auto r = get("/v1/conversations/dm:alice:bob/messages", carol);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(body_of(r)["error"], "permission_denied");
  r = get("/v1/conversations/g:team/messages", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);

  const std::string bad[] = {
      "/v1/conversations/dm:bob:alice/messages",
      "/v1/conversations/alice-bob/messages",
      "/v1/conversations/dm:alice:bob/messages?limit=-1",
      "/v1/conversations/dm:alice:bob/messages?limit=abc",
      "/v1/conversations/dm:alice:bob/messages?limit=",
      "/v1/conversations/dm:alice:bob/messages?limit=0",
      "/v1/conversations/dm:alice:bob/messages?limit=1.5",
      "/v1/conversations/dm:alice:bob/messages?before=nope",
      "/v1/conversations/dm:alice:bob/messages?before=0190000000000ABC",
      "/v1/conversations/dm:alice:bob/messages?after=01900000000000001",
      "/v1/conversations/dm:alice:bob/messages?before=0190000000000001&after=0190000000000000",
  };
  for (const auto& path : bad) {
    r = get(path, alice);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << path;
    EXPECT_EQ(body_of(r)["error"], "invalid_argument") << path;
  }
  // Huge limits clamp.
  r = get("/v1/conversations/dm:alice:bob/messages?limit=99999999999999999999999", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, HistoryLimitClampsAt500) {
  start();
  std::string alice = token_for("alice");
  std::vector<std::string> ids;
  for (int i = 0; i < 502; ++i) ids.push_back(send("alice", "bob"));
  auto r = get("/v1/conversations/dm:alice:bob/messages?limit=1000", alice);
  ASSERT_TRUE(r);
  json page = body_of(r);
  EXPECT_EQ(page["messages"].size(), 500u);
  EXPECT_EQ(page["next"], ids[2]);
  EXPECT_EQ(page["messages"].back()["id"], ids.back());
}

// ---- sync and conversations ----

TEST_F(HttpServerTest, SyncWalksEveryConversationByCursor) {
  start();
  std::string alice = token_for("alice");
  std::vector<std::string> mine;
  mine.push_back(send("alice", "bob"));
  mine.push_back(send("carol", "alice"));
  send("bob", "carol");  // not alice's
  mine.push_back(send("bob", "alice"));
  mine.push_back(send("alice", "dave"));
  mine.push_back(send("alice", "carol"));

  std::vector<std::string> seen;
  std::string since;
  for (int round = 0; round < 10; ++round) {
    auto r = get("/v1/sync?limit=2" + (since.empty() ? std::string() : "&since=" + since), alice);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    json page = body_of(r);
    for (const auto& id : ids_of(page["messages"])) seen.push_back(id);
    if (page["messages"].empty()) {
      EXPECT_TRUE(page["next"].is_null());
      EXPECT_FALSE(page["has_more"].get<bool>());
      break;
    }
    EXPECT_EQ(page["next"], page["messages"].back()["id"]);
    EXPECT_EQ(page["has_more"].get<bool>(), seen.size() < mine.size());
    since = page["next"];
  }
  EXPECT_EQ(seen, mine);

  // The default limit returns everything at once, oldest first.
  auto r = get("/v1/sync", alice);
  json page = body_of(r);
  EXPECT_EQ(ids_of(page["messages"]), mine);
  EXPECT_EQ(page["next"], mine.back());
  EXPECT_FALSE(page["has_more"].get<bool>());
  r = get("/v1/sync?since=", alice);
  EXPECT_EQ(ids_of(body_of(r)["messages"]), mine);

  for (const char* bad : {"/v1/sync?since=xyz", "/v1/sync?limit=-5", "/v1/sync?limit=x"}) {
    r = get(bad, alice);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad;
  }
}

TEST_F(HttpServerTest, ConversationsMostRecentFirst) {
  start();
  std::string alice = token_for("alice");
  auto r = get("/v1/conversations", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(body_of(r), json({{"conversations", json::array()}}));

  send("alice", "bob");
  std::string carol_last = send("carol", "alice");
  std::string bob_last = send("bob", "alice", "latest");
  send("bob", "carol");  // not alice's

  r = get("/v1/conversations", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json list = body_of(r)["conversations"];
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["conv"], "dm:alice:bob");
  EXPECT_EQ(list[0]["last"]["id"], bob_last);
  EXPECT_EQ(list[0]["last"]["body"], "latest");
  EXPECT_TRUE(list[0]["unread"].is_number_integer());
  EXPECT_EQ(list[1]["conv"], "dm:alice:carol");
  EXPECT_EQ(list[1]["last"]["id"], carol_last);
  EXPECT_TRUE(list[1]["unread"].is_number_integer());
}

}  // namespace
}  // namespace chat::api
