// `chatctl send PEER TEXT...` and `chatctl send PEER -`.
//
// A message counts as sent when both halves of the contract's answer are in:
// the PUBACK (reason below 0x80) and the envelope with our cid on u/<me>/msg,
// which carries the server id. A refusal is a PUBACK >= 0x80 and/or an error
// event with our cid on u/<me>/event. When the connection drops before both
// arrive, the same payload (same cid) is published again on a new connection:
// the server delivers a cid once and answers a repeat with the original
// envelope.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "chat/common/topics.h"
#include "chatctl/commands.h"
#include "chatctl/e2e_client.h"
#include "chatctl/json_access.h"
#include "chatctl/media.h"
#include "chatctl/random_ids.h"

namespace chat::tools {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr auto kSendTimeout = std::chrono::seconds(10);
constexpr auto kConnectTimeout = std::chrono::seconds(10);
// After a refusing PUBACK, how long to wait for the error event that says why.
constexpr auto kRefusalGrace = std::chrono::seconds(2);
constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr auto kReconnectPause = std::chrono::milliseconds(500);

struct SendOutcome {
  enum class Kind { kSent, kRefused, kFailed };
  Kind kind = Kind::kFailed;
  nlohmann::json envelope;  // kSent
  std::string code;         // kRefused: the contract's error code; kFailed: a status name
  std::string reason;
};

SendOutcome failed(const Status& status) {
  return {SendOutcome::Kind::kFailed, {}, status_code_name(status.code()), status.message()};
}

class Sender {
 public:
  Sender(Context& ctx, Credentials& credentials, std::string device, std::string topic)
      : ctx_(ctx),
        credentials_(credentials),
        device_(std::move(device)),
        topic_(std::move(topic)),
        msg_topic_(topics::inbox(credentials.user(), topics::kInboxMsg)),
        event_topic_(topics::inbox(credentials.user(), topics::kInboxEvent)) {}

  ~Sender() {
    // Short: after a timeout the broker may never answer, and the wait is bounded.
    if (session_) session_->link->disconnect(std::chrono::milliseconds(300));
  }

  SendOutcome send(const std::string& text) { return send_message("text", text); }

  // Any message type (a media message: type "media", body as media.h makes it).
  // `cid` "" = a new one.
  SendOutcome send_message(const std::string& type, const nlohmann::json& body,
                           std::string cid = {}) {
    if (cid.empty()) cid = new_message_cid(ctx_.clock.now_ms());
    const std::string payload = dump_json({{"cid", cid}, {"type", type}, {"body", body}});
    const auto deadline = SteadyClock::now() + kSendTimeout;

    uint64_t seq = 0;  // the current attempt's publish; 0 = not published on this session
    bool acked = false;
    nlohmann::json envelope;
    std::optional<int> refused_reason;
    SteadyClock::time_point refusal_deadline{};

    while (true) {
      if (StopSignal::requested()) return failed(unavailable("interrupted"));
      auto now = SteadyClock::now();
      if (refused_reason && now >= refusal_deadline) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", *refused_reason & 0xFF);
        return {SendOutcome::Kind::kRefused,
                {},
                "not_authorized",
                std::string("the broker refused the message (PUBACK reason ") + hex + ")"};
      }
      if (now >= deadline) return failed(timeout_status(acked, cid));

      if (!session_) {
        Status s = reopen(deadline);
        if (!s.is_ok()) return failed(s);
        seq = 0;
      }
      if (seq == 0) {
        auto published = session_->link->publish(topic_, payload, 1);
        if (!published) {
          drop_session(published.status().message());
          continue;
        }
        seq = *published;
      }
      if (acked && !envelope.is_null()) return {SendOutcome::Kind::kSent, envelope, {}, {}};

      auto wait_until = std::min(deadline, now + kPollInterval);
      if (refused_reason) wait_until = std::min(wait_until, refusal_deadline);
      auto event = session_->link->next_event(wait_until);
      if (!event) continue;

      switch (event->kind) {
        case MqttEvent::Kind::kPublishDone:
          if (event->publish_seq != seq) break;  // an earlier attempt's late answer
          if (event->publish_ok) {
            acked = true;
          } else if (event->reason_code >= 0x80) {
            refused_reason = event->reason_code;
            refusal_deadline = std::min(deadline, SteadyClock::now() + kRefusalGrace);
          } else {
            drop_session(event->detail);  // never reached the broker: try again
          }
          break;
        case MqttEvent::Kind::kMessage: {
          auto j = parse_json(event->payload);
          if (json_string(j, "cid") != cid) break;
          if (event->topic == msg_topic_ && json_string(j, "from") == credentials_.user()) {
            std::string dev = json_string(j, "dev");
            if (dev.empty() || dev == device_) envelope = std::move(j);
          } else if (event->topic == event_topic_ && json_string(j, "type") == "error") {
            return {
                SendOutcome::Kind::kRefused, {}, json_string(j, "code"), json_string(j, "reason")};
          }
          break;
        }
        case MqttEvent::Kind::kConnectionLost:
          drop_session(event->detail);
          break;
      }
    }
  }

 private:
  Status timeout_status(bool acked, const std::string& cid) const {
    auto seconds =
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kSendTimeout).count());
    if (acked) {
      return unavailable("the broker acknowledged the message (cid " + cid +
                         ") but its envelope did not arrive within " + seconds + " s");
    }
    return unavailable("no acknowledgement from the broker within " + seconds + " s (cid " + cid +
                       "): the message may not have been sent");
  }

  // First connection: fail fast. Later ones (after a loss): keep trying until
  // the message's deadline.
  Status reopen(SteadyClock::time_point deadline) {
    while (true) {
      auto remaining =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (remaining.count() <= 0) return unavailable("could not reconnect to the broker in time");
      auto session = open_inbox(ctx_, credentials_, device_,
                                std::min<std::chrono::milliseconds>(remaining, kConnectTimeout),
                                /*persistent=*/false);
      if (session) {
        session_ = std::move(*session);
        connected_once_ = true;
        return Status::ok();
      }
      Status s = session.status();
      bool retryable = s.code() == StatusCode::kUnavailable;
      if (!connected_once_ || !retryable) return s;
      ctx_.out.warn(s.message() + "; retrying");
      auto pause_until = SteadyClock::now() + kReconnectPause;
      while (SteadyClock::now() < pause_until) {
        if (StopSignal::requested()) return unavailable("interrupted");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

  void drop_session(const std::string& why) {
    ctx_.out.warn(why + "; reconnecting");
    session_.reset();
  }

  Context& ctx_;
  Credentials& credentials_;
  std::string device_;
  std::string topic_;
  std::string msg_topic_;
  std::string event_topic_;
  std::optional<InboxSession> session_;
  bool connected_once_ = false;
};

// Prints the outcome; true when the message was sent.
bool report(Context& ctx, const std::string& peer, const SendOutcome& outcome) {
  switch (outcome.kind) {
    case SendOutcome::Kind::kSent:
      if (ctx.out.json()) {
        ctx.out.json_line(outcome.envelope);
      } else {
        ctx.out.line("sent " + json_string(outcome.envelope, "id") + " to " + peer);
      }
      return true;
    case SendOutcome::Kind::kRefused:
      ctx.out.error(outcome.code, "message to " + peer + " refused: " + outcome.code +
                                      (outcome.reason.empty() ? "" : ": " + outcome.reason));
      return false;
    case SendOutcome::Kind::kFailed:
      ctx.out.error(outcome.code, "message to " + peer + " not sent: " + outcome.reason);
      return false;
  }
  return false;
}

// send --e2e: each text sealed for every device of the conversation
// (e2e_client.h), sent as type "e2e", its plaintext kept under its id.
int send_e2e(Context& ctx, Credentials& credentials, const std::string& peer,
             const std::string& tx_device, Sender& sender, bool from_stdin) {
  E2eClient e2e(ctx, credentials, tx_device);
  if (!e2e.has_keys()) {
    Status s = e2e.init_keys(/*force=*/false);
    if (!s.is_ok()) return fail(ctx, s);
    ctx.out.note("made keys for this device (" + e2e.my_name() + ")");
  } else {
    e2e.top_up_if_low();
  }
  auto send_one = [&](const std::string& text) {
    const std::string cid = new_message_cid(ctx.clock.now_ms());
    auto body = e2e.seal_text(peer, text, cid);
    if (!body) {
      ctx.out.error(status_code_name(body.status().code()),
                    "message to " + peer + " not sent: " + body.status().message());
      return false;
    }
    SendOutcome outcome = sender.send_message("e2e", *body, cid);
    if (outcome.kind == SendOutcome::Kind::kSent) e2e.sent(cid, outcome.envelope);
    return report(ctx, peer, outcome);
  };
  if (!from_stdin) {
    const auto& args = ctx.command_line.args;
    std::string text = args[1];
    for (size_t i = 2; i < args.size(); ++i) text += " " + args[i];
    return send_one(text) ? kExitOk : kExitFailure;
  }
  std::string line;
  while (!StopSignal::requested() && std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (!send_one(line)) return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

Result<nlohmann::json> send_one_message(Context& ctx, Credentials& credentials,
                                        const std::string& device, const std::string& topic,
                                        const std::string& type, const nlohmann::json& body,
                                        const std::string& cid) {
  Sender sender(ctx, credentials, device, topic);
  SendOutcome outcome = sender.send_message(type, body, cid);
  switch (outcome.kind) {
    case SendOutcome::Kind::kSent:
      return outcome.envelope;
    case SendOutcome::Kind::kRefused:
      return permission_denied("refused: " + outcome.code +
                               (outcome.reason.empty() ? "" : ": " + outcome.reason));
    case SendOutcome::Kind::kFailed:
      break;
  }
  return unavailable("not sent: " + outcome.reason);
}

int run_send(Context& ctx) {
  const auto& args = ctx.command_line.args;
  const std::string& peer = args.at(0);
  auto topic = send_topic_for(peer);
  if (!topic) {
    ctx.out.error("usage", topic.status().message());
    return kExitUsage;
  }
  bool from_stdin = args.size() == 2 && args[1] == "-";

  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto profile = credentials.fresh();
  if (!profile) return fail(ctx, profile.status());
  auto device = active_device(ctx, *profile);
  if (!device) return fail(ctx, device.status());

  // Sending uses its own short-lived connection ("<device>-tx", no stored
  // session), so a `listen` of the same profile in another terminal is not
  // taken over. Its cids are scoped to that client id, which retries reuse.
  std::string tx_device = device->substr(0, 61) + "-tx";
  StopSignal stop;
  Sender sender(ctx, credentials, tx_device, *topic);
  if (ctx.command_line.e2e) return send_e2e(ctx, credentials, peer, tx_device, sender, from_stdin);
  if (ctx.command_line.file) {
    // Upload first (media_command.cpp), then the message naming it.
    auto body = upload_media(ctx, credentials, *ctx.command_line.file,
                             ctx.command_line.caption.value_or(""));
    if (!body) return fail(ctx, body.status());
    return report(ctx, peer, sender.send_message("media", *body)) ? kExitOk : kExitFailure;
  }
  if (!from_stdin) {
    std::string text = args[1];
    for (size_t i = 2; i < args.size(); ++i) text += " " + args[i];
    return report(ctx, peer, sender.send(text)) ? kExitOk : kExitFailure;
  }

  std::string line;
  while (!StopSignal::requested() && std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (!report(ctx, peer, sender.send(line))) return kExitFailure;
  }
  return kExitOk;
}

}  // namespace chat::tools
