#include "push_fakes.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace chat::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void run(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
    throw std::runtime_error("test key generation failed: " + command);
  }
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

PushTestKeys::PushTestKeys() {
  char tmpl[] = "/tmp/chat-push-keys-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir = tmpl;
  const std::string rsa = dir + "/sa.key";
  run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " + rsa);
  json sa = {{"type", "service_account"},
             {"project_id", project_id},
             {"private_key_id", "test-only"},
             {"private_key", slurp(rsa)},
             {"client_email", client_email},
             {"client_id", "1"},
             {"token_uri", "https://oauth2.googleapis.com/token"}};
  service_account = dir + "/service-account.json";
  std::ofstream(service_account) << sa.dump(2);
  apns_key = dir + "/AuthKey_" + key_id + ".p8";
  run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + apns_key);
  run(std::string(CHAT_SOURCE_DIR) + "/scripts/tls-dev " + dir + "/trusted");
  run(std::string(CHAT_SOURCE_DIR) + "/scripts/tls-dev " + dir + "/other");
  ca = dir + "/trusted/tls/ca.pem";
  server_cert = dir + "/trusted/tls/server.pem";
  server_key = dir + "/trusted/tls/server.key";
  other_ca = dir + "/other/tls/ca.pem";
}

PushTestKeys::~PushTestKeys() {
  std::error_code ec;
  if (!std::getenv("CHAT_KEEP_TEST_DATA")) fs::remove_all(dir, ec);
}

FakeProvider::FakeProvider(Kind kind, const PushTestKeys& keys, FakeOptions options)
    : kind_(kind), tls_(options.tls) {
  static std::atomic<int> counter{0};
  const std::string base = keys.dir + "/" + (kind == Kind::kFcm ? "fcm-" : "apns-") +
                           std::to_string(::getpid()) + "-" + std::to_string(++counter);
  record_path_ = base + ".jsonl";
  log_path_ = base + ".log";
  const std::string script_path = base + "-script.json";
  std::ofstream(script_path) << options.script.dump();
  std::ofstream(record_path_).flush();  // exists (empty) before the first request
  port_ = free_port();
  std::vector<std::string> argv;
  if (kind == Kind::kFcm) {
    argv = {CHAT_FAKE_FCM,
            "--port",
            std::to_string(port_),
            "--service-account",
            keys.service_account,
            "--record",
            record_path_,
            "--script",
            script_path,
            "--token-ttl",
            std::to_string(options.token_ttl_s)};
  } else {
    argv = {CHAT_FAKE_APNS, "--port",    std::to_string(port_), "--key",      keys.apns_key,
            "--key-id",     keys.key_id, "--team-id",           keys.team_id, "--topic",
            keys.topic,     "--record",  record_path_,          "--script",   script_path};
    if (!tls_) argv.push_back("--plain");
  }
  if (tls_) {
    argv.insert(argv.end(), {"--tls-cert", keys.server_cert, "--tls-key", keys.server_key});
  }
  process_.start(argv, {}, log_path_);
  if (!eventually([&] { return port_open(port_) || !process_.running(); },
                  std::chrono::seconds(10)) ||
      !process_.running()) {
    throw std::runtime_error("fake provider did not start: " + log());
  }
}

FakeProvider::~FakeProvider() {
  process_.kill(SIGTERM);
  process_.wait(std::chrono::seconds(5));
}

std::string FakeProvider::url() const {
  return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_);
}

std::vector<json> FakeProvider::records() const {
  std::vector<json> out;
  std::ifstream in(record_path_);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));  // a line being written is skipped
  }
  return out;
}

std::vector<json> FakeProvider::records(const std::string& kind) const {
  std::vector<json> out;
  for (auto& r : records()) {
    if (r.value("kind", "") == kind) out.push_back(std::move(r));
  }
  return out;
}

bool FakeProvider::wait_records(const std::string& kind, size_t n,
                                std::chrono::milliseconds timeout) const {
  return eventually([&] { return records(kind).size() >= n; }, timeout);
}

std::string FakeProvider::log() const { return slurp(log_path_); }

}  // namespace chat::testing
