// Test harness: the real platform (mosquitto + our plugin, chat-api) started
// on free ports in a temp data dir, plus small MQTT and HTTP clients.
#pragma once

#include <httplib.h>
#include <mosquitto.h>
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace chat::testing {

using namespace std::chrono_literals;
using json = nlohmann::json;

// The value of the sample line `series` (name and labels) in a Prometheus
// text exposition, or NaN when absent.
double sample_value(const std::string& text, const std::string& series);

// Polls `pred` until true or the deadline passes.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s);

int free_port();
// Whether something accepts TCP connections on 127.0.0.1:port.
bool port_open(int port);

class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  ~Process();
  // Starts argv with extra environment; output appended to `log_path`.
  void start(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const std::string& log_path);
  void kill(int sig);
  // Waits for exit; returns the exit status (or 128+signal).
  int wait(std::chrono::milliseconds timeout = 10s);
  bool running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

struct StackOptions {
  std::map<std::string, std::string> env;  // extra CHAT_* settings
  // TLS on, as `CHAT_TLS=dev make run` runs it: scripts/tls-dev makes a CA and
  // a server certificate in the data dir, and every process gets
  // CHAT_TLS_CERT/CHAT_TLS_KEY; MQTT over TLS on mqtts_port(), https on
  // http_port() (the REST helpers then verify it against ca_path()).
  bool tls = false;
  // Called with the data dir once it exists, before anything starts in it
  // (disk_full_test mounts a small tmpfs at <data_dir>/archive).
  std::function<void(const std::string& data_dir)> prepare;
};

class Stack {
 public:
  explicit Stack(StackOptions options = {});
  ~Stack();

  void start_broker();
  void kill_broker(int sig = SIGKILL);
  void start_api();
  void kill_api(int sig = SIGKILL);
  // Sends a signal and returns at once (SIGHUP: reload).
  void signal_broker(int sig) { broker_.kill(sig); }
  void signal_api(int sig) { api_.kill(sig); }
  // chat-bridge in front of the broker (chat-api's /healthz needs it).
  void start_bridge();
  void kill_bridge(int sig = SIGKILL);

  // chat-api's process id (-1 before start_api): for /proc/<pid>/status.
  pid_t api_pid() const { return api_.pid(); }
  // The broker's process id: for /proc/<pid>/status, and to tell a restart.
  pid_t broker_pid() const { return broker_.pid(); }
  int mqtt_port() const { return mqtt_port_; }
  int http_port() const { return http_port_; }
  int ws_port() const { return ws_port_; }
  int mqtts_port() const { return mqtts_port_; }  // 0 without TLS
  bool tls() const { return options_.tls; }
  // $data_dir/tls/ca.pem (the dev CA) with TLS.
  std::string ca_path() const { return data_dir_ + "/tls/ca.pem"; }
  // "http://127.0.0.1:<port>" or "https://..." with TLS.
  std::string base_url() const;
  // A client for chat-api; with TLS it trusts ca_path() only.
  httplib::Client http_client() const;
  const std::string& data_dir() const { return data_dir_; }
  std::string log_tail(const std::string& name, size_t bytes = 4000) const;
  // The broker's and chat-api's log tails, labelled: what a failing test prints.
  std::string logs() const;

  // REST helpers. Return {status, body json (null when not JSON)}.
  std::pair<int, json> post_json(const std::string& path, const json& body,
                                 const std::string& token = "");
  std::pair<int, json> post_form(const std::string& path, const std::string& form);
  std::pair<int, json> get(const std::string& path, const std::string& token);
  std::pair<int, json> put(const std::string& path, const std::string& token);
  std::pair<int, json> del(const std::string& path, const std::string& token);

  // Registers a user (201 expected) and returns an access token.
  std::string register_user(const std::string& user, const std::string& password = "correct horse");
  std::string login(const std::string& user, const std::string& password = "correct horse");
  // One sample of chat-api's /metrics, scraped with the CHAT_METRICS_TOKEN of
  // the options: `series` is the name with any labels as chat-api writes them
  // (e.g. `chat_x_total{reason="y"}`). NaN when the scrape fails or the
  // series is absent.
  double metric(const std::string& series);
  // A token signed by the embedded issuer with arbitrary claims (for expiry tests).
  std::string mint_token(const std::string& sub, int64_t exp_offset_s,
                         const json& extra = json::object());

  // Secrets no log file may contain (CONTRACT: no tokens or passwords in
  // logs). The REST helpers remember every password they send and every
  // access/refresh token they receive, mint_token its tokens, and the
  // constructor CHAT_ADMIN_PASSWORD and CHAT_METRICS_TOKEN; tests add their
  // own. The destructor fails the test when a file under logs/ holds one.
  // Strings under 8 bytes are ignored (too likely to occur by chance).
  void remember_secret(const std::string& secret);

 private:
  std::map<std::string, std::string> env() const;
  void wait_port(int port);

  void remember_secrets_in(const json& answer);
  void check_logs_for_secrets();

  StackOptions options_;
  std::mutex secrets_mu_;
  std::set<std::string> secrets_;  // guarded by secrets_mu_
  std::string data_dir_;
  int mqtt_port_ = 0;
  int http_port_ = 0;
  int ws_port_ = 0;
  int mqtts_port_ = 0;
  Process broker_;
  Process bridge_;
  Process api_;
};

struct Received {
  std::string topic;
  std::string payload;
  int qos = 0;
  json body() const { return json::parse(payload, nullptr, false); }
};

// A libmosquitto client driven by its own thread (no automatic reconnect).
class MqttClient {
 public:
  struct Options {
    std::string client_id;
    std::string username;
    std::string password;
    bool v5 = true;
    bool clean = true;
    int session_expiry = 0;  // MQTT 5 only
    int keepalive = 30;
    std::string cafile;  // set: MQTT over TLS, the server verified against it
  };
  MqttClient(int port, Options options);
  ~MqttClient();

  // CONNACK reason code (0 = accepted), or -1 when no CONNACK arrived.
  int connect();
  // Granted QoS (>= 0x80 refused) for one filter, -1 on timeout.
  int subscribe(const std::string& filter, int qos = 1);
  // PUBACK reason code (MQTT 5; 0 for 3.1.1), or -1 when no ack arrived
  // (e.g. the broker closed the connection).
  int publish(const std::string& topic, const std::string& payload, int qos = 1);
  void disconnect();
  // Stops the network loop without closing the socket: the broker sees a
  // silent device and times its keepalive out.
  void freeze();

  std::vector<Received> received();
  std::vector<Received> received_on(const std::string& topic);
  bool wait_for(const std::function<bool(const std::vector<Received>&)>& pred,
                std::chrono::milliseconds timeout = 10s);
  bool wait_disconnected(std::chrono::milliseconds timeout = 10s);
  bool connected();
  bool session_present() const { return session_present_; }

 private:
  static void on_connect(struct mosquitto*, void*, int, int, const mosquitto_property*);
  static void on_disconnect(struct mosquitto*, void*, int, const mosquitto_property*);
  static void on_publish(struct mosquitto*, void*, int, int, const mosquitto_property*);
  static void on_subscribe(struct mosquitto*, void*, int, int, const int*,
                           const mosquitto_property*);
  static void on_message(struct mosquitto*, void*, const struct mosquitto_message*,
                         const mosquitto_property*);
  void run();

  int port_;
  Options options_;
  struct mosquitto* mosq_ = nullptr;
  std::thread thread_;
  bool stop_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  int connack_ = -2;
  bool session_present_ = false;
  bool connected_ = false;
  bool loop_alive_ = false;
  std::map<int, int> acks_;
  std::map<int, int> subacks_;
  std::vector<Received> received_;
};

// --- helpers shared by the integration tests ------------------------------------

// {"cid":cid,"type":"text","body":body}
std::string text(const std::string& cid, const std::string& body);
// Connect options for <user>:<dev>; a persistent session when !clean.
MqttClient::Options device(const std::string& user, const std::string& dev,
                           const std::string& token, bool v5 = true, bool clean = true);
// PUBACK success: 0, or 0x10 "no matching subscribers".
bool is_success(int reason);
// All of a user's messages via /v1/sync, walking the cursor.
std::vector<json> sync_all(Stack& s, const std::string& token);
// The messages of `msgs` on `topic` (for wait_for predicates, which run under
// the client's lock and must not call back into it).
std::vector<Received> on_topic(const std::vector<Received>& msgs, const std::string& topic);
// The envelope ids among received messages.
std::set<std::string> ids_of(const std::vector<Received>& msgs);

}  // namespace chat::testing
