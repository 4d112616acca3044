#include "stack.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <mqtt_protocol.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "chat/common/jwt.h"
#include "chat/common/url.h"

namespace chat::testing {
namespace fs = std::filesystem;

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

// Ports for the processes under test come from 20000-32767, below the
// kernel's ephemeral range (32768-60999 here), so no outgoing connection or
// port-0 listener of a parallel test can take one between our pick and the
// child's bind. Parallel test processes (ctest -j, the Node tests) reserve a
// port by creating <tmp>/chat-test-ports/<port> exclusively with their pid in
// it (tests/js/lib/harness.mjs does the same); files of dead pids are taken
// over. Reservations are released when the test process exits.
namespace {
constexpr int kPortLow = 20000;
constexpr int kPortHigh = 32767;

std::string port_dir() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/chat-test-ports";
}

std::mutex reserved_mu;
std::vector<std::string>* reserved = nullptr;  // lock files we own

void release_ports() {
  std::lock_guard<std::mutex> lock(reserved_mu);
  if (reserved == nullptr) return;
  for (const auto& f : *reserved) ::unlink(f.c_str());
  reserved->clear();
}

bool bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as the servers do
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Creates `path` holding our pid unless a live process holds it.
bool claim(const std::string& path) {
  const std::string me = std::to_string(::getpid());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    if (errno != EEXIST) return false;
    std::ifstream in(path);
    long owner = 0;
    if (!(in >> owner) || owner <= 0) return false;  // being written, or foreign
    if (::kill(static_cast<pid_t>(owner), 0) == 0 || errno != ESRCH) return false;
    // The owner is gone: take the file over atomically, then check we won.
    std::string tmp = path + "." + me;
    {
      std::ofstream out(tmp);
      out << me;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      ::unlink(tmp.c_str());
      return false;
    }
  } else {
    bool ok = ::write(fd, me.data(), me.size()) == static_cast<ssize_t>(me.size());
    ::close(fd);
    if (!ok) return false;
  }
  std::ifstream in(path);
  std::string holder;
  return static_cast<bool>(in >> holder) && holder == me;
}
}  // namespace

int free_port() {
  static std::atomic<int> next{kPortLow +
                               static_cast<int>(::getpid() * 7919 % (kPortHigh - kPortLow))};
  const std::string dir = port_dir();
  if (::mkdir(dir.c_str(), 0777) == 0) ::chmod(dir.c_str(), 01777);
  for (int tries = 0; tries < kPortHigh - kPortLow; ++tries) {
    int port = next.fetch_add(1);
    port = kPortLow + (port - kPortLow) % (kPortHigh - kPortLow);
    std::string path = dir + "/" + std::to_string(port);
    if (!claim(path)) continue;
    if (!bindable(port)) {  // in use by something outside the scheme
      ::unlink(path.c_str());
      continue;
    }
    std::lock_guard<std::mutex> lock(reserved_mu);
    if (reserved == nullptr) {
      reserved = new std::vector<std::string>();
      std::atexit(release_ports);
    }
    reserved->push_back(path);
    return port;
  }
  throw std::runtime_error("no free port in " + std::to_string(kPortLow) + "-" +
                           std::to_string(kPortHigh));
}

bool port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// --- Process -------------------------------------------------------------------

Process::~Process() {
  if (pid_ > 0) {
    kill(SIGKILL);
    wait();
  }
}

void Process::start(const std::vector<std::string>& argv,
                    const std::map<std::string, std::string>& env, const std::string& log_path) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  pid_ = pid;
}

void Process::kill(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

int Process::wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  int status = 0;
  bool done = eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout);
  if (!done) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

bool Process::running() {
  if (pid_ <= 0) return false;
  int status;
  return ::waitpid(pid_, &status, WNOHANG) == 0;
}

// --- Stack -----------------------------------------------------------------------

Stack::Stack(StackOptions options) : options_(std::move(options)) {
  for (const char* name : {"CHAT_ADMIN_PASSWORD", "CHAT_METRICS_TOKEN"}) {
    if (auto it = options_.env.find(name); it != options_.env.end()) remember_secret(it->second);
  }
  char tmpl[] = "/tmp/chat-it-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  data_dir_ = tmpl;
  ::chmod(data_dir_.c_str(), 0755);  // the broker may run as the mosquitto user
  fs::create_directories(data_dir_ + "/logs");
  if (options_.prepare) options_.prepare(data_dir_);
  mqtt_port_ = free_port();
  http_port_ = free_port();
  while (http_port_ == mqtt_port_) http_port_ = free_port();
  ws_port_ = free_port();
  while (ws_port_ == mqtt_port_ || ws_port_ == http_port_) ws_port_ = free_port();
  if (options_.tls) {
    mqtts_port_ = free_port();
    while (mqtts_port_ == mqtt_port_ || mqtts_port_ == http_port_ || mqtts_port_ == ws_port_) {
      mqtts_port_ = free_port();
    }
    // What scripts/run does for CHAT_TLS=dev.
    Process tls_dev;
    tls_dev.start({CHAT_SOURCE_DIR "/scripts/tls-dev", data_dir_}, env(),
                  data_dir_ + "/logs/tls-dev.log");
    if (tls_dev.wait(30s) != 0) throw std::runtime_error("tls-dev failed: " + log_tail("tls-dev"));
  }

  Process init;
  init.start({CHAT_BIN_DIR "/chat-api", "--init"}, env(), data_dir_ + "/logs/init.log");
  if (init.wait(30s) != 0) throw std::runtime_error("chat-api --init failed: " + log_tail("init"));
  start_broker();
  start_bridge();
  start_api();
}

Stack::~Stack() {
  api_.kill(SIGTERM);
  bridge_.kill(SIGTERM);
  broker_.kill(SIGTERM);
  // Generous: a sanitizer's exit-time leak check (symbolizing every leak,
  // suppressed ones included) is slow on a loaded machine, and a process
  // SIGKILLed past this deadline would take its report with it unnoticed.
  api_.wait(20s);
  bridge_.wait(20s);
  broker_.wait(20s);
  // Sanitizer reports from the processes under test are test failures.
  for (const char* name : {"mosquitto", "chat-api", "chat-bridge"}) {
    std::string log = log_tail(name, 1 << 20);
    if (log.find("ERROR: AddressSanitizer") != std::string::npos ||
        log.find("ERROR: LeakSanitizer") != std::string::npos ||
        log.find("runtime error:") != std::string::npos) {
      ADD_FAILURE() << name << " reported a sanitizer error:\n" << log_tail(name, 8000);
    }
  }
  check_logs_for_secrets();
  if (!std::getenv("CHAT_KEEP_TEST_DATA")) {
    std::error_code ec;
    fs::remove_all(data_dir_, ec);
  }
}

std::map<std::string, std::string> Stack::env() const {
  std::map<std::string, std::string> e = {
      {"CHAT_DATA_DIR", data_dir_},
      {"CHAT_MQTT_PORT", std::to_string(mqtt_port_)},
      {"CHAT_HTTP_PORT", std::to_string(http_port_)},
      {"CHAT_WS_PORT", std::to_string(ws_port_)},
      {"CHAT_BIND", "127.0.0.1"},
      // Every abuse limit off: tests send, log in and connect far faster than
      // people. Tests of the limits turn them on through StackOptions::env.
      {"CHAT_RATE_LIMIT_MSGS", "0"},
      {"CHAT_RATE_LIMIT_TYPING", "0"},
      {"CHAT_RATE_LIMIT_RECEIPTS", "0"},
      {"CHAT_WS_CONN_RATE", "0"},
      {"CHAT_LOGIN_RATE", "0"},
      {"CHAT_LOGIN_LOCKOUT_AFTER", "0"},
      {"CHAT_RATE_LIMIT_REST", "0"},
      {"CHAT_HTTP_THREADS", "8"},
  };
  if (options_.tls) {
    e["CHAT_TLS_CERT"] = data_dir_ + "/tls/server.pem";
    e["CHAT_TLS_KEY"] = data_dir_ + "/tls/server.key";
    e["CHAT_MQTTS_PORT"] = std::to_string(mqtts_port_);
  }
  for (const auto& [k, v] : options_.env) e[k] = v;
  return e;
}

double sample_value(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      size_t start = pos + series.size() + 1;
      std::string v = text.substr(start, text.find('\n', start) - start);
      return v == "+Inf" ? INFINITY : std::stod(v);
    }
    pos += series.size();
  }
  return NAN;
}

double Stack::metric(const std::string& series) {
  auto found = options_.env.find("CHAT_METRICS_TOKEN");
  httplib::Headers headers;
  if (found != options_.env.end()) headers.emplace("Authorization", "Bearer " + found->second);
  auto client = http_client();
  auto r = client.Get("/metrics", headers);
  if (!r || r->status != 200) return NAN;
  return sample_value(r->body, series);
}

std::string Stack::base_url() const {
  return (options_.tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(http_port_);
}

httplib::Client Stack::http_client() const {
  httplib::Client c(base_url());
  if (options_.tls) {
    c.set_ca_cert_path(ca_path());
    c.enable_server_certificate_verification(true);
  }
  return c;
}

void Stack::wait_port(int port) {
  if (!eventually([&] { return port_open(port); }, 20s)) {
    throw std::runtime_error("port " + std::to_string(port) + " never opened\n" + logs());
  }
}

std::string Stack::logs() const {
  return "--- mosquitto log ---\n" + log_tail("mosquitto") + "\n--- chat-api log ---\n" +
         log_tail("chat-api") + "\n";
}

void Stack::start_broker() {
  Process gen;
  std::string conf = data_dir_ + "/mosquitto.conf";
  gen.start({"/bin/sh", "-c",
             std::string(CHAT_SOURCE_DIR "/scripts/broker-conf '") + data_dir_ + "' '" +
                 CHAT_LIB_DIR "/libchat_broker.so' > '" + conf + "'"},
            env(), data_dir_ + "/logs/broker-conf.log");
  if (gen.wait(10s) != 0)
    throw std::runtime_error("broker-conf failed: " + log_tail("broker-conf"));
  auto broker_env = env();
#ifdef CHAT_ASAN_PRELOAD
  broker_env["LD_PRELOAD"] = CHAT_ASAN_PRELOAD;
  broker_env["ASAN_OPTIONS"] = "detect_leaks=1:fast_unwind_on_malloc=0";
  broker_env["LSAN_OPTIONS"] =
      "suppressions=" CHAT_SOURCE_DIR "/tests/integration/lsan-mosquitto.supp";
#endif
  broker_.start({MOSQUITTO_EXECUTABLE, "-c", conf}, broker_env, data_dir_ + "/logs/mosquitto.log");
  wait_port(mqtt_port_);
  if (options_.tls) wait_port(mqtts_port_);
}

void Stack::kill_broker(int sig) {
  broker_.kill(sig);
  broker_.wait();
}

void Stack::start_bridge() {
  auto e = env();
  e["CHAT_BRIDGE_UPSTREAM"] = "127.0.0.1:" + std::to_string(mqtt_port_);
  bridge_.start({CHAT_BIN_DIR "/chat-bridge"}, e, data_dir_ + "/logs/chat-bridge.log");
  wait_port(ws_port_);
}

void Stack::kill_bridge(int sig) {
  bridge_.kill(sig);
  bridge_.wait();
}

void Stack::start_api() {
  api_.start({CHAT_BIN_DIR "/chat-api"}, env(), data_dir_ + "/logs/chat-api.log");
  wait_port(http_port_);
  // Ready means the control channel to the broker is up as well.
  if (!eventually([&] { return get("/healthz", "").first == 200; }, 20s) || !api_.running()) {
    throw std::runtime_error("chat-api never became healthy\n" + logs());
  }
}

void Stack::kill_api(int sig) {
  api_.kill(sig);
  api_.wait();
}

std::string Stack::log_tail(const std::string& name, size_t bytes) const {
  std::ifstream in(data_dir_ + "/logs/" + name + ".log");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > bytes ? s.substr(s.size() - bytes) : s;
}

void Stack::remember_secret(const std::string& secret) {
  if (secret.size() < 8) return;
  std::lock_guard<std::mutex> lock(secrets_mu_);
  secrets_.insert(secret);
}

void Stack::remember_secrets_in(const json& answer) {
  if (!answer.is_object()) return;
  for (const char* key : {"access_token", "refresh_token", "password"}) {
    if (auto it = answer.find(key); it != answer.end() && it->is_string()) {
      remember_secret(it->get<std::string>());
    }
  }
}

void Stack::check_logs_for_secrets() {
  std::set<std::string> secrets;
  {
    std::lock_guard<std::mutex> lock(secrets_mu_);
    secrets = secrets_;
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(data_dir_ + "/logs", ec)) {
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string log = ss.str();
    for (const auto& secret : secrets) {
      if (log.find(secret) != std::string::npos) {
        // Name the secret by its first bytes only: the test output is a log too.
        ADD_FAILURE() << entry.path().filename().string() << " contains a secret the test used ("
                      << secret.substr(0, 4) << "…, " << secret.size() << " bytes)";
      }
    }
  }
}

static std::pair<int, json> to_pair(const httplib::Result& r) {
  if (!r) return {-1, nullptr};
  return {r->status, json::parse(r->body, nullptr, false)};
}

std::pair<int, json> Stack::post_json(const std::string& path, const json& body,
                                      const std::string& token) {
  httplib::Client c = http_client();
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  remember_secrets_in(body);
  auto answer = to_pair(c.Post(path.c_str(), h, body.dump(), "application/json"));
  remember_secrets_in(answer.second);
  return answer;
}

std::pair<int, json> Stack::post_form(const std::string& path, const std::string& form) {
  httplib::Client c = http_client();
  httplib::Params params;
  httplib::detail::parse_query_text(form, params);
  for (const char* key : {"password", "refresh_token", "token"}) {
    for (auto [it, end] = params.equal_range(key); it != end; ++it) remember_secret(it->second);
  }
  auto answer = to_pair(c.Post(path.c_str(), form, "application/x-www-form-urlencoded"));
  remember_secrets_in(answer.second);
  return answer;
}

std::pair<int, json> Stack::get(const std::string& path, const std::string& token) {
  httplib::Client c = http_client();
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  return to_pair(c.Get(path.c_str(), h));
}

std::pair<int, json> Stack::put(const std::string& path, const std::string& token) {
  httplib::Client c = http_client();
  httplib::Headers h{{"Authorization", "Bearer " + token}};
  return to_pair(c.Put(path.c_str(), h, "", "application/json"));
}

std::pair<int, json> Stack::del(const std::string& path, const std::string& token) {
  httplib::Client c = http_client();
  httplib::Headers h{{"Authorization", "Bearer " + token}};
  return to_pair(c.Delete(path.c_str(), h));
}

std::string Stack::register_user(const std::string& user, const std::string& password) {
  auto [status, body] = post_json("/v1/users", {{"user", user}, {"password", password}});
  if (status != 201)
    throw std::runtime_error("register " + user + ": " + std::to_string(status) + " " +
                             body.dump());
  return login(user, password);
}

std::string Stack::login(const std::string& user, const std::string& password) {
  auto [status, body] = post_form("/v1/oauth/token", "grant_type=password&username=" + user +
                                                         "&password=" + url_encode(password));
  if (status != 200) throw std::runtime_error("login " + user + ": " + std::to_string(status));
  return body["access_token"].get<std::string>();
}

std::string Stack::mint_token(const std::string& sub, int64_t exp_offset_s, const json& extra) {
  auto signer =
      jwt::Signer::load_or_create(data_dir_ + "/keys/issuer.pem", data_dir_ + "/keys/jwks.json");
  if (!signer) throw std::runtime_error("signer: " + signer.status().to_string());
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  json claims = {{"sub", sub},
                 {"iss", "chat-platform"},
                 {"aud", "chat"},
                 {"iat", now},
                 {"exp", now + exp_offset_s},
                 {"jti", "test-" + std::to_string(now)},
                 {"roles", json::array({"user"})}};
  for (auto& [k, v] : extra.items()) claims[k] = v;
  std::string token = signer->sign(claims);
  remember_secret(token);
  return token;
}

// --- MqttClient ----------------------------------------------------------------------

MqttClient::MqttClient(int port, Options options) : port_(port), options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
  mosq_ = mosquitto_new(options_.client_id.c_str(), options_.clean, this);
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION,
                       options_.v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  mosquitto_threaded_set(mosq_, true);
  if (!options_.cafile.empty()) {
    mosquitto_tls_set(mosq_, options_.cafile.c_str(), nullptr, nullptr, nullptr, nullptr);
  }
  mosquitto_username_pw_set(mosq_, options_.username.c_str(), options_.password.c_str());
  mosquitto_connect_v5_callback_set(mosq_, on_connect);
  mosquitto_disconnect_v5_callback_set(mosq_, on_disconnect);
  mosquitto_publish_v5_callback_set(mosq_, on_publish);
  mosquitto_subscribe_v5_callback_set(mosq_, on_subscribe);
  mosquitto_message_v5_callback_set(mosq_, on_message);
}

MqttClient::~MqttClient() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  mosquitto_destroy(mosq_);
}

void MqttClient::run() {
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) break;
    }
    int rc = mosquitto_loop(mosq_, 20, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      std::lock_guard<std::mutex> l(mu_);
      connected_ = false;
      loop_alive_ = false;
      cv_.notify_all();
      break;
    }
  }
}

int MqttClient::connect() {
  mosquitto_property* props = nullptr;
  if (options_.v5 && options_.session_expiry > 0) {
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                 options_.session_expiry);
  }
  int rc = mosquitto_connect_bind_v5(mosq_, "127.0.0.1", port_, options_.keepalive, nullptr, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) return -1;
  {
    std::lock_guard<std::mutex> l(mu_);
    connack_ = -2;
    loop_alive_ = true;
  }
  thread_ = std::thread([this] { run(); });
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, 10s, [&] { return connack_ != -2 || !loop_alive_; });
  return connack_ == -2 ? -1 : connack_;
}

int MqttClient::subscribe(const std::string& filter, int qos) {
  int mid = 0;
  std::unique_lock<std::mutex> l(mu_);
  if (mosquitto_subscribe(mosq_, &mid, filter.c_str(), qos) != MOSQ_ERR_SUCCESS) return -1;
  cv_.wait_for(l, 10s, [&] { return subacks_.count(mid) > 0 || !connected_; });
  return subacks_.count(mid) ? subacks_[mid] : -1;
}

int MqttClient::publish(const std::string& topic, const std::string& payload, int qos) {
  int mid = 0;
  std::unique_lock<std::mutex> l(mu_);
  if (mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                        payload.data(), qos, false) != MOSQ_ERR_SUCCESS) {
    return -1;
  }
  if (qos == 0) return 0;
  cv_.wait_for(l, 10s, [&] { return acks_.count(mid) > 0 || !connected_; });
  return acks_.count(mid) ? acks_[mid] : -1;
}

void MqttClient::disconnect() {
  mosquitto_disconnect(mosq_);
  wait_disconnected(5s);
  std::lock_guard<std::mutex> l(mu_);
  stop_ = true;
}

void MqttClient::freeze() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::vector<Received> MqttClient::received() {
  std::lock_guard<std::mutex> l(mu_);
  return received_;
}

std::vector<Received> MqttClient::received_on(const std::string& topic) {
  return on_topic(received(), topic);
}

bool MqttClient::wait_for(const std::function<bool(const std::vector<Received>&)>& pred,
                          std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return pred(received_); });
}

bool MqttClient::wait_disconnected(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  return cv_.wait_for(l, timeout, [&] { return !connected_; });
}

bool MqttClient::connected() {
  std::lock_guard<std::mutex> l(mu_);
  return connected_;
}

void MqttClient::on_connect(struct mosquitto*, void* obj, int rc, int flags,
                            const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard<std::mutex> l(self->mu_);
  self->connack_ = rc;
  self->connected_ = rc == 0;
  self->session_present_ = flags & 1;
  self->cv_.notify_all();
}

void MqttClient::on_disconnect(struct mosquitto*, void* obj, int, const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard<std::mutex> l(self->mu_);
  self->connected_ = false;
  self->cv_.notify_all();
}

void MqttClient::on_publish(struct mosquitto*, void* obj, int mid, int reason,
                            const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard<std::mutex> l(self->mu_);
  self->acks_[mid] = reason;
  self->cv_.notify_all();
}

void MqttClient::on_subscribe(struct mosquitto*, void* obj, int mid, int count, const int* granted,
                              const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard<std::mutex> l(self->mu_);
  self->subacks_[mid] = count > 0 ? granted[0] : -1;
  self->cv_.notify_all();
}

void MqttClient::on_message(struct mosquitto*, void* obj, const struct mosquitto_message* m,
                            const mosquitto_property*) {
  auto* self = static_cast<MqttClient*>(obj);
  std::lock_guard<std::mutex> l(self->mu_);
  self->received_.push_back(
      {m->topic,
       std::string(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen)),
       m->qos});
  self->cv_.notify_all();
}

// --- helpers -------------------------------------------------------------------------

std::string text(const std::string& cid, const std::string& body) {
  return json({{"cid", cid}, {"type", "text"}, {"body", body}}).dump();
}

MqttClient::Options device(const std::string& user, const std::string& dev,
                           const std::string& token, bool v5, bool clean) {
  MqttClient::Options o;
  o.client_id = user + ":" + dev;
  o.username = user;
  o.password = token;
  o.v5 = v5;
  o.clean = clean;
  o.session_expiry = clean ? 0 : 3600;
  return o;
}

bool is_success(int reason) { return reason == 0 || reason == MQTT_RC_NO_MATCHING_SUBSCRIBERS; }

// All messages of a user via /v1/sync, walking the cursor.
std::vector<json> sync_all(Stack& s, const std::string& token) {
  std::vector<json> out;
  std::string since;
  for (int page = 0; page < 1000; ++page) {
    auto [status, body] = s.get("/v1/sync?limit=500&since=" + since, token);
    EXPECT_EQ(status, 200) << body.dump();
    if (status != 200 || body["messages"].empty()) break;
    for (auto& m : body["messages"]) out.push_back(m);
    if (body["next"].is_null()) break;
    since = body["next"].get<std::string>();
  }
  return out;
}

std::vector<Received> on_topic(const std::vector<Received>& msgs, const std::string& topic) {
  std::vector<Received> out;
  for (const auto& m : msgs) {
    if (m.topic == topic) out.push_back(m);
  }
  return out;
}

std::set<std::string> ids_of(const std::vector<Received>& msgs) {
  std::set<std::string> ids;
  for (auto& m : msgs) {
    auto b = m.body();
    if (b.is_object() && b.contains("id")) ids.insert(b["id"].get<std::string>());
  }
  return ids;
}

}  // namespace chat::testing
