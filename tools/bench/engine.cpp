#include "bench/engine.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "bench/paho_engine.h"
#include "bench/payload.h"
#include "bench/rest.h"
#include "bench/stats.h"
#include "bench/sys.h"
#include "chat/common/topics.h"

namespace chat::bench {
namespace {

using json = nlohmann::json;

// mosquitto_new() also opens a socket pair that only mosquitto_loop()'s
// select() reads: libmosquitto writes a byte to it on every packet it queues.
// We drive the sockets ourselves, so the pair only costs two descriptors per
// connection (10,000 idle connections would need 30,000) and a syscall per
// publish. libmosquitto runs without it when socketpair() fails ("outgoing
// publish commands may be delayed", which only concerns its own select loop),
// so make it fail: no descriptor is free below the soft limit while the
// client is created. Creation runs before any worker thread exists.
struct mosquitto* new_client(const std::string& id, bool clean, void* obj) {
  rlimit saved{};
  const bool limited = getrlimit(RLIMIT_NOFILE, &saved) == 0;
  if (limited) {
    int lowest = ::dup(0);  // the lowest free descriptor
    if (lowest >= 0) {
      ::close(lowest);
      rlimit tight = saved;
      tight.rlim_cur = static_cast<rlim_t>(lowest);
      setrlimit(RLIMIT_NOFILE, &tight);
    }
  }
  struct mosquitto* m = mosquitto_new(id.c_str(), clean, obj);
  if (limited) setrlimit(RLIMIT_NOFILE, &saved);
  return m;
}

// --- connections -------------------------------------------------------------------

enum class Role { kPublisher, kSubscriber };

class Engine;
class Worker;

struct Conn {
  // What it is.
  Role role = Role::kSubscriber;
  int index = 0;  // publisher or subscriber index
  std::string client_id, username, password;
  std::string topic;  // publisher: where it publishes; subscriber: its filter
  bool clean = true;
  int session_expiry = 0;  // MQTT 5, seconds

  Worker* worker = nullptr;
  struct mosquitto* mosq = nullptr;
  int fd = -1;
  bool out_armed = false;
  bool touched = false;
  enum class State { kNew, kConnecting, kConnected, kClosed } state = State::kNew;
  bool ever_connected = false;
  bool session_present = false;
  int connack = -1;
  bool closing = false;  // we asked for the disconnect
  int subscribe_mid = -1;

  // Publisher.
  uint64_t quota = 0;
  uint64_t sent = 0, acked = 0, refused = 0;
  double rate = 0;  // msg/s for this publisher, 0 unlimited
  bool finished = false;
  uint64_t recipients = 0;
  std::unordered_map<int, uint64_t> mid_seq;
  std::vector<uint8_t> ack;  // per seq: 0 unacknowledged, 1 ok, 2 refused
  std::string scratch;
  const E2ePayload* e2e = nullptr;  // --e2e: this publisher's recipients' entries

  // Subscriber: receipts per publisher index.
  std::unordered_map<uint32_t, ReceiptLog> receipts;
  uint64_t other_messages = 0;  // not on the counted topic, or no stamp

  ~Conn() {
    if (mosq != nullptr) mosquitto_destroy(mosq);
  }
};

struct Shared {
  const Config* config = nullptr;
  std::string cid_prefix;
  uint32_t publishers = 0;
  // Phase progress, across workers.
  std::atomic<uint64_t> connected{0}, connect_failed{0}, subscribed{0}, subscribe_failed{0};
  std::atomic<uint64_t> closed{0}, unexpected_closes{0};
  std::atomic<uint64_t> pubs_finished{0};
  std::atomic<uint64_t> sent{0}, acked{0}, refused{0}, expected{0}, received{0}, duplicates{0};
  std::atomic<uint64_t> last_progress_us{0}, first_send_us{0}, last_ack_us{0}, last_receive_us{0};
  std::atomic<bool> publishing{false};
  Clock::time_point send_deadline;
  uint64_t send_start_us = 0;
  std::mutex first_error_mu;
  std::string first_error;

  void note_error(const std::string& e) {
    std::lock_guard<std::mutex> l(first_error_mu);
    if (first_error.empty()) first_error = e;
  }
  void progress(uint64_t t) {
    uint64_t prev = last_progress_us.load(std::memory_order_relaxed);
    while (t > prev && !last_progress_us.compare_exchange_weak(prev, t)) {
    }
  }
  static void max_into(std::atomic<uint64_t>& a, uint64_t t) {
    uint64_t prev = a.load(std::memory_order_relaxed);
    while (t > prev && !a.compare_exchange_weak(prev, t)) {
    }
  }
};

class Worker {
 public:
  explicit Worker(Shared* shared) : shared_(shared) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) throw std::runtime_error("epoll_create1 failed");
  }
  ~Worker() { ::close(ep_); }

  void add(Conn* c) {
    c->worker = this;
    conns_.push_back(c);
    if (c->role == Role::kPublisher) pubs_.push_back(c);
  }
  const std::vector<Conn*>& conns() const { return conns_; }

  // Phase actions: run in this worker's thread only.
  void queue_connect(Conn* c) { connect_queue_.push_back(c); }
  void subscribe(Conn* c) {
    if (c->state != Conn::State::kConnected) {
      shared_->subscribe_failed.fetch_add(1);
      return;
    }
    int mid = 0;
    int rc = mosquitto_subscribe_v5(c->mosq, &mid, c->topic.c_str(),
                                    shared_->config->qos == 0 ? 0 : 1, 0, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      shared_->note_error("subscribe " + c->client_id + ": " + mosquitto_strerror(rc));
      shared_->subscribe_failed.fetch_add(1);
      return;
    }
    c->subscribe_mid = mid;
    touch(c);
  }
  void disconnect(Conn* c) {
    if (c->state == Conn::State::kConnected || c->state == Conn::State::kConnecting) {
      c->closing = true;
      mosquitto_disconnect(c->mosq);
      // libmosquitto closes the socket once DISCONNECT is written; when the
      // write would block it stays queued: flush it.
      if (c->fd >= 0 && c->state != Conn::State::kClosed) touch(c);
    }
  }

  // One pass: start queued connects, publish what may be published, wait for
  // socket events (at most timeout_ms), handle them, keepalives.
  void step(int timeout_ms) {
    start_connects();
    bool more = false;
    if (shared_->publishing.load(std::memory_order_relaxed)) more = pump_publishers();
    flush_touched();
    epoll_event events[256];
    int n = epoll_wait(ep_, events, 256, more ? 0 : timeout_ms);
    for (int i = 0; i < n; ++i) {
      Conn* c = static_cast<Conn*>(events[i].data.ptr);
      if (c->fd < 0) continue;
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read(c);
      if (c->fd >= 0 && (events[i].events & EPOLLOUT)) write(c);
      if (c->fd >= 0) touch(c);
    }
    flush_touched();
    auto now = Clock::now();
    if (now - last_misc_ > std::chrono::seconds(1)) {
      last_misc_ = now;
      for (Conn* c : conns_) {
        if (c->fd >= 0) mosquitto_loop_misc(c->mosq);
      }
    }
  }

  size_t pending_connects() const { return pending_ + connect_queue_.size(); }

  std::vector<uint32_t> latencies;
  uint64_t stray = 0;

 private:
  friend struct Callbacks;

  void start_connects() {
    const int per_worker = std::max(1, shared_->config->max_pending_connects);
    while (!connect_queue_.empty() && pending_ < static_cast<size_t>(per_worker)) {
      Conn* c = connect_queue_.front();
      connect_queue_.erase(connect_queue_.begin());
      connect(c);
    }
  }

  void connect(Conn* c) {
    const Config& cfg = *shared_->config;
    mosquitto_property* props = nullptr;
    if (cfg.mqtt_version == 5 && c->session_expiry > 0) {
      mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                   static_cast<uint32_t>(c->session_expiry));
    }
    c->connack = -1;
    c->closing = false;
    c->state = Conn::State::kConnecting;
    int rc = mosquitto_connect_bind_v5(c->mosq, cfg.host.c_str(), cfg.port, 60, nullptr, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
      c->state = Conn::State::kClosed;
      shared_->note_error("connect " + c->client_id + ": " + mosquitto_strerror(rc) +
                          (rc == MOSQ_ERR_ERRNO ? std::string(" (") + strerror(errno) + ")" : ""));
      shared_->connect_failed.fetch_add(1);
      return;
    }
    ++pending_;
    c->fd = mosquitto_socket(c->mosq);
    c->out_armed = mosquitto_want_write(c->mosq);
    epoll_event ev{};
    ev.events = EPOLLIN | (c->out_armed ? EPOLLOUT : 0u);
    ev.data.ptr = c;
    epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev);
  }

  void read(Conn* c) {
    // mosquitto_loop_read handles about one packet per call; keep reading
    // until the socket would block (bounded).
    for (int k = 0; k < 256 && c->fd >= 0; ++k) {
      errno = 0;
      int rc = mosquitto_loop_read(c->mosq, 1);
      if (rc != MOSQ_ERR_SUCCESS) {
        lost(c, rc);
        return;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    }
    // Acknowledgements queued by the callbacks go out now.
    if (c->fd >= 0 && mosquitto_want_write(c->mosq)) write(c);
  }

  void write(Conn* c) {
    int rc = mosquitto_loop_write(c->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) lost(c, rc);
  }

  // libmosquitto has closed the socket (and called on_disconnect).
  void lost(Conn* c, int rc) {
    if (c->fd >= 0) {
      epoll_ctl(ep_, EPOLL_CTL_DEL, c->fd, nullptr);
      c->fd = -1;
    }
    if (c->state != Conn::State::kClosed) closed(c, rc);
  }

  void touch(Conn* c) {
    if (!c->touched) {
      c->touched = true;
      touched_.push_back(c);
    }
  }

  void flush_touched() {
    for (Conn* c : touched_) {
      c->touched = false;
      if (c->fd < 0 || c->state == Conn::State::kClosed) continue;
      bool want = mosquitto_want_write(c->mosq);
      if (want && c->state == Conn::State::kConnected) {
        write(c);
        if (c->fd < 0) continue;
        want = mosquitto_want_write(c->mosq);
      }
      if (want != c->out_armed) {
        epoll_event ev{};
        ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
        ev.data.ptr = c;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
        c->out_armed = want;
      }
    }
    touched_.clear();
  }

  // Publishes what each publisher may; true when some publisher could go on
  // right away (so the loop should not sleep).
  bool pump_publishers() {
    const Config& cfg = *shared_->config;
    bool more = false;
    const uint64_t now = now_us();
    const bool time_up = Clock::now() >= shared_->send_deadline;
    for (Conn* p : pubs_) {
      if (p->finished) continue;
      bool can_send = p->state == Conn::State::kConnected && !time_up && !stop_requested();
      if (can_send) {
        uint64_t allowed = p->quota;
        if (p->rate > 0) {
          double elapsed = static_cast<double>(now - shared_->send_start_us) * 1e-6;
          allowed = std::min<uint64_t>(allowed, static_cast<uint64_t>(elapsed * p->rate) + 1);
        }
        int budget = 64;
        while (p->sent < allowed && budget > 0 &&
               p->sent - p->acked - p->refused < static_cast<uint64_t>(cfg.window) &&
               p->state == Conn::State::kConnected) {
          publish(p);
          --budget;
        }
        if (budget == 0) more = true;
        touch(p);
      }
      bool sending_over = !can_send || p->sent >= p->quota;
      if (sending_over && (p->sent == p->acked + p->refused || p->state == Conn::State::kClosed)) {
        p->finished = true;
        shared_->pubs_finished.fetch_add(1);
      }
    }
    return more;
  }

  void publish(Conn* p) {
    const Config& cfg = *shared_->config;
    Stamp s{static_cast<uint32_t>(p->index), p->sent, now_us()};
    if (cfg.target == Target::kBare) {
      build_bare_payload(&p->scratch, s, static_cast<size_t>(cfg.payload));
    } else if (p->e2e != nullptr) {
      if (!p->e2e->build(&p->scratch, s)) {  // checked before sending: cannot happen
        shared_->note_error("e2e: the stamp does not fit in the cid");
        request_stop_flag();
        return;
      }
    } else {
      build_chat_payload(&p->scratch, s, shared_->cid_prefix, static_cast<size_t>(cfg.payload));
    }
    if (p->sent == 0 && p->index == 0) {
      uint64_t zero = 0;
      shared_->first_send_us.compare_exchange_strong(zero, s.sent_us);
    }
    int mid = 0;
    // The seq must be known before the call: at QoS 0 the "ack" callback
    // fires inside it.
    p->ack.push_back(0);
    publishing_ = p;
    pending_seq_ = p->sent;
    int rc =
        mosquitto_publish_v5(p->mosq, &mid, p->topic.c_str(), static_cast<int>(p->scratch.size()),
                             p->scratch.data(), cfg.qos, false, nullptr);
    publishing_ = nullptr;
    if (rc != MOSQ_ERR_SUCCESS) {
      p->ack.pop_back();
      shared_->note_error("publish " + p->client_id + ": " + mosquitto_strerror(rc));
      if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) lost(p, rc);
      return;
    }
    if (!qos0_acked_inline_) p->mid_seq.emplace(mid, p->sent);
    qos0_acked_inline_ = false;
    ++p->sent;
    shared_->sent.fetch_add(1, std::memory_order_relaxed);
  }

 public:
  // --- callbacks (this worker's thread) -----------------------------------------------
  void on_connect(Conn* c, int rc, int flags) {
    if (c->state != Conn::State::kConnecting) return;
    if (pending_ > 0) --pending_;
    c->connack = rc;
    if (rc == 0) {
      c->state = Conn::State::kConnected;
      c->ever_connected = true;
      c->session_present = (flags & 1) != 0;
      shared_->connected.fetch_add(1);
    } else {
      shared_->note_error("CONNACK " + c->client_id + ": " + mosquitto_reason_string(rc));
      shared_->connect_failed.fetch_add(1);
    }
  }

  void on_disconnect(Conn* c, int rc) {
    if (c->fd >= 0) {
      epoll_ctl(ep_, EPOLL_CTL_DEL, c->fd, nullptr);
      c->fd = -1;
    }
    if (c->state != Conn::State::kClosed) closed(c, rc);
  }

  void on_subscribe(Conn* c, int mid, int count, const int* granted) {
    if (mid != c->subscribe_mid) return;
    if (count >= 1 && granted[0] >= 0 && granted[0] < 0x80) {
      shared_->subscribed.fetch_add(1);
    } else {
      shared_->note_error("SUBACK " + c->client_id + " refused " + c->topic);
      shared_->subscribe_failed.fetch_add(1);
    }
  }

  void on_publish(Conn* p, int mid, int reason) {
    uint64_t seq;
    if (publishing_ == p && shared_->config->qos == 0) {
      seq = pending_seq_;  // QoS 0: "acknowledged" as soon as written
      qos0_acked_inline_ = true;
    } else {
      auto it = p->mid_seq.find(mid);
      if (it == p->mid_seq.end()) return;
      seq = it->second;
      p->mid_seq.erase(it);
    }
    if (seq >= p->ack.size() || p->ack[seq] != 0) return;
    uint64_t t = now_us();
    if (reason < 0x80) {
      p->ack[seq] = 1;
      ++p->acked;
      shared_->acked.fetch_add(1, std::memory_order_relaxed);
      shared_->expected.fetch_add(p->recipients, std::memory_order_relaxed);
    } else {
      p->ack[seq] = 2;
      ++p->refused;
      shared_->refused.fetch_add(1, std::memory_order_relaxed);
      shared_->note_error("publish refused with reason " + std::to_string(reason));
    }
    Shared::max_into(shared_->last_ack_us, t);
    shared_->progress(t);
  }

  void on_message(Conn* c, const mosquitto_message* m) {
    const Config& cfg = *shared_->config;
    if (cfg.target == Target::kChat) {
      // Only envelopes on u/<me>/msg count.
      size_t n = std::strlen(m->topic);
      if (n < 4 || std::memcmp(m->topic + n - 4, "/msg", 4) != 0) {
        ++c->other_messages;
        return;
      }
    }
    Stamp s;
    if (!parse_stamp(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen),
                     &s) ||
        s.pub >= shared_->publishers) {
      ++c->other_messages;
      return;
    }
    uint64_t t = now_us();
    int count = c->receipts[s.pub].record(s.seq);
    if (count == 1) {
      shared_->received.fetch_add(1, std::memory_order_relaxed);
      if (latencies.size() < (50u << 20) && t >= s.sent_us) {
        latencies.push_back(static_cast<uint32_t>(std::min<uint64_t>(t - s.sent_us, UINT32_MAX)));
      }
    } else {
      shared_->duplicates.fetch_add(1, std::memory_order_relaxed);
    }
    Shared::max_into(shared_->last_receive_us, t);
    shared_->progress(t);
  }

 private:
  void closed(Conn* c, int rc) {
    if (c->state == Conn::State::kConnecting) {
      if (pending_ > 0) --pending_;
      shared_->note_error("connection " + c->client_id +
                          " closed before CONNACK: " + mosquitto_strerror(rc));
      shared_->connect_failed.fetch_add(1);
    } else if (!c->closing) {
      shared_->unexpected_closes.fetch_add(1);
      shared_->note_error("connection " + c->client_id + " lost: " + mosquitto_strerror(rc));
    }
    c->state = Conn::State::kClosed;
    shared_->closed.fetch_add(1);
  }

  Shared* shared_;
  int ep_ = -1;
  std::vector<Conn*> conns_, pubs_, touched_;
  std::vector<Conn*> connect_queue_;
  size_t pending_ = 0;
  Clock::time_point last_misc_ = Clock::now();
  Conn* publishing_ = nullptr;
  uint64_t pending_seq_ = 0;
  bool qos0_acked_inline_ = false;
};

// libmosquitto's C callbacks; obj is the Conn.
struct Callbacks {
  static void connect(struct mosquitto*, void* obj, int rc, int flags, const mosquitto_property*) {
    auto* c = static_cast<Conn*>(obj);
    c->worker->on_connect(c, rc, flags);
  }
  static void disconnect(struct mosquitto*, void* obj, int rc, const mosquitto_property*) {
    auto* c = static_cast<Conn*>(obj);
    c->worker->on_disconnect(c, rc);
  }
  static void subscribe(struct mosquitto*, void* obj, int mid, int count, const int* granted,
                        const mosquitto_property*) {
    auto* c = static_cast<Conn*>(obj);
    c->worker->on_subscribe(c, mid, count, granted);
  }
  static void publish(struct mosquitto*, void* obj, int mid, int reason,
                      const mosquitto_property*) {
    auto* c = static_cast<Conn*>(obj);
    c->worker->on_publish(c, mid, reason);
  }
  static void message(struct mosquitto*, void* obj, const mosquitto_message* m,
                      const mosquitto_property*) {
    auto* c = static_cast<Conn*>(obj);
    c->worker->on_message(c, m);
  }
};

class Engine {
 public:
  explicit Engine(const Config& cfg) : cfg_(cfg) {
    shared_.config = &cfg_;
    shared_.cid_prefix = random_tag(8);
    shared_.cid_prefix.insert(0, 1, 'c');
    shared_.cid_prefix.push_back('-');
    tag_ = random_tag(6);
    for (int i = 0; i < cfg_.threads; ++i) workers_.push_back(std::make_unique<Worker>(&shared_));
  }

  json run() {
    report_ = base_report();
    switch (cfg_.scenario) {
      case Scenario::kIdle:
        run_idle();
        break;
      case Scenario::kOfflineDrain:
        run_drain();
        break;
      default:
        run_traffic();
        break;
    }
    report_["first_error"] =
        shared_.first_error.empty() ? json(nullptr) : json(shared_.first_error);
    return report_;
  }

 private:
  bool chat() const { return cfg_.target == Target::kChat; }

  // --e2e: the payload template for these recipient devices. Throws when the
  // largest stamp this run can make would not fit in a cid.
  const E2ePayload* add_e2e_payload(const std::vector<std::string>& devices, int publishers,
                                    uint64_t quota) {
    auto e = std::make_unique<E2ePayload>(devices, static_cast<size_t>(cfg_.payload),
                                          shared_.cid_prefix);
    const uint64_t latest =
        now_us() + static_cast<uint64_t>(
                       (cfg_.duration + cfg_.drain_timeout + cfg_.connect_timeout + 3600) * 1e6);
    const std::string widest = e->cid(Stamp{static_cast<uint32_t>(publishers - 1), quota, latest});
    if (widest.size() > kMaxCidChars) {
      throw std::runtime_error("e2e: the stamp does not fit in a cid of " +
                               std::to_string(kMaxCidChars) + " characters: " + widest);
    }
    std::string sample;
    e->build(&sample, Stamp{0, 0, now_us()});
    report_["e2e_recipient_devices"] = devices.size();
    report_["e2e_payload_bytes"] = sample.size();
    report_["e2e_ciphertext_chars"] = e->ciphertext_chars();
    e2e_payloads_.push_back(std::move(e));
    return e2e_payloads_.back().get();
  }

  json base_report() const { return report_header(cfg_, cfg_.threads); }

  Conn* make_conn(Role role, int index, const std::string& client_id, const std::string& user,
                  const std::string& password, const std::string& topic, bool clean = true,
                  int session_expiry = 0) {
    auto c = std::make_unique<Conn>();
    c->role = role;
    c->index = index;
    c->client_id = client_id;
    c->username = user;
    c->password = password;
    c->topic = topic;
    c->clean = clean;
    c->session_expiry = session_expiry;
    c->mosq = new_client(client_id, clean, c.get());
    if (c->mosq == nullptr) throw std::runtime_error("mosquitto_new failed for " + client_id);
    mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION,
                         cfg_.mqtt_version == 5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, cfg_.tcp_nodelay ? 1 : 0);
    if (role == Role::kPublisher) mosquitto_int_option(c->mosq, MOSQ_OPT_SEND_MAXIMUM, cfg_.window);
    if (!user.empty()) mosquitto_username_pw_set(c->mosq, user.c_str(), password.c_str());
    mosquitto_connect_v5_callback_set(c->mosq, Callbacks::connect);
    mosquitto_disconnect_v5_callback_set(c->mosq, Callbacks::disconnect);
    mosquitto_subscribe_v5_callback_set(c->mosq, Callbacks::subscribe);
    mosquitto_publish_v5_callback_set(c->mosq, Callbacks::publish);
    mosquitto_message_v5_callback_set(c->mosq, Callbacks::message);
    workers_[conns_.size() % workers_.size()]->add(c.get());
    conns_.push_back(std::move(c));
    return conns_.back().get();
  }

  // Runs one phase on every worker (in parallel when there are several):
  // `start` in each worker's thread, then its loop until `done` or the deadline.
  void phase(const std::function<void(Worker&)>& start, const std::function<bool()>& done,
             double seconds, int timeout_ms) {
    const auto deadline = after(seconds);
    auto body = [&](Worker& w) {
      start(w);
      while (!stop_requested() && !done() && Clock::now() < deadline) w.step(timeout_ms);
    };
    if (workers_.size() == 1) {
      body(*workers_[0]);
      return;
    }
    std::vector<std::thread> threads;
    for (auto& w : workers_) threads.emplace_back([&body, &w] { body(*w); });
    for (auto& t : threads) t.join();
  }

  void idle_for(double seconds) {
    phase([](Worker&) {}, [] { return false; }, seconds, 5);
  }

  // Connects `list`; returns how many got a successful CONNACK.
  uint64_t connect_all(const std::vector<Conn*>& list) {
    const uint64_t ok0 = shared_.connected.load(), bad0 = shared_.connect_failed.load();
    phase(
        [&](Worker& w) {
          for (Conn* c : list)
            if (c->worker == &w) w.queue_connect(c);
        },
        [&] {
          return shared_.connected.load() + shared_.connect_failed.load() - ok0 - bad0 >=
                 list.size();
        },
        cfg_.connect_timeout, 2);
    return shared_.connected.load() - ok0;
  }

  uint64_t subscribe_all(const std::vector<Conn*>& list) {
    const uint64_t ok0 = shared_.subscribed.load(), bad0 = shared_.subscribe_failed.load();
    phase(
        [&](Worker& w) {
          for (Conn* c : list)
            if (c->worker == &w) w.subscribe(c);
        },
        [&] {
          return shared_.subscribed.load() + shared_.subscribe_failed.load() - ok0 - bad0 >=
                 list.size();
        },
        cfg_.connect_timeout, 2);
    return shared_.subscribed.load() - ok0;
  }

  void disconnect_all(const std::vector<Conn*>& list, double seconds = 5) {
    size_t open = 0;
    for (Conn* c : list) open += (c->state == Conn::State::kConnected);
    const uint64_t closed0 = shared_.closed.load();
    phase(
        [&](Worker& w) {
          for (Conn* c : list)
            if (c->worker == &w) w.disconnect(c);
        },
        [&] { return shared_.closed.load() - closed0 >= open; }, seconds, 2);
  }

  // Users and tokens for the chat target (created or reused).
  std::vector<std::string> tokens_for(const std::vector<std::string>& users) {
    auto t0 = Clock::now();
    auto tokens = mint_tokens(cfg_.api, users, cfg_.password, cfg_.rest_threads);
    report_["accounts"] = users.size();
    report_["accounts_s"] = seconds_since(t0);
    return tokens;
  }

  // --- traffic scenarios: pairs, fan-in, group, custom ------------------------------------

  void run_traffic() {
    const auto [P, S] = publishers_and_subscribers(cfg_);
    const bool fanout = cfg_.scenario == Scenario::kGroup;
    shared_.publishers = static_cast<uint32_t>(P);
    std::vector<std::string> pub_users, sub_users;
    for (int i = 0; i < P; ++i) pub_users.push_back(cfg_.user_prefix + "s" + std::to_string(i));
    for (int j = 0; j < S; ++j) sub_users.push_back(cfg_.user_prefix + "r" + std::to_string(j));
    std::vector<std::string> pub_tokens(P), sub_tokens(S);
    std::string group_topic = "bench/g";
    if (chat()) {
      std::vector<std::string> all = pub_users;
      all.insert(all.end(), sub_users.begin(), sub_users.end());
      auto tokens = tokens_for(all);
      std::copy(tokens.begin(), tokens.begin() + P, pub_tokens.begin());
      std::copy(tokens.begin() + P, tokens.end(), sub_tokens.begin());
      if (fanout) {
        auto gid = create_group(cfg_.api, pub_tokens[0], "bench " + tag_, sub_users);
        if (!gid) {
          report_["skipped"] = "the API has no groups (POST /v1/groups answered 404)";
          return;
        }
        report_["group"] = *gid;
        group_topic = topics::group(*gid);
      }
    }

    // Recipients of each publisher.
    std::vector<std::vector<int>> recipients(P);
    for (int i = 0; i < P; ++i) {
      if (fanout) {
        for (int j = 0; j < S; ++j) recipients[i].push_back(j);
      } else {
        recipients[i].push_back(i % S);
      }
    }

    std::vector<Conn*> pubs, subs, all;
    const uint64_t per_pub = static_cast<uint64_t>(cfg_.count) / static_cast<uint64_t>(P);
    const uint64_t extra = static_cast<uint64_t>(cfg_.count) % static_cast<uint64_t>(P);
    for (int j = 0; j < S; ++j) {
      std::string topic = chat()   ? topics::inbox(sub_users[j], "#")
                          : fanout ? group_topic
                                   : "bench/r" + std::to_string(j);
      std::string id = chat() ? sub_users[j] + ":bench" : "b" + tag_ + "s" + std::to_string(j);
      subs.push_back(make_conn(Role::kSubscriber, j, id, chat() ? sub_users[j] : "",
                               chat() ? sub_tokens[j] : "", topic));
    }
    for (int i = 0; i < P; ++i) {
      int r = recipients[i][0];
      std::string topic = fanout   ? group_topic
                          : chat() ? topics::direct(sub_users[r])
                                   : "bench/r" + std::to_string(r);
      std::string id = chat() ? pub_users[i] + ":bench" : "b" + tag_ + "p" + std::to_string(i);
      Conn* p = make_conn(Role::kPublisher, i, id, chat() ? pub_users[i] : "",
                          chat() ? pub_tokens[i] : "", topic);
      p->quota = per_pub + (static_cast<uint64_t>(i) < extra ? 1 : 0);
      p->rate = cfg_.rate > 0 ? cfg_.rate / P : 0;
      p->recipients = recipients[i].size();
      pubs.push_back(p);
    }
    if (cfg_.e2e) {
      // One template per distinct recipient set: a group's members' devices
      // (each subscriber is its user's only device, "<user>:bench"; the
      // sender has no other device), or a direct message's peer device.
      std::map<int, const E2ePayload*> by_recipient;
      for (int i = 0; i < P; ++i) {
        const int key = fanout ? -1 : recipients[i][0];
        auto it = by_recipient.find(key);
        if (it == by_recipient.end()) {
          std::vector<std::string> devices;
          for (int j : recipients[i]) devices.push_back(sub_users[j] + ":bench");
          it = by_recipient.emplace(key, add_e2e_payload(devices, P, pubs[i]->quota)).first;
        }
        pubs[i]->e2e = it->second;
      }
    }
    all = subs;
    all.insert(all.end(), pubs.begin(), pubs.end());
    report_["publishers"] = P;
    report_["subscribers"] = S;
    report_["connections"] = all.size();

    auto t0 = Clock::now();
    uint64_t connected = connect_all(all);
    report_["connect_s"] = seconds_since(t0);
    report_["connect_failures"] = all.size() - connected;
    if (connected == 0) throw std::runtime_error("no connection succeeded: " + shared_.first_error);
    uint64_t subscribed = subscribe_all(subs);
    report_["subscribe_failures"] = subs.size() - subscribed;

    // Send, then drain.
    const double cpu0 = self_cpu();
    const int pid = cfg_.broker_pid;
    const double broker0 = pid > 0 ? process_cpu(pid) : 0,
                 main0 = pid > 0 ? main_thread_cpu(pid) : 0;
    const auto wall0 = Clock::now();
    uint64_t total_quota = 0;
    for (Conn* p : pubs) total_quota += p->quota;
    shared_.send_start_us = now_us();
    shared_.last_progress_us = shared_.send_start_us;
    shared_.send_deadline = after(cfg_.duration);
    shared_.publishing = true;
    const uint64_t quiet_us = static_cast<uint64_t>(cfg_.quiet * 1e6);
    phase([](Worker&) {},
          [&] {
            const uint64_t finished = shared_.pubs_finished.load();
            if (finished >= pubs.size() && shared_.received.load() >= shared_.expected.load())
              return true;
            const bool sending_over =
                Clock::now() >= shared_.send_deadline || shared_.sent.load() >= total_quota;
            return sending_over && now_us() - shared_.last_progress_us.load() > quiet_us;
          },
          cfg_.duration + cfg_.drain_timeout, 1);
    shared_.publishing = false;
    const double wall = seconds_since(wall0);
    report_["elapsed_s"] = wall;
    report_["bench_cpu_pct"] = 100.0 * (self_cpu() - cpu0) / wall;
    if (pid > 0) {
      report_["broker_cpu_pct"] = 100.0 * (process_cpu(pid) - broker0) / wall;
      report_["broker_main_thread_cpu_pct"] = 100.0 * (main_thread_cpu(pid) - main0) / wall;
    }
    account(pubs, subs, recipients);
    disconnect_all(all);
  }

  // Exact accounting once every worker has stopped.
  void account(const std::vector<Conn*>& pubs, const std::vector<Conn*>& subs,
               const std::vector<std::vector<int>>& recipients) {
    std::vector<PublisherTally> pt;
    std::vector<SubscriberTally> st;
    for (const Conn* p : pubs) {
      pt.push_back({static_cast<uint32_t>(p->index), p->sent, p->acked, p->refused, &p->ack});
    }
    for (const Conn* s : subs) st.push_back({s->index, &s->receipts, s->other_messages});
    account_deliveries(pt, st, recipients, &report_);
    report_["unexpected_disconnects"] = shared_.unexpected_closes.load();

    std::vector<uint32_t> lat;
    for (auto& w : workers_) {
      lat.insert(lat.end(), w->latencies.begin(), w->latencies.end());
      w->latencies.clear();
    }
    report_rates(shared_.send_start_us, shared_.last_ack_us.load(), shared_.last_receive_us.load(),
                 &lat, &report_);
  }

  // --- idle connections ----------------------------------------------------------------

  void run_idle() {
    const int N = cfg_.scale;
    std::vector<std::string> users;
    std::vector<std::string> tokens;
    if (chat()) {
      const int per = cfg_.devices_per_user;
      for (int k = 0; k < (N + per - 1) / per; ++k)
        users.push_back(cfg_.user_prefix + "i" + std::to_string(k));
      tokens = tokens_for(users);
    }
    std::vector<Conn*> list;
    for (int j = 0; j < N; ++j) {
      if (chat()) {
        const int k = j / cfg_.devices_per_user;
        list.push_back(make_conn(Role::kSubscriber, j,
                                 users[k] + ":d" + std::to_string(j % cfg_.devices_per_user),
                                 users[k], tokens[k], topics::inbox(users[k], "#")));
      } else {
        list.push_back(make_conn(Role::kSubscriber, j, "b" + tag_ + "i" + std::to_string(j), "", "",
                                 "bench/idle/" + std::to_string(j)));
      }
    }
    report_["connections"] = N;
    const int pid = cfg_.broker_pid;
    const long before = pid > 0 ? rss_kb(pid) : -1;
    auto t0 = Clock::now();
    uint64_t connected = connect_all(list);
    report_["connect_s"] = seconds_since(t0);
    report_["connected"] = connected;
    report_["connect_failures"] = N - connected;
    uint64_t subscribed = subscribe_all(list);
    report_["subscribe_failures"] = static_cast<uint64_t>(N) - subscribed;
    report_["connect_and_subscribe_s"] = seconds_since(t0);
    idle_for(cfg_.idle_hold);
    const long after_kb = pid > 0 ? rss_kb(pid) : -1;
    if (pid > 0) {
      report_["rss_before_kb"] = before;
      report_["rss_after_kb"] = after_kb;
      report_["rss_per_conn_bytes"] = connected > 0 ? static_cast<double>(after_kb - before) *
                                                          1024.0 / static_cast<double>(connected)
                                                    : 0.0;
    }
    uint64_t still = 0;
    for (Conn* c : list) still += c->state == Conn::State::kConnected;
    report_["still_connected"] = still;
    report_["unexpected_disconnects"] = shared_.unexpected_closes.load();
    report_["sent"] = 0;
    report_["lost"] = 0;
    disconnect_all(list, 30);
  }

  // --- offline drain --------------------------------------------------------------------

  void run_drain() {
    const int N = cfg_.scale;
    shared_.publishers = 1;
    const std::string sender = cfg_.user_prefix + "s0", recipient = cfg_.user_prefix + "r0";
    std::string sender_token, recipient_token;
    if (chat()) {
      auto tokens = tokens_for({sender, recipient});
      sender_token = tokens[0];
      recipient_token = tokens[1];
    }
    const std::string rec_id = chat() ? recipient + ":drain" : "bench-drain-r0";
    const std::string filter = chat() ? topics::inbox(recipient, "#") : "bench/drain";
    const std::string topic = chat() ? topics::direct(recipient) : "bench/drain";
    const int expiry = 3600;
    // A clean connect first wipes any session left by an earlier run.
    Conn* wipe =
        make_conn(Role::kSubscriber, 1, rec_id, chat() ? recipient : "", recipient_token, filter);
    Conn* rec = make_conn(Role::kSubscriber, 0, rec_id, chat() ? recipient : "", recipient_token,
                          filter, /*clean=*/false, expiry);
    Conn* pub = make_conn(Role::kPublisher, 0, chat() ? sender + ":drain" : "b" + tag_ + "p0",
                          chat() ? sender : "", sender_token, topic);
    pub->quota = static_cast<uint64_t>(N);
    pub->recipients = 1;
    if (cfg_.e2e) pub->e2e = add_e2e_payload({rec_id}, 1, pub->quota);
    report_["publishers"] = 1;
    report_["subscribers"] = 1;
    report_["connections"] = 2;

    if (connect_all({wipe, pub}) < 2)
      throw std::runtime_error("drain: connect failed: " + shared_.first_error);
    disconnect_all({wipe});
    if (connect_all({rec}) < 1)
      throw std::runtime_error("drain: recipient connect failed: " + shared_.first_error);
    if (subscribe_all({rec}) < 1)
      throw std::runtime_error("drain: subscribe failed: " + shared_.first_error);
    disconnect_all({rec});
    idle_for(0.3);  // the broker has taken the session offline

    // Queue N messages while the recipient is away.
    shared_.send_start_us = now_us();
    shared_.last_progress_us = shared_.send_start_us;
    shared_.send_deadline = after(cfg_.duration);
    shared_.publishing = true;
    phase([](Worker&) {}, [&] { return shared_.pubs_finished.load() >= 1; },
          cfg_.duration + cfg_.drain_timeout, 1);
    shared_.publishing = false;
    const double queue_s = static_cast<double>(now_us() - shared_.send_start_us) * 1e-6;
    report_["queue_s"] = queue_s;
    const uint64_t received_before = shared_.received.load();
    report_["received_while_offline"] = received_before;

    // Reconnect and time the drain.
    const int pid = cfg_.broker_pid;
    const double cpu0 = self_cpu(), broker0 = pid > 0 ? process_cpu(pid) : 0;
    const uint64_t t_reconnect = now_us();
    shared_.last_progress_us = t_reconnect;
    const uint64_t quiet_us = static_cast<uint64_t>(cfg_.quiet * 1e6);
    const uint64_t ok0 = shared_.connected.load();
    phase(
        [&](Worker& w) {
          if (rec->worker == &w) w.queue_connect(rec);
        },
        [&] {
          if (shared_.received.load() >= shared_.expected.load() && shared_.connected.load() > ok0)
            return true;
          return now_us() - shared_.last_progress_us.load() > quiet_us;
        },
        cfg_.drain_timeout, 1);
    const double wall = static_cast<double>(now_us() - t_reconnect) * 1e-6;
    report_["session_present"] = rec->session_present;
    const uint64_t last = shared_.last_receive_us.load();
    report_["drain_ms"] =
        last > t_reconnect ? static_cast<double>(last - t_reconnect) / 1000.0 : 0.0;
    report_["bench_cpu_pct"] = 100.0 * (self_cpu() - cpu0) / wall;
    if (pid > 0) report_["broker_cpu_pct"] = 100.0 * (process_cpu(pid) - broker0) / wall;
    account({pub}, {rec}, std::vector<std::vector<int>>{std::vector<int>{0}});
    disconnect_all({rec, pub});
  }

  Config cfg_;
  Shared shared_;
  std::string tag_;
  std::vector<std::unique_ptr<E2ePayload>> e2e_payloads_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Conn>> conns_;
  json report_;
};

}  // namespace

void request_stop() { request_stop_flag(); }

json report_header(const Config& cfg, int threads) {
  return json{{"tool", "chat-bench"},
              {"target", target_name(cfg.target)},
              {"scenario", scenario_name(cfg.scenario)},
              {"scale", cfg.scale},
              {"label", cfg.label},
              {"client", client_name(cfg.client)},
              {"transport", transport_name(cfg.transport)},
              {"mqtt", cfg.mqtt_version == 5 ? "5" : "3.1.1"},
              {"qos", cfg.qos},
              {"payload", cfg.payload},
              {"e2e", cfg.e2e},
              {"rate_target", cfg.rate},
              {"window", cfg.window},
              {"threads", threads},
              {"duration_bound_s", cfg.duration},
              {"count_bound", cfg.count}};
}

json run_benchmark(const Config& config) {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
  raise_fd_limit();
  if (config.client == Client::kPaho) return run_paho_benchmark(config);
  Engine engine(config);
  return engine.run();
}

bool report_has_loss(const json& r) {
  auto n = [&](const char* k) -> uint64_t {
    auto it = r.find(k);
    return it != r.end() && it->is_number() ? it->get<uint64_t>() : 0;
  };
  return n("lost") > 0 || n("refused") > 0 || n("unacked") > 0 || n("connect_failures") > 0 ||
         n("subscribe_failures") > 0;
}

std::string format_report(const json& r) {
  std::ostringstream o;
  auto num = [&](const char* k) -> double {
    auto it = r.find(k);
    return it != r.end() && it->is_number() ? it->get<double>() : 0.0;
  };
  auto has = [&](const char* k) { return r.contains(k) && !r[k].is_null(); };
  char line[512];
  std::snprintf(line, sizeof line,
                "chat-bench: %s, target %s, scale %d, MQTT %s, QoS %d, %d B%s, %s over %s\n",
                r.value("scenario", "").c_str(), r.value("target", "").c_str(), r.value("scale", 0),
                r.value("mqtt", "").c_str(), r.value("qos", 0), r.value("payload", 0),
                r.value("e2e", false) ? " per device, e2e" : "",
                r.value("client", "mosquitto").c_str(), r.value("transport", "tcp").c_str());
  o << line;
  if (has("skipped")) {
    o << "  skipped: " << r["skipped"].get<std::string>() << "\n";
    return o.str();
  }
  std::snprintf(line, sizeof line, "  connections %.0f (failed %.0f) in %.2f s\n",
                num("connections"), num("connect_failures"), num("connect_s"));
  o << line;
  if (has("rss_per_conn_bytes")) {
    std::snprintf(line, sizeof line, "  broker RSS %.0f kB -> %.0f kB: %.0f bytes per connection\n",
                  num("rss_before_kb"), num("rss_after_kb"), num("rss_per_conn_bytes"));
    o << line;
  }
  if (has("e2e_payload_bytes")) {
    std::snprintf(line, sizeof line,
                  "  e2e: %.0f recipient device(s), %.0f-character ciphertexts, payload %.0f B\n",
                  num("e2e_recipient_devices"), num("e2e_ciphertext_chars"),
                  num("e2e_payload_bytes"));
    o << line;
  }
  if (has("sent") && r.value("scenario", "") != "idle") {
    std::snprintf(line, sizeof line,
                  "  sent %.0f  acked %.0f  refused %.0f  unacked %.0f\n"
                  "  expected %.0f  received %.0f  lost %.0f  duplicated %.0f  stray %.0f\n",
                  num("sent"), num("acked"), num("refused"), num("unacked"), num("expected"),
                  num("received"), num("lost"), num("duplicated"), num("stray"));
    o << line;
    std::snprintf(line, sizeof line,
                  "  acked %.0f msg/s over %.2f s, delivered %.0f msg/s over %.2f s\n",
                  num("acked_per_s"), num("send_s"), num("delivered_per_s"), num("deliver_s"));
    o << line;
    if (has("latency_ms")) {
      const json& l = r["latency_ms"];
      std::snprintf(line, sizeof line,
                    "  latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f  (%llu samples)\n",
                    l.value("p50", 0.0), l.value("p90", 0.0), l.value("p99", 0.0),
                    l.value("max", 0.0), static_cast<unsigned long long>(l.value("samples", 0ULL)));
      o << line;
    }
  }
  if (has("drain_ms")) {
    std::snprintf(line, sizeof line,
                  "  offline drain: %.0f queued, session present %s, all in %.1f ms\n",
                  num("acked"), r.value("session_present", false) ? "yes" : "no", num("drain_ms"));
    o << line;
  }
  if (has("bench_cpu_pct")) {
    std::snprintf(line, sizeof line, "  CPU: bench %.0f%%", num("bench_cpu_pct"));
    o << line;
    if (has("broker_cpu_pct")) {
      std::snprintf(line, sizeof line, ", broker %.0f%%", num("broker_cpu_pct"));
      o << line;
    }
    if (has("broker_main_thread_cpu_pct")) {
      std::snprintf(line, sizeof line, " (main thread %.0f%%)", num("broker_main_thread_cpu_pct"));
      o << line;
    }
    o << " of one core\n";
  }
  if (has("first_error")) o << "  first error: " << r["first_error"].get<std::string>() << "\n";
  return o.str();
}

}  // namespace chat::bench
