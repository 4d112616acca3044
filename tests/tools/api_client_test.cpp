#include "chatctl/api_client.h"

#include <gtest/gtest.h>

#include "fake_api.h"

namespace chat::tools {
namespace {

using testing::FakeApi;

ApiResponse response(int status, std::string body) {
  ApiResponse r;
  r.status = status;
  r.body = std::move(body);
  r.json = nlohmann::json::parse(r.body, nullptr, false);
  return r;
}

TEST(UrlEncode, KeepsOnlyUnreserved) {
  EXPECT_EQ(url_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(url_encode("a b&c=d/e:f+"), "a%20b%26c%3Dd%2Fe%3Af%2B");
  EXPECT_EQ(url_encode("\xc3\xa9"), "%C3%A9");
  EXPECT_EQ(encode_form({{"grant_type", "password"}, {"password", "p&ss word"}}),
            "grant_type=password&password=p%26ss%20word");
}

TEST(StatusFromResponse, MapsStatuses) {
  EXPECT_TRUE(status_from_response(response(201, "{}")).is_ok());
  EXPECT_EQ(status_from_response(response(400, "")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_from_response(response(401, "")).code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(status_from_response(response(403, "")).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(status_from_response(response(404, "")).code(), StatusCode::kNotFound);
  EXPECT_EQ(status_from_response(response(409, "")).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(status_from_response(response(413, "")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status_from_response(response(429, "")).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(status_from_response(response(503, "")).code(), StatusCode::kUnavailable);
  EXPECT_EQ(status_from_response(response(302, "")).code(), StatusCode::kInternal);
  Status s = status_from_response(response(409, R"({"error":"user_exists","message":"taken"})"));
  EXPECT_EQ(s.message(), "taken (user_exists, HTTP 409)");
}

TEST(ParseTokenGrant, NeedsAllFields) {
  auto ok = parse_token_grant(response(
      200, R"({"access_token":"a","token_type":"Bearer","expires_in":60,"refresh_token":"r"})"));
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->access_token, "a");
  EXPECT_EQ(ok->refresh_token, "r");
  EXPECT_EQ(ok->expires_in, 60);
  EXPECT_EQ(
      parse_token_grant(response(200, R"({"access_token":"a","expires_in":60})")).status().code(),
      StatusCode::kInternal);
  EXPECT_EQ(parse_token_grant(response(200, "not json")).status().code(), StatusCode::kInternal);
  EXPECT_EQ(parse_token_grant(response(400, R"({"error":"invalid_grant"})")).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ApiClient, TalksToARealServer) {
  FakeApi fake;
  auto url = parse_api_url(fake.url());
  ASSERT_TRUE(url.is_ok());
  ApiClient api(*url, "");

  auto created = api.create_user("alice", "correct horse");
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  EXPECT_EQ(created->status, 201);
  EXPECT_EQ(created->json["user"], "alice");

  auto grant = api.password_grant("alice", "correct horse", "cli-00000001");
  ASSERT_TRUE(grant.is_ok());
  EXPECT_EQ(grant->status, 200);
  {
    std::lock_guard<std::mutex> lock(fake.mu());
    EXPECT_EQ(fake.last_device, "cli-00000001");
  }
  auto parsed = parse_token_grant(*grant);
  ASSERT_TRUE(parsed.is_ok());

  auto conversations = api.get("/v1/conversations", parsed->access_token);
  ASSERT_TRUE(conversations.is_ok());
  EXPECT_EQ(conversations->status, 200);
  auto unauthorized = api.get("/v1/conversations", "");
  ASSERT_TRUE(unauthorized.is_ok());
  EXPECT_EQ(unauthorized->status, 401);

  auto revoked = api.revoke(parsed->refresh_token, parsed->access_token);
  ASSERT_TRUE(revoked.is_ok());
  EXPECT_EQ(revoked->status, 200);
  auto again = api.refresh_grant(parsed->refresh_token);
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(again->status, 400);
}

TEST(ApiClient, UnreachableServerIsUnavailable) {
  int port;
  {
    FakeApi fake;  // take a free port, then free it again
    port = fake.port();
  }
  auto url = parse_api_url("http://127.0.0.1:" + std::to_string(port));
  ApiClient api(*url, "");
  auto r = api.get("/healthz", "");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("cannot reach the API"), std::string::npos);
}

}  // namespace
}  // namespace chat::tools
