// Fault tests (issue 7): CONTRACT §3 "a message acknowledged to its sender is
// never lost", under the faults one machine can have:
// - SIGKILL of mosquitto, chat-api or chat-bridge while two senders stream
//   QoS 1 messages to a recipient with one online and one offline device;
// - a reconnect storm of 500 devices, with messages sent to them meanwhile,
//   while the key file the broker loaded at start is replaced (JWT
//   verification must use the keys in memory, never read a file per CONNECT).
// One checker (check_delivery) judges every kill: the acknowledged messages of
// each sender against the history and against what each device received.
#include <gtest/gtest.h>
#include <mosquitto.h>
#include <mqtt/async_client.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "chat/common/jwt.h"
#include "stack.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

// --- devices: one MQTT identity over TCP or over WebSocket through chat-bridge ----

enum class Transport { kTcp, kWebSocket };

// Envelopes a device received live, across all its connections. Shared with
// Paho's callback thread.
struct Inbox {
  std::mutex mu;
  std::vector<json> envelopes;  // raw: QoS 1 may deliver an id twice
  void add(const std::string& payload) {
    json j = json::parse(payload, nullptr, false);
    std::lock_guard<std::mutex> l(mu);
    envelopes.push_back(std::move(j));
  }
  std::vector<json> snapshot() {
    std::lock_guard<std::mutex> l(mu);
    return envelopes;
  }
};

// One connection; a Device makes a new one after each loss, as a real client
// reconnects.
class Link {
 public:
  virtual ~Link() = default;
  // CONNACK reason (0 accepted), -1 when there was none.
  virtual int connect() = 0;
  virtual int subscribe(const std::string& filter) = 0;
  // PUBACK reason, -1 when no acknowledgement arrived.
  virtual int publish(const std::string& topic, const std::string& payload) = 0;
  virtual bool connected() = 0;
  // Envelopes received on u/<user>/msg that the device has not taken yet.
  virtual void drain_into(Inbox& inbox) = 0;
};

class TcpLink final : public Link {
 public:
  TcpLink(int port, MqttClient::Options o) : client_(port, std::move(o)) {}
  int connect() override { return client_.connect(); }
  int subscribe(const std::string& filter) override { return client_.subscribe(filter); }
  int publish(const std::string& topic, const std::string& payload) override {
    return client_.publish(topic, payload);
  }
  bool connected() override { return client_.connected(); }
  void drain_into(Inbox& inbox) override {
    auto all = client_.received();
    for (size_t i = taken_; i < all.size(); ++i) {
      if (all[i].topic.size() > 4 && all[i].topic.ends_with("/msg")) inbox.add(all[i].payload);
    }
    taken_ = all.size();
  }

 private:
  MqttClient client_;
  size_t taken_ = 0;
};

// MQTT 5 over ws://127.0.0.1:<ws port>/mqtt with Paho (the C++ client that
// speaks WebSocket), as a browser behind chat-bridge.
class WsLink final : public Link {
 public:
  WsLink(int ws_port, const MqttClient::Options& o, std::shared_ptr<Inbox> inbox)
      : options_(o), inbox_(std::move(inbox)) {
    client_ = std::make_unique<mqtt::async_client>(
        "ws://127.0.0.1:" + std::to_string(ws_port) + "/mqtt", o.client_id,
        mqtt::create_options(MQTTVERSION_5), nullptr);
    auto inbox_ptr = inbox_;
    client_->set_message_callback([inbox_ptr](mqtt::const_message_ptr m) {
      if (m && m->get_topic().ends_with("/msg")) inbox_ptr->add(m->get_payload_str());
    });
  }
  ~WsLink() override {
    try {
      if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(2));
    } catch (...) {
    }
  }
  int connect() override {
    mqtt::connect_options opts;
    opts.set_mqtt_version(MQTTVERSION_5);
    opts.set_clean_start(options_.clean);
    opts.set_user_name(options_.username);
    opts.set_password(options_.password);
    opts.set_keep_alive_interval(30);
    opts.set_connect_timeout(5);
    opts.set_automatic_reconnect(false);
    if (!options_.clean) {
      opts.set_properties(
          mqtt::properties{{mqtt::property::SESSION_EXPIRY_INTERVAL, int32_t{3600}}});
    }
    try {
      auto tok = client_->connect(opts);
      if (!tok->wait_for(std::chrono::seconds(6))) return -1;
      return 0;
    } catch (const mqtt::exception& e) {
      return e.get_reason_code() >= 0x80 ? e.get_reason_code() : -1;
    }
  }
  int subscribe(const std::string& filter) override {
    try {
      auto tok = client_->subscribe(filter, 1);
      if (!tok->wait_for(std::chrono::seconds(5))) return -1;
      auto codes = tok->get_subscribe_response().get_reason_codes();
      return codes.empty() ? -1 : static_cast<int>(codes[0]);
    } catch (const mqtt::exception&) {
      return -1;
    }
  }
  int publish(const std::string& topic, const std::string& payload) override {
    try {
      auto tok = client_->publish(mqtt::make_message(topic, payload, 1, false));
      if (!tok->wait_for(std::chrono::seconds(5))) return -1;
      return static_cast<int>(tok->get_reason_code());
    } catch (const mqtt::exception& e) {
      return e.get_reason_code() >= 0x80 ? e.get_reason_code() : -1;
    }
  }
  bool connected() override { return client_->is_connected(); }
  void drain_into(Inbox&) override {}  // the callback fills the inbox directly

 private:
  MqttClient::Options options_;
  std::shared_ptr<Inbox> inbox_;
  std::unique_ptr<mqtt::async_client> client_;
};

// A user's device: reconnects on demand, subscribes to its inbox on every
// connect (CONTRACT §3: a crashed broker may have lost the session), keeps
// what it received across connections.
class Device {
 public:
  Device(Stack& stack, Transport transport, const std::string& user, const std::string& dev,
         const std::string& token, bool persistent, bool subscribes)
      : stack_(stack),
        transport_(transport),
        options_(device(user, dev, token, /*v5=*/true, /*clean=*/!persistent)),
        user_(user),
        subscribes_(subscribes) {}

  const std::string& user() const { return user_; }
  const std::string& name() const { return options_.client_id; }

  // Connected (and subscribed) on return true; otherwise a new attempt next call.
  bool ensure_connected() {
    std::lock_guard<std::mutex> l(mu_);
    if (link_ && link_->connected()) return true;
    drop_locked();
    std::unique_ptr<Link> link;
    if (transport_ == Transport::kTcp) {
      link = std::make_unique<TcpLink>(stack_.mqtt_port(), options_);
    } else {
      link = std::make_unique<WsLink>(stack_.ws_port(), options_, inbox_);
    }
    if (link->connect() != 0) return false;
    if (subscribes_ && link->subscribe("u/" + user_ + "/#") != 1) return false;
    link_ = std::move(link);
    ++connects_;
    return true;
  }
  int publish(const std::string& topic, const std::string& payload) {
    Link* link;
    {
      std::lock_guard<std::mutex> l(mu_);
      link = link_.get();
    }
    return link == nullptr ? -1 : link->publish(topic, payload);
  }
  // Closes the connection (a clean DISCONNECT when still up).
  void drop() {
    std::lock_guard<std::mutex> l(mu_);
    drop_locked();
  }
  bool connected() {
    std::lock_guard<std::mutex> l(mu_);
    return link_ && link_->connected();
  }
  std::vector<json> live() {
    std::lock_guard<std::mutex> l(mu_);
    if (link_) link_->drain_into(*inbox_);
    return inbox_->snapshot();
  }
  int connects() {
    std::lock_guard<std::mutex> l(mu_);
    return connects_;
  }

 private:
  void drop_locked() {
    if (link_) link_->drain_into(*inbox_);
    link_.reset();
  }

  Stack& stack_;
  Transport transport_;
  MqttClient::Options options_;
  std::string user_;
  bool subscribes_;
  std::mutex mu_;
  std::unique_ptr<Link> link_;
  std::shared_ptr<Inbox> inbox_ = std::make_shared<Inbox>();
  int connects_ = 0;
};

// --- the checker -----------------------------------------------------------------

// What one sender did: cids "<user>-<seq>", seq counting up from 0; a cid is
// attempted until acknowledged (re-sent with the same cid after a failure,
// as CONTRACT §3 asks of clients).
struct SenderLog {
  std::string user;
  std::vector<std::string> acked;  // in order
  std::set<std::string> attempted;
  int refused = 0;  // PUBACK >= 0x80: never expected here
};

// What one device ended up with: envelopes received live plus the ones its
// /v1/sync returned (raw; de-duplicated by id here).
struct DeviceLog {
  std::string name;
  std::vector<json> envelopes;
};

int64_t seq_of(const std::string& cid) {
  auto dash = cid.rfind('-');
  if (dash == std::string::npos) return -1;
  try {
    return std::stoll(cid.substr(dash + 1));
  } catch (...) {
    return -1;
  }
}

// CONTRACT §3 delivery guarantee, for messages from `senders` to one
// recipient whose history (oldest first) is `history`:
// - every acknowledged message is in the history exactly once (one id per
//   sender+cid, no id twice);
// - nothing is in the history that was never sent;
// - each sender's messages are in the history in the order it sent them;
// - every device has every history message after de-duplication by id, each
//   cid under one id only, and nothing else.
::testing::AssertionResult check_delivery(const std::vector<SenderLog>& senders,
                                          const std::vector<json>& history,
                                          const std::vector<DeviceLog>& devices) {
  std::vector<std::string> problems;
  auto problem = [&](const std::string& p) { problems.push_back(p); };

  std::map<std::string, const SenderLog*> by_user;
  for (const auto& s : senders) {
    by_user[s.user] = &s;
    if (s.refused) problem(s.user + ": " + std::to_string(s.refused) + " publishes refused");
  }

  std::map<std::string, json> by_id;                       // history, by id
  std::map<std::string, std::vector<std::string>> by_key;  // "from/cid" -> ids
  std::map<std::string, int64_t> last_seq;
  std::string last_id;
  for (const auto& m : history) {
    std::string id = m.value("id", ""), from = m.value("from", ""), cid = m.value("cid", "");
    if (!by_id.emplace(id, m).second) problem("history has id " + id + " twice");
    if (id <= last_id) problem("history out of id order at " + id);
    last_id = id;
    by_key[from + "/" + cid].push_back(id);
    auto s = by_user.find(from);
    if (s == by_user.end() || !s->second->attempted.count(cid)) {
      problem("history has " + from + "/" + cid + ", never sent");
      continue;
    }
    int64_t seq = seq_of(cid);
    auto [it, first] = last_seq.emplace(from, seq);
    if (!first) {
      if (seq <= it->second) {
        problem(from + ": " + cid + " after seq " + std::to_string(it->second) + " (order)");
      }
      it->second = seq;
    }
  }
  size_t acked_total = 0;
  for (const auto& s : senders) {
    acked_total += s.acked.size();
    for (const auto& cid : s.acked) {
      auto it = by_key.find(s.user + "/" + cid);
      if (it == by_key.end()) {
        problem(s.user + "/" + cid + " acknowledged but not in the history");
      } else if (it->second.size() != 1) {
        problem(s.user + "/" + cid + " in the history " + std::to_string(it->second.size()) +
                " times");
      }
    }
  }

  for (const auto& d : devices) {
    std::map<std::string, std::set<std::string>> ids_of_key;
    std::set<std::string> got;
    for (const auto& e : d.envelopes) {
      if (!e.is_object() || !e.contains("id")) {
        problem(d.name + " got a payload that is no envelope: " + e.dump());
        continue;
      }
      std::string id = e.value("id", "");
      got.insert(id);
      ids_of_key[e.value("from", "") + "/" + e.value("cid", "")].insert(id);
      auto h = by_id.find(id);
      if (h == by_id.end()) {
        problem(d.name + " got id " + id + " (" + e.value("cid", "") + "), not in the history");
      } else if (h->second.value("cid", "") != e.value("cid", "")) {
        problem(d.name + " got id " + id + " with another cid than the history's");
      }
    }
    for (const auto& [key, ids] : ids_of_key) {
      if (ids.size() > 1)
        problem(d.name + " got " + key + " under " + std::to_string(ids.size()) + " ids");
    }
    size_t missing = 0;
    for (const auto& [id, m] : by_id) {
      if (!got.count(id) && missing++ < 5) {
        problem(d.name + " never got " + id + " (" + m.value("cid", "") + ")");
      }
    }
    if (missing > 5) problem(d.name + " never got " + std::to_string(missing) + " messages in all");
  }

  if (problems.empty()) {
    return ::testing::AssertionSuccess() << acked_total << " acknowledged, " << history.size()
                                         << " in the history, " << devices.size() << " devices";
  }
  auto failure = ::testing::AssertionFailure();
  failure << problems.size() << " problem(s), " << acked_total << " acknowledged, "
          << history.size() << " in the history:";
  for (size_t i = 0; i < problems.size() && i < 20; ++i) failure << "\n  " << problems[i];
  return failure;
}

// Every message of one conversation, oldest first, paging forward with `after`.
std::vector<json> conversation_all(Stack& s, const std::string& token, const std::string& conv) {
  std::vector<json> out;
  std::string after = "0000000000000000";
  for (int page = 0; page < 1000; ++page) {
    auto [status, body] =
        s.get("/v1/conversations/" + conv + "/messages?limit=500&after=" + after, token);
    EXPECT_EQ(status, 200) << body.dump();
    if (status != 200 || body["messages"].empty()) break;
    for (auto& m : body["messages"]) out.push_back(m);
    if (body["next"].is_null()) break;
    after = body["next"].get<std::string>();
  }
  return out;
}

// --- SIGKILL mid-stream ----------------------------------------------------------

enum class Victim { kBroker, kApi, kBridge };
void PrintTo(Victim v, std::ostream* os) {
  *os << (v == Victim::kBroker ? "mosquitto" : v == Victim::kApi ? "chat-api" : "chat-bridge");
}

class SigkillMidStream : public ::testing::TestWithParam<Victim> {
 protected:
  void TearDown() override {
    if (HasFailure())
      std::cerr << stack.logs() << "--- chat-bridge log ---\n"
                << stack.log_tail("chat-bridge") << "\n";
  }
  Stack stack;
};

TEST_P(SigkillMidStream, LosesNoAcknowledgedMessage) {
  const Victim victim = GetParam();
  constexpr int kBeforeKill = 150, kAfterRestart = 150;
  const std::string bob_token = stack.register_user("bob");
  std::vector<std::string> sender_users = {"s1", "s2"};
  std::vector<std::string> sender_tokens;
  for (auto& u : sender_users) sender_tokens.push_back(stack.register_user(u));

  // Bob: a phone offline with a persistent session, and a device online. When
  // the bridge is the victim, the online device and one sender go through it.
  const Transport via = victim == Victim::kBridge ? Transport::kWebSocket : Transport::kTcp;
  Device offline(stack, Transport::kTcp, "bob", "phone", bob_token, true, true);
  ASSERT_TRUE(offline.ensure_connected());
  offline.drop();
  Device online(stack, via, "bob", "laptop", bob_token, true, true);
  ASSERT_TRUE(online.ensure_connected());

  std::vector<std::unique_ptr<Device>> sender_devices;
  sender_devices.push_back(
      std::make_unique<Device>(stack, Transport::kTcp, "s1", "d", sender_tokens[0], false, false));
  sender_devices.push_back(
      std::make_unique<Device>(stack, via, "s2", "d", sender_tokens[1], false, false));

  std::vector<SenderLog> logs(2);
  std::mutex logs_mu;
  std::atomic<int> acked{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < 2; ++i) {
    logs[i].user = sender_users[i];
    threads.emplace_back([&, i] {
      Device& d = *sender_devices[i];
      int64_t seq = 0;
      while (!stop) {
        if (!d.ensure_connected()) {
          std::this_thread::sleep_for(20ms);  // reconnect back-off
          continue;
        }
        std::string cid = d.user() + "-" + std::to_string(seq);
        {
          std::lock_guard<std::mutex> l(logs_mu);
          logs[i].attempted.insert(cid);
        }
        int rc = d.publish("dm/bob", text(cid, "stream " + std::to_string(seq)));
        std::lock_guard<std::mutex> l(logs_mu);
        if (is_success(rc)) {
          logs[i].acked.push_back(cid);
          ++seq;
          ++acked;
        } else if (rc >= 0x80) {
          ++logs[i].refused;
          return;
        } else {
          d.drop();  // no acknowledgement: reconnect, send the same cid again
        }
      }
    });
  }
  // The online device reconnects whenever its connection is lost.
  std::thread keeper([&] {
    while (!stop) {
      online.ensure_connected();
      std::this_thread::sleep_for(20ms);
    }
  });

  ASSERT_TRUE(eventually([&] { return acked >= kBeforeKill; }, 20s)) << acked;
  const int at_kill = acked;
  switch (victim) {
    case Victim::kBroker:
      stack.kill_broker(SIGKILL);
      stack.start_broker();
      break;
    case Victim::kApi:
      stack.kill_api(SIGKILL);
      stack.start_api();
      break;
    case Victim::kBridge:
      stack.kill_bridge(SIGKILL);
      stack.start_bridge();
      break;
  }
  EXPECT_TRUE(eventually([&] { return acked >= at_kill + kAfterRestart; }, 30s))
      << "the stream did not resume: " << acked << " acknowledged, " << at_kill << " at the kill";
  stop = true;
  for (auto& t : threads) t.join();
  keeper.join();
  sender_devices.clear();
  {
    std::lock_guard<std::mutex> l(logs_mu);
    ASSERT_GE(logs[0].acked.size() + logs[1].acked.size(), size_t(kBeforeKill));
  }

  // chat-api answers again (after a broker restart it reconnects its control
  // channel; after its own restart it is new).
  ASSERT_TRUE(eventually([&] { return stack.get("/healthz", "").first == 200; }, 20s));
  std::vector<json> history;
  for (const auto& u : sender_users) {
    auto conv = conversation_all(stack, bob_token, "dm:bob:" + u);
    history.insert(history.end(), conv.begin(), conv.end());
  }
  std::sort(history.begin(), history.end(), [](const json& a, const json& b) {
    return a["id"].get<std::string>() < b["id"].get<std::string>();
  });
  // /v1/sync agrees with the history.
  auto synced = sync_all(stack, bob_token);
  ASSERT_EQ(synced.size(), history.size());
  for (size_t i = 0; i < synced.size(); ++i) ASSERT_EQ(synced[i]["id"], history[i]["id"]);

  // Both devices do what a client does after (re)connecting: subscribe, then
  // sync. Without a broker crash nothing needs the sync: the session (the
  // online device's live stream, the offline phone's queue) has everything.
  ASSERT_TRUE(eventually([&] { return online.ensure_connected(); }, 10s));
  ASSERT_TRUE(offline.ensure_connected());
  std::set<std::string> history_ids;
  for (auto& m : history) history_ids.insert(m["id"].get<std::string>());
  auto has_all_live = [&](Device& d) {
    std::set<std::string> got;
    for (auto& e : d.live()) got.insert(e.value("id", ""));
    return std::includes(got.begin(), got.end(), history_ids.begin(), history_ids.end());
  };
  if (victim != Victim::kBroker) {
    EXPECT_TRUE(eventually([&] { return has_all_live(online); }, 10s))
        << "online device: not everything arrived live";
    EXPECT_TRUE(eventually([&] { return has_all_live(offline); }, 10s))
        << "offline device: not everything came from its persistent session";
  }
  std::vector<DeviceLog> devices;
  for (Device* d : {&online, &offline}) {
    DeviceLog log{d->name(), d->live()};
    for (auto& m : sync_all(stack, bob_token)) log.envelopes.push_back(m);
    devices.push_back(std::move(log));
  }
  std::lock_guard<std::mutex> l(logs_mu);
  EXPECT_TRUE(check_delivery(logs, history, devices));
  std::cout << "[ faults   ] acknowledged " << acked << " (" << at_kill << " before the kill), "
            << history.size() << " in the history; online device connected " << online.connects()
            << " times\n";
}

INSTANTIATE_TEST_SUITE_P(Faults, SigkillMidStream,
                         ::testing::Values(Victim::kBroker, Victim::kApi, Victim::kBridge),
                         [](const auto& param_info) {
                           switch (param_info.param) {
                             case Victim::kBroker:
                               return std::string("Mosquitto");
                             case Victim::kApi:
                               return std::string("ChatApi");
                             case Victim::kBridge:
                               return std::string("ChatBridge");
                           }
                           return std::string("Unknown");
                         });

// The checker itself: each rule must be able to fail.
TEST(DeliveryChecker, CatchesEachKindOfLoss) {
  auto env = [](const std::string& id, const std::string& from, const std::string& cid) {
    return json{{"id", id}, {"from", from}, {"cid", cid}};
  };
  SenderLog s{"s1", {"s1-0", "s1-1"}, {"s1-0", "s1-1", "s1-2"}, 0};
  std::vector<json> history = {env("a1", "s1", "s1-0"), env("a2", "s1", "s1-1")};
  DeviceLog dev{"bob:phone", history};
  dev.envelopes.push_back(history[0]);  // a duplicate delivery is fine
  EXPECT_TRUE(check_delivery({s}, history, {dev}));

  // Acknowledged, not in the history.
  EXPECT_FALSE(check_delivery({s}, {history[0]}, {DeviceLog{"d", {history[0]}}}));
  // In the history twice under two ids.
  auto twice = history;
  twice.push_back(env("a3", "s1", "s1-1"));
  EXPECT_FALSE(check_delivery({s}, twice, {DeviceLog{"d", twice}}));
  // Never sent.
  auto forged = history;
  forged.push_back(env("a3", "s1", "s1-9"));
  EXPECT_FALSE(check_delivery({s}, forged, {DeviceLog{"d", forged}}));
  // Attempted but unacknowledged and archived: allowed.
  auto extra = history;
  extra.push_back(env("a3", "s1", "s1-2"));
  EXPECT_TRUE(check_delivery({s}, extra, {DeviceLog{"d", extra}}));
  // Out of the sender's order.
  std::vector<json> reordered = {env("a1", "s1", "s1-1"), env("a2", "s1", "s1-0")};
  EXPECT_FALSE(check_delivery({s}, reordered, {DeviceLog{"d", reordered}}));
  // A device missed one.
  EXPECT_FALSE(check_delivery({s}, history, {DeviceLog{"d", {history[0]}}}));
  // A device got something that is not in the history.
  EXPECT_FALSE(check_delivery({s}, history, {DeviceLog{"d", extra}}));
}

// --- reconnect storm -------------------------------------------------------------

// Many libmosquitto clients driven by one thread with poll(2): 500 clients
// with a loop thread each would measure the test, not the broker.
class Swarm {
 public:
  struct Member {
    Swarm* swarm = nullptr;
    struct mosquitto* mosq = nullptr;
    std::string user, client_id, token;
    bool v5 = true;
    bool connected = false, subscribed = false;
    int connack = -2;
    int connects = 0;
    std::chrono::steady_clock::time_point started;  // of the last connect_all
    std::chrono::milliseconds took{0};              // from started to SUBACK
    std::vector<std::string> ids;                   // envelope ids received, raw
  };

  explicit Swarm(int port) : port_(port) { mosquitto_lib_init(); }
  ~Swarm() {
    for (auto& m : members_) mosquitto_destroy(m->mosq);
  }

  void add(const std::string& user, const std::string& device, const std::string& token, bool v5) {
    auto m = std::make_unique<Member>();
    m->swarm = this;
    m->user = user;
    m->client_id = user + ":" + device;
    m->token = token;
    m->v5 = v5;
    m->mosq = mosquitto_new(m->client_id.c_str(), /*clean_session=*/false, m.get());
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_username_pw_set(m->mosq, user.c_str(), token.c_str());
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    mosquitto_subscribe_v5_callback_set(m->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    members_.push_back(std::move(m));
  }

  // Starts a connect of every member; CONNACK and SUBACK arrive through
  // pump(). `again`: a non-blocking reconnect (the first connect's CONNECT
  // properties are kept), so a stalled TCP handshake delays that member only.
  void connect_all(bool again = false) {
    for (auto& m : members_) {
      m->connack = -2;
      m->subscribed = false;
      m->started = std::chrono::steady_clock::now();
      if (again) {
        if (mosquitto_reconnect_async(m->mosq) != MOSQ_ERR_SUCCESS) m->connack = -1;
        continue;
      }
      mosquitto_property* props = nullptr;
      if (m->v5) mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 3600);
      int rc = mosquitto_connect_bind_v5(m->mosq, "127.0.0.1", port_, 60, nullptr, props);
      mosquitto_property_free_all(&props);
      if (rc != MOSQ_ERR_SUCCESS) m->connack = -1;
    }
  }
  // Half leave with DISCONNECT, half as a dropped network would (the socket
  // shut down under the client).
  void disconnect_all() {
    for (size_t i = 0; i < members_.size(); ++i) {
      auto& m = members_[i];
      if (i % 2 == 0) {
        mosquitto_disconnect(m->mosq);
      } else {
        int fd = mosquitto_socket(m->mosq);
        if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
      }
    }
  }

  // One poll pass over every member with a socket.
  void pump(int timeout_ms) {
    std::vector<pollfd> fds;
    std::vector<Member*> who;
    for (auto& m : members_) {
      int fd = mosquitto_socket(m->mosq);
      if (fd < 0) continue;
      short events = POLLIN;
      if (mosquitto_want_write(m->mosq)) events |= POLLOUT;
      fds.push_back({fd, events, 0});
      who.push_back(m.get());
    }
    if (!fds.empty()) ::poll(fds.data(), fds.size(), timeout_ms);
    for (size_t i = 0; i < fds.size(); ++i) {
      Member* m = who[i];
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (mosquitto_loop_read(m->mosq, 100) != MOSQ_ERR_SUCCESS) lost(*m);
      }
      if (fds[i].revents & POLLOUT) {
        if (mosquitto_loop_write(m->mosq, 100) != MOSQ_ERR_SUCCESS) lost(*m);
      }
      mosquitto_loop_misc(m->mosq);
    }
  }
  bool pump_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      pump(10);
    }
    return true;
  }

  size_t ready() const {
    size_t n = 0;
    for (auto& m : members_) n += m->connected && m->subscribed;
    return n;
  }
  size_t disconnected() const {
    size_t n = 0;
    for (auto& m : members_) n += !m->connected && mosquitto_socket(m->mosq) < 0;
    return n;
  }
  size_t refused() const {
    size_t n = 0;
    for (auto& m : members_) n += m->connack > 0 || m->connack == -1;
    return n;
  }
  const std::vector<std::unique_ptr<Member>>& members() const { return members_; }
  // "p50 a ms, p99 b ms, max c ms" of the members' last connect-to-SUBACK time.
  std::string latency() const {
    std::vector<int64_t> ms;
    for (auto& m : members_) ms.push_back(m->took.count());
    if (ms.empty()) return "-";
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) { return ms[std::min(ms.size() - 1, size_t(q * ms.size()))]; };
    return "p50 " + std::to_string(at(0.5)) + " ms, p99 " + std::to_string(at(0.99)) + " ms, max " +
           std::to_string(ms.back()) + " ms";
  }
  int64_t slowest_ms() const {
    int64_t worst = 0;
    for (auto& m : members_) worst = std::max<int64_t>(worst, m->took.count());
    return worst;
  }

 private:
  static void lost(Member& m) {
    // libmosquitto closed the socket already (mosquitto_socket() < 0 now).
    m.connected = false;
  }
  static void on_connect(struct mosquitto* mosq, void* obj, int rc, int,
                         const mosquitto_property*) {
    auto* m = static_cast<Member*>(obj);
    m->connack = rc;
    m->connected = rc == 0;
    if (rc == 0) {
      ++m->connects;
      // Subscribe on every connect, as CONTRACT §3 asks.
      mosquitto_subscribe(mosq, nullptr, ("u/" + m->user + "/#").c_str(), 1);
    }
  }
  static void on_disconnect(struct mosquitto*, void* obj, int, const mosquitto_property*) {
    static_cast<Member*>(obj)->connected = false;
  }
  static void on_subscribe(struct mosquitto*, void* obj, int, int count, const int* granted,
                           const mosquitto_property*) {
    auto* m = static_cast<Member*>(obj);
    m->subscribed = count > 0 && granted[0] == 1;
    m->took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - m->started);
  }
  static void on_message(struct mosquitto*, void* obj, const struct mosquitto_message* msg,
                         const mosquitto_property*) {
    auto* m = static_cast<Member*>(obj);
    std::string topic = msg->topic;
    if (!topic.ends_with("/msg")) return;
    json e = json::parse(
        std::string(static_cast<const char*>(msg->payload), static_cast<size_t>(msg->payloadlen)),
        nullptr, false);
    if (e.is_object() && e.contains("id")) m->ids.push_back(e["id"].get<std::string>());
  }

  int port_;
  std::vector<std::unique_ptr<Member>> members_;
};

// Whether the descriptor limit is now at least `want` (a hard limit below it
// would otherwise show up as "N of 500 ready", far from its cause).
bool raise_fd_limit(rlim_t want) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return false;
  if (r.rlim_cur >= want) return true;
  r.rlim_cur = std::min(want, r.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &r);  // children (the broker) inherit it
  return ::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur >= want;
}

TEST(ReconnectStorm, FiveHundredDevicesReconnectWithinTheBoundAndLoseNothing) {
  constexpr int kUsers = 10, kDevicesPerUser = 50, kDevices = kUsers * kDevicesPerUser;
  constexpr int kDuringStorm = 5;  // messages to each user while the devices reconnect
  // libmosquitto takes 3 descriptors per client (socket and wake-up pair).
  ASSERT_TRUE(raise_fd_limit(4 * kDevices + 256))
      << "RLIMIT_NOFILE cannot reach " << 4 * kDevices + 256 << " (ulimit -Hn)";
  Stack stack;
  std::vector<std::string> users, user_tokens;
  for (int u = 0; u < kUsers; ++u) {
    users.push_back("storm" + std::to_string(u));
    user_tokens.push_back(stack.register_user(users.back()));
  }
  const std::string sender_token = stack.register_user("storm-sender");
  // Tokens minted up front, one per device.
  std::vector<std::string> device_tokens;
  for (int i = 0; i < kDevices; ++i)
    device_tokens.push_back(stack.mint_token(users[i % kUsers], 3600));

  // The broker loaded the issuer's public keys at start. Replace the file with
  // another key's JWKS: if a CONNECT read the file, every token above would be
  // refused from now on; a token of the new key is refused because the broker
  // never read it.
  const std::string jwks_path = stack.data_dir() + "/keys/jwks.json";
  ASSERT_TRUE(fs::exists(jwks_path));
  {
    auto other = jwt::Signer::load_or_create(stack.data_dir() + "/other.pem",
                                             stack.data_dir() + "/other.jwks");
    ASSERT_TRUE(other.is_ok());
    std::ofstream(jwks_path, std::ios::trunc) << other->public_jwks();
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    std::string foreign = other->sign({{"sub", "storm0"},
                                       {"iss", "chat-platform"},
                                       {"aud", "chat"},
                                       {"iat", now},
                                       {"exp", now + 3600},
                                       {"jti", "other"},
                                       {"roles", json::array({"user"})}});
    stack.remember_secret(foreign);
    MqttClient probe(stack.mqtt_port(), device("storm0", "foreign", foreign));
    int rc = probe.connect();
    EXPECT_GT(rc, 0) << "a token of a key the broker never loaded was not refused";
    MqttClient control(stack.mqtt_port(), device("storm0", "control", device_tokens[0]));
    EXPECT_EQ(control.connect(), 0) << "a token of the loaded key was refused";
  }

  // The sender connects before the swarm: MqttClient's loop uses select(2),
  // which cannot watch descriptors above 1023 (and neither can cpp-httplib's
  // client: no REST call while the swarm is up). It learns the id of each
  // message it sends from its own inbox.
  MqttClient sender(stack.mqtt_port(), device("storm-sender", "s", sender_token));
  ASSERT_EQ(sender.connect(), 0) << stack.logs();
  ASSERT_EQ(sender.subscribe("u/storm-sender/#"), 1);
  int cid = 0;
  auto send_round = [&](const std::string& tag) {
    for (const auto& u : users) {
      if (!is_success(sender.publish("dm/" + u, text(tag + std::to_string(cid++), "x")))) {
        return false;
      }
    }
    return true;
  };

  auto swarm = std::make_unique<Swarm>(stack.mqtt_port());
  for (int i = 0; i < kDevices; ++i) {
    swarm->add(users[i % kUsers], "d" + std::to_string(i / kUsers), device_tokens[i], i % 2 == 0);
  }
  auto t0 = std::chrono::steady_clock::now();
  swarm->connect_all();
  ASSERT_TRUE(swarm->pump_until([&] { return swarm->ready() == size_t(kDevices); }, 30s))
      << swarm->ready() << " of " << kDevices << " ready, " << swarm->refused() << " refused\n"
      << stack.logs();
  const auto first_connect =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  const std::string first_latency = swarm->latency();
  ASSERT_TRUE(send_round("before-"));

  // The storm: everyone drops at once (half with DISCONNECT, half as a lost
  // network), and comes back at once while messages for them arrive.
  swarm->disconnect_all();
  ASSERT_TRUE(swarm->pump_until([&] { return swarm->disconnected() == size_t(kDevices); }, 10s))
      << swarm->disconnected();
  std::atomic<bool> sent_ok{true};
  std::thread during([&] {
    for (int i = 0; i < kDuringStorm; ++i) sent_ok = sent_ok && send_round("storm-");
  });
  auto t1 = std::chrono::steady_clock::now();
  swarm->connect_all(/*again=*/true);
  const auto reconnect_issued =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1);
  bool all_back = swarm->pump_until([&] { return swarm->ready() == size_t(kDevices); }, 30s);
  const auto storm =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1);
  during.join();
  ASSERT_TRUE(all_back) << swarm->ready() << " of " << kDevices << " back, " << swarm->refused()
                        << " refused\n"
                        << stack.logs();
  EXPECT_LT(reconnect_issued, 2s) << "the test could not reconnect everyone within 2 s";
  const std::string storm_latency = swarm->latency();
  ASSERT_TRUE(sent_ok);

  // The ids of what was sent, per recipient, from the sender's own copies.
  const size_t kSent = size_t(kUsers) * (1 + kDuringStorm);
  ASSERT_TRUE(
      sender.wait_for([&](auto& m) { return on_topic(m, "u/storm-sender/msg").size() >= kSent; }));
  std::map<std::string, std::set<std::string>> sent;  // user -> ids
  for (auto& r : sender.received_on("u/storm-sender/msg")) {
    auto e = r.body();
    sent[e["to"].get<std::string>()].insert(e["id"].get<std::string>());
  }
  for (const auto& u : users) ASSERT_EQ(sent[u].size(), size_t(1 + kDuringStorm)) << u;

  // Nothing lost: every device has every message of its user, live (its
  // persistent session held what arrived while it was away).
  auto has_all = [&](const Swarm::Member& m) {
    std::set<std::string> got(m.ids.begin(), m.ids.end());
    return got == sent[m.user];
  };
  EXPECT_TRUE(swarm->pump_until(
      [&] {
        return std::all_of(swarm->members().begin(), swarm->members().end(),
                           [&](auto& m) { return has_all(*m); });
      },
      20s));
  size_t incomplete = 0;
  for (auto& m : swarm->members()) {
    if (!has_all(*m) && incomplete++ < 5) {
      ADD_FAILURE() << m->client_id << " has " << m->ids.size() << " deliveries, "
                    << sent[m->user].size() << " messages were sent to it";
    }
  }
  swarm.reset();  // descriptors back under 1024 for the REST client

  // ...and the archive has exactly what was sent.
  for (int u = 0; u < kUsers; ++u) {
    std::set<std::string> history;
    for (auto& m : sync_all(stack, user_tokens[u])) history.insert(m["id"].get<std::string>());
    EXPECT_EQ(history, sent[users[u]]) << users[u];
  }
  std::cout << "[ storm    ] " << kDevices << " devices: first connect " << first_connect.count()
            << " ms (" << first_latency << "); reconnect issued in " << reconnect_issued.count()
            << " ms, all back in " << storm.count() << " ms (" << storm_latency << ")\n";
  RecordProperty("first_connect_ms", static_cast<int>(first_connect.count()));
  RecordProperty("storm_all_back_ms", static_cast<int>(storm.count()));
}

}  // namespace
}  // namespace chat::testing
