// ApiClient: the REST calls chatctl makes (CONTRACT §2 and §4), over
// cpp-httplib.
//
// Any HTTP answer, success or not, comes back as an ApiResponse; only a
// transport failure (refused, timed out, TLS) is a non-ok Result
// (kUnavailable). Not thread-safe: one client per thread. Keeps the
// connection alive between calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/common/status.h"
#include "chat/common/url.h"
#include "chatctl/cli.h"

namespace chat::tools {

struct ApiResponse {
  int status = 0;
  std::string body;
  nlohmann::json json;  // the parsed body; is_discarded() when it is not JSON

  bool ok() const { return status >= 200 && status < 300; }
};

// A non-2xx answer as a Status whose message is format_http_error():
// 400/413/415/422 kInvalidArgument, 401 kUnauthenticated, 403
// kPermissionDenied, 404 kNotFound, 409 kAlreadyExists, 429
// kResourceExhausted, 5xx kUnavailable, anything else kInternal. Ok for 2xx.
Status status_from_response(const ApiResponse& response);

// The answer of POST /v1/oauth/token.
struct TokenGrant {
  std::string access_token;
  std::string refresh_token;
  int64_t expires_in = 0;  // seconds
};
// kInternal when a 2xx answer lacks access_token, refresh_token or a positive
// expires_in; status_from_response() for other answers.
Result<TokenGrant> parse_token_grant(const ApiResponse& response);

using chat::url_encode;  // common/url.h

using FormFields = std::vector<std::pair<std::string, std::string>>;
// a=1&b=2, each name and value url_encode()d.
std::string encode_form(const FormFields& fields);

// What a streamed download (ApiClient::download) got: the status and the
// headers that matter; the body of a non-2xx answer (a JSON error) is kept.
struct Download {
  int status = 0;
  std::string content_type;
  std::string content_range;  // "bytes a-b/n" (206), "bytes */n" (416)
  uint64_t content_length = 0;
  std::string error_body;
};

class ApiClient {
 public:
  // Timeouts: 5 s to connect, 30 s to read or write. `ca_file` ("" = system
  // store) is trusted in addition for https.
  ApiClient(const ApiUrl& url, const std::string& ca_file);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // `path` is relative to the base URL and may carry a query string; an empty
  // `bearer` sends no Authorization header.
  Result<ApiResponse> get(std::string_view path, std::string_view bearer);
  Result<ApiResponse> post_json(std::string_view path, const nlohmann::json& body,
                                std::string_view bearer);
  Result<ApiResponse> post_form(std::string_view path, const FormFields& fields,
                                std::string_view bearer);
  // Any of GET, POST, PUT, DELETE; `body` (nullptr: none) is sent as JSON.
  Result<ApiResponse> request(std::string_view method, std::string_view path,
                              const nlohmann::json* body, std::string_view bearer);

  // POST the file's bytes as the body (streamed from disk, Content-Length
  // set; POST /v1/media). kNotFound when the file cannot be opened.
  Result<ApiResponse> post_file(std::string_view path, const std::string& file_path,
                                std::string_view bearer);
  // GET `path` with its body handed to `on_data` as it arrives (2xx only; not
  // kept), together with the answer's status and headers; `range` ("" none)
  // is sent as the Range header. `on_data` returning false stops the
  // transfer (kUnavailable).
  using DownloadSink = std::function<bool(const Download& head, const char* data, size_t n)>;
  Result<Download> download(std::string_view path, std::string_view bearer, std::string_view range,
                            const DownloadSink& on_data);

  // Replaces the 30 s read timeout (a long server-side operation: backups).
  void set_read_timeout(std::chrono::seconds timeout);

  // POST /v1/users {"user","password"}.
  Result<ApiResponse> create_user(std::string_view user, std::string_view password);
  // POST /v1/oauth/token grant_type=password (with the device id).
  Result<ApiResponse> password_grant(std::string_view user, std::string_view password,
                                     std::string_view device);
  // POST /v1/oauth/token grant_type=refresh_token.
  Result<ApiResponse> refresh_grant(std::string_view refresh_token);
  // POST /v1/oauth/revoke (RFC 7009) for a refresh token.
  Result<ApiResponse> revoke(std::string_view refresh_token, std::string_view bearer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chat::tools
