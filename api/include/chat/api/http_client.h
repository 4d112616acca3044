// A small outbound HTTP client over libcurl, for the push providers (FCM's
// OAuth token endpoint and send API, APNs). Not a general-purpose client:
// POST only, bounded response bodies, no redirects, no cookies, no proxies
// from the environment.
//
// Thread-safe: any number of threads may call post() at once. Connections
// are reused: the client keeps a pool of curl easy handles (one per request
// in flight, so at most as many as the threads calling it) and each handle
// keeps its connections open between requests. An HTTP/2 connection
// (APNs) therefore lives as long as the client and the server allow.
//
// TLS: the system CA store is always trusted; `extra_ca_file` (CHAT_PUSH_CA)
// adds its certificates to it (CURLOPT_CAINFO would replace the system store,
// so they are added to each connection's OpenSSL store instead). Peer and
// host name verification are always on.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/common/status.h"

namespace chat::api {

enum class HttpVersion {
  // HTTP/2 over TLS when the server offers it by ALPN, else HTTP/1.1; plain
  // http:// URLs use HTTP/1.1 (CURL_HTTP_VERSION_2TLS). FCM uses this.
  kPreferHttp2,
  // HTTP/2 only: negotiated by ALPN over TLS, or with prior knowledge (h2c)
  // over plain http://. A server that speaks only HTTP/1.1 fails the
  // request. APNs uses this (it speaks nothing else).
  kHttp2Only,
};

struct HttpClientOptions {
  // Default: 5 s. Bounds TCP connect plus the TLS handshake.
  std::chrono::milliseconds connect_timeout{5000};
  // Default: 15 s. Bounds a whole request, connect included.
  std::chrono::milliseconds total_timeout{15000};
  // Default: none. PEM CA certificates trusted in addition to the system store.
  std::string extra_ca_file;
  // Default: kPreferHttp2.
  HttpVersion version = HttpVersion::kPreferHttp2;
  // Default: 64 KiB. A longer response body is an error (kResourceExhausted).
  size_t max_response_bytes = 64 * 1024;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;  // names lower-cased, in the order received
  std::string body;
  int http_version = 0;  // 1 for HTTP/1.x, 2 for HTTP/2, 3 for HTTP/3

  // The first header of that (lower-case) name.
  std::optional<std::string> header(std::string_view name) const;
};

class HttpClient {
 public:
  // Fails (kInvalidArgument naming the file) when extra_ca_file is set but
  // holds no readable PEM certificate.
  static Result<std::unique_ptr<HttpClient>> create(HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs `body` to `url` with `headers` ("Name", "value"). Any HTTP answer,
  // whatever its status, is a response; no answer (DNS, connect, TLS, time
  // out, a response over the size limit) is kUnavailable with curl's reason
  // (kResourceExhausted for the size limit).
  Result<HttpResponse> post(const std::string& url, const HttpHeaders& headers,
                            std::string_view body);

  struct Impl;

 private:
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The delay a Retry-After header value asks for (RFC 9110 §10.2.3): either
// delay-seconds or an HTTP-date (then relative to `now`). Clamped to
// [0, max]; nullopt when the value is neither.
std::optional<std::chrono::seconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now,
    std::chrono::seconds max = std::chrono::hours(24));

// application/x-www-form-urlencoded escaping of one name or value.
std::string form_escape(std::string_view text);

}  // namespace chat::api
