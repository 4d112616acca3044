// fake-apns: a stand-in for the APNs HTTP/2 provider API, for tests.
// HTTP/2 only (libnghttp2's server session): over TLS with ALPN "h2", or with
// --plain as h2c with prior knowledge. A TLS client that does not offer h2
// is recorded ({"kind":"no-h2"}) and disconnected.
//
// usage: fake-apns --port N --key P8 --key-id ID --team-id ID --topic BUNDLE
//                  [--record FILE] [--script FILE] (--tls-cert PEM --tls-key PEM | --plain)
//
// POST /3/device/<hex token>: checks, in Apple's order, the provider token
// (authorization: bearer <ES256 JWT>, kid = key id, verified against the
// key; iss = team id; iat not older than an hour: else 403
// MissingProviderToken / InvalidProviderToken / ExpiredProviderToken), then
// apns-topic (400 MissingTopic / BadTopic), apns-push-type (InvalidPushType),
// apns-collapse-id (<= 64 bytes, BadCollapseId), apns-priority (BadPriority),
// apns-expiration (BadExpirationDate), the payload (a JSON object with an
// "aps" object, <= 4096 bytes: PayloadEmpty / BadPayload / 413
// PayloadTooLarge); then the script for the token, else 200 with an apns-id.
// Every request is recorded (fake_support.h). Prints "listening <port>".
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <map>
#include <thread>

#include "chat/common/jwt.h"
#include "fake_support.h"

namespace {

using chat::fakes::json;

constexpr size_t kMaxBody = 8 * 1024;
constexpr size_t kMaxHeaders = 64;
constexpr int kMaxConnections = 64;

struct Settings {
  std::string key_id, team_id, topic;
  chat::jwt::KeySet keys;
  chat::fakes::Script script;
  chat::fakes::Recorder recorder;
  SSL_CTX* tls = nullptr;  // null with --plain
  std::atomic<int> connections{0};
  std::atomic<int> counter{0};
};

struct Stream {
  std::map<std::string, std::string> headers;
  size_t header_count = 0;
  std::string body;
  bool too_large = false;
  // The answer.
  std::string response_body;
  size_t sent = 0;
};

struct Connection {
  Settings* settings = nullptr;
  int fd = -1;
  SSL* ssl = nullptr;
  std::string alpn;
  std::map<int32_t, Stream> streams;
};

bool write_all(Connection& c, const uint8_t* data, size_t len) {
  while (len > 0) {
    ssize_t n = 0;
    if (c.ssl != nullptr) {
      n = SSL_write(c.ssl, data, static_cast<int>(len));
    } else {
      n = ::send(c.fd, data, len, MSG_NOSIGNAL);
    }
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t length, int, void* user) {
  auto* c = static_cast<Connection*>(user);
  if (!write_all(*c, data, length)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  return static_cast<ssize_t>(length);
}

int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<Connection*>(user);
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    c->streams[frame->hd.stream_id];
  }
  return 0;
}

int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* user) {
  auto* c = static_cast<Connection*>(user);
  auto it = c->streams.find(frame->hd.stream_id);
  if (it == c->streams.end()) return 0;
  Stream& s = it->second;
  if (++s.header_count > kMaxHeaders) return 0;
  std::string n(reinterpret_cast<const char*>(name), namelen);
  std::string v(reinterpret_cast<const char*>(value), valuelen);
  if (s.headers.count(n)) {
    s.headers["x-duplicate"] = n;  // APNs: DuplicateHeaders
  }
  s.headers[n] = v;
  return 0;
}

int on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                  void* user) {
  auto* c = static_cast<Connection*>(user);
  auto it = c->streams.find(stream_id);
  if (it == c->streams.end()) return 0;
  Stream& s = it->second;
  if (s.body.size() + len > kMaxBody) {
    s.too_large = true;
    return 0;
  }
  s.body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

ssize_t read_response(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length,
                      uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* c = static_cast<Connection*>(user);
  auto it = c->streams.find(stream_id);
  if (it == c->streams.end()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  Stream& s = it->second;
  const size_t n = std::min(length, s.response_body.size() - s.sent);
  std::memcpy(buf, s.response_body.data() + s.sent, n);
  s.sent += n;
  if (s.sent == s.response_body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

bool is_hex(const std::string& s) {
  return !s.empty() && s.size() <= 200 && std::all_of(s.begin(), s.end(), [](char ch) {
    return std::isxdigit(static_cast<unsigned char>(ch)) != 0;
  });
}

bool is_int(const std::string& s) {
  return !s.empty() && s.size() < 19 &&
         std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

// Apple's checks. Returns {status, reason}; {0, ""} when the request is good.
std::pair<int, std::string> check(Settings& st, Stream& s, json& rec) {
  auto header = [&](const char* name) {
    auto it = s.headers.find(name);
    return it == s.headers.end() ? std::string() : it->second;
  };
  if (s.headers.count("x-duplicate")) return {400, "DuplicateHeaders"};
  if (header(":method") != "POST") return {405, "MethodNotAllowed"};
  const std::string path = header(":path");
  if (path.rfind("/3/device/", 0) != 0) return {404, "BadPath"};
  const std::string token = path.substr(10);
  if (token.empty()) return {400, "MissingDeviceToken"};
  if (!is_hex(token)) return {400, "BadDeviceToken"};

  const std::string auth = header("authorization");
  if (auth.empty()) return {403, "MissingProviderToken"};
  if (auth.rfind("bearer ", 0) != 0) return {403, "InvalidProviderToken"};
  const std::string jwt = auth.substr(7);
  auto payload = chat::jwt::verify_jws(jwt, st.keys);
  if (!payload) {
    rec["auth_error"] = payload.status().message();
    return {403, "InvalidProviderToken"};
  }
  json claims = json::parse(*payload, nullptr, false);
  if (!claims.is_object() || claims.value("iss", "") != st.team_id || !claims.contains("iat") ||
      !claims["iat"].is_number_integer()) {
    return {403, "InvalidProviderToken"};
  }
  const int64_t iat = claims["iat"].get<int64_t>();
  rec["auth_iat"] = iat;
  const int64_t now_s = chat::fakes::now_ms() / 1000;
  if (iat > now_s + 60) return {403, "InvalidProviderToken"};
  if (iat < now_s - 3600) return {403, "ExpiredProviderToken"};

  const std::string topic = header("apns-topic");
  if (topic.empty()) return {400, "MissingTopic"};
  if (topic != st.topic) return {400, "BadTopic"};
  const std::string push_type = header("apns-push-type");
  static const char* kTypes[] = {"alert",        "background",   "voip",
                                 "complication", "fileprovider", "mdm",
                                 "liveactivity", "location",     "pushtotalk"};
  if (std::none_of(std::begin(kTypes), std::end(kTypes),
                   [&](const char* t) { return push_type == t; })) {
    return {400, "InvalidPushType"};
  }
  if (header("apns-collapse-id").size() > 64) return {400, "BadCollapseId"};
  const std::string priority = header("apns-priority");
  if (!priority.empty() && priority != "10" && priority != "5" && priority != "1") {
    return {400, "BadPriority"};
  }
  const std::string expiration = header("apns-expiration");
  if (!expiration.empty() && !is_int(expiration)) return {400, "BadExpirationDate"};

  if (s.too_large || s.body.size() > 4096) return {413, "PayloadTooLarge"};
  if (s.body.empty()) return {400, "PayloadEmpty"};
  json body = json::parse(s.body, nullptr, false);
  if (!body.is_object() || !body.contains("aps") || !body["aps"].is_object()) {
    return {400, "BadPayload"};  // not an Apple reason: the fake's own
  }
  return {0, ""};
}

void respond(nghttp2_session* session, Connection& c, int32_t stream_id) {
  Settings& st = *c.settings;
  Stream& s = c.streams[stream_id];
  json rec = {{"kind", "send"}, {"proto", "h2"}, {"alpn", c.alpn}, {"ts", chat::fakes::now_ms()}};
  json headers = json::object();
  for (const auto& [k, v] : s.headers) {
    if (k == ":method") rec["method"] = v;
    if (k == ":path") rec["path"] = v;
    if (k.rfind("apns-", 0) == 0 || k == "authorization" || k == "content-type") headers[k] = v;
  }
  rec["headers"] = headers;
  json body = json::parse(s.body, nullptr, false);
  rec["body"] = body.is_discarded() ? json(s.body.substr(0, 4096)) : body;
  const std::string path = rec.value("path", "");
  const std::string token = path.rfind("/3/device/", 0) == 0 ? path.substr(10) : "";
  rec["token"] = token;

  auto [status, reason] = check(st, s, rec);
  std::map<std::string, std::string> extra;
  int delay_ms = 0;
  bool scripted_body = false;
  if (status == 0) {
    if (auto scripted = st.script.next(token)) {
      status = scripted->status;
      extra = scripted->headers;
      delay_ms = scripted->delay_ms;
      rec["scripted"] = true;
      if (scripted->has_body) {
        s.response_body = scripted->body;
        scripted_body = true;
      }
    } else {
      status = 200;
    }
  }
  if (!scripted_body) {
    if (status == 200) {
      s.response_body.clear();
    } else {
      if (reason.empty()) {
        reason = status == 410   ? "Unregistered"
                 : status == 429 ? "TooManyRequests"
                 : status >= 500 ? "InternalServerError"
                                 : "BadRequest";
      }
      json err = {{"reason", reason}};
      if (status == 410) err["timestamp"] = chat::fakes::now_ms();
      s.response_body = err.dump();
    }
  }
  rec["status"] = status;
  if (!reason.empty()) rec["reason"] = reason;
  st.recorder.record(rec);
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));

  const std::string status_text = std::to_string(status);
  const std::string apns_id = "00000000-0000-4000-8000-" + [&] {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%012d", ++st.counter);
    return std::string(buf);
  }();
  std::vector<std::pair<std::string, std::string>> out = {{":status", status_text},
                                                          {"apns-id", apns_id}};
  if (!s.response_body.empty()) out.emplace_back("content-type", "application/json");
  for (const auto& [k, v] : extra) out.emplace_back(k, v);
  std::vector<nghttp2_nv> nva;
  for (auto& [k, v] : out) {
    nva.push_back({reinterpret_cast<uint8_t*>(k.data()), reinterpret_cast<uint8_t*>(v.data()),
                   k.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
  }
  nghttp2_data_provider provider{};
  provider.read_callback = read_response;
  // nghttp2 copies the header strings here.
  nghttp2_submit_response(session, stream_id, nva.data(), nva.size(),
                          s.response_body.empty() ? nullptr : &provider);
}

int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto* c = static_cast<Connection*>(user);
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 &&
      c->streams.count(frame->hd.stream_id) != 0) {
    respond(session, *c, frame->hd.stream_id);
  }
  return 0;
}

int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  static_cast<Connection*>(user)->streams.erase(stream_id);
  return 0;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 2 && std::memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no h2 offered: the handshake goes on, we then hang up
}

void serve(Settings* st, int fd) {
  Connection c;
  c.settings = st;
  c.fd = fd;
  timeval tv{120, 0};  // an idle client is dropped after two minutes
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (st->tls != nullptr) {
    c.ssl = SSL_new(st->tls);
    SSL_set_fd(c.ssl, fd);
    if (SSL_accept(c.ssl) != 1) {
      st->recorder.record({{"kind", "tls-failed"}, {"ts", chat::fakes::now_ms()}});
      ERR_clear_error();
      SSL_free(c.ssl);
      ::close(fd);
      return;
    }
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(c.ssl, &alpn, &alpn_len);
    c.alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    if (c.alpn != "h2") {
      st->recorder.record({{"kind", "no-h2"}, {"ts", chat::fakes::now_ms()}});
      SSL_shutdown(c.ssl);
      SSL_free(c.ssl);
      ::close(fd);
      return;
    }
  } else {
    c.alpn = "h2c";
  }

  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_send_callback(callbacks, on_send);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_session* session = nullptr;
  nghttp2_session_server_new(&session, callbacks, &c);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, 1);

  uint8_t buf[16384];
  while (true) {
    if (nghttp2_session_send(session) != 0) break;
    if (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0) break;
    ssize_t n =
        c.ssl != nullptr ? SSL_read(c.ssl, buf, sizeof(buf)) : ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    if (nghttp2_session_mem_recv(session, buf, static_cast<size_t>(n)) < 0) {
      nghttp2_session_send(session);  // a GOAWAY, if the library queued one
      break;
    }
  }
  nghttp2_session_del(session);
  if (c.ssl != nullptr) {
    SSL_shutdown(c.ssl);
    SSL_free(c.ssl);
  }
  ERR_clear_error();
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Settings st;
  int port = 0;
  try {
    auto args = chat::fakes::parse_args(argc, argv);
    for (const char* required : {"port", "key", "key-id", "team-id", "topic"}) {
      if (!args.count(required))
        throw std::runtime_error(std::string("--") + required + " is required");
    }
    port = std::stoi(args["port"]);
    st.key_id = args["key-id"];
    st.team_id = args["team-id"];
    st.topic = args["topic"];
    auto signer = chat::jwt::Signer::from_pem(chat::fakes::read_file(args["key"]), st.key_id);
    if (!signer) throw std::runtime_error("--key: " + signer.status().message());
    auto keys = chat::jwt::KeySet::from_jwks(signer->public_jwks());
    if (!keys) throw std::runtime_error("--key: " + keys.status().message());
    st.keys = std::move(keys).value();
    st.script.load(args.count("script") ? args["script"] : "");
    st.recorder.open(args.count("record") ? args["record"] : "");
    if (!args.count("plain")) {
      if (!args.count("tls-cert") || !args.count("tls-key")) {
        throw std::runtime_error("--tls-cert and --tls-key (or --plain) are required");
      }
      st.tls = SSL_CTX_new(TLS_server_method());
      SSL_CTX_set_min_proto_version(st.tls, TLS1_2_VERSION);
      if (SSL_CTX_use_certificate_chain_file(st.tls, args["tls-cert"].c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(st.tls, args["tls-key"].c_str(), SSL_FILETYPE_PEM) != 1) {
        throw std::runtime_error("bad --tls-cert/--tls-key");
      }
      SSL_CTX_set_alpn_select_cb(st.tls, select_alpn, nullptr);
    }
  } catch (const std::exception& e) {
    std::cerr << "fake-apns: " << e.what() << "\n";
    return 2;
  }

  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(lfd, 64) != 0) {
    std::cerr << "fake-apns: cannot bind 127.0.0.1:" << port << "\n";
    return 1;
  }
  std::cout << "listening " << port << std::endl;
  while (true) {
    int fd = ::accept(lfd, nullptr, nullptr);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
      break;
    }
    if (st.connections.load() >= kMaxConnections) {
      ::close(fd);
      continue;
    }
    ++st.connections;
    std::thread([&st, fd] {
      serve(&st, fd);
      --st.connections;
    }).detach();
  }
  return 0;
}
