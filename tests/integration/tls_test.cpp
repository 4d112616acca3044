// TLS everywhere (CONTRACT §1): the real stack with the CHAT_TLS=dev CA
// (scripts/tls-dev): MQTT over TLS, https, TLS 1.2 as the floor, the plain
// MQTT listener on 127.0.0.1 only, and the dev CA itself.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "stack.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A TLS handshake with 127.0.0.1:port by a client limited to [min, max]
// protocol versions (and `ciphers` for TLS <= 1.2 when given), verifying the
// server against `ca` when given. Returns the negotiated version, or 0 when
// the handshake failed.
int handshake(int port, int min_version, int max_version, const std::string& ca = "",
              const char* ciphers = nullptr) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  // Security level 0: let this client offer what it is told to (TLS 1.1),
  // so that a refusal can only come from the server.
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_min_proto_version(ctx, min_version);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  if (ciphers != nullptr) SSL_CTX_set_cipher_list(ctx, ciphers);
  if (!ca.empty()) {
    SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  int version = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (!ca.empty()) SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) == 1) version = SSL_version(ssl);
    SSL_free(ssl);
  }
  ERR_clear_error();
  ::close(fd);
  SSL_CTX_free(ctx);
  return version;
}

X509* load_cert(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return nullptr;
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  return cert;
}

std::string fingerprint(const std::string& path) {
  X509* cert = load_cert(path);
  if (cert == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert, EVP_sha256(), md, &len);
  X509_free(cert);
  return std::string(reinterpret_cast<char*>(md), len);
}

// "DNS:name" / "IP:a.b.c.d" entries of the certificate's subjectAltName.
std::set<std::string> sans(const std::string& path) {
  std::set<std::string> out;
  X509* cert = load_cert(path);
  if (cert == nullptr) return out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_STRING* s = name->d.dNSName;
      out.insert("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                      static_cast<size_t>(ASN1_STRING_length(s))));
    } else if (name->type == GEN_IPADD && ASN1_STRING_length(name->d.iPAddress) == 4) {
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, ASN1_STRING_get0_data(name->d.iPAddress), text, sizeof text);
      out.insert(std::string("IP:") + text);
    }
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return out;
}

bool signed_by(const std::string& cert_path, const std::string& ca_path) {
  X509* cert = load_cert(cert_path);
  X509* ca = load_cert(ca_path);
  bool ok = cert != nullptr && ca != nullptr && X509_verify(cert, X509_get0_pubkey(ca)) == 1;
  X509_free(cert);
  X509_free(ca);
  return ok;
}

// The listening TCP sockets on `port` as "address:port" in /proc/net/tcp's
// hex form (0100007F = 127.0.0.1, 00000000 = every interface).
std::vector<std::string> listeners_on(int port) {
  std::vector<std::string> out;
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  char want[8];
  std::snprintf(want, sizeof want, "%04X", port);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (state == "0A" && local.substr(local.find(':') + 1) == want) out.push_back(local);
  }
  return out;
}

int run_tls_dev(const std::string& dir, const std::string& bind) {
  Process p;
  p.start({CHAT_SOURCE_DIR "/scripts/tls-dev", dir}, {{"CHAT_BIND", bind}}, dir + "/tls-dev.log");
  return p.wait(20s);
}

TEST(Tls, MqttsConnectPublishReceiveWithAJwt) {
  Stack s({.tls = true});
  std::string alice = s.register_user("alice");  // over https, verified against the CA
  std::string bob = s.register_user("bob");

  auto bob_opts = device("bob", "phone", bob);
  bob_opts.cafile = s.ca_path();
  MqttClient b(s.mqtts_port(), bob_opts);
  ASSERT_EQ(b.connect(), 0) << s.log_tail("mosquitto");
  ASSERT_EQ(b.subscribe("u/bob/#"), 1);

  auto alice_opts = device("alice", "laptop", alice);
  alice_opts.cafile = s.ca_path();
  MqttClient a(s.mqtts_port(), alice_opts);
  ASSERT_EQ(a.connect(), 0);
  EXPECT_TRUE(is_success(a.publish("dm/bob", text("c1", "over tls"))));
  ASSERT_TRUE(b.wait_for([](const std::vector<Received>& m) { return !m.empty(); }, 5s));
  EXPECT_EQ(b.received()[0].body()["body"], "over tls");

  // A client that does not trust the dev CA gets no session.
  auto stranger = device("alice", "other", alice);
  stranger.cafile = "/etc/ssl/certs/ca-certificates.crt";
  if (fs::exists(stranger.cafile)) {
    MqttClient c(s.mqtts_port(), stranger);
    EXPECT_NE(c.connect(), 0);
  }
  // No token, no session, TLS or not.
  auto anonymous = device("alice", "x", "not-a-token");
  anonymous.cafile = s.ca_path();
  MqttClient d(s.mqtts_port(), anonymous);
  EXPECT_NE(d.connect(), 0);
}

TEST(Tls, OnlyTls12AndNewerWithAeadCiphers) {
  Stack s({.tls = true});
  for (int port : {s.mqtts_port(), s.http_port(), s.ws_port()}) {
    SCOPED_TRACE(port == s.mqtts_port() ? "mqtts" : port == s.http_port() ? "https" : "wss");
    EXPECT_EQ(handshake(port, TLS1_2_VERSION, TLS1_2_VERSION, s.ca_path()), TLS1_2_VERSION);
    EXPECT_EQ(handshake(port, TLS1_3_VERSION, TLS1_3_VERSION, s.ca_path()), TLS1_3_VERSION);
    // Fail closed: a client that can speak at most TLS 1.1 gets no handshake.
    EXPECT_EQ(handshake(port, TLS1_VERSION, TLS1_1_VERSION), 0);
    // TLS 1.2 without ECDHE+AEAD (CBC, or RSA key exchange) is refused.
    EXPECT_EQ(handshake(port, TLS1_2_VERSION, TLS1_2_VERSION, "", "ECDHE-ECDSA-AES128-SHA256"), 0);
    EXPECT_EQ(handshake(port, TLS1_2_VERSION, TLS1_2_VERSION, "", "AES128-GCM-SHA256"), 0);
  }
}

TEST(Tls, HttpsServesTheApiAndRefusesPlainHttp) {
  Stack s({.tls = true});
  EXPECT_EQ(s.get("/healthz", "").first, 200);
  std::string token = s.register_user("carol");
  EXPECT_FALSE(token.empty());
  EXPECT_EQ(s.login("carol").empty(), false);
  // The browser client is told to use wss://.
  auto [status, config] = s.get("/config.json", "");
  EXPECT_EQ(status, 200);
  EXPECT_EQ(config.value("mqtt_ws_url", "").rfind("wss://", 0), 0u) << config.dump();

  // Plain HTTP to the https port gets no HTTP answer.
  httplib::Client plain("127.0.0.1", s.http_port());
  plain.set_connection_timeout(2);
  plain.set_read_timeout(2);
  auto r = plain.Get("/healthz");
  EXPECT_TRUE(!r || r->status != 200);
  // https verified against the system CAs only (not the dev CA) fails.
  httplib::Client untrusted(s.base_url());
  untrusted.enable_server_certificate_verification(true);
  untrusted.set_ca_cert_path("/etc/ssl/certs/ca-certificates.crt");
  EXPECT_FALSE(untrusted.Get("/healthz"));
}

TEST(Tls, PlainMqttListenerIsLocalOnlyWhateverTheBind) {
  Stack s({.env = {{"CHAT_BIND", "0.0.0.0"}}, .tls = true});
  std::string conf = read_text(s.data_dir() + "/mosquitto.conf");
  EXPECT_NE(conf.find("\nlistener " + std::to_string(s.mqtt_port()) + " 127.0.0.1\n"),
            std::string::npos)
      << conf;
  EXPECT_NE(conf.find("\nlistener " + std::to_string(s.mqtts_port()) + " 0.0.0.0\n"),
            std::string::npos);
  EXPECT_NE(conf.find("\ntls_version tlsv1.2\n"), std::string::npos);
  char plain[16], any[16];
  std::snprintf(plain, sizeof plain, "0100007F:%04X", s.mqtt_port());
  std::snprintf(any, sizeof any, "00000000:%04X", s.mqtts_port());
  EXPECT_EQ(listeners_on(s.mqtt_port()), std::vector<std::string>{plain});
  EXPECT_EQ(listeners_on(s.mqtts_port()), std::vector<std::string>{any});
  // The control client and the bridge use the local listener: the stack is healthy.
  EXPECT_EQ(s.get("/healthz", "").first, 200);
}

TEST(Tls, WithoutTlsNothingChanges) {
  Stack s;
  std::string conf = read_text(s.data_dir() + "/mosquitto.conf");
  EXPECT_EQ(conf.find("certfile"), std::string::npos);
  EXPECT_EQ(conf.find("\n@TLS"), std::string::npos);  // the template's TLS lines are dropped
  EXPECT_NE(conf.find("\nlistener " + std::to_string(s.mqtt_port()) + " 127.0.0.1\n"),
            std::string::npos);
  EXPECT_EQ(conf.find("\nlistener "), conf.rfind("\nlistener "));  // one listener
  EXPECT_EQ(s.get("/healthz", "").first, 200);                     // plain http
}

TEST(Tls, ApiRefusesAKeyItCannotRead) {
  char tmpl[] = "/tmp/chat-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ASSERT_EQ(run_tls_dev(dir, "127.0.0.1"), 0);
  Process api;
  api.start({CHAT_BIN_DIR "/chat-api", "--init"},
            {{"CHAT_DATA_DIR", dir},
             {"CHAT_TLS_CERT", dir + "/tls/server.pem"},
             {"CHAT_TLS_KEY", dir + "/tls/missing.key"}},
            dir + "/api.log");
  EXPECT_EQ(api.wait(20s), 2);
  std::string log = read_text(dir + "/api.log");
  EXPECT_EQ(log.rfind("chat-api: CHAT_TLS_KEY: cannot read", 0), 0u) << log;
  api.start({CHAT_BIN_DIR "/chat-api", "--init"},
            {{"CHAT_DATA_DIR", dir}, {"CHAT_TLS_CERT", dir + "/tls/server.pem"}},
            dir + "/api2.log");
  EXPECT_EQ(api.wait(20s), 2);
  log = read_text(dir + "/api2.log");
  EXPECT_NE(log.find("CHAT_TLS_KEY: must be set when CHAT_TLS_CERT is"), std::string::npos) << log;
  // A key that is not the certificate's.
  api.start({CHAT_BIN_DIR "/chat-api", "--init"},
            {{"CHAT_DATA_DIR", dir},
             {"CHAT_TLS_CERT", dir + "/tls/server.pem"},
             {"CHAT_TLS_KEY", dir + "/tls/ca.key"}},
            dir + "/api3.log");
  EXPECT_EQ(api.wait(20s), 2);
  log = read_text(dir + "/api3.log");
  EXPECT_EQ(log.rfind("chat-api: CHAT_TLS_KEY: ", 0), 0u) << log;
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(Tls, DevCaIsKeptAndTheServerCertificateFollowsTheBind) {
  char tmpl[] = "/tmp/chat-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, ca = dir + "/tls/ca.pem", cert = dir + "/tls/server.pem";

  ASSERT_EQ(run_tls_dev(dir, "chat.example.test"), 0) << read_text(dir + "/tls-dev.log");
  const std::string ca_fp = fingerprint(ca), cert_fp = fingerprint(cert);
  ASSERT_FALSE(ca_fp.empty());
  EXPECT_EQ(sans(cert),
            (std::set<std::string>{"DNS:localhost", "IP:127.0.0.1", "DNS:chat.example.test"}));
  EXPECT_TRUE(signed_by(cert, ca));
  for (const char* key : {"/tls/ca.key", "/tls/server.key"}) {
    struct stat st {};
    ASSERT_EQ(::stat((dir + key).c_str(), &st), 0) << key;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << key;
  }

  // Idempotent: the same CA, and the same server certificate while it fits.
  ASSERT_EQ(run_tls_dev(dir, "chat.example.test"), 0);
  EXPECT_EQ(fingerprint(ca), ca_fp);
  EXPECT_EQ(fingerprint(cert), cert_fp);

  // A bind the certificate does not cover: a new server certificate, same CA.
  ASSERT_EQ(run_tls_dev(dir, "127.0.0.2"), 0);
  EXPECT_EQ(fingerprint(ca), ca_fp);
  EXPECT_NE(fingerprint(cert), cert_fp);
  EXPECT_EQ(sans(cert), (std::set<std::string>{"DNS:localhost", "IP:127.0.0.1", "IP:127.0.0.2"}));
  EXPECT_TRUE(signed_by(cert, ca));

  // Half a CA is an error, not a silent new CA.
  fs::remove(dir + "/tls/ca.key");
  EXPECT_NE(run_tls_dev(dir, "127.0.0.2"), 0);
  EXPECT_EQ(fingerprint(ca), ca_fp);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace chat::testing
