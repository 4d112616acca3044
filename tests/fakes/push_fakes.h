// Test harness for the push providers: test-only keys made at test time with
// the openssl tool (never committed), and fake-fcm / fake-apns started as
// processes on free ports, with their request records read back as JSON.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stack.h"

namespace chat::testing {

// Keys and certificates in a fresh temp dir (removed by the destructor).
struct PushTestKeys {
  PushTestKeys();
  ~PushTestKeys();
  PushTestKeys(const PushTestKeys&) = delete;

  std::string dir;
  // FCM: a service-account JSON file (RSA 2048), project "chat-test".
  std::string service_account;
  std::string client_email = "push@chat-test.iam.gserviceaccount.com";
  std::string project_id = "chat-test";
  // APNs: a .p8 (PKCS#8 EC P-256) and its ids.
  std::string apns_key;
  std::string key_id = "ABC123DEFG";
  std::string team_id = "TEAM123456";
  std::string topic = "com.example.chat";
  // TLS: a CA and a server certificate for 127.0.0.1/localhost signed by it
  // (scripts/tls-dev), and a second CA that signed nothing we serve.
  std::string ca;
  std::string server_cert;
  std::string server_key;
  std::string other_ca;
};

struct FakeOptions {
  bool tls = true;  // fake-apns: false = h2c with prior knowledge
  nlohmann::json script = nlohmann::json::object();
  int token_ttl_s = 3600;  // fake-fcm's expires_in
};

// One fake provider process. The destructor stops it (SIGTERM).
class FakeProvider {
 public:
  enum class Kind { kFcm, kApns };
  FakeProvider(Kind kind, const PushTestKeys& keys, FakeOptions options = {});
  ~FakeProvider();

  int port() const { return port_; }
  // "http(s)://127.0.0.1:<port>"
  std::string url() const;
  // Every recorded request so far.
  std::vector<nlohmann::json> records() const;
  // Records of one kind ("oauth", "send", "no-h2", "tls-failed", ...).
  std::vector<nlohmann::json> records(const std::string& kind) const;
  // Waits until `n` records of `kind` exist.
  bool wait_records(const std::string& kind, size_t n,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  std::string log() const;

 private:
  Kind kind_;
  bool tls_;
  int port_ = 0;
  std::string record_path_;
  std::string log_path_;
  Process process_;
};

}  // namespace chat::testing
