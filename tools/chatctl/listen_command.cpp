// `chatctl listen`: a device that stays online.
//
// On every (re)connect, as the contract asks: persistent session (clean start
// false, 7-day expiry), subscribe to u/<me>/# at QoS 1, then page /v1/sync
// from the saved cursor until a page comes back empty. The cursor moves only
// by what sync returns, and is saved after each page; live messages never move
// it, because the broker may have dropped some ids in between. Every message is
// printed once: live, replayed and synced copies are de-duplicated by id.
//
// After the first sync of each connection it subscribes (QoS 0) to
// presence/<uid> of the people I share a conversation or group with (at most
// kMaxPresence), and adds people as they show up (a new conversation, a member
// added). Refused subscriptions are ignored. Messages from others that were
// printed are acknowledged with "delivered" receipts, batched per
// conversation, at most one publish per conversation per second.
#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "chat/common/ids.h"
#include "chat/common/topics.h"
#include "chatctl/commands.h"
#include "chatctl/e2e_client.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
#include "chatctl/receipts.h"
#include "chatctl/seen_ids.h"

namespace chat::tools {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kFirstBackoff = milliseconds(1000);
constexpr auto kMaxBackoff = milliseconds(30'000);
constexpr auto kSyncRetry = milliseconds(5000);
constexpr auto kPollInterval = milliseconds(200);
// While a refresh keeps failing (API down), how often to try again.
constexpr auto kRefreshCheckInterval = milliseconds(5000);
constexpr int kSyncPageLimit = 500;
// At exit, how many sync pages settle_cursor() may read.
constexpr int kSettlePages = 4;
// Presence subscriptions per connection, and per SUBSCRIBE packet.
constexpr size_t kMaxPresence = 200;
constexpr size_t kPresenceChunk = 50;
// Groups whose members are fetched one by one after each connect, at most.
constexpr size_t kMaxGroupFetches = 100;
constexpr auto kSubscribeTimeout = std::chrono::seconds(5);
// Delivered receipts: one publish per conversation per interval.
constexpr int64_t kReceiptIntervalMs = 1000;
// At exit, how long pending receipts may hold the exit up.
constexpr auto kReceiptDrain = milliseconds(1500);
constexpr std::string_view kPresencePrefix = "presence/";

int64_t steady_ms() {
  return std::chrono::duration_cast<milliseconds>(SteadyClock::now().time_since_epoch()).count();
}

class Listener {
 public:
  // `e2e`: this device's Signal client (may be null: e2e messages are then
  // shown as "(encrypted)").
  Listener(Context& ctx, Credentials& credentials, std::string device, E2eClient* e2e)
      : ctx_(ctx),
        credentials_(credentials),
        device_(std::move(device)),
        e2e_(e2e),
        inbox_prefix_(topics::inbox(credentials.user(), "")),
        count_(ctx.command_line.count),
        receipts_(!ctx.command_line.no_receipts),
        batcher_(kReceiptIntervalMs) {
    if (ctx.command_line.timeout_seconds) {
      end_ = SteadyClock::now() +
             std::chrono::duration_cast<SteadyClock::duration>(
                 std::chrono::duration<double>(*ctx.command_line.timeout_seconds));
    }
  }

  int run() {
    milliseconds backoff = kFirstBackoff;
    bool first = true;
    bool troubled = false;  // the last connection ended badly: say when we are back
    while (!done()) {
      auto session = open_inbox(ctx_, credentials_, device_, connect_timeout());
      if (!session) {
        Status s = session.status();
        if (s.code() == StatusCode::kUnauthenticated || s.code() == StatusCode::kPermissionDenied ||
            s.code() == StatusCode::kInvalidArgument) {
          return fail(ctx_, s);
        }
        troubled = true;
        ctx_.out.warn(s.message() + "; retrying in " + seconds_text(backoff));
        pause(backoff);
        backoff = next_backoff(backoff);
        continue;
      }
      backoff = kFirstBackoff;
      if (first) {
        ctx_.out.note("listening as " + credentials_.user() + " on device " + device_ +
                      " (Ctrl-C to stop)");
        first = false;
      } else if (troubled) {
        ctx_.out.warn("reconnected");
      }
      troubled = false;

      Status s = serve(*session);
      session->link->disconnect();
      if (!s.is_ok()) {
        troubled = true;
        if (s.code() == StatusCode::kUnauthenticated) return fail(ctx_, s);
        if (done()) break;
        ctx_.out.warn(s.message() + "; reconnecting in " + seconds_text(backoff));
        pause(backoff);
        backoff = next_backoff(backoff);
      }
    }
    settle_cursor();
    if (count_ && printed_ < *count_ && !StopSignal::requested()) {
      ctx_.out.error("timeout", "received " + std::to_string(printed_) + " of " +
                                    std::to_string(*count_) + " messages before the timeout");
      return kExitFailure;
    }
    return kExitOk;
  }

 private:
  // Runs one connection until it is lost (an error status), the token needs
  // replacing (ok), or the listener is done (ok).
  Status serve(InboxSession& session) {
    link_ = session.link.get();
    watched_.clear();
    Status s = serve_loop(session);
    if (s.is_ok() && done()) drain_receipts();
    // Whatever is still unanswered goes again on the next connection.
    for (const auto& [seq, batch] : inflight_) batcher_.requeue(batch);
    inflight_.clear();
    link_ = nullptr;
    return s;
  }

  Status serve_loop(InboxSession& session) {
    auto sync_due = SteadyClock::now();
    auto next_refresh_check = SteadyClock::now();
    bool synced = false;
    presence_ready_ = false;
    while (!done()) {
      if (!synced && SteadyClock::now() >= sync_due) {
        Status s = catch_up(session.profile);
        if (s.is_ok()) {
          synced = true;
        } else if (s.code() == StatusCode::kUnauthenticated) {
          return s;
        } else {
          ctx_.out.warn("sync failed: " + s.message() + "; retrying in " +
                        seconds_text(kSyncRetry));
          sync_due = SteadyClock::now() + kSyncRetry;
        }
        continue;
      }
      if (synced && !presence_ready_) {
        setup_presence();
        presence_ready_ = true;
      }
      if (synced) flush_receipts(steady_ms());
      if (SteadyClock::now() >= next_refresh_check &&
          needs_refresh(session.profile, ctx_.clock.now_s())) {
        next_refresh_check = SteadyClock::now() + kRefreshCheckInterval;
        // Reconnect with a new token before the broker closes the connection.
        auto fresh = credentials_.fresh();
        if (!fresh && fresh.status().code() == StatusCode::kUnauthenticated) return fresh.status();
        if (fresh && fresh->access_token != session.profile.access_token) return Status::ok();
      }
      auto wait_until = SteadyClock::now() + kPollInterval;
      if (end_) wait_until = std::min(wait_until, *end_);
      auto event = session.link->next_event(wait_until);
      if (!event) {
        if (ctx_.out.reader_gone()) StopSignal::request();
        continue;
      }
      if (event->kind == MqttEvent::Kind::kConnectionLost) return unavailable(event->detail);
      if (event->kind == MqttEvent::Kind::kPublishDone) on_publish_done(*event);
      if (event->kind == MqttEvent::Kind::kMessage) {
        on_message(event->topic, event->payload, event->retained);
      }
    }
    return Status::ok();
  }

  // --- delivered receipts ---------------------------------------------------

  void queue_receipt(const nlohmann::json& envelope) {
    if (!receipts_) return;
    std::string from = json_string(envelope, "from");
    std::string id = json_string(envelope, "id");
    std::string conv = json_string(envelope, "conv");
    if (from.empty() || from == credentials_.user() || id.empty() || conv.empty()) return;
    batcher_.add(conv, id);
  }

  void flush_receipts(int64_t now_ms) {
    if (!receipts_ || link_ == nullptr || batcher_.empty()) return;
    for (auto& batch : batcher_.take_due(now_ms)) {
      if (batch.conv.rfind("g:", 0) == 0 && my_groups_ && !my_groups_->count(batch.conv.substr(2)))
        continue;  // a group I left: the server would refuse it
      auto topic = receipt_topic_for(credentials_.user(), batch.conv);
      if (!topic) continue;
      auto seq = link_->publish(*topic, receipt_payload(batch.ids, "delivered"), 1);
      if (!seq) {
        batcher_.requeue(batch);  // not connected: the connection loss follows
        continue;
      }
      inflight_.emplace(*seq, std::move(batch));
    }
  }

  void on_publish_done(const MqttEvent& event) {
    auto it = inflight_.find(event.publish_seq);
    if (it == inflight_.end()) return;
    // Refused (>= 0x80): the error event says why; sending it again will not help.
    if (!event.publish_ok && event.reason_code < 0x80) batcher_.requeue(it->second);
    inflight_.erase(it);
  }

  // On the way out: send what is queued (waiting for each conversation's
  // turn) and wait for the PUBACKs, for kReceiptDrain at most.
  void drain_receipts() {
    if (!receipts_ || link_ == nullptr) return;
    auto deadline = SteadyClock::now() + kReceiptDrain;
    while ((!batcher_.empty() || !inflight_.empty()) && SteadyClock::now() < deadline) {
      flush_receipts(steady_ms());
      auto event = link_->next_event(std::min(deadline, SteadyClock::now() + milliseconds(50)));
      if (!event) continue;
      if (event->kind == MqttEvent::Kind::kConnectionLost) return;
      if (event->kind == MqttEvent::Kind::kPublishDone) on_publish_done(*event);
    }
  }

  // --- presence -------------------------------------------------------------

  // Whose presence to watch: the peers of my conversations and the members of
  // my groups. Also learns which groups I am in (for receipts).
  void setup_presence() {
    auto conversations = authed_get(ctx_, credentials_, "/v1/conversations?limit=500");
    if (!conversations || !conversations->ok()) {
      ctx_.out.warn("presence: cannot list conversations: " +
                    (conversations ? format_http_error(conversations->status, conversations->body)
                                   : conversations.status().message()));
      return;
    }
    const auto& list = json_field(conversations->json, "conversations");
    std::vector<nlohmann::json> groups = my_group_list(list);
    watch(presence_peers(credentials_.user(), list, groups, kMaxPresence));
  }

  // GET /v1/groups, with each group's members (GET /v1/groups/{gid} when the
  // list leaves them out). Without /v1/groups, the g: conversations of `list`
  // one by one (kMaxGroupFetches at most).
  std::vector<nlohmann::json> my_group_list(const nlohmann::json& conversations) {
    std::vector<nlohmann::json> out;
    std::vector<std::string> to_fetch;
    std::set<std::string> mine;
    bool authoritative = false;  // `mine` is the whole truth
    auto listed = authed_get(ctx_, credentials_, "/v1/groups");
    static const nlohmann::json kNone;
    const nlohmann::json& groups =
        listed && listed->ok() ? json_field(listed->json, "groups") : kNone;
    if (groups.is_array()) {
      authoritative = true;
      for (const auto& g : groups) {
        std::string gid = json_string(g, "id");
        if (gid.empty()) continue;
        mine.insert(gid);
        if (json_field(g, "members").is_array()) {
          out.push_back(g);
        } else {
          to_fetch.push_back(gid);
        }
      }
    } else if (conversations.is_array()) {
      authoritative = true;  // if every group answers
      for (const auto& c : conversations) {
        auto parsed = topics::parse_conversation(json_string(c, "conv"));
        if (parsed.kind == topics::ConvKind::kGroup) to_fetch.push_back(parsed.gid);
      }
    }
    if (to_fetch.size() > kMaxGroupFetches) {
      to_fetch.resize(kMaxGroupFetches);
      if (!groups.is_array()) authoritative = false;
    }
    for (const auto& gid : to_fetch) {
      auto group = fetch_group(gid);
      if (!group) {
        if (!groups.is_array()) authoritative = false;
        continue;
      }
      if (!group->is_object()) continue;  // not (or no longer) a member
      mine.insert(gid);
      out.push_back(std::move(*group));
    }
    if (authoritative) my_groups_ = std::move(mine);
    return out;
  }

  // The group, null when I may not see it (403/404), nullopt when the API
  // could not be asked.
  std::optional<nlohmann::json> fetch_group(const std::string& gid) {
    auto response = authed_get(ctx_, credentials_, "/v1/groups/" + url_encode(gid));
    if (!response) return std::nullopt;
    if (response->status == 403 || response->status == 404) return nlohmann::json();
    if (!response->ok()) return std::nullopt;
    const auto& inner = json_field(response->json, "group");
    return inner.is_object() ? inner : response->json;
  }

  // Subscribes to presence/<user> for those not watched yet on this
  // connection (kMaxPresence at most). Refusals are expected (someone I no
  // longer share anything with) and ignored.
  void watch(const std::vector<std::string>& users) {
    if (link_ == nullptr) return;
    std::vector<std::string> filters;
    for (const auto& user : users) {
      if (watched_.size() >= kMaxPresence) break;
      if (user == credentials_.user() || !is_valid_user_id(user)) continue;
      if (!watched_.insert(user).second) continue;
      filters.push_back(topics::presence(user));
    }
    for (size_t i = 0; i < filters.size(); i += kPresenceChunk) {
      std::vector<std::string> chunk(filters.begin() + static_cast<std::ptrdiff_t>(i),
                                     filters.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                           filters.size(), i + kPresenceChunk)));
      auto granted = link_->subscribe_many(chunk, 0, kSubscribeTimeout);
      if (!granted) return;  // the connection is in trouble; its loss will tell
    }
  }

  void watch_one(const std::string& user) {
    if (presence_ready_ && !user.empty() && !watched_.count(user)) watch({user});
  }

  void on_presence(const std::string& topic, const std::string& payload, bool retained) {
    std::string user;
    if (!topics::parse_presence(topic, &user) || user == credentials_.user()) return;
    auto j = parse_json(payload);
    if (!j.is_object()) return;  // an empty retained message clears the state: nothing to say
    std::string status = json_string(j, "status");
    if (status.empty() || !presence_.update(user, status, retained)) return;
    if (ctx_.out.json()) {
      nlohmann::json tagged = j;
      tagged["kind"] = "presence";
      tagged["topic"] = topic;
      tagged["user"] = user;
      ctx_.out.json_line(tagged);
    } else {
      ctx_.out.line(format_presence_line(user, j, ctx_.clock.now_ms()));
    }
  }

  // Group events change who I share a group with, and which groups are mine.
  void on_group_event(const nlohmann::json& event) {
    std::string action = json_string(event, "action");
    std::string gid = json_string(event, "group");
    std::string user = json_string(event, "user");
    if (gid.empty()) return;
    const std::string& me = credentials_.user();
    if (action == "created" || (action == "member_added" && user == me)) {
      // A group new to me: everybody in it.
      if (my_groups_) my_groups_->insert(gid);
      if (presence_ready_) {
        auto group = fetch_group(gid);
        if (group && group->is_object()) watch(presence_peers(me, {}, {*group}, kMaxPresence));
      }
    } else if (action == "member_added") {
      watch_one(user);
    } else if (action == "member_removed" && user == me) {
      if (my_groups_) my_groups_->erase(gid);
      batcher_.drop("g:" + gid);
    }
  }

  // Pages /v1/sync from the saved cursor until an empty page.
  Status catch_up(Profile& profile) {
    while (!done()) {
      auto response = sync_page(profile);
      if (!response) return response.status();
      if (!response->ok()) return status_from_response(*response);
      const auto& messages = json_field(response->json, "messages");
      if (!messages.is_array())
        return internal_error("unexpected answer to GET /v1/sync: no \"messages\" list");

      std::string last_id;  // the last message of this page handled (shown or seen before)
      for (const auto& envelope : messages) {
        // Stopping mid-page: the cursor goes as far as what has been shown.
        if (done()) return save_cursor(profile, last_id);
        on_envelope(envelope);
        last_id = json_string(envelope, "id");
      }
      if (messages.empty()) return Status::ok();
      if (done()) return save_cursor(profile, last_id);
      // `next` is the last id returned; fall back to that id if a server omits it.
      std::string next = json_string(response->json, "next");
      if (next.empty()) next = last_id;
      if (next.empty()) return Status::ok();
      Status s = save_cursor(profile, next);
      if (!s.is_ok()) return s;
    }
    return Status::ok();
  }

  // One page of /v1/sync after profile.sync_cursor. A 401 refreshes the token
  // (updating `profile`) and asks once more.
  Result<ApiResponse> sync_page(Profile& profile) {
    std::string path = "/v1/sync?limit=" + std::to_string(kSyncPageLimit);
    if (!profile.sync_cursor.empty()) path += "&since=" + url_encode(profile.sync_cursor);
    auto response = ctx_.api.get(path, profile.access_token);
    if (!response || response->status != 401) return response;
    auto fresh = credentials_.fresh(profile.access_token);
    if (!fresh) return fresh.status();
    profile.access_token = fresh->access_token;
    profile.access_expires_at = fresh->access_expires_at;
    profile.access_lifetime = fresh->access_lifetime;
    return ctx_.api.get(path, profile.access_token);
  }

  // On the way out. Messages printed live since the last sync are shown but
  // the cursor is still behind them, so the next run would show them again.
  // Sync from the cursor and move it over the ids sync returns that were all
  // printed already, stopping at the first one that was not: the cursor still
  // moves only by ids sync returned, and never past a message not shown.
  void settle_cursor() {
    if (printed_ == 0) return;
    auto profile = credentials_.fresh();
    if (!profile) return;
    for (int page = 0; page < kSettlePages; ++page) {
      auto response = sync_page(*profile);
      if (!response || !response->ok()) return;
      const auto& messages = json_field(response->json, "messages");
      if (!messages.is_array() || messages.empty()) return;
      std::string shown_up_to;
      for (const auto& envelope : messages) {
        std::string id = json_string(envelope, "id");
        if (id.empty() || !seen_.contains(id)) break;
        shown_up_to = id;
      }
      if (shown_up_to.empty() || !save_cursor(*profile, shown_up_to).is_ok()) return;
      if (shown_up_to != json_string(messages.back(), "id")) return;
    }
  }

  Status save_cursor(Profile& profile, const std::string& cursor) {
    if (cursor.empty() || cursor == profile.sync_cursor) return Status::ok();
    profile.sync_cursor = cursor;
    auto saved = ctx_.store.update(credentials_.user(), /*create_missing=*/false, [&](Profile& p) {
      p.sync_cursor = cursor;
      return Status::ok();
    });
    return saved.status();
  }

  void on_message(const std::string& topic, const std::string& payload, bool retained) {
    if (topic.rfind(kPresencePrefix, 0) == 0) return on_presence(topic, payload, retained);
    if (topic.rfind(inbox_prefix_, 0) != 0) return;
    std::string leaf = topic.substr(inbox_prefix_.size());
    auto j = parse_json(payload);
    if (!j.is_object()) {
      ctx_.out.warn("ignored a malformed payload on " + sanitize_for_terminal(topic));
      return;
    }
    int64_t now_ms = ctx_.clock.now_ms();
    if (leaf == topics::kInboxMsg) {
      on_envelope(j);
    } else if (leaf == topics::kInboxReceipt) {
      // My own devices' receipts come back to me too; the delivered ones
      // (this listen sends them) are noise for people.
      bool own_delivered =
          json_string(j, "from") == credentials_.user() && json_string(j, "status") == "delivered";
      if (!own_delivered || ctx_.out.json())
        show_other("receipt", topic, j, format_receipt_line(j, now_ms));
    } else if (leaf == topics::kInboxTyping) {
      show_other("typing", topic, j, format_typing_line(j, now_ms));
    } else if (leaf == topics::kInboxEvent) {
      if (json_string(j, "type") == "keys" && e2e_ != nullptr) {
        show_other("event", topic, j, e2e_->on_keys_event(j, now_ms));
        return;
      }
      show_other("event", topic, j, format_event_line(j, now_ms));
      if (json_string(j, "type") == "group") {
        on_group_event(j);
        if (e2e_ != nullptr) e2e_->on_group_event(j);  // a member left: a new sender key
      }
    }
  }

  void on_envelope(const nlohmann::json& envelope) {
    if (done()) return;
    std::string id = json_string(envelope, "id");
    if (!id.empty() && !seen_.insert(id)) return;
    if (e2e_ != nullptr && json_string(envelope, "type") == "e2e") {
      // Decrypted for this device (e2e_client.h); reset requests are
      // answered here (live), are not messages for people and do not count.
      auto shown = e2e_->show(envelope, /*with_date=*/false, /*live=*/true);
      if (ctx_.out.json()) {
        ctx_.out.json_line(shown.json);
      } else {
        ctx_.out.line(shown.line);
      }
      if (!shown.counts) return;
    } else if (ctx_.out.json()) {
      ctx_.out.json_line(envelope);
    } else {
      ctx_.out.line(format_message_line(envelope));
    }
    ++printed_;
    queue_receipt(envelope);
    // Someone new to talk to: watch their presence too.
    const std::string& me = credentials_.user();
    std::string from = json_string(envelope, "from");
    std::string to = json_string(envelope, "to");
    if (!from.empty() && from != me) {
      watch_one(from);
    } else if (from == me && to.rfind("g:", 0) != 0 && is_valid_user_id(to)) {
      watch_one(to);
    }
  }

  // Receipts, typing and events: in JSON mode the payload plus "kind" and
  // "topic", so a reader can tell them from envelopes. An empty `line` (a
  // paused typing signal) is shown in JSON mode only.
  void show_other(const char* kind, const std::string& topic, const nlohmann::json& payload,
                  const std::string& line) {
    if (ctx_.out.json()) {
      nlohmann::json tagged = payload;
      tagged["kind"] = kind;
      tagged["topic"] = topic;
      ctx_.out.json_line(tagged);
    } else if (!line.empty()) {
      ctx_.out.line(line);
    }
  }

  bool done() const {
    if (StopSignal::requested()) return true;
    if (count_ && printed_ >= *count_) return true;
    return end_ && SteadyClock::now() >= *end_;
  }

  milliseconds connect_timeout() const {
    milliseconds t = kConnectTimeout;
    if (end_) {
      auto left = std::chrono::duration_cast<milliseconds>(*end_ - SteadyClock::now());
      t = std::clamp(left, milliseconds(100), t);
    }
    return t;
  }

  void pause(milliseconds d) {
    auto until = SteadyClock::now() + d;
    while (!done() && SteadyClock::now() < until) {
      std::this_thread::sleep_for(
          std::min<SteadyClock::duration>(milliseconds(100), until - SteadyClock::now()));
    }
  }

  milliseconds next_backoff(milliseconds current) {
    // Doubling with +-20% jitter, so many clients do not come back in lockstep.
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    auto next =
        milliseconds(static_cast<int64_t>(static_cast<double>(current.count()) * 2 * jitter(rng_)));
    return std::min(next, kMaxBackoff);
  }

  static std::string seconds_text(milliseconds d) {
    return std::to_string((d.count() + 500) / 1000) + " s";
  }

  Context& ctx_;
  Credentials& credentials_;
  std::string device_;
  E2eClient* e2e_;
  std::string inbox_prefix_;  // "u/<me>/"
  std::optional<int64_t> count_;
  std::optional<SteadyClock::time_point> end_;
  SeenIds seen_;
  int64_t printed_ = 0;
  bool receipts_;
  ReceiptBatcher batcher_;
  std::map<uint64_t, ReceiptBatcher::Batch> inflight_;  // this connection's receipts, by seq
  std::optional<std::set<std::string>> my_groups_;      // when known
  PresenceTracker presence_;
  std::set<std::string> watched_;  // presence subscriptions of this connection
  bool presence_ready_ = false;    // the first sync and presence setup are done
  MqttLink* link_ = nullptr;       // the current connection, while serve() runs
  std::mt19937 rng_{std::random_device{}()};
};

}  // namespace

int run_listen(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto profile = credentials.fresh();
  if (!profile) return fail(ctx, profile.status());
  auto device = active_device(ctx, *profile);
  if (!device) return fail(ctx, device.status());

  auto signal_device = e2e_device(ctx, credentials);
  if (!signal_device) return fail(ctx, signal_device.status());
  E2eClient e2e(ctx, credentials, *signal_device);
  e2e.top_up_if_low();  // only when this device has keys

  StopSignal stop;
  Listener listener(ctx, credentials, *device, &e2e);
  return listener.run();
}

}  // namespace chat::tools
