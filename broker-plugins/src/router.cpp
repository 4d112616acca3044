#include "chat/broker/router.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "chat/common/topics.h"

namespace chat::broker {
namespace {

using json = nlohmann::json;

MessageOutcome accept(std::string topic, std::string payload) {
  return {MessageOutcome::Action::kAccept, std::move(topic), std::move(payload)};
}

MessageOutcome fail() { return {MessageOutcome::Action::kFail, {}, {}}; }

}  // namespace

Router::Router(const Clock& clock, store::Archive& archive, BrokerPort& port, RouterOptions options)
    : clock_(clock),
      archive_(archive),
      port_(port),
      options_(options),
      ids_(clock, options.node_id) {}

Status Router::init() {
  auto max = archive_.max_id();
  if (!max) return max.status();
  ids_.observe(*max);
  return Status::ok();
}

MessageOutcome Router::refuse(const DeviceSession& sender, std::string_view cid, RefusalCode code,
                              std::string reason, int qos) {
  // The contract promises an event for every refused QoS 1/2 publish; QoS 0
  // (typing) refusals are silent, as QoS 0 has no acknowledgement to explain.
  if (qos > 0) {
    port_.publish(sender.client_id, topics::inbox(sender.user, topics::kInboxEvent),
                  make_error_event(cid, code, reason), 1, false);
  }
  return {MessageOutcome::Action::kRefuse, {}, {}};
}

void Router::on_write_denied(const DeviceSession& sender, std::string_view topic,
                             std::string_view payload, int qos) {
  auto t = topics::parse_send_topic(topic);
  std::string reason;
  if (t.kind == topics::SendKind::kInvalid) {
    reason = "publishing to '" + std::string(topic.substr(0, 128)) + "' is not allowed";
  } else if (t.kind == topics::SendKind::kDirectTyping ||
             t.kind == topics::SendKind::kGroupTyping) {
    reason = "typing is QoS 0 only";
  } else {
    reason = "messages and receipts need QoS 1 or 2";
  }
  refuse(sender, extract_cid(payload), RefusalCode::kNotAuthorized, std::move(reason), qos);
}

bool Router::take_token(const std::string& user) {
  if (options_.rate_msgs <= 0) return true;
  int64_t now = clock_.now_ms();
  auto [it, inserted] = buckets_.try_emplace(user);
  Bucket& b = it->second;
  if (inserted) {
    b.tokens = options_.rate_burst;
    b.last_ms = now;
  }
  double elapsed = std::max<int64_t>(0, now - b.last_ms) / 1000.0;
  b.tokens = std::min(options_.rate_burst, b.tokens + elapsed * options_.rate_msgs);
  b.last_ms = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void Router::on_tick() {
  // Forget buckets that have refilled completely: they behave exactly like a
  // new bucket, so the table only holds users who sent in the last few seconds.
  int64_t now = clock_.now_ms();
  if (now - last_prune_ms_ < 10'000) return;
  last_prune_ms_ = now;
  for (auto i = buckets_.begin(); i != buckets_.end();) {
    double elapsed = std::max<int64_t>(0, now - i->second.last_ms) / 1000.0;
    bool full = i->second.tokens + elapsed * options_.rate_msgs >= options_.rate_burst;
    i = full ? buckets_.erase(i) : std::next(i);
  }
}

MessageOutcome Router::on_message(const DeviceSession& sender, std::string_view topic,
                                  std::string_view payload, int qos) {
  if (sender.service)
    return refuse(sender, "", RefusalCode::kNotAuthorized, "service clients do not chat", 0);
  auto t = topics::parse_send_topic(topic);
  switch (t.kind) {
    case topics::SendKind::kDirect:
      return direct_message(sender, t.target, payload, qos);
    case topics::SendKind::kDirectReceipt:
      return direct_receipt(sender, t.target, payload, qos);
    case topics::SendKind::kDirectTyping:
      return direct_typing(sender, t.target, payload);
    case topics::SendKind::kGroup:
    case topics::SendKind::kGroupReceipt:
    case topics::SendKind::kGroupTyping:
      return refuse(sender, extract_cid(payload), RefusalCode::kNotAuthorized,
                    "groups are not available on this server yet", qos);
    case topics::SendKind::kInvalid:
      break;
  }
  return refuse(sender, extract_cid(payload), RefusalCode::kNotAuthorized, "topic not allowed",
                qos);
}

MessageOutcome Router::direct_message(const DeviceSession& sender, const std::string& peer,
                                      std::string_view payload, int qos) {
  ClientMessage msg;
  Refusal why;
  if (!parse_client_message(payload, options_.max_payload, &msg, &why)) {
    return refuse(sender, extract_cid(payload), why.code, std::move(why.reason), qos);
  }

  // A retry of something already archived: acknowledge it again and re-send
  // the original envelope to the sender's devices, without a second copy.
  auto dup = archive_.find_duplicate(sender.client_id, msg.cid);
  if (!dup) {
    port_.log(LogLevel::kError, "archive read failed: " + dup.status().to_string());
    return fail();
  }
  if (dup->has_value()) {
    port_.publish("", topics::inbox(sender.user, topics::kInboxMsg), **dup, 1, false);
    if (qos == 2) {
      // A QoS 2 resend (DUP before PUBREL, or after a reconnect) must look
      // exactly like the first pass (same topic, same payload), or Mosquitto
      // drops the stored original as a "reused message id" and the peer never
      // gets the live copy. If Mosquitto no longer holds it, the peer may get
      // the envelope twice: clients de-duplicate by id.
      return accept(topics::inbox(peer, topics::kInboxMsg), **dup);
    }
    return accept(std::string(topics::kDiscard), std::string(payload));
  }

  if (peer == sender.user) {
    return refuse(sender, msg.cid, RefusalCode::kUnknownPeer,
                  "cannot send a direct message to yourself", qos);
  }
  auto exists = archive_.user_exists(peer);
  if (!exists) {
    port_.log(LogLevel::kError, "archive read failed: " + exists.status().to_string());
    return fail();
  }
  if (!*exists)
    return refuse(sender, msg.cid, RefusalCode::kUnknownPeer, "no such user: " + peer, qos);
  if (!take_token(sender.user)) {
    return refuse(sender, msg.cid, RefusalCode::kRateLimited, "too many messages, slow down", qos);
  }

  EnvelopeFields f;
  f.id = ids_.next();
  f.ts = clock_.now_ms();
  f.conv = topics::dm_conversation(sender.user, peer);
  f.from = sender.user;
  f.dev = sender.device;
  f.to = peer;
  f.cid = msg.cid;
  f.type = msg.type;
  std::string envelope = make_envelope(f, msg.body);

  store::AppendRequest req;
  req.id = f.id;
  req.conv = f.conv;
  req.from = sender.user;
  req.client_id = sender.client_id;
  req.cid = msg.cid;
  req.envelope = envelope;
  req.participants = {sender.user, peer};
  Status st = archive_.append(req);
  if (!st.is_ok()) {
    port_.log(LogLevel::kError, "archive append failed, dropping " + sender.client_id +
                                    " without PUBACK: " + st.to_string());
    return fail();
  }

  // The peer's copy rides on the original publish (rewritten); the sender's
  // devices get their own copy (multi-device sync, and the id for the cid).
  port_.publish("", topics::inbox(sender.user, topics::kInboxMsg), envelope, 1, false);
  return accept(topics::inbox(peer, topics::kInboxMsg), std::move(envelope));
}

MessageOutcome Router::direct_receipt(const DeviceSession& sender, const std::string& peer,
                                      std::string_view payload, int qos) {
  if (payload.size() > options_.max_payload) {
    return refuse(sender, "", RefusalCode::kTooLarge, "receipt too large", qos);
  }
  auto doc = json_depth_within(payload, kMaxJsonDepth)
                 ? json::parse(payload.begin(), payload.end(), nullptr, false)
                 : json(json::value_t::discarded);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("ids") || !doc["ids"].is_array() ||
      doc["ids"].empty() || doc["ids"].size() > 1000 || !doc.contains("status") ||
      !doc["status"].is_string()) {
    return refuse(sender, "", RefusalCode::kInvalidPayload,
                  "receipt must be {\"ids\":[...],\"status\":\"delivered\"|\"read\"}", qos);
  }
  const auto& status = doc["status"].get_ref<const std::string&>();
  if (status != "delivered" && status != "read") {
    return refuse(sender, "", RefusalCode::kInvalidPayload, "status must be delivered or read",
                  qos);
  }
  for (const auto& id : doc["ids"]) {
    if (!id.is_string() || !is_valid_message_id(id.get_ref<const std::string&>())) {
      return refuse(sender, "", RefusalCode::kInvalidPayload, "ids must be message ids", qos);
    }
  }
  if (peer == sender.user)
    return refuse(sender, "", RefusalCode::kUnknownPeer, "cannot send a receipt to yourself", qos);
  auto exists = archive_.user_exists(peer);
  if (!exists) return fail();
  if (!*exists) return refuse(sender, "", RefusalCode::kUnknownPeer, "no such user: " + peer, qos);

  nlohmann::ordered_json r;
  r["v"] = 1;
  r["conv"] = topics::dm_conversation(sender.user, peer);
  r["from"] = sender.user;
  r["ids"] = doc["ids"];
  r["status"] = status;
  r["ts"] = clock_.now_ms();
  std::string out = r.dump();
  // The sender's other devices learn it too (read state syncs across devices).
  port_.publish("", topics::inbox(sender.user, topics::kInboxReceipt), out, 1, false);
  return accept(topics::inbox(peer, topics::kInboxReceipt), std::move(out));
}

MessageOutcome Router::direct_typing(const DeviceSession& sender, const std::string& peer,
                                     std::string_view payload) {
  auto doc = payload.size() <= 1024 && json_depth_within(payload, kMaxJsonDepth)
                 ? json::parse(payload.begin(), payload.end(), nullptr, false)
                 : json(json::value_t::discarded);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("state") ||
      !doc["state"].is_string()) {
    return refuse(sender, "", RefusalCode::kInvalidPayload, "typing must be {\"state\":...}", 0);
  }
  const auto& state = doc["state"].get_ref<const std::string&>();
  if (state != "composing" && state != "paused") {
    return refuse(sender, "", RefusalCode::kInvalidPayload, "state must be composing or paused", 0);
  }
  if (peer == sender.user) return refuse(sender, "", RefusalCode::kUnknownPeer, "self", 0);
  nlohmann::ordered_json r;
  r["v"] = 1;
  r["conv"] = topics::dm_conversation(sender.user, peer);
  r["from"] = sender.user;
  r["state"] = state;
  // QoS 0 end to end: Mosquitto does not queue QoS 0 for offline sessions
  // (queue_qos0_messages false), so typing never reaches an offline device.
  return accept(topics::inbox(peer, topics::kInboxTyping), r.dump());
}

void Router::reply(const DeviceSession& to, const std::string& req, const Status& status) {
  nlohmann::ordered_json r;
  r["req"] = req;
  r["ok"] = status.is_ok();
  if (!status.is_ok()) {
    r["error"] = status_code_name(status.code());
    r["message"] = status.message();
  }
  port_.publish(to.client_id, std::string(topics::kControlResponse), r.dump(), 1, false);
}

void Router::on_control(const DeviceSession& sender, std::string_view payload) {
  auto doc = json::parse(payload.begin(), payload.end(), nullptr, false);
  std::string req;
  if (!doc.is_discarded() && doc.is_object() && doc.contains("req") && doc["req"].is_string()) {
    req = doc["req"].get<std::string>();
  }
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("op") || !doc["op"].is_string()) {
    reply(sender, req, invalid_argument("control request must be {\"op\":...,\"req\":...}"));
    return;
  }
  const auto& op = doc["op"].get_ref<const std::string&>();
  auto user_arg = [&](std::string* user) {
    if (!doc.contains("user") || !doc["user"].is_string() ||
        !is_valid_user_id(doc["user"].get_ref<const std::string&>())) {
      return false;
    }
    *user = doc["user"].get<std::string>();
    return true;
  };
  std::string user;
  if (op == "user.add") {
    if (!user_arg(&user)) return reply(sender, req, invalid_argument("bad user"));
    return reply(sender, req, archive_.add_user(user));
  }
  if (op == "user.remove") {
    if (!user_arg(&user)) return reply(sender, req, invalid_argument("bad user"));
    Status st = archive_.remove_user(user);
    if (st.is_ok()) port_.kick_user(user);
    return reply(sender, req, st);
  }
  if (op == "ping") return reply(sender, req, Status::ok());
  reply(sender, req, invalid_argument("unknown op: " + op));
}

}  // namespace chat::broker
