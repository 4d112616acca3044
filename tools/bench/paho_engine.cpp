#include "bench/paho_engine.h"

#include <MQTTAsync.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/engine.h"
#include "bench/payload.h"
#include "bench/rest.h"
#include "bench/stats.h"
#include "bench/sys.h"
#include "chat/common/topics.h"

// Threads: Paho C runs one receive thread for all clients of the process and
// calls every callback (connect, ack, message) from it, with its own lock
// released, so callbacks may call the API. The main thread connects,
// subscribes and paces; publishing is refilled from ack callbacks (unlimited
// rate) and from the main loop (paced rate, stragglers). A publisher's
// counters are guarded by its mutex.

namespace chat::bench {
namespace {

using json = nlohmann::json;

struct Conn;

struct Shared {
  const Config* config = nullptr;
  std::string cid_prefix;
  uint32_t publishers = 0;
  std::atomic<uint64_t> connected{0}, connect_failed{0}, subscribed{0}, subscribe_failed{0};
  std::atomic<uint64_t> disconnected{0}, unexpected_closes{0}, pubs_finished{0};
  std::atomic<uint64_t> sent{0}, expected{0}, received{0};
  std::atomic<uint64_t> last_progress_us{0}, last_ack_us{0}, last_receive_us{0};
  std::atomic<bool> publishing{false}, tearing_down{false};
  Clock::time_point send_deadline;
  uint64_t send_start_us = 0;
  std::mutex mu;  // first_error, latencies
  std::string first_error;
  std::vector<uint32_t> latencies;

  void note_error(const std::string& e) {
    std::lock_guard<std::mutex> l(mu);
    if (first_error.empty()) first_error = e;
  }
  static void max_into(std::atomic<uint64_t>& a, uint64_t t) {
    uint64_t prev = a.load(std::memory_order_relaxed);
    while (t > prev && !a.compare_exchange_weak(prev, t)) {
    }
  }
};

// One in-flight publish: the callback context Paho hands back.
struct SendCtx {
  Conn* conn;
  uint64_t seq;
};

struct Conn {
  enum State { kPending, kConnected, kFailed };

  Shared* sh = nullptr;
  bool publisher = false;
  int index = 0;
  std::string client_id, user, password, topic;
  MQTTAsync handle = nullptr;
  std::atomic<int> state{kPending};
  std::atomic<int> sub_state{kPending};
  std::atomic<bool> closed{false};
  std::atomic<int> window{0};  // in-flight bound: --window, within Receive Maximum

  std::mutex mu;
  // Publisher.
  uint64_t quota = 0, sent = 0, acked = 0, refused = 0;
  double rate = 0;  // msg/s of this publisher; 0 = unlimited
  uint64_t next_due_us = 0;
  int inflight = 0;
  size_t recipients = 1;
  bool finished = false;
  std::vector<uint8_t> ack;  // per seq: 0 unacknowledged, 1 ok, 2 refused
  std::deque<SendCtx> ctxs;  // stable addresses for Paho's callback context
  // Subscriber.
  std::unordered_map<uint32_t, ReceiptLog> receipts;
  uint64_t other_messages = 0;

  ~Conn() {
    if (handle != nullptr) MQTTAsync_destroy(&handle);
  }
};

bool v5(const Shared* sh) { return sh->config->mqtt_version == 5; }

void finish_locked(Conn* c) {
  if (!c->finished) {
    c->finished = true;
    c->sh->pubs_finished.fetch_add(1);
  }
}

void on_pub_result(SendCtx* ctx, bool ok);
void refill(Conn* c);

void pub_ok(void* context, MQTTAsync_successData*) {
  on_pub_result(static_cast<SendCtx*>(context), true);
}
void pub_fail(void* context, MQTTAsync_failureData*) {
  on_pub_result(static_cast<SendCtx*>(context), false);
}
void pub_ok5(void* context, MQTTAsync_successData5* r) {
  on_pub_result(static_cast<SendCtx*>(context), r == nullptr || r->reasonCode < 0x80);
}
void pub_fail5(void* context, MQTTAsync_failureData5*) {
  on_pub_result(static_cast<SendCtx*>(context), false);
}

// Sends while the window, the quota, the pace and the clock allow. Called
// from the main loop and from ack callbacks, never with c->mu held: Paho runs
// ack callbacks under its own lock, so sending under ours would invert them.
void refill(Conn* c) {
  Shared* sh = c->sh;
  const Config& cfg = *sh->config;
  std::string payload;
  for (;;) {
    SendCtx* ctx = nullptr;
    {
      std::lock_guard<std::mutex> l(c->mu);
      if (c->finished) return;
      const bool time_up =
          !sh->publishing.load() || stop_requested() || Clock::now() >= sh->send_deadline;
      const bool over = time_up || c->sent >= c->quota || c->closed.load();
      if (over) {
        if (c->inflight == 0) finish_locked(c);
        return;
      }
      if (c->inflight >= c->window.load()) return;
      const uint64_t now = now_us();
      if (c->rate > 0) {
        if (now < c->next_due_us) return;
        c->next_due_us += static_cast<uint64_t>(1e6 / c->rate);
      }
      Stamp stamp{static_cast<uint32_t>(c->index), c->sent, now};
      if (cfg.target == Target::kChat) {
        build_chat_payload(&payload, stamp, sh->cid_prefix, static_cast<size_t>(cfg.payload));
      } else {
        build_bare_payload(&payload, stamp, static_cast<size_t>(cfg.payload));
      }
      ctx = &c->ctxs.emplace_back(SendCtx{c, c->sent});
      ++c->sent;
      ++c->inflight;
    }
    sh->sent.fetch_add(1, std::memory_order_relaxed);
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = payload.data();  // Paho copies it
    msg.payloadlen = static_cast<int>(payload.size());
    msg.qos = cfg.qos;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = ctx;
    if (v5(sh)) {
      ro.onSuccess5 = pub_ok5;
      ro.onFailure5 = pub_fail5;
    } else {
      ro.onSuccess = pub_ok;
      ro.onFailure = pub_fail;
    }
    int rc = MQTTAsync_sendMessage(c->handle, c->topic.c_str(), &msg, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
      sh->note_error("publish " + c->client_id + ": " + MQTTAsync_strerror(rc));
      c->closed.store(true);
      on_pub_result(ctx, false);
      return;
    }
  }
}

void on_pub_result(SendCtx* ctx, bool ok) {
  Conn* c = ctx->conn;
  Shared* sh = c->sh;
  const uint64_t t = now_us();
  {
    std::lock_guard<std::mutex> l(c->mu);
    if (ctx->seq < c->ack.size()) c->ack[ctx->seq] = ok ? 1 : 2;
    if (ok) {
      ++c->acked;
      sh->expected.fetch_add(c->recipients, std::memory_order_relaxed);
    } else {
      ++c->refused;
    }
    --c->inflight;
  }
  Shared::max_into(sh->last_ack_us, t);
  Shared::max_into(sh->last_progress_us, t);
  refill(c);
}

int on_message(void* context, char* topic, int topic_len, MQTTAsync_message* m) {
  auto* c = static_cast<Conn*>(context);
  Shared* sh = c->sh;
  const uint64_t t = now_us();
  const std::string_view name(topic, topic_len > 0 ? static_cast<size_t>(topic_len)
                                                   : std::char_traits<char>::length(topic));
  // Chat recipients also get events on u/<me>/...; only messages count.
  const bool counted = sh->config->target != Target::kChat ||
                       (name.size() >= 4 && name.substr(name.size() - 4) == "/msg");
  Stamp stamp;
  bool first = false;
  {
    std::lock_guard<std::mutex> l(c->mu);
    if (counted &&
        parse_stamp(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen),
                    &stamp) &&
        stamp.pub < sh->publishers) {
      first = c->receipts[stamp.pub].record(stamp.seq) == 1;
    } else {
      ++c->other_messages;
    }
  }
  if (first) {
    sh->received.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> l(sh->mu);
    sh->latencies.push_back(
        static_cast<uint32_t>(std::min<uint64_t>(t - stamp.sent_us, UINT32_MAX)));
  }
  Shared::max_into(sh->last_receive_us, t);
  Shared::max_into(sh->last_progress_us, t);
  MQTTAsync_freeMessage(&m);
  MQTTAsync_free(topic);
  return 1;
}

void on_connection_lost(void* context, char* cause) {
  auto* c = static_cast<Conn*>(context);
  c->closed.store(true);
  if (!c->sh->tearing_down.load()) {
    c->sh->unexpected_closes.fetch_add(1);
    c->sh->note_error("connection lost: " + c->client_id +
                      (cause ? std::string(": ") + cause : ""));
  }
  std::lock_guard<std::mutex> l(c->mu);
  if (c->publisher) finish_locked(c);
}

void connected(Conn* c, bool ok, const std::string& why) {
  c->state.store(ok ? Conn::kConnected : Conn::kFailed);
  (ok ? c->sh->connected : c->sh->connect_failed).fetch_add(1);
  if (!ok) c->sh->note_error("connect " + c->client_id + ": " + why);
}
void conn_ok(void* ctx, MQTTAsync_successData*) { connected(static_cast<Conn*>(ctx), true, ""); }
void conn_ok5(void* ctx, MQTTAsync_successData5* r) {
  auto* c = static_cast<Conn*>(ctx);
  // Paho holds back publishes beyond the broker's Receive Maximum and retries
  // them only on a one-second timer: keep the window within it.
  if (r != nullptr &&
      MQTTProperties_hasProperty(&r->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM)) {
    int m = MQTTProperties_getNumericValue(&r->properties, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
    if (m > 0) c->window.store(std::min(c->window.load(), m));
  }
  connected(c, true, "");
}
void conn_fail(void* ctx, MQTTAsync_failureData* r) {
  connected(static_cast<Conn*>(ctx), false,
            r && r->message ? r->message : "code " + std::to_string(r ? r->code : 0));
}
void conn_fail5(void* ctx, MQTTAsync_failureData5* r) {
  connected(static_cast<Conn*>(ctx), false,
            r && r->message ? r->message
                            : "reason " + std::to_string(r ? static_cast<int>(r->reasonCode) : 0));
}

void subscribed(Conn* c, bool ok) {
  c->sub_state.store(ok ? Conn::kConnected : Conn::kFailed);
  (ok ? c->sh->subscribed : c->sh->subscribe_failed).fetch_add(1);
  if (!ok) c->sh->note_error("SUBACK " + c->client_id + " refused " + c->topic);
}
void sub_ok(void* ctx, MQTTAsync_successData* r) {
  subscribed(static_cast<Conn*>(ctx), r == nullptr || r->alt.qos < 0x80);
}
void sub_ok5(void* ctx, MQTTAsync_successData5* r) {
  subscribed(static_cast<Conn*>(ctx), r == nullptr || r->reasonCode < 0x80);
}
void sub_fail(void* ctx, MQTTAsync_failureData*) { subscribed(static_cast<Conn*>(ctx), false); }
void sub_fail5(void* ctx, MQTTAsync_failureData5*) { subscribed(static_cast<Conn*>(ctx), false); }

void disc_done(void* ctx, MQTTAsync_successData*) {
  static_cast<Conn*>(ctx)->sh->disconnected.fetch_add(1);
}
void disc_done5(void* ctx, MQTTAsync_successData5*) {
  static_cast<Conn*>(ctx)->sh->disconnected.fetch_add(1);
}
void disc_fail(void* ctx, MQTTAsync_failureData*) {
  static_cast<Conn*>(ctx)->sh->disconnected.fetch_add(1);
}
void disc_fail5(void* ctx, MQTTAsync_failureData5*) {
  static_cast<Conn*>(ctx)->sh->disconnected.fetch_add(1);
}

// Polls `done` every `tick` until it holds, the deadline passes or SIGINT.
template <typename Pred>
bool wait_until(Pred done, double seconds, std::chrono::microseconds tick) {
  const auto deadline = after(seconds);
  while (!done()) {
    if (stop_requested() || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(tick);
  }
  return true;
}

class PahoRun {
 public:
  explicit PahoRun(const Config& cfg) : cfg_(cfg) {
    sh_.config = &cfg_;
    sh_.cid_prefix = "c" + random_tag(8) + "-";
    tag_ = random_tag(6);
  }

  json run() {
    report_ = report_header(cfg_, 1);  // Paho: one receive thread
    traffic();
    report_["first_error"] = sh_.first_error.empty() ? json(nullptr) : json(sh_.first_error);
    return report_;
  }

 private:
  bool chat() const { return cfg_.target == Target::kChat; }

  std::string uri() const {
    const bool ws = cfg_.transport == Transport::kWs;
    return std::string(ws ? "ws://" : "tcp://") + cfg_.host + ":" + std::to_string(cfg_.port) +
           (ws ? cfg_.ws_path : "");
  }

  Conn* make_conn(bool publisher, int index, const std::string& id, const std::string& user,
                  const std::string& password, const std::string& topic) {
    auto c = std::make_unique<Conn>();
    c->sh = &sh_;
    c->publisher = publisher;
    c->index = index;
    c->client_id = id;
    c->user = user;
    c->password = password;
    c->topic = topic;
    c->window = cfg_.window;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = cfg_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    int rc = MQTTAsync_createWithOptions(&c->handle, uri().c_str(), id.c_str(),
                                         MQTTCLIENT_PERSISTENCE_NONE, nullptr, &co);
    if (rc != MQTTASYNC_SUCCESS) {
      throw std::runtime_error("MQTTAsync_create " + id + ": " + MQTTAsync_strerror(rc));
    }
    MQTTAsync_setCallbacks(c->handle, c.get(), on_connection_lost, on_message, nullptr);
    conns_.push_back(std::move(c));
    return conns_.back().get();
  }

  bool start_connect(Conn* c) {
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions o5 = MQTTAsync_connectOptions_initializer5;
    MQTTAsync_connectOptions& opts = v5(&sh_) ? o5 : o;
    opts.keepAliveInterval = 60;
    opts.maxInflight = cfg_.window;
    opts.connectTimeout = static_cast<int>(cfg_.connect_timeout) + 1;
    opts.context = c;
    if (v5(&sh_)) {
      opts.cleanstart = 1;
      opts.onSuccess5 = conn_ok5;
      opts.onFailure5 = conn_fail5;
    } else {
      opts.cleansession = 1;
      opts.onSuccess = conn_ok;
      opts.onFailure = conn_fail;
    }
    if (!c->user.empty()) {
      opts.username = c->user.c_str();
      opts.password = c->password.c_str();
    }
    int rc = MQTTAsync_connect(c->handle, &opts);
    if (rc != MQTTASYNC_SUCCESS) {
      connected(c, false, MQTTAsync_strerror(rc));
      return false;
    }
    return true;
  }

  // Connects every connection, at most max_pending_connects at once.
  uint64_t connect_all() {
    const auto deadline = after(cfg_.connect_timeout);
    size_t next = 0;
    while (sh_.connected.load() + sh_.connect_failed.load() < conns_.size()) {
      if (stop_requested() || Clock::now() >= deadline) break;
      uint64_t done = sh_.connected.load() + sh_.connect_failed.load();
      while (next < conns_.size() && next - done < static_cast<size_t>(cfg_.max_pending_connects)) {
        start_connect(conns_[next++].get());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return sh_.connected.load();
  }

  uint64_t subscribe_all(const std::vector<Conn*>& subs) {
    for (Conn* c : subs) {
      if (c->state.load() != Conn::kConnected) {
        sh_.subscribe_failed.fetch_add(1);
        continue;
      }
      MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
      ro.context = c;
      if (v5(&sh_)) {
        ro.onSuccess5 = sub_ok5;
        ro.onFailure5 = sub_fail5;
      } else {
        ro.onSuccess = sub_ok;
        ro.onFailure = sub_fail;
      }
      int rc = MQTTAsync_subscribe(c->handle, c->topic.c_str(), cfg_.qos, &ro);
      if (rc != MQTTASYNC_SUCCESS) subscribed(c, false);
    }
    wait_until([&] { return sh_.subscribed.load() + sh_.subscribe_failed.load() >= subs.size(); },
               cfg_.connect_timeout, std::chrono::milliseconds(1));
    return sh_.subscribed.load();
  }

  void disconnect_all() {
    sh_.tearing_down.store(true);
    uint64_t asked = 0;
    for (auto& c : conns_) {
      if (c->state.load() != Conn::kConnected || c->closed.load()) continue;
      MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;
      MQTTAsync_disconnectOptions o5 = MQTTAsync_disconnectOptions_initializer5;
      MQTTAsync_disconnectOptions& opts = v5(&sh_) ? o5 : o;
      opts.timeout = 1000;
      opts.context = c.get();
      if (v5(&sh_)) {
        opts.onSuccess5 = disc_done5;
        opts.onFailure5 = disc_fail5;
      } else {
        opts.onSuccess = disc_done;
        opts.onFailure = disc_fail;
      }
      if (MQTTAsync_disconnect(c->handle, &opts) == MQTTASYNC_SUCCESS) ++asked;
    }
    wait_until([&] { return sh_.disconnected.load() >= asked; }, 5, std::chrono::milliseconds(1));
  }

  void traffic() {
    const auto [P, S] = publishers_and_subscribers(cfg_);
    sh_.publishers = static_cast<uint32_t>(P);
    std::vector<std::string> pub_users, sub_users;
    for (int i = 0; i < P; ++i) pub_users.push_back(cfg_.user_prefix + "s" + std::to_string(i));
    for (int j = 0; j < S; ++j) sub_users.push_back(cfg_.user_prefix + "r" + std::to_string(j));
    std::vector<std::string> pub_tokens(P), sub_tokens(S);
    if (chat()) {
      std::vector<std::string> all = pub_users;
      all.insert(all.end(), sub_users.begin(), sub_users.end());
      auto t0 = Clock::now();
      auto tokens = mint_tokens(cfg_.api, all, cfg_.password, cfg_.rest_threads);
      report_["accounts"] = all.size();
      report_["accounts_s"] = seconds_since(t0);
      std::copy(tokens.begin(), tokens.begin() + P, pub_tokens.begin());
      std::copy(tokens.begin() + P, tokens.end(), sub_tokens.begin());
    }

    std::vector<std::vector<int>> recipients(P);
    for (int i = 0; i < P; ++i) recipients[i].push_back(i % S);
    std::vector<Conn*> pubs, subs;
    for (int j = 0; j < S; ++j) {
      std::string topic = chat() ? topics::inbox(sub_users[j], "#") : "bench/r" + std::to_string(j);
      std::string id = chat() ? sub_users[j] + ":bench" : "b" + tag_ + "s" + std::to_string(j);
      subs.push_back(
          make_conn(false, j, id, chat() ? sub_users[j] : "", chat() ? sub_tokens[j] : "", topic));
    }
    const uint64_t per_pub = static_cast<uint64_t>(cfg_.count) / static_cast<uint64_t>(P);
    const uint64_t extra = static_cast<uint64_t>(cfg_.count) % static_cast<uint64_t>(P);
    for (int i = 0; i < P; ++i) {
      int r = recipients[i][0];
      std::string topic = chat() ? topics::direct(sub_users[r]) : "bench/r" + std::to_string(r);
      std::string id = chat() ? pub_users[i] + ":bench" : "b" + tag_ + "p" + std::to_string(i);
      Conn* p =
          make_conn(true, i, id, chat() ? pub_users[i] : "", chat() ? pub_tokens[i] : "", topic);
      p->quota = per_pub + (static_cast<uint64_t>(i) < extra ? 1 : 0);
      p->ack.assign(p->quota, 0);
      p->rate = cfg_.rate > 0 ? cfg_.rate / P : 0;
      pubs.push_back(p);
    }
    report_["publishers"] = P;
    report_["subscribers"] = S;
    report_["connections"] = conns_.size();

    auto t0 = Clock::now();
    uint64_t ok = connect_all();
    report_["connect_s"] = seconds_since(t0);
    report_["connect_failures"] = conns_.size() - ok;
    if (ok == 0) throw std::runtime_error("no connection succeeded: " + sh_.first_error);
    report_["subscribe_failures"] = subs.size() - subscribe_all(subs);

    const double cpu0 = self_cpu();
    const int pid = cfg_.broker_pid;
    const double broker0 = pid > 0 ? process_cpu(pid) : 0;
    const auto wall0 = Clock::now();
    sh_.send_start_us = now_us();
    sh_.last_progress_us = sh_.send_start_us;
    sh_.send_deadline = after(cfg_.duration);
    sh_.publishing = true;
    for (Conn* p : pubs) {
      std::lock_guard<std::mutex> l(p->mu);
      p->next_due_us = sh_.send_start_us;
      if (p->state.load() != Conn::kConnected) finish_locked(p);
    }
    const uint64_t quiet_us = static_cast<uint64_t>(cfg_.quiet * 1e6);
    // The main loop refills paced publishers and notices the end; acks refill
    // the unlimited ones as they arrive.
    wait_until(
        [&] {
          for (Conn* p : pubs) refill(p);
          if (sh_.pubs_finished.load() >= pubs.size() &&
              sh_.received.load() >= sh_.expected.load()) {
            return true;
          }
          const bool sending_over = Clock::now() >= sh_.send_deadline;
          return sending_over && now_us() - sh_.last_progress_us.load() > quiet_us;
        },
        cfg_.duration + cfg_.drain_timeout, std::chrono::microseconds(200));
    sh_.publishing = false;
    const double wall = seconds_since(wall0);
    report_["elapsed_s"] = wall;
    report_["bench_cpu_pct"] = 100.0 * (self_cpu() - cpu0) / wall;
    if (pid > 0) report_["broker_cpu_pct"] = 100.0 * (process_cpu(pid) - broker0) / wall;

    disconnect_all();
    // Callbacks may still run until each handle is destroyed.
    for (auto& c : conns_) {
      if (c->handle != nullptr) MQTTAsync_destroy(&c->handle);
    }
    std::vector<PublisherTally> pt;
    std::vector<SubscriberTally> st;
    for (Conn* p : pubs) {
      pt.push_back({static_cast<uint32_t>(p->index), p->sent, p->acked, p->refused, &p->ack});
    }
    for (Conn* s : subs) st.push_back({s->index, &s->receipts, s->other_messages});
    account_deliveries(pt, st, recipients, &report_);
    report_["unexpected_disconnects"] = sh_.unexpected_closes.load();
    report_rates(sh_.send_start_us, sh_.last_ack_us.load(), sh_.last_receive_us.load(),
                 &sh_.latencies, &report_);
  }

  Config cfg_;
  Shared sh_;
  std::string tag_;
  std::vector<std::unique_ptr<Conn>> conns_;
  json report_;
};

}  // namespace

json run_paho_benchmark(const Config& config) {
  PahoRun run(config);
  return run.run();
}

}  // namespace chat::bench
