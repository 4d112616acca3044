// chat-bench's command line: what to measure, against what, within which bounds.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace chat::bench {

enum class Target { kBare, kChat };

// Which MQTT client library drives the load. libmosquitto (our own epoll loop)
// is the fast default; Paho C (MQTTAsync) also speaks MQTT over WebSocket, so
// the bridge benchmark runs Paho over TCP and over WebSocket side by side.
enum class Client { kMosquitto, kPaho };
enum class Transport { kTcp, kWs };

// The shape of one run. Every scenario is a publisher -> recipient topology:
//   kCustom        --publishers N --subscribers M: publisher i -> subscriber i % M
//   kPairs         N 1:1 pairs (publisher i -> subscriber i)
//   kFanIn         N publishers -> 1 subscriber
//   kGroup         1 publisher -> N-1 subscribers (bare: one topic; chat: a group)
//   kIdle          N connections that only connect and subscribe (broker RSS)
//   kOfflineDrain  1 publisher queues N messages for 1 offline persistent session
enum class Scenario { kCustom, kPairs, kFanIn, kGroup, kIdle, kOfflineDrain };

struct Config {
  Target target = Target::kBare;
  Client client = Client::kMosquitto;
  Transport transport = Transport::kTcp;
  std::string ws_path = "/mqtt";  // kWs: the bridge's path
  Scenario scenario = Scenario::kPairs;
  int scale = 1;  // the N of the scenario flag

  std::string host = "127.0.0.1";
  int port = 1883;
  std::string api = "http://127.0.0.1:8080";  // chat target: REST base URL

  int publishers = 1;
  int subscribers = 1;
  int qos = 1;
  int payload = 100;            // bytes of the MQTT payload a publisher sends
  bool e2e = false;             // chat: `e2e` messages, `payload` bytes per recipient device
  double rate = 0;              // messages/s over all publishers; 0 = unlimited
  int window = 100;             // in-flight (unacknowledged) messages per publisher
  double duration = 5;          // seconds of sending at most
  long long count = 1000000;    // messages in all at most
  double drain_timeout = 10;    // seconds to wait for deliveries after sending
  double quiet = 3;             // ... ending early after this long without progress
  double connect_timeout = 60;  // seconds for every connection (and subscription)
  double idle_hold = 2;         // kIdle: seconds connections stay up before RSS is read
  int devices_per_user = 100;   // kIdle, chat: devices (connections) per user
  int mqtt_version = 5;         // 5 or 4 (3.1.1)
  int threads = 1;              // event-loop threads
  int rest_threads = 4;         // concurrent REST requests while minting tokens
  int max_pending_connects = 64;
  bool tcp_nodelay = true;
  bool json = false;
  bool expect_no_loss = false;
  int broker_pid = 0;
  std::string user_prefix = "bench";
  std::string password = "bench-password";
  std::string label;  // free text copied into the report
};

// Parses argv. Returns an empty string on success, else the error message.
// `help` is set when --help was given.
std::string parse_args(const std::vector<std::string>& args, Config* config, bool* help);

std::string usage();

// How many publishers and subscribers a traffic scenario has (pairs: N and
// N; fan-in: N and 1; group: 1 and N-1; custom: as given).
std::pair<int, int> publishers_and_subscribers(const Config& config);

const char* scenario_name(Scenario s);
const char* target_name(Target t);
const char* client_name(Client c);
const char* transport_name(Transport t);

}  // namespace chat::bench
