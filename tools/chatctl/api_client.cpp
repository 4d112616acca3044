#include "chatctl/api_client.h"

#include <httplib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "chatctl/json_access.h"
#include "chatctl/output.h"

namespace chat::tools {
namespace {

constexpr time_t kConnectTimeoutSeconds = 5;
constexpr time_t kIoTimeoutSeconds = 30;
constexpr const char* kUserAgent = "chatctl/0.1";

ApiResponse to_response(const httplib::Response& r) {
  ApiResponse out;
  out.status = r.status;
  out.body = r.body;
  out.json = parse_json(out.body);
  return out;
}

std::string transport_error_text(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "connection refused or host unreachable";
    case httplib::Error::ConnectionTimeout:
      return "connection timed out";
    case httplib::Error::Read:
      return "no answer (read failed or timed out)";
    case httplib::Error::Write:
      return "sending the request failed";
    case httplib::Error::SSLConnection:
      return "TLS handshake failed";
    case httplib::Error::SSLLoadingCerts:
      return "cannot load the CA certificates (--ca)";
    case httplib::Error::SSLServerVerification:
      return "the server's certificate is not trusted (pass its CA with --ca)";
    default:
      return httplib::to_string(error);
  }
}

}  // namespace

Status status_from_response(const ApiResponse& response) {
  if (response.ok()) return Status::ok();
  std::string message = format_http_error(response.status, response.body);
  switch (response.status) {
    case 400:
    case 413:
    case 415:
    case 422:
      return invalid_argument(message);
    case 401:
      return unauthenticated(message);
    case 403:
      return permission_denied(message);
    case 404:
      return not_found(message);
    case 409:
      return already_exists(message);
    case 429:
      return resource_exhausted(message);
    default:
      break;
  }
  if (response.status >= 500) return unavailable(message);
  return internal_error(message);
}

Result<TokenGrant> parse_token_grant(const ApiResponse& response) {
  if (!response.ok()) return status_from_response(response);
  TokenGrant grant;
  grant.access_token = json_string(response.json, "access_token");
  grant.refresh_token = json_string(response.json, "refresh_token");
  grant.expires_in = json_int(response.json, "expires_in", 0);
  if (grant.access_token.empty() || grant.refresh_token.empty() || grant.expires_in <= 0) {
    return internal_error(
        "the token endpoint answered without access_token, refresh_token or expires_in");
  }
  return grant;
}

std::string encode_form(const FormFields& fields) {
  std::string out;
  for (const auto& [name, value] : fields) {
    if (!out.empty()) out.push_back('&');
    out += url_encode(name);
    out.push_back('=');
    out += url_encode(value);
  }
  return out;
}

struct ApiClient::Impl {
  ApiUrl url;
  httplib::Client client;

  Impl(const ApiUrl& u, const std::string& ca_file) : url(u), client(u.scheme_host_port) {
    client.set_connection_timeout(kConnectTimeoutSeconds, 0);
    client.set_read_timeout(kIoTimeoutSeconds, 0);
    client.set_write_timeout(kIoTimeoutSeconds, 0);
    client.set_keep_alive(true);
    client.set_tcp_nodelay(true);
    if (u.tls) {
      client.enable_server_certificate_verification(true);
      if (!ca_file.empty()) client.set_ca_cert_path(ca_file.c_str());
    }
  }

  httplib::Headers headers(std::string_view bearer) const {
    httplib::Headers h{{"Accept", "application/json"}, {"User-Agent", kUserAgent}};
    if (!bearer.empty()) h.emplace("Authorization", "Bearer " + std::string(bearer));
    return h;
  }

  std::string full_path(std::string_view path) const { return url.base_path + std::string(path); }

  Result<ApiResponse> finish(const httplib::Result& result, std::string_view method,
                             std::string_view path) {
    if (!result) {
      return unavailable("cannot reach the API at " + url.scheme_host_port + " (" +
                         std::string(method) + " " + std::string(path) +
                         "): " + transport_error_text(result.error()));
    }
    return to_response(*result);
  }
};

ApiClient::ApiClient(const ApiUrl& url, const std::string& ca_file)
    : impl_(std::make_unique<Impl>(url, ca_file)) {}

ApiClient::~ApiClient() = default;

Result<ApiResponse> ApiClient::get(std::string_view path, std::string_view bearer) {
  std::string p = impl_->full_path(path);
  return impl_->finish(impl_->client.Get(p, impl_->headers(bearer)), "GET", path);
}

Result<ApiResponse> ApiClient::post_json(std::string_view path, const nlohmann::json& body,
                                         std::string_view bearer) {
  std::string p = impl_->full_path(path);
  return impl_->finish(
      impl_->client.Post(p, impl_->headers(bearer), dump_json(body), "application/json"), "POST",
      path);
}

Result<ApiResponse> ApiClient::post_form(std::string_view path, const FormFields& fields,
                                         std::string_view bearer) {
  std::string p = impl_->full_path(path);
  return impl_->finish(impl_->client.Post(p, impl_->headers(bearer), encode_form(fields),
                                          "application/x-www-form-urlencoded"),
                       "POST", path);
}

Result<ApiResponse> ApiClient::request(std::string_view method, std::string_view path,
                                       const nlohmann::json* body, std::string_view bearer) {
  std::string p = impl_->full_path(path);
  std::string content = body ? dump_json(*body) : std::string();
  const char* type = body ? "application/json" : "";
  auto headers = impl_->headers(bearer);
  if (method == "GET") return impl_->finish(impl_->client.Get(p, headers), method, path);
  if (method == "POST") {
    return impl_->finish(impl_->client.Post(p, headers, content, type), method, path);
  }
  if (method == "PUT") {
    return impl_->finish(impl_->client.Put(p, headers, content, type), method, path);
  }
  if (method == "DELETE") {
    return impl_->finish(impl_->client.Delete(p, headers, content, type), method, path);
  }
  return invalid_argument("unsupported HTTP method " + std::string(method));
}

Result<ApiResponse> ApiClient::post_file(std::string_view path, const std::string& file_path,
                                         std::string_view bearer) {
  std::FILE* f = std::fopen(file_path.c_str(), "rb");
  if (f == nullptr) return not_found("cannot open " + file_path + ": " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(f, &std::fclose);
  if (std::fseek(f, 0, SEEK_END) != 0) return invalid_argument(file_path + " is not a file");
  const long size = std::ftell(f);
  if (size < 0 || std::fseek(f, 0, SEEK_SET) != 0)
    return invalid_argument(file_path + " is not a file");
  std::string p = impl_->full_path(path);
  // The server decides the type from the bytes; this only labels the body.
  auto result = impl_->client.Post(
      p, impl_->headers(bearer), static_cast<size_t>(size),
      [f](size_t offset, size_t length, httplib::DataSink& sink) {
        char buf[64 * 1024];
        if (std::fseek(f, static_cast<long>(offset), SEEK_SET) != 0) return false;
        size_t n = std::fread(buf, 1, std::min(length, sizeof buf), f);
        if (n == 0) return false;
        return sink.write(buf, n);
      },
      "application/octet-stream");
  return impl_->finish(result, "POST", path);
}

Result<Download> ApiClient::download(std::string_view path, std::string_view bearer,
                                     std::string_view range, const DownloadSink& on_data) {
  std::string p = impl_->full_path(path);
  auto headers = impl_->headers(bearer);
  headers.erase("Accept");
  if (!range.empty()) headers.emplace("Range", std::string(range));
  Download out;
  bool stopped = false;
  auto result = impl_->client.Get(
      p, headers,
      [&out](const httplib::Response& r) {
        out.status = r.status;
        out.content_type = r.get_header_value("Content-Type");
        out.content_range = r.get_header_value("Content-Range");
        out.content_length = r.get_header_value<uint64_t>("Content-Length");
        return true;
      },
      [&](const char* data, size_t n) {
        if (out.status < 200 || out.status >= 300) {
          if (out.error_body.size() < 64 * 1024) out.error_body.append(data, n);
          return true;
        }
        if (!on_data(out, data, n)) {
          stopped = true;
          return false;
        }
        return true;
      });
  if (stopped) return unavailable("download stopped");
  if (!result) {
    return unavailable("cannot reach the API at " + impl_->url.scheme_host_port + " (GET " +
                       std::string(path) + "): " + transport_error_text(result.error()));
  }
  return out;
}

void ApiClient::set_read_timeout(std::chrono::seconds timeout) {
  impl_->client.set_read_timeout(static_cast<time_t>(timeout.count()), 0);
}

Result<ApiResponse> ApiClient::create_user(std::string_view user, std::string_view password) {
  return post_json("/v1/users", {{"user", user}, {"password", password}}, {});
}

Result<ApiResponse> ApiClient::password_grant(std::string_view user, std::string_view password,
                                              std::string_view device) {
  return post_form("/v1/oauth/token",
                   {{"grant_type", "password"},
                    {"username", std::string(user)},
                    {"password", std::string(password)},
                    {"device", std::string(device)}},
                   {});
}

Result<ApiResponse> ApiClient::refresh_grant(std::string_view refresh_token) {
  return post_form("/v1/oauth/token",
                   {{"grant_type", "refresh_token"}, {"refresh_token", std::string(refresh_token)}},
                   {});
}

Result<ApiResponse> ApiClient::revoke(std::string_view refresh_token, std::string_view bearer) {
  return post_form("/v1/oauth/revoke",
                   {{"token", std::string(refresh_token)}, {"token_type_hint", "refresh_token"}},
                   bearer);
}

}  // namespace chat::tools
