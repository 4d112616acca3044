#include "chat/api/http_client.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace chat::api {
namespace {

// curl_global_init is not thread-safe and must run once per process before
// any other curl call; it is never undone (other code may use curl too).
void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// Every certificate of a PEM file. Empty when the file has none or is unreadable.
std::vector<X509Ptr> read_pem_certificates(const std::string& path) {
  std::vector<X509Ptr> out;
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return out;
  while (X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr)) out.emplace_back(x);
  std::fclose(f);
  ERR_clear_error();  // the end of the file reads as an error
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

struct Exchange {
  HttpResponse response;
  size_t max_body = 0;
  bool too_large = false;
};

size_t on_body(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const size_t n = size * count;
  if (ex->response.body.size() + n > ex->max_body) {
    ex->too_large = true;
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  ex->response.body.append(data, n);
  return n;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const size_t n = size * count;
  std::string_view line(data, n);
  if (line.substr(0, 5) == "HTTP/") {
    // A new status line (after a 100 Continue): earlier headers were not the answer's.
    ex->response.headers.clear();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return n;
  if (ex->response.headers.size() >= 200) return n;  // a hostile server's flood: ignored
  ex->response.headers.emplace_back(lower(line.substr(0, colon)),
                                    std::string(trim(line.substr(colon + 1))));
  return n;
}

// CURLOPT_SSL_CTX_FUNCTION: adds the extra CA certificates to the store that
// curl already filled with the system's.
CURLcode on_ssl_ctx(CURL*, void* ssl_ctx, void* user) {
  auto* certs = static_cast<const std::vector<X509Ptr>*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  if (store == nullptr) return CURLE_SSL_CERTPROBLEM;
  for (const auto& cert : *certs) X509_STORE_add_cert(store, cert.get());  // duplicates are fine
  ERR_clear_error();
  return CURLE_OK;
}

}  // namespace

struct HttpClient::Impl {
  HttpClientOptions options;
  std::vector<X509Ptr> extra_ca;
  std::mutex mu;
  std::vector<CURL*> idle;  // guarded by mu

  ~Impl() {
    for (CURL* h : idle) curl_easy_cleanup(h);
  }

  CURL* acquire() {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }

  void release(CURL* h) {
    std::lock_guard<std::mutex> lock(mu);
    idle.push_back(h);
  }
};

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::create(HttpClientOptions options) {
  global_init();
  auto impl = std::make_unique<Impl>();
  if (!options.extra_ca_file.empty()) {
    impl->extra_ca = read_pem_certificates(options.extra_ca_file);
    if (impl->extra_ca.empty()) {
      return invalid_argument("cannot read a PEM certificate from '" + options.extra_ca_file + "'");
    }
  }
  impl->options = std::move(options);
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

Result<HttpResponse> HttpClient::post(const std::string& url, const HttpHeaders& headers,
                                      std::string_view body) {
  const HttpClientOptions& o = impl_->options;
  CURL* h = impl_->acquire();
  if (h == nullptr) return internal_error("curl_easy_init failed");
  // The handle goes back to the pool (with its open connections) afterwards.
  struct Return {
    Impl* impl;
    CURL* h;
    ~Return() { impl->release(h); }
  } give_back{impl_.get(), h};
  curl_easy_reset(h);  // options only: the connection cache survives

  curl_slist* list = nullptr;
  for (const auto& [name, value] : headers) {
    list = curl_slist_append(list, (name + ": " + value).c_str());
  }
  // Without this, curl sends "Expect: 100-continue" for bodies over 1 KiB.
  list = curl_slist_append(list, "Expect:");
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> list_owner(list, curl_slist_free_all);

  Exchange ex;
  ex.max_body = o.max_response_bytes;
  char error[CURL_ERROR_SIZE] = {};

  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS time-outs
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");  // never an http_proxy from the environment
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(o.total_timeout.count()));
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  // APNs asks for long-lived connections: keep an idle one for up to an hour
  // (curl's default is 118 s); a connection the server closed is detected
  // and replaced.
  curl_easy_setopt(h, CURLOPT_MAXAGE_CONN, 3600L);
  const bool plain = url.rfind("http://", 0) == 0;
  long version = CURL_HTTP_VERSION_2TLS;
  if (o.version == HttpVersion::kHttp2Only) {
    version = plain ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE : CURL_HTTP_VERSION_2TLS;
  }
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, version);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
  if (!impl_->extra_ca.empty()) {
    curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, &impl_->extra_ca);
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &ex);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);

  const CURLcode rc = curl_easy_perform(h);
  if (ex.too_large) {
    return resource_exhausted("response body over " + std::to_string(o.max_response_bytes) +
                              " bytes");
  }
  if (rc != CURLE_OK) {
    return unavailable(std::string(curl_easy_strerror(rc)) + (error[0] ? ": " : "") + error);
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  long http_version = 0;
  curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &http_version);
  ex.response.status = static_cast<int>(status);
  switch (http_version) {
    case CURL_HTTP_VERSION_2_0:
      ex.response.http_version = 2;
      break;
    case CURL_HTTP_VERSION_3:
      ex.response.http_version = 3;
      break;
    default:
      ex.response.http_version = 1;
  }
  if (o.version == HttpVersion::kHttp2Only && ex.response.http_version != 2) {
    return unavailable("the server did not speak HTTP/2");
  }
  return std::move(ex.response);
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now,
                                                      std::chrono::seconds max) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc::result_out_of_range) return max;
    if (ec != std::errc() || end != value.data() + value.size()) return std::nullopt;
    return std::min(std::chrono::seconds(n), max);
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (the only form senders may use).
  if (value.size() > 64) return std::nullopt;
  std::string text(value);
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const time_t at = ::timegm(&tm);
  if (at == static_cast<time_t>(-1)) return std::nullopt;
  const auto delta = std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::system_clock::from_time_t(at) - now);
  if (delta.count() < 0) return std::chrono::seconds(0);
  return std::min(delta, max);
}

std::string form_escape(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace chat::api
