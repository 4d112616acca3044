#include "bench/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

namespace chat::bench {
namespace {

bool to_long(const std::string& s, long long* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool to_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

}  // namespace

const char* scenario_name(Scenario s) {
  switch (s) {
    case Scenario::kCustom:
      return "custom";
    case Scenario::kPairs:
      return "pairs";
    case Scenario::kFanIn:
      return "fan-in";
    case Scenario::kGroup:
      return "group";
    case Scenario::kIdle:
      return "idle";
    case Scenario::kOfflineDrain:
      return "offline-drain";
  }
  return "?";
}

std::pair<int, int> publishers_and_subscribers(const Config& c) {
  switch (c.scenario) {
    case Scenario::kPairs:
      return {c.scale, c.scale};
    case Scenario::kFanIn:
      return {c.scale, 1};
    case Scenario::kGroup:
      return {1, c.scale - 1};
    case Scenario::kCustom:
      return {c.publishers, c.subscribers};
    default:
      return {1, 1};
  }
}

const char* target_name(Target t) { return t == Target::kBare ? "bare" : "chat"; }
const char* client_name(Client c) { return c == Client::kMosquitto ? "mosquitto" : "paho"; }
const char* transport_name(Transport t) { return t == Transport::kTcp ? "tcp" : "ws"; }

std::string usage() {
  return R"(usage: chat-bench [options]

Load generator for the chat platform and for a bare MQTT broker (libmosquitto,
non-blocking, epoll). Prints a summary; --json prints one machine-readable line.

target
  --target bare|chat        bare: anonymous, publishers -> bench/<sub>;
                            chat: users and tokens via the REST API, dm/<peer>
                            (or g/<gid>), recipients subscribe u/<me>/#  [bare]
  --host H --port P         MQTT broker                        [127.0.0.1 1883]
  --api URL                 chat-api base URL          [http://127.0.0.1:8080]
  --mqtt 5|3.1.1            protocol version                               [5]
  --client mosquitto|paho   client library: libmosquitto (epoll, all
                            scenarios) or Paho C MQTTAsync (pairs, fan-in,
                            custom)                                [mosquitto]
  --transport tcp|ws        ws: MQTT over WebSocket (chat-bridge), needs
                            --client paho (implied); --port is the ws port [tcp]
  --ws-path PATH            WebSocket path                           [/mqtt]
scenario (one of)
  --pairs N                 N 1:1 pairs                                    [1]
  --fan-in N                N senders -> 1 recipient
  --group N                 1 sender -> N-1 recipients (chat: POST /v1/groups;
                            skipped when the API has no groups)
  --idle N                  N idle (authenticated) connections; with
                            --broker-pid reports the broker's RSS per connection
  --offline-drain N         N messages queued for an offline persistent session,
                            then the time until the reconnected device has them
  --publishers N --subscribers M   publisher i -> subscriber i % M
load
  --qos 0|1|2               [1]        --payload BYTES             [100]
  --e2e                     chat: send `e2e` messages (docs/e2e.md): a body
                            {"to":{"<user>:<device>":{"type":1,"body":<base64>}}}
                            with one entry per recipient device (group: every
                            member's), the whole payload about --payload bytes
                            per entry; the stamp rides in the cid (over the
                            broker's 64 KiB limit: refused, and reported so)
  --rate MSG/S              all publishers together; 0 = unlimited   [0]
  --window N                in-flight messages per publisher         [100]
  --duration S              sending time bound                       [5]
  --count N                 message bound (all publishers)           [1000000]
  --drain-timeout S         wait for deliveries after sending        [10]
  --quiet S                 ... but stop after S without progress    [3]
  --connect-timeout S       [60]       --idle-hold S               [2]
  --threads N               event-loop threads                       [1]
  --devices-per-user N      idle, chat: connections per user         [100]
  --no-nodelay              leave Nagle on in the clients
chat accounts
  --user-prefix P           users are <P>s0, <P>r0, ... (created or reused) [bench]
  --password PW             [bench-password]   --rest-threads N    [4]
report
  --json                    one JSON line instead of the summary
  --broker-pid PID          broker CPU (and RSS for --idle) from /proc
  --label TEXT              copied into the report
  --expect-no-loss          exit 1 when anything acknowledged was not
                            delivered, or a publish was refused / never acked
exit status: 0 ok, 1 loss with --expect-no-loss, 2 usage, 3 setup failed
)";
}

std::string parse_args(const std::vector<std::string>& args, Config* c, bool* help) {
  *help = false;
  int scenarios = 0;
  bool custom_pubs = false, custom_subs = false, client_given = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) -> bool {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    long long n = 0;
    double d = 0;
    auto need_int = [&](long long lo, long long hi) -> std::string {
      if (!value(&v)) return a + " needs a value";
      if (!to_long(v, &n) || n < lo || n > hi) {
        return a + " must be a whole number in " + std::to_string(lo) + ".." + std::to_string(hi);
      }
      return "";
    };
    auto need_double = [&](double lo, double hi) -> std::string {
      if (!value(&v)) return a + " needs a value";
      if (!to_double(v, &d) || d < lo || d > hi) {
        return a + " must be a number in " + std::to_string(lo) + ".." + std::to_string(hi);
      }
      return "";
    };
    auto scenario = [&](Scenario s, long long lo) -> std::string {
      std::string e = need_int(lo, 1000000);
      if (!e.empty()) return e;
      c->scenario = s;
      c->scale = static_cast<int>(n);
      ++scenarios;
      return "";
    };
    std::string err;
    if (a == "--help" || a == "-h") {
      *help = true;
      return "";
    } else if (a == "--target") {
      if (!value(&v)) return a + " needs a value";
      if (v == "bare") {
        c->target = Target::kBare;
      } else if (v == "chat") {
        c->target = Target::kChat;
      } else {
        return "--target must be bare or chat";
      }
    } else if (a == "--host") {
      if (!value(&c->host)) return a + " needs a value";
    } else if (a == "--port") {
      err = need_int(1, 65535);
      c->port = static_cast<int>(n);
    } else if (a == "--api") {
      if (!value(&c->api)) return a + " needs a value";
    } else if (a == "--mqtt") {
      if (!value(&v)) return a + " needs a value";
      if (v == "5") {
        c->mqtt_version = 5;
      } else if (v == "3.1.1" || v == "311" || v == "4") {
        c->mqtt_version = 4;
      } else {
        return "--mqtt must be 5 or 3.1.1";
      }
    } else if (a == "--client") {
      if (!value(&v)) return a + " needs a value";
      if (v == "mosquitto") {
        c->client = Client::kMosquitto;
      } else if (v == "paho") {
        c->client = Client::kPaho;
      } else {
        return "--client must be mosquitto or paho";
      }
      client_given = true;
    } else if (a == "--transport") {
      if (!value(&v)) return a + " needs a value";
      if (v == "tcp") {
        c->transport = Transport::kTcp;
      } else if (v == "ws") {
        c->transport = Transport::kWs;
      } else {
        return "--transport must be tcp or ws";
      }
    } else if (a == "--ws-path") {
      if (!value(&c->ws_path)) return a + " needs a value";
      if (c->ws_path.empty() || c->ws_path[0] != '/' ||
          c->ws_path.find_first_of(" \t\r\n") != std::string::npos) {
        return "--ws-path must start with / and contain no white space";
      }
    } else if (a == "--pairs") {
      err = scenario(Scenario::kPairs, 1);
    } else if (a == "--fan-in") {
      err = scenario(Scenario::kFanIn, 1);
    } else if (a == "--group") {
      err = scenario(Scenario::kGroup, 2);
    } else if (a == "--idle") {
      err = scenario(Scenario::kIdle, 1);
    } else if (a == "--offline-drain") {
      err = scenario(Scenario::kOfflineDrain, 1);
    } else if (a == "--publishers") {
      err = need_int(1, 100000);
      c->publishers = static_cast<int>(n);
      custom_pubs = true;
    } else if (a == "--subscribers") {
      err = need_int(1, 100000);
      c->subscribers = static_cast<int>(n);
      custom_subs = true;
    } else if (a == "--qos") {
      err = need_int(0, 2);
      c->qos = static_cast<int>(n);
    } else if (a == "--payload") {
      err = need_int(1, 1 << 20);
      c->payload = static_cast<int>(n);
    } else if (a == "--e2e") {
      c->e2e = true;
    } else if (a == "--rate") {
      err = need_double(0, 1e8);
      c->rate = d;
    } else if (a == "--window") {
      err = need_int(1, 65535);
      c->window = static_cast<int>(n);
    } else if (a == "--duration") {
      err = need_double(0.01, 3600);
      c->duration = d;
    } else if (a == "--count") {
      err = need_int(1, 1000000000LL);
      c->count = n;
    } else if (a == "--drain-timeout") {
      err = need_double(0, 3600);
      c->drain_timeout = d;
    } else if (a == "--quiet") {
      err = need_double(0.1, 3600);
      c->quiet = d;
    } else if (a == "--connect-timeout") {
      err = need_double(0.1, 3600);
      c->connect_timeout = d;
    } else if (a == "--idle-hold") {
      err = need_double(0, 3600);
      c->idle_hold = d;
    } else if (a == "--threads") {
      err = need_int(1, 64);
      c->threads = static_cast<int>(n);
    } else if (a == "--rest-threads") {
      err = need_int(1, 64);
      c->rest_threads = static_cast<int>(n);
    } else if (a == "--devices-per-user") {
      err = need_int(1, 100000);
      c->devices_per_user = static_cast<int>(n);
    } else if (a == "--no-nodelay") {
      c->tcp_nodelay = false;
    } else if (a == "--json") {
      c->json = true;
    } else if (a == "--expect-no-loss") {
      c->expect_no_loss = true;
    } else if (a == "--broker-pid") {
      err = need_int(1, 1 << 30);
      c->broker_pid = static_cast<int>(n);
    } else if (a == "--user-prefix") {
      if (!value(&c->user_prefix)) return a + " needs a value";
    } else if (a == "--password") {
      if (!value(&c->password)) return a + " needs a value";
    } else if (a == "--label") {
      if (!value(&c->label)) return a + " needs a value";
    } else {
      return "unknown option " + a;
    }
    if (!err.empty()) return err;
  }
  if (custom_pubs || custom_subs) {
    if (scenarios > 0) return "--publishers/--subscribers cannot be combined with a scenario flag";
    c->scenario = Scenario::kCustom;
  } else if (scenarios > 1) {
    return "give one scenario: --pairs, --fan-in, --group, --idle or --offline-drain";
  }
  if (c->transport == Transport::kWs) {
    if (client_given && c->client != Client::kPaho) return "--transport ws needs --client paho";
    c->client = Client::kPaho;
  }
  if (c->client == Client::kPaho && c->scenario != Scenario::kPairs &&
      c->scenario != Scenario::kFanIn && c->scenario != Scenario::kCustom) {
    return "--client paho runs --pairs, --fan-in or --publishers/--subscribers only";
  }
  // User ids are ^[a-z0-9][a-z0-9_.-]{0,31}$ and get a short suffix.
  const std::string& p = c->user_prefix;
  if (p.empty() || p.size() > 16) return "--user-prefix must have 1 to 16 characters";
  for (char ch : p) {
    bool ok =
        (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
    if (!ok) return "--user-prefix may contain only a-z 0-9 _ . -";
  }
  if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= '0' && p[0] <= '9'))) {
    return "--user-prefix must start with a letter or digit";
  }
  if (c->password.size() < 8) return "--password needs at least 8 characters";
  if (c->e2e) {
    if (c->target != Target::kChat) {
      return "--e2e needs --target chat (the bare broker has no e2e messages)";
    }
    if (c->client != Client::kMosquitto) return "--e2e runs with --client mosquitto only";
    if (c->scenario == Scenario::kIdle) return "--e2e needs a scenario that sends messages";
  }
  if (c->target == Target::kChat && c->qos == 0 && c->scenario != Scenario::kIdle) {
    return "the chat target accepts messages at QoS 1 or 2 only";
  }
  return "";
}

}  // namespace chat::bench
