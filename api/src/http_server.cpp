#include "chat/api/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "chat/api/log.h"
#include "chat/api/request_parsing.h"
#include "chat/common/log_fields.h"
#include "http_internal.h"

namespace chat::api {

using httplib::Request;
using httplib::Response;
using nlohmann::json;

const char* const kTlsCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

int http_status(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kInternal:
      return 500;
    case StatusCode::kUnavailable:
      return 503;
  }
  return 500;
}

namespace {

constexpr const char* kJson = "application/json";

// ---- rendering -------------------------------------------------------------

void write_json(Response& res, int status, std::string body) {
  res.status = status;
  res.set_content(std::move(body), kJson);
}

void write_error(Response& res, int status, std::string_view code, std::string_view message) {
  write_json(res, status, error_body(code, message));
}

// 429 for an abuse limit: Retry-After in whole seconds (at least 1), and the
// API's error body; the token endpoint adds RFC 6749's error_description.
void write_rate_limited(Response& res, int64_t wait_ms, std::string_view message,
                        bool oauth = false) {
  const int64_t seconds = std::max<int64_t>(1, (wait_ms + 999) / 1000);
  const std::string text = std::string(message) + "; retry after " + std::to_string(seconds) + " s";
  json body{{"error", "rate_limited"}, {"message", text}};
  if (oauth) body["error_description"] = text;
  write_json(res, 429, body.dump());
  res.set_header("Retry-After", std::to_string(seconds));
}

bool is_write_method(const std::string& method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

// Every Service failure goes out through here.
void write_status(Response& res, const Status& status) {
  int http = http_status(status.code());
  if (http >= 500) {
    logger().warn("request.failed: status={} code={} error={}", http,
                  status_code_name(status.code()), log_value(status.message()));
  }
  // Server-side failures carry no internals to the client.
  std::string_view message = status.code() == StatusCode::kInternal
                                 ? std::string_view("internal error")
                                 : std::string_view(status.message());
  write_error(res, http, status_code_name(status.code()), message);
  if (status.code() == StatusCode::kUnauthenticated) res.set_header("WWW-Authenticate", "Bearer");
}

// Group routes: a full group is a conflict with the group's state, not a rate
// limit: 409 {"error":"group_full"}.
void write_group_status(Response& res, const Status& status) {
  if (status.code() == StatusCode::kResourceExhausted) {
    return write_error(res, 409, "group_full", status.message());
  }
  write_status(res, status);
}

json group_json(const Group& g) {
  return json{{"id", g.id},
              {"name", g.name},
              {"members", g.members},
              {"admins", g.admins},
              {"created_ms", g.created_ms}};
}

// What an error status the library produced on its own (no route, bad
// request line, body over the limit) is called.
std::pair<const char*, const char*> describe_http_error(int status) {
  switch (status) {
    case 400:
      return {"invalid_argument", "malformed request"};
    case 404:
      return {"not_found", "no such route"};
    case 405:
      return {"method_not_allowed", "method not allowed"};
    case 413:
      return {"too_large", "request body too large"};
    case 414:
      return {"too_large", "request URI too long"};
    case 416:
      return {"invalid_argument", "range not satisfiable"};
    case 500:
      return {"internal", "internal error"};
    default:
      return {status >= 500 ? "internal" : "invalid_argument", "request failed"};
  }
}

// A raw JSON value (already valid JSON text) or null.
void append_id_or_null(std::string& out, const std::optional<std::string>& id) {
  if (id)
    out += json(*id).dump();
  else
    out += "null";
}

// {"messages":[...],"next":...,"has_more":...}: envelopes go out exactly as
// archived, so they are spliced in without a parse/serialise round-trip.
std::string render_page(const MessagePage& page) {
  size_t size = 64;
  for (const auto& e : page.envelopes) size += e.size() + 1;
  std::string out;
  out.reserve(size);
  out += "{\"messages\":[";
  for (size_t i = 0; i < page.envelopes.size(); ++i) {
    if (i > 0) out += ',';
    out += page.envelopes[i];
  }
  out += "],\"next\":";
  append_id_or_null(out, page.next);
  out += ",\"has_more\":";
  out += page.has_more ? "true" : "false";
  out += '}';
  return out;
}

// ---- parsing ---------------------------------------------------------------

// form_decode, parse_form: request_parsing.h.

std::string form_value(const std::map<std::string, std::string>& form, const char* name) {
  auto it = form.find(name);
  return it == form.end() ? std::string() : it->second;
}

bool is_form(const Request& req) {
  std::string ct = req.get_header_value("Content-Type");
  return ct.rfind("application/x-www-form-urlencoded", 0) == 0;
}

// Bounded nesting and no repeated member names (docs/api.md, "Hostile input").
Result<json> parse_json_object(const Request& req) { return parse_json_object_body(req.body); }

// A string member of a JSON object, or nullopt when absent or not a string.
std::optional<std::string> string_member(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

// An array of strings member; absent -> empty; anything else is nullopt.
std::optional<std::vector<std::string>> string_array_member(const json& obj, const char* name) {
  std::vector<std::string> out;
  auto it = obj.find(name);
  if (it == obj.end()) return out;
  if (!it->is_array()) return std::nullopt;
  out.reserve(it->size());
  for (const auto& v : *it) {
    if (!v.is_string()) return std::nullopt;
    out.push_back(v.get<std::string>());
  }
  return out;
}

// limit: absent -> default; digits only, at least 1; larger values clamp to `max`.
Result<size_t> parse_limit(const Request& req, size_t fallback, size_t max) {
  if (!req.has_param("limit")) return fallback;
  return parse_limit_text(req.get_param_value("limit"), fallback, max);
}

// ---- authentication --------------------------------------------------------

struct Bearer {
  bool present = false;  // an Authorization header came
  std::string token;     // empty when the header is not "Bearer <token>"
};

Bearer bearer_of(const Request& req) {
  Bearer b;
  if (!req.has_header("Authorization")) return b;
  b.present = true;
  b.token = bearer_token(req.get_header_value("Authorization"));
  return b;
}

// RFC 6750 §3: 401 with a challenge; error="invalid_token" once a token came.
void write_unauthenticated(Response& res, bool token_given, std::string_view why) {
  write_error(res, 401, "unauthenticated", why);
  res.set_header("WWW-Authenticate",
                 token_given ? "Bearer error=\"invalid_token\"" : std::string("Bearer"));
}

// The limits of the server handling this thread's request, set by the
// pre-routing handler (which runs on the same pool thread as the route), so
// that every route's require_principal applies them without being handed them.
thread_local RateLimits* t_rate_limits = nullptr;

// The principal of a request, or nullopt after writing the 401 (or the 429 of
// a REST write over the user's rate: admins are exempt).
std::optional<Principal> require_principal(const Service& service, const Request& req,
                                           Response& res) {
  Bearer b = bearer_of(req);
  if (!b.present) {
    write_unauthenticated(res, false, "a bearer access token is required");
    return std::nullopt;
  }
  if (b.token.empty()) {
    write_unauthenticated(res, true, "the Authorization header is not \"Bearer <token>\"");
    return std::nullopt;
  }
  auto principal = service.authenticate(b.token);
  if (!principal) {
    if (principal.status().code() == StatusCode::kUnauthenticated) {
      write_unauthenticated(res, true, principal.status().message());
    } else {
      write_status(res, principal.status());  // the account store failed, not the token
    }
    return std::nullopt;
  }
  if (t_rate_limits != nullptr && is_write_method(req.method) && !principal->has_role("admin")) {
    if (int64_t wait = t_rate_limits->rest_write(principal->user); wait > 0) {
      write_rate_limited(res, wait, "too many requests");
      return std::nullopt;
    }
  }
  return std::move(principal).value();
}

// ---- the listening socket ----------------------------------------------------

// Debian's cpp-httplib is a compiled library that listens with a backlog of 5
// (its CPPHTTPLIB_LISTEN_BACKLOG default, fixed when the library was built).
// A burst of clients overflows it: the kernel drops their SYNs and each
// retries after its 1-s retransmission timeout, which was most of the history
// endpoint's ~1 s p99 under wrk with 64 connections. httplib does not expose
// the socket, so find the listening one bound to `port` among our descriptors
// and listen() again: on a listening socket that only changes the backlog.
void raise_listen_backlog(int port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (const dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    int accepting = 0;
    socklen_t len = sizeof accepting;
    if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 ||
        !accepting) {
      continue;
    }
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) {
      continue;
    }
    int bound_port = -1;
    if (addr.ss_family == AF_INET) {
      bound_port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
    } else if (addr.ss_family == AF_INET6) {
      bound_port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
    }
    if (bound_port == port) ::listen(static_cast<int>(fd), SOMAXCONN);
  }
  ::closedir(dir);
}

// ---- the browser client ----------------------------------------------------

// Headers of everything the browser client loads from us.
void set_web_headers(Response& res, const std::string& ws_url) {
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Content-Security-Policy", content_security_policy(ws_url));
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("X-Frame-Options", "DENY");
}

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return std::nullopt;
  return data;
}

// ---- TLS -------------------------------------------------------------------

// `what`, plus OpenSSL's reason for the last failure.
bool tls_failed(std::string* error, std::string what) {
  unsigned long code = ERR_peek_last_error();
  if (code != 0) {
    char reason[256];
    ERR_error_string_n(code, reason, sizeof reason);
    what += std::string(": ") + reason;
  }
  ERR_clear_error();
  *error = std::move(what);
  return false;
}

// TLS 1.2 minimum, kTlsCiphers for TLS 1.2, no compression or renegotiation,
// and the certificate, key and chain of `o`. On failure *error says why.
bool setup_tls(SSL_CTX& ctx, const HttpOptions& o, std::string* error) {
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(&ctx, kTlsCiphers) != 1) {
    return tls_failed(error, "cannot set up TLS");
  }
  SSL_CTX_set_options(
      &ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(&ctx, o.tls_cert.c_str()) != 1) {
    return tls_failed(error, "CHAT_TLS_CERT: cannot use '" + o.tls_cert + "'");
  }
  if (SSL_CTX_use_PrivateKey_file(&ctx, o.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return tls_failed(error, "CHAT_TLS_KEY: cannot use '" + o.tls_key + "'");
  }
  if (SSL_CTX_check_private_key(&ctx) != 1) {
    return tls_failed(error, "CHAT_TLS_KEY: '" + o.tls_key + "' does not match CHAT_TLS_CERT");
  }
  // The chain sent to clients is completed from this store; no client
  // certificates are requested (SSL_VERIFY_NONE stays).
  if (!o.tls_ca.empty() && SSL_CTX_load_verify_locations(&ctx, o.tls_ca.c_str(), nullptr) != 1) {
    return tls_failed(error, "CHAT_TLS_CA: cannot use '" + o.tls_ca + "'");
  }
  return true;
}

// A plain server, or (with a certificate) an SSLServer set up by setup_tls.
// On failure the SSLServer is not valid and *error says why.
std::unique_ptr<httplib::Server> make_server(const HttpOptions& o, std::string* error) {
  if (o.tls_cert.empty()) return std::make_unique<httplib::Server>();
  return std::make_unique<httplib::SSLServer>(
      [&o, error](SSL_CTX& ctx) { return setup_tls(ctx, o, error); });
}

// ---- body limits -----------------------------------------------------------

// Whether the request's Content-Length says more than `max` bytes (a
// malformed one counts as over: httplib would refuse it anyway).
bool body_over(const Request& req, size_t max) {
  if (!req.has_header("Content-Length")) return false;
  return content_length_over(req.get_header_value("Content-Length"), max);
}

// ---- access log ------------------------------------------------------------

thread_local std::chrono::steady_clock::time_point t_request_start{};

}  // namespace

// ---- for the routes defined in other files (http_internal.h) ---------------

namespace http_internal {

void write_error(Response& res, int status, std::string_view code, std::string_view message) {
  ::chat::api::write_error(res, status, code, message);
}
void write_status(Response& res, const Status& status) { ::chat::api::write_status(res, status); }
void write_rate_limited(Response& res, int64_t wait_ms, std::string_view message) {
  ::chat::api::write_rate_limited(res, wait_ms, message);
}
std::optional<Principal> require_principal(const Service& service, const Request& req,
                                           Response& res) {
  return ::chat::api::require_principal(service, req, res);
}

}  // namespace http_internal

Status check_tls(const HttpOptions& options) {
  if (options.tls_cert.empty()) return Status::ok();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return internal_error("cannot create an SSL context");
  std::string error;
  const bool ok = setup_tls(*ctx, options, &error);
  SSL_CTX_free(ctx);
  return ok ? Status::ok() : invalid_argument(error);
}

HttpServer::HttpServer(Service& service, HttpOptions options)
    : service_(service),
      options_(options),
      server_(make_server(options_, &tls_error_)),
      rate_limits_(std::make_unique<RateLimits>(
          options_.clock != nullptr ? *options_.clock : SystemClock::instance(),
          options_.rate_limits)) {
  const int threads = options_.threads > 0 ? options_.threads : 1;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_tcp_nodelay(true);
  // Media uploads (POST /v1/media) stream up to their own, larger limit;
  // every other body keeps max_body_bytes, checked before it is read.
  const uint64_t media_max = http_internal::media_max_bytes(service_);
  server_->set_payload_max_length(
      static_cast<size_t>(std::max<uint64_t>(options_.max_body_bytes, media_max)));
  server_->set_keep_alive_max_count(1000);

  server_->set_pre_routing_handler(
      [limits = rate_limits_.get(), max_body = options_.max_body_bytes](const Request& req,
                                                                        Response& res) {
        t_request_start = std::chrono::steady_clock::now();
        t_rate_limits = limits;
        if (!http_internal::is_media_upload(req)) {
          // Only the media upload streams a body of unknown length; anywhere
          // else httplib would read all of it (up to the media limit) first.
          if (req.has_header("Transfer-Encoding")) {
            write_error(res, 411, "length_required",
                        "a chunked body is only accepted by POST /v1/media; send a "
                        "Content-Length of at most " +
                            std::to_string(max_body) + " bytes");
            return httplib::Server::HandlerResponse::Handled;
          }
          if (body_over(req, max_body)) {
            write_error(res, 413, "too_large", "request body too large");
            return httplib::Server::HandlerResponse::Handled;
          }
        }
        return httplib::Server::HandlerResponse::Unhandled;
      });
  server_->set_error_handler(
      httplib::Server::HandlerWithResponse([](const Request&, Response& res) {
        // Our handlers write their own JSON errors; fill in the library's own
        // (no route, malformed request, body too large).
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        auto [code, message] = describe_http_error(res.status);
        write_error(res, res.status, code, message);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server_->set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = log_error(e);  // never a JSON parser's quote of the body
    } catch (...) {
    }
    logger().error("http.exception: method={} path={} error={}", log_value(req.method),
                   log_value(req.path), log_value(what));
    res.headers.clear();
    write_error(res, 500, "internal", "internal error");
  });
  server_->set_logger([metrics = http_metrics_.get()](const Request& req, const Response& res) {
    auto start = t_request_start;
    t_request_start = {};
    const bool timed = start != std::chrono::steady_clock::time_point{};
    const auto elapsed = timed ? std::chrono::steady_clock::now() - start
                               : std::chrono::steady_clock::duration::zero();
    metrics->record(req.method, req.path, res.status,
                    std::chrono::duration<double>(elapsed).count());
    // req.path has no query string (cpp-httplib splits it off into
    // req.params) and is percent-decoded, so it may hold anything: quoted.
    // Query strings are never logged (a signed URL may carry a secret).
    if (start == std::chrono::steady_clock::time_point{}) {
      logger().info("http: ip={} method={} path={} status={} bytes={}", log_value(req.remote_addr),
                    log_value(req.method), log_value(req.path), res.status, res.body.size());
      return;
    }
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    logger().info("http: ip={} method={} path={} status={} bytes={} ms={}.{:03}",
                  log_value(req.remote_addr), log_value(req.method), log_value(req.path),
                  res.status, res.body.size(), us / 1000, us % 1000);
  });
  register_routes();
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::register_routes() {
  Service& service = service_;

  server_->Get("/healthz", [&service](const Request&, Response& res) {
    Health h = service.health();
    if (h.ok()) {
      write_json(res, 200, R"({"status":"ok"})");
      return;
    }
    std::string message;
    if (!h.archive_ok) message = "archive: " + h.archive_error;
    if (h.archive_ok && !h.archive_writable) {
      message = "archive: not writable (disk full or I/O error, see the broker log)";
    }
    if (!h.broker_ok) message += std::string(message.empty() ? "" : "; ") + "broker: not connected";
    if (!h.bridge_ok) {
      message += std::string(message.empty() ? "" : "; ") + "bridge: not accepting connections";
    }
    write_json(res, 503,
               json{{"status", "unavailable"},
                    {"error", "unavailable"},
                    {"message", message},
                    {"archive", !h.archive_ok        ? "down"
                                : h.archive_writable ? "ok"
                                                     : "read_only"},
                    {"broker", h.broker_ok ? "ok" : "down"},
                    {"bridge", h.bridge_ok ? "ok" : "down"}}
                   .dump());
  });

  server_->Post("/v1/users", [&service](const Request& req, Response& res) {
    std::optional<Principal> caller;
    if (req.has_header("Authorization")) {
      caller = require_principal(service, req, res);
      if (!caller) return;
    }
    auto body = parse_json_object(req);
    if (!body) return write_status(res, body.status());
    auto user = string_member(*body, "user");
    auto password = string_member(*body, "password");
    if (!user || !password) {
      return write_status(res, invalid_argument("\"user\" and \"password\" strings are required"));
    }
    auto created = service.create_user(caller, *user, *password);
    if (!created) return write_status(res, created.status());
    write_json(res, 201, json{{"user", *created}}.dump());
  });

  RateLimits* limits = rate_limits_.get();
  server_->Post("/v1/oauth/token", [&service, limits](const Request& req, Response& res) {
    // RFC 6749 §5.1/§5.2: never cache token answers, errors included.
    res.set_header("Cache-Control", "no-store");
    res.set_header("Pragma", "no-cache");
    // Every grant counts against the client's address, before any work.
    if (int64_t wait = limits->login_attempt(req.remote_addr); wait > 0) {
      return write_rate_limited(res, wait, "too many token requests from this address", true);
    }
    auto oauth_error = [&res](const char* code, const std::string& description) {
      write_json(res, 400,
                 json{{"error", code}, {"error_description", description}, {"message", description}}
                     .dump());
    };
    if (!is_form(req)) {
      return oauth_error("invalid_request", "the body must be application/x-www-form-urlencoded");
    }
    auto form = parse_form(req.body);
    if (!form) return oauth_error("invalid_request", form.status().message());
    std::string grant_type = form_value(*form, "grant_type");
    Result<TokenGrant> grant = invalid_argument("grant_type required");
    if (grant_type.empty()) {
      return oauth_error("invalid_request", "grant_type required");
    } else if (grant_type == "password") {
      const std::string username = form_value(*form, "username");
      // A locked account is refused before its password is looked at, so the
      // answer is the same whether the password is right or not, and whether
      // the account exists or not: RFC 6749's invalid_grant (CONTRACT §2),
      // with Retry-After saying when to try again. The attempt is counted as
      // it starts, so concurrent guesses cannot all pass one check.
      const auto attempt =
          limits->begin_password_attempt(username, service.account_exists(username));
      if (attempt.wait_ms > 0) {
        const int64_t seconds = std::max<int64_t>(1, (attempt.wait_ms + 999) / 1000);
        res.set_header("Retry-After", std::to_string(seconds));
        return oauth_error("invalid_grant",
                           "too many failed logins for this account; retry after " +
                               std::to_string(seconds) + " s");
      }
      grant = service.password_grant(username, form_value(*form, "password"),
                                     form_value(*form, "device"));
      if (grant) {
        limits->login_succeeded(username);
      } else if (attempt.lock_ms > 0) {
        limits->count_lockout();
        // A security event: the account (a valid user id: nothing else is
        // tracked) and the address, never the password.
        logger().warn(
            "security.login_lockout: account={} ip={} consecutive_failures={} locked_s={}",
            log_value(username), log_value(req.remote_addr), attempt.failures,
            (attempt.lock_ms + 999) / 1000);
      }
      // Any other failure (a malformed request too) stays counted: forgetting
      // it would let a bad request between guesses reset the count.
    } else if (grant_type == "refresh_token") {
      grant = service.refresh_grant(form_value(*form, "refresh_token"));
    } else {
      return oauth_error("unsupported_grant_type", "grant_type must be password or refresh_token");
    }
    if (!grant) {
      if (const char* name = grant_error_name(grant.status())) {
        return oauth_error(name, grant.status().message());
      }
      return write_status(res, grant.status());
    }
    write_json(res, 200,
               json{{"access_token", grant->access_token},
                    {"token_type", "Bearer"},
                    {"expires_in", grant->expires_in},
                    {"refresh_token", grant->refresh_token}}
                   .dump());
  });

  server_->Post("/v1/oauth/revoke", [&service](const Request& req, Response& res) {
    auto invalid = [&res](const std::string& description) {
      write_json(res, 400,
                 json{{"error", "invalid_request"},
                      {"error_description", description},
                      {"message", description}}
                     .dump());
    };
    if (!is_form(req)) return invalid("the body must be application/x-www-form-urlencoded");
    auto form = parse_form(req.body);
    if (!form) return invalid(form.status().message());
    std::string token = form_value(*form, "token");
    if (token.empty()) return invalid("token required");
    // RFC 7009 §2.2: unknown and already revoked tokens are not errors.
    if (Status s = service.revoke(token); !s.is_ok()) return write_status(res, s);
    write_json(res, 200, "{}");
  });

  server_->Post("/v1/users/me/password", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto body = parse_json_object(req);
    if (!body) return write_status(res, body.status());
    auto old_password = string_member(*body, "old_password");
    auto new_password = string_member(*body, "new_password");
    if (!old_password || !new_password) {
      return write_status(
          res, invalid_argument("\"old_password\" and \"new_password\" strings are required"));
    }
    if (Status s = service.change_password(*caller, *old_password, *new_password); !s.is_ok()) {
      return write_status(res, s);
    }
    res.status = 204;
  });

  server_->Get("/v1/conversations", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto limit = parse_limit(req, kMaxConversations, kMaxConversations);
    if (!limit) return write_status(res, limit.status());
    auto list = service.conversations(*caller, *limit);
    if (!list) return write_status(res, list.status());
    std::string out = "{\"conversations\":[";
    for (size_t i = 0; i < list->size(); ++i) {
      const store::ConversationSummary& c = (*list)[i];
      if (i > 0) out += ',';
      out += "{\"conv\":";
      out += json(c.conv).dump();
      out += ",\"last\":";
      out += c.last_envelope.empty() ? std::string("null") : c.last_envelope;
      out += ",\"unread\":";
      out += std::to_string(c.unread);
      out += '}';
    }
    out += "]}";
    write_json(res, 200, std::move(out));
  });

  server_->Get(R"(/v1/conversations/([^/]+)/messages)",
               [&service](const Request& req, Response& res) {
                 auto caller = require_principal(service, req, res);
                 if (!caller) return;
                 auto limit = parse_limit(req, kDefaultPageLimit, kMaxPageLimit);
                 if (!limit) return write_status(res, limit.status());
                 HistoryQuery query;
                 query.limit = *limit;
                 query.before = req.get_param_value("before");
                 query.after = req.get_param_value("after");
                 auto page = service.messages(*caller, req.matches[1].str(), query);
                 if (!page) return write_status(res, page.status());
                 write_json(res, 200, render_page(*page));
               });

  server_->Delete("/v1/users/me",
                  [&service, devices = options_.devices](const Request& req, Response& res) {
                    auto caller = require_principal(service, req, res);
                    if (!caller) return;
                    if (Status s = service.delete_account(*caller); !s.is_ok())
                      return write_status(res, s);
                    // Its devices get no more pushes (the broker forgot them with the user).
                    if (devices != nullptr)
                      http_internal::forget_push_targets(*devices, caller->user);
                    res.status = 204;
                  });

  // ---- groups ----

  server_->Post("/v1/groups", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto body = parse_json_object(req);
    if (!body) return write_status(res, body.status());
    auto name = string_member(*body, "name");
    if (!name) return write_status(res, invalid_argument("\"name\" string is required"));
    auto members = string_array_member(*body, "members");
    if (!members) {
      return write_status(res, invalid_argument("\"members\" must be an array of user ids"));
    }
    auto group = service.create_group(*caller, *name, *members);
    if (!group) return write_group_status(res, group.status());
    write_json(res, 201, group_json(*group).dump());
  });

  server_->Get("/v1/groups", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto groups = service.groups(*caller);
    if (!groups) return write_status(res, groups.status());
    json list = json::array();
    for (const Group& g : *groups) list.push_back(group_json(g));
    write_json(res, 200, json{{"groups", std::move(list)}}.dump());
  });

  server_->Get(R"(/v1/groups/([^/]+))", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto group = service.group(*caller, req.matches[1].str());
    if (!group) return write_status(res, group.status());
    write_json(res, 200, group_json(*group).dump());
  });

  using GroupOp = Status (Service::*)(const Principal&, std::string_view, std::string_view);
  auto group_op = [&service](GroupOp op) {
    return [&service, op](const Request& req, Response& res) {
      auto caller = require_principal(service, req, res);
      if (!caller) return;
      Status s = (service.*op)(*caller, req.matches[1].str(), req.matches[2].str());
      if (!s.is_ok()) return write_group_status(res, s);
      res.status = 204;
    };
  };
  server_->Put(R"(/v1/groups/([^/]+)/members/([^/]+))", group_op(&Service::add_member));
  server_->Put(R"(/v1/groups/([^/]+)/admins/([^/]+))", group_op(&Service::add_admin));
  server_->Delete(R"(/v1/groups/([^/]+)/members/([^/]+))", group_op(&Service::remove_member));

  // ---- blocks and reports ----

  auto block = [&service](bool blocked) {
    return [&service, blocked](const Request& req, Response& res) {
      auto caller = require_principal(service, req, res);
      if (!caller) return;
      Status s = service.set_block(*caller, req.matches[1].str(), blocked);
      if (!s.is_ok()) return write_status(res, s);
      res.status = 204;
    };
  };
  server_->Post(R"(/v1/blocks/([^/]+))", block(true));
  server_->Delete(R"(/v1/blocks/([^/]+))", block(false));

  server_->Get("/v1/blocks", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto blocked = service.blocks(*caller);
    if (!blocked) return write_status(res, blocked.status());
    write_json(res, 200, json{{"blocked", *blocked}}.dump());
  });

  server_->Post("/v1/reports", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto body = parse_json_object(req);
    if (!body) return write_status(res, body.status());
    auto user = string_member(*body, "user");
    auto reason = string_member(*body, "reason");
    auto ids = string_array_member(*body, "ids");
    if (!user || !reason || !ids) {
      return write_status(
          res,
          invalid_argument(
              "\"user\" and \"reason\" strings and an \"ids\" array of message ids are required"));
    }
    auto id = service.report(*caller, ReportInput{*user, std::move(*ids), *reason});
    if (!id) return write_status(res, id.status());
    write_json(res, 201, json{{"id", *id}}.dump());
  });

  server_->Get("/v1/sync", [&service](const Request& req, Response& res) {
    auto caller = require_principal(service, req, res);
    if (!caller) return;
    auto limit = parse_limit(req, kDefaultSyncLimit, kMaxPageLimit);
    if (!limit) return write_status(res, limit.status());
    auto page = service.sync(*caller, req.get_param_value("since"), *limit);
    if (!page) return write_status(res, page.status());
    write_json(res, 200, render_page(*page));
  });

  register_metrics_route();
  register_admin_routes();
  register_media_routes();   // media_routes.cpp
  register_device_routes();  // device_routes.cpp
  register_backup_routes();  // backup_routes.cpp
  register_key_routes();     // key_routes.cpp
  register_web_routes();     // last: see there
}

// GET/POST/DELETE /v1/admin/... (issue 5): admin role only. Every request that
// carries a valid token leaves one audit line, refusals (403) included:
//   audit: admin=<who> action=<what> target=<whom> result=<HTTP status>
void HttpServer::register_admin_routes() {
  Service& service = service_;
  using Handler = std::function<void(const Principal&, const Request&, Response&)>;
  // `target_group`: the path parameter the action is about (0: none, "-").
  auto admin = [&service](std::string action, int target_group, Handler handler) {
    return [&service, action = std::move(action), target_group, handler = std::move(handler)](
               const Request& req, Response& res) {
      auto caller = require_principal(service, req, res);
      if (!caller) return;
      if (!caller->has_role("admin")) {
        write_status(res, permission_denied("the admin API needs the admin role"));
      } else {
        handler(*caller, req, res);
      }
      std::string target = target_group > 0 ? req.matches[target_group].str() : "-";
      // Client-chosen text in a log line: no spaces or control characters.
      for (char& c : target) {
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) c = '?';
      }
      if (target.size() > 80) target.resize(80);
      logger().info("audit: admin={} action={} target={} result={}", caller->user, action, target,
                    res.status);
    };
  };

  server_->Get("/v1/admin/users",
               admin("users.list", 0,
                     [&service](const Principal& caller, const Request& req, Response& res) {
                       auto limit = parse_limit(req, kDefaultPageLimit, kMaxPageLimit);
                       if (!limit) return write_status(res, limit.status());
                       auto page =
                           service.admin_users(caller, req.get_param_value("after"), *limit);
                       if (!page) return write_status(res, page.status());
                       json users = json::array();
                       for (const auto& u : page->users) {
                         users.push_back(json{{"user", u.user},
                                              {"created_ms", u.created_ms},
                                              {"admin", u.admin},
                                              {"banned", u.banned},
                                              {"deleted", u.deleted}});
                       }
                       json out{{"users", std::move(users)}, {"next", nullptr}};
                       if (page->next) out["next"] = *page->next;
                       write_json(res, 200, out.dump());
                     }));

  auto ban = [&](bool banned) {
    return admin(banned ? "user.ban" : "user.unban", 1,
                 [&service, banned](const Principal& caller, const Request& req, Response& res) {
                   Status s = service.admin_set_ban(caller, req.matches[1].str(), banned);
                   if (!s.is_ok()) return write_status(res, s);
                   res.status = 204;
                 });
  };
  server_->Post(R"(/v1/admin/users/([^/]+)/ban)", ban(true));
  server_->Delete(R"(/v1/admin/users/([^/]+)/ban)", ban(false));

  server_->Post(R"(/v1/admin/clients/([^/]+)/kick)",
                admin("client.kick", 1,
                      [&service](const Principal& caller, const Request& req, Response& res) {
                        Status s = service.admin_kick(caller, req.matches[1].str());
                        if (!s.is_ok()) return write_status(res, s);
                        res.status = 204;
                      }));

  server_->Post(R"(/v1/admin/tokens/([^/]+)/revoke)",
                admin("token.revoke", 1,
                      [&service](const Principal& caller, const Request& req, Response& res) {
                        auto revoked = service.admin_revoke_token(caller, req.matches[1].str());
                        if (!revoked) return write_status(res, revoked.status());
                        write_json(res, 200,
                                   json{{"jti", revoked->jti},
                                        {"closed", revoked->closed},
                                        {"refresh_tokens_revoked", revoked->refresh_tokens_revoked}}
                                       .dump());
                      }));

  server_->Get(
      "/v1/admin/clients",
      admin("clients.list", 0, [&service](const Principal& caller, const Request&, Response& res) {
        auto clients = service.admin_clients(caller);
        if (!clients) return write_status(res, clients.status());
        json list = json::array();
        for (const auto& c : *clients) {
          list.push_back(json{{"clientid", c.client_id},
                              {"user", c.user},
                              {"device", c.device},
                              {"jti", c.jti},
                              {"connected_ms", c.connected_ms}});
        }
        write_json(res, 200, json{{"clients", std::move(list)}}.dump());
      }));

  server_->Get(
      "/v1/admin/stats",
      admin("stats", 0, [&service](const Principal& caller, const Request&, Response& res) {
        auto stats = service.admin_stats(caller);
        if (!stats) return write_status(res, stats.status());
        json out{{"users", stats->users},
                 {"banned", stats->banned},
                 {"deleted", stats->deleted},
                 {"connected_clients", stats->connected_clients},
                 {"broker", nullptr}};
        if (stats->broker) out["broker"] = stats->broker->stats;
        write_json(res, 200, out.dump());
      }));
}

void HttpServer::register_metrics_route() {
  const Config& config = service_.config();
  auto poller = std::make_shared<BridgeStatsPoller>(bridge_local_host(config.bind), config.ws_port,
                                                    config.ws_tls);
  bridge_stats_ = [poller]() -> std::optional<BridgeSample> { return poller->sample(); };

  Service& service = service_;
  server_->Get("/metrics", [this, &service](const Request& req, Response& res) {
    // CHAT_METRICS_TOKEN first (compared in constant time), else an access
    // token with the admin role.
    const std::string& metrics_token = service.config().metrics_token;
    Bearer b = bearer_of(req);
    bool allowed =
        !metrics_token.empty() && !b.token.empty() && constant_time_equal(b.token, metrics_token);
    if (!allowed) {
      auto caller = require_principal(service, req, res);
      if (!caller) return;
      if (!caller->has_role("admin")) {
        return write_status(
            res, permission_denied("/metrics needs an admin access token or CHAT_METRICS_TOKEN"));
      }
    }
    MetricsInput in;
    in.http = http_metrics_.get();
    in.rate_limits = rate_limits_->counters();
    in.media = service.media();
    in.keys = service.keys();
    in.process_start_s = process_start_time_s();
    in.broker_connected = service.broker_connected();
    in.broker = service.broker_stats();
    if (bridge_stats_) in.bridge = bridge_stats_();
    in.push = options_.push_metrics;
    in.now = std::chrono::steady_clock::now();
    res.status = 200;
    res.set_header("Cache-Control", "no-store");
    res.set_content(render_metrics(in), std::string(kMetricsContentType));
  });
}

void HttpServer::register_web_routes() {
  const WebOptions& web = options_.web;

  server_->Get("/config.json", [&web](const Request& req, Response& res) {
    std::string ws_url = mqtt_ws_url(web, req.get_header_value("Host"));
    res.set_header("Cache-Control", "no-store");  // depends on the Host header
    res.set_header("X-Content-Type-Options", "nosniff");
    write_json(res, 200, json{{"mqtt_ws_url", ws_url}}.dump());
  });

  // Registered last, and matching only file names with known extensions, so
  // it never hides another route. GET handlers answer HEAD too (no body).
  server_->Get(kStaticRoutePattern, [&web](const Request& req, Response& res) {
    auto file = find_static_file(web.dir, req.path);
    if (!file) {
      if (req.path == "/" || req.path == "/index.html") {
        return write_error(res, 404, "not_found",
                           "the web client is not installed on this server (build the chat-web "
                           "target, or point CHAT_WEB_DIR at the built client)");
      }
      return write_error(res, 404, "not_found", "no such file");
    }
    auto data = read_file(file->path);
    if (!data) return write_status(res, internal_error("cannot read " + file->path));
    set_web_headers(res, mqtt_ws_url(web, req.get_header_value("Host")));
    // Names under assets/ carry a content hash: they never change.
    res.set_header("Cache-Control",
                   file->immutable ? "public, max-age=31536000, immutable" : "no-cache");
    res.status = 200;
    res.set_content(std::move(*data), file->content_type);
  });
}

Result<int> HttpServer::bind(const std::string& host, int port) {
  if (!server_->is_valid()) {
    return invalid_argument(tls_error_.empty() ? "CHAT_TLS_CERT / CHAT_TLS_KEY: cannot set up TLS"
                                               : tls_error_);
  }
  int bound = -1;
  if (port == 0)
    bound = server_->bind_to_any_port(host);
  else if (server_->bind_to_port(host, port))
    bound = port;
  if (bound <= 0) {
    return unavailable("cannot listen on " + host + ":" + std::to_string(port));
  }
  raise_listen_backlog(bound);
  return bound;
}

Status HttpServer::listen() {
  if (!server_->listen_after_bind()) return unavailable("HTTP server stopped with an error");
  return Status::ok();
}

void HttpServer::stop() {
  if (server_) server_->stop();
}

bool HttpServer::is_running() const { return server_->is_running(); }

}  // namespace chat::api
