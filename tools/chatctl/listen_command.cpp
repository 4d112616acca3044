// `chatctl listen`: a device that stays online.
//
// On every (re)connect, as the contract asks: persistent session (clean start
// false, 7-day expiry), subscribe to u/<me>/# at QoS 1, then page /v1/sync
// from the saved cursor until a page comes back empty. The cursor moves only
// by what sync returns, and is saved after each page; live messages never move
// it, because the broker may have dropped some ids in between. Every message is
// printed once: live, replayed and synced copies are de-duplicated by id.
#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <thread>

#include "chat/common/topics.h"
#include "chatctl/commands.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
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

class Listener {
 public:
  Listener(Context& ctx, Credentials& credentials, std::string device)
      : ctx_(ctx),
        credentials_(credentials),
        device_(std::move(device)),
        inbox_prefix_(topics::inbox(credentials.user(), "")),
        count_(ctx.command_line.count) {
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
    auto sync_due = SteadyClock::now();
    auto next_refresh_check = SteadyClock::now();
    bool synced = false;
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
      if (event->kind == MqttEvent::Kind::kMessage) on_message(event->topic, event->payload);
    }
    return Status::ok();
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

  void on_message(const std::string& topic, const std::string& payload) {
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
      show_other("receipt", j, format_receipt_line(j, now_ms));
    } else if (leaf == topics::kInboxTyping) {
      show_other("typing", j, format_typing_line(j, now_ms));
    } else if (leaf == topics::kInboxEvent) {
      show_other("event", j, format_event_line(j, now_ms));
    }
  }

  void on_envelope(const nlohmann::json& envelope) {
    if (done()) return;
    std::string id = json_string(envelope, "id");
    if (!id.empty() && !seen_.insert(id)) return;
    if (ctx_.out.json()) {
      ctx_.out.json_line(envelope);
    } else {
      ctx_.out.line(format_message_line(envelope));
    }
    ++printed_;
  }

  // Receipts, typing and events: in JSON mode the payload plus "kind", so a
  // reader can tell them from envelopes.
  void show_other(const char* kind, const nlohmann::json& payload, const std::string& line) {
    if (ctx_.out.json()) {
      nlohmann::json tagged = payload;
      tagged["kind"] = kind;
      ctx_.out.json_line(tagged);
    } else {
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
  std::string inbox_prefix_;  // "u/<me>/"
  std::optional<int64_t> count_;
  std::optional<SteadyClock::time_point> end_;
  SeenIds seen_;
  int64_t printed_ = 0;
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

  StopSignal stop;
  Listener listener(ctx, credentials, *device);
  return listener.run();
}

}  // namespace chat::tools
