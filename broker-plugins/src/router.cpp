#include "chat/broker/router.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>

#include "chat/common/log_fields.h"
#include "chat/common/oidc.h"
#include "chat/common/strict_json.h"
#include "chat/common/topics.h"

namespace chat::broker {
namespace {

using json = nlohmann::json;

MessageOutcome accept(std::string topic, std::string payload) {
  return {MessageOutcome::Action::kAccept, std::move(topic), std::move(payload)};
}

MessageOutcome fail() { return {MessageOutcome::Action::kFail, {}, {}}; }

// Handled entirely by the plugin (fan-out by publish_copy, or nothing to
// deliver): Mosquitto acknowledges and routes the original to a topic nobody
// can subscribe to. The payload stays the client's, so a QoS 2 resend matches.
MessageOutcome consumed(std::string_view payload) {
  return accept(std::string(topics::kDiscard), std::string(payload));
}

// Bounded nesting, no repeated member names (strict_json.h).
json parse_limited(std::string_view payload, size_t max) {
  if (payload.size() > max) return json(json::value_t::discarded);
  return parse_untrusted_json(payload, kMaxJsonDepth);
}

std::string new_group_id() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  static std::mt19937_64 rng{std::random_device{}()};
  std::string id = "G";
  for (int i = 0; i < 15; ++i) id += kAlphabet[rng() % 64];
  return id;
}

// Message types that wake a phone (docs/push.md): what a person reads as a new
// message. Edits, deletions, reactions and system messages do not.
bool is_push_type(std::string_view type) {
  return type == "text" || type == "media" || type == "e2e";
}

// 1-100 characters (code points), no control characters.
bool valid_group_name(const std::string& name) {
  size_t n = 0;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return false;
    if ((c & 0xc0) != 0x80) ++n;
  }
  return n >= 1 && n <= 100;
}

}  // namespace

Router::Router(const Clock& clock, store::Archive& archive, Directory& directory, BrokerPort& port,
               RouterOptions options)
    : clock_(clock),
      archive_(archive),
      directory_(directory),
      port_(port),
      options_(options),
      ids_(clock, options.node_id),
      message_limits_(clock, RateLimit{options.rate_msgs, options.rate_burst}),
      receipt_limits_(clock, RateLimit{options.rate_receipts, options.rate_receipts_burst}),
      typing_limits_(clock, RateLimit{options.rate_typing, options.rate_typing_burst}),
      typing_notices_(clock, RateLimit{1, 1}) {}

Status Router::init() {
  auto max = archive_.max_id();
  if (!max) return max.status();
  ids_.observe(*max);
  return Status::ok();
}

MessageOutcome Router::refuse(const DeviceSession& sender, std::string_view cid, RefusalCode code,
                              std::string reason, int qos) {
  if (stats_ != nullptr) stats_->message_refused(code);
  // The contract promises an event for every refused QoS 1/2 publish; QoS 0
  // (typing) refusals are silent, as QoS 0 has no acknowledgement to explain
  // (rate limits aside: typing_rate_limited).
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

void Router::on_tick() {
  // Forget buckets that have refilled completely: they behave exactly like a
  // new bucket, so the tables only hold users who sent a lot just now.
  int64_t now = clock_.now_ms();
  if (now - last_prune_ms_ < 10'000) return;
  last_prune_ms_ = now;
  message_limits_.prune();
  receipt_limits_.prune();
  typing_limits_.prune();
  typing_notices_.prune();
}

MessageOutcome Router::on_message(const DeviceSession& sender, std::string_view topic,
                                  std::string_view payload, int qos) {
  if (sender.service) {
    return refuse(sender, "", RefusalCode::kNotAuthorized, "service clients do not chat", 0);
  }
  auto t = topics::parse_send_topic(topic);
  switch (t.kind) {
    case topics::SendKind::kDirect:
      return direct_message(sender, t.target, payload, qos);
    case topics::SendKind::kGroup:
      return group_message(sender, t.target, payload, qos);
    case topics::SendKind::kDirectReceipt:
      return direct_receipt(sender, t.target, payload, qos);
    case topics::SendKind::kGroupReceipt:
      return group_receipt(sender, t.target, payload, qos);
    case topics::SendKind::kDirectTyping:
      return direct_typing(sender, t.target, payload);
    case topics::SendKind::kGroupTyping:
      return group_typing(sender, t.target, payload);
    case topics::SendKind::kInvalid:
      break;
  }
  return refuse(sender, extract_cid(payload), RefusalCode::kNotAuthorized, "topic not allowed",
                qos);
}

std::optional<Refusal> Router::check_target(const DeviceSession& sender, const std::string& conv,
                                            const ClientMessage& msg) {
  bool own_only = msg.type == "edit" || msg.type == "delete";
  if (!own_only && msg.type != "reaction") return std::nullopt;
  // The target is the body itself (a message id) or the body's "id" member.
  const json* target = &msg.body;
  if (msg.body.is_object() && msg.body.contains("id")) target = &msg.body["id"];
  if (!target->is_string() || !is_valid_message_id(target->get_ref<const std::string&>())) {
    return Refusal{RefusalCode::kInvalidPayload,
                   msg.type + " needs the target message id as body or body.id"};
  }
  auto env = archive_.envelope(conv, target->get<std::string>());
  if (!env.is_ok() || !env->has_value()) {
    return Refusal{RefusalCode::kInvalidPayload, "no such message in this conversation"};
  }
  if (own_only) {
    auto doc = json::parse(**env, nullptr, false);
    if (!doc.is_object() || doc.value("from", "") != sender.user) {
      return Refusal{RefusalCode::kNotAuthorized, "only the sender may " + msg.type + " a message"};
    }
  }
  return std::nullopt;
}

std::optional<Refusal> Router::check_e2e_recipients(const DeviceSession& sender, const Group* group,
                                                    const std::vector<std::string>& participants,
                                                    const json& body) const {
  // A body in the Signal form: parse_client_message checked its structure
  // (check_e2e_body), "group" allowed.
  if (group == nullptr && body.contains("group")) {
    return Refusal{RefusalCode::kInvalidPayload,
                   "body.group (a sender-key message) is for group conversations only"};
  }
  const auto to = body.find("to");
  if (to == body.end()) return std::nullopt;
  for (const auto& [key, entry] : to->items()) {
    const std::string user = key.substr(0, key.find(':'));
    const bool ok = user == sender.user ||
                    (group != nullptr ? group->members.count(user) > 0
                                      : std::find(participants.begin(), participants.end(), user) !=
                                            participants.end());
    if (!ok) {
      return Refusal{RefusalCode::kInvalidPayload,
                     "body.to key '" + key + "': " + user + " is not in this conversation"};
    }
  }
  return std::nullopt;
}

Router::Stamped Router::stamp_and_archive(const DeviceSession& sender, const std::string& conv,
                                          const std::string& to,
                                          const std::vector<std::string>& participants,
                                          const Group* group, std::string_view payload, int qos,
                                          const std::string& duplicate_peer) {
  Stamped out;
  ClientMessage msg;
  Refusal why;
  if (!parse_client_message(payload, options_.max_payload, &msg, &why)) {
    out.done = refuse(sender, extract_cid(payload), why.code, std::move(why.reason), qos);
    return out;
  }

  // A retry of something already archived: acknowledge it again and re-send
  // the original envelope to the sender's devices, without a second copy.
  auto dup = archive_.find_duplicate(sender.client_id, msg.cid);
  if (!dup) {
    port_.log(LogLevel::kError,
              "archive.read_failed: error=" + log_value(dup.status().to_string()));
    out.done = fail();
    return out;
  }
  if (dup->has_value()) {
    if (stats_ != nullptr) ++stats_->duplicates;
    // An e2e original goes out per user again, as on the first pass (the
    // envelope builder writes exactly this marker; no other type pays a parse).
    std::optional<E2eEnvelopes> e2e;
    if ((*dup)->find(R"(,"type":"e2e","body":)") != std::string::npos) {
      e2e = E2eEnvelopes::from_envelope(**dup);
    }
    port_.publish("", topics::inbox(sender.user, topics::kInboxMsg),
                  e2e ? e2e->for_user(sender.user) : **dup, 1, false);
    if (qos == 2 && !duplicate_peer.empty()) {
      // A QoS 2 resend (DUP before PUBREL, or after a reconnect) must look
      // exactly like the first pass (same topic, same payload), or Mosquitto
      // drops the stored original as a "reused message id" and the peer never
      // gets the live copy. If Mosquitto no longer holds it, the peer may get
      // the envelope twice: clients de-duplicate by id.
      out.done = accept(topics::inbox(duplicate_peer, topics::kInboxMsg),
                        e2e ? e2e->for_user(duplicate_peer) : **dup);
    } else {
      out.done = consumed(payload);
    }
    return out;
  }

  if (auto bad = check_target(sender, conv, msg)) {
    out.done = refuse(sender, msg.cid, bad->code, std::move(bad->reason), qos);
    return out;
  }
  // The Signal form (docs/e2e.md) is checked and delivered per user; an
  // opaque e2e body (the contract's) is archived and delivered unchanged.
  const bool e2e = msg.type == "e2e" && is_signal_e2e_body(msg.body);
  if (e2e) {
    if (auto bad = check_e2e_recipients(sender, group, participants, msg.body)) {
      out.done = refuse(sender, msg.cid, bad->code, std::move(bad->reason), qos);
      return out;
    }
  }
  if (message_limits_.take(sender.user) > 0) {
    out.done =
        refuse(sender, msg.cid, RefusalCode::kRateLimited, "too many messages, slow down", qos);
    return out;
  }

  EnvelopeFields f;
  f.id = ids_.next();
  f.ts = clock_.now_ms();
  f.conv = conv;
  f.from = sender.user;
  f.dev = sender.device;
  f.to = to;
  f.cid = msg.cid;
  f.type = msg.type;
  out.envelope = make_envelope(f, msg.body);
  if (e2e) out.e2e.emplace(f, msg.body);

  store::AppendRequest req;
  req.id = f.id;
  req.conv = conv;
  req.from = sender.user;
  req.client_id = sender.client_id;
  req.cid = msg.cid;
  req.envelope = out.envelope;
  req.participants = participants;
  req.media = media_reference(msg);  // indexed: who may fetch it (docs/media.md)
  if (push_devices_ != nullptr && is_push_type(f.type)) req.push = push_record(f, participants);
  const auto append_start = std::chrono::steady_clock::now();
  Status st = archive_.append(req);
  if (stats_ != nullptr) {
    stats_->append_seconds.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - append_start).count());
    if (!st.is_ok()) ++stats_->archive_failures;
  }
  if (!st.is_ok()) {
    port_.log(LogLevel::kError,
              "archive.append_failed: client=" + log_value(sender.client_id) +
                  " action=dropped_without_puback error=" + log_value(st.to_string()));
    out.done = fail();
  } else if (!req.push.empty()) {
    // Wakes chat-api's push feed (it also polls, so a lost wake-up only delays).
    port_.publish("", std::string(topics::kControlPush), json{{"id", f.id}}.dump(), 0, false);
  }
  return out;
}

std::string Router::push_record(const EnvelopeFields& f,
                                const std::vector<std::string>& participants) const {
  json targets = json::array();
  for (const auto& user : participants) {
    if (user == f.from) continue;  // never the sender's own devices
    const std::vector<std::string>* devices = push_devices_->devices_of(user);
    if (devices == nullptr) continue;
    for (const auto& device : *devices) {
      std::string client_id = user + ":" + device;
      // Connected: it gets the message live. Per device, so an open web tab
      // does not silence the phone.
      if (is_connected_ && is_connected_(client_id)) continue;
      targets.push_back(std::move(client_id));
    }
  }
  if (targets.empty()) return {};
  nlohmann::ordered_json record;
  record["id"] = f.id;
  record["conv"] = f.conv;
  record["from"] = f.from;
  record["type"] = f.type;
  record["ts"] = f.ts;  // the push age limit runs from the message's time
  record["targets"] = std::move(targets);
  return record.dump();
}

MessageOutcome Router::direct_message(const DeviceSession& sender, const std::string& peer,
                                      std::string_view payload, int qos) {
  // The cid is read only for a refusal: an accepted message is parsed once, later.
  if (peer == sender.user) {
    return refuse(sender, extract_cid(payload), RefusalCode::kUnknownPeer,
                  "cannot send a direct message to yourself", qos);
  }
  auto exists = archive_.has_user(peer);
  if (!exists) {
    port_.log(LogLevel::kError,
              "archive.read_failed: error=" + log_value(exists.status().to_string()));
    return fail();
  }
  if (!*exists) {
    return refuse(sender, extract_cid(payload), RefusalCode::kUnknownPeer, "no such user: " + peer,
                  qos);
  }
  if (directory_.is_blocked(peer, sender.user)) {
    return refuse(sender, extract_cid(payload), RefusalCode::kNotAuthorized,
                  peer + " does not accept your messages", qos);
  }

  auto stamped = stamp_and_archive(sender, topics::dm_conversation(sender.user, peer), peer,
                                   {sender.user, peer}, nullptr, payload, qos, peer);
  if (stamped.done) return std::move(*stamped.done);
  // The peer's copy rides on the original publish (rewritten); the sender's
  // devices get their own copy (multi-device sync, and the id for the cid).
  // An e2e message: each side's copy holds only its own devices' entries.
  std::string scratch;
  port_.publish("", topics::inbox(sender.user, topics::kInboxMsg),
                stamped.envelope_for(sender.user, &scratch), 1, false);
  if (stats_ != nullptr) stats_->message_routed(RoutedKind::kDirect);
  if (stamped.e2e) stamped.envelope = stamped.e2e->for_user(peer);
  return accept(topics::inbox(peer, topics::kInboxMsg), std::move(stamped.envelope));
}

MessageOutcome Router::group_message(const DeviceSession& sender, const std::string& gid,
                                     std::string_view payload, int qos) {
  const Group* group = directory_.group(gid);
  if (group == nullptr || group->members.count(sender.user) == 0) {
    return refuse(sender, extract_cid(payload), RefusalCode::kNotAuthorized,
                  "not a member of group " + gid, qos);
  }
  if (payload.size() * group->members.size() > options_.group_fanout_bytes) {
    return refuse(
        sender, extract_cid(payload), RefusalCode::kTooLarge,
        "payload too large for a group of " + std::to_string(group->members.size()) + " (at most " +
            std::to_string(options_.group_fanout_bytes / group->members.size()) + " bytes)",
        qos);
  }
  // Members who blocked the sender neither receive nor sync it.
  std::vector<std::string> recipients;
  recipients.reserve(group->members.size());
  for (const auto& m : group->members) {
    if (m == sender.user || !directory_.is_blocked(m, sender.user)) recipients.push_back(m);
  }
  auto stamped =
      stamp_and_archive(sender, topics::group_conversation(gid), topics::group_conversation(gid),
                        recipients, group, payload, qos, "");
  if (stamped.done) return std::move(*stamped.done);
  // Every member's devices (the sender's included) get their own copy; of an
  // e2e message, each with only that member's entries.
  std::string scratch;
  for (const auto& m : recipients) {
    port_.publish("", topics::inbox(m, topics::kInboxMsg), stamped.envelope_for(m, &scratch), 1,
                  false);
  }
  if (stats_ != nullptr) {
    stats_->message_routed(RoutedKind::kGroup);
    stats_->group_fanout.observe(static_cast<double>(recipients.size()));
  }
  return consumed(payload);
}

std::optional<Router::Receipt> Router::parse_receipt(std::string_view payload, Refusal* why) const {
  auto doc = parse_limited(payload, options_.max_payload);
  auto bad = [&](std::string reason) {
    *why = Refusal{RefusalCode::kInvalidPayload, std::move(reason)};
    return std::nullopt;
  };
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("ids") || !doc["ids"].is_array() ||
      doc["ids"].empty() || doc["ids"].size() > 1000 || !doc.contains("status") ||
      !doc["status"].is_string()) {
    return bad(R"(receipt must be {"ids":[1-1000 ids],"status":"delivered"|"read"})");
  }
  Receipt r;
  r.status = doc["status"].get<std::string>();
  if (r.status != "delivered" && r.status != "read") return bad("status must be delivered or read");
  for (const auto& id : doc["ids"]) {
    if (!id.is_string() || !is_valid_message_id(id.get_ref<const std::string&>())) {
      return bad("ids must be message ids");
    }
    r.ids.push_back(id.get<std::string>());
  }
  return r;
}

std::string Router::receipt_json(const std::string& conv, const std::string& from,
                                 const std::vector<std::string>& ids,
                                 const std::string& status) const {
  nlohmann::ordered_json r;
  r["v"] = 1;
  r["conv"] = conv;
  r["from"] = from;
  r["ids"] = ids;
  r["status"] = status;
  r["ts"] = clock_.now_ms();
  return r.dump();
}

MessageOutcome Router::direct_receipt(const DeviceSession& sender, const std::string& peer,
                                      std::string_view payload, int qos) {
  Refusal why;
  auto receipt = parse_receipt(payload, &why);
  if (!receipt) return refuse(sender, "", why.code, why.reason, qos);
  if (receipt_limits_.take(sender.user) > 0) {
    return refuse(sender, "", RefusalCode::kRateLimited, "too many receipts, slow down", qos);
  }
  if (peer == sender.user) {
    return refuse(sender, "", RefusalCode::kUnknownPeer, "cannot send a receipt to yourself", qos);
  }
  auto exists = archive_.has_user(peer);
  if (!exists) return fail();
  if (!*exists) return refuse(sender, "", RefusalCode::kUnknownPeer, "no such user: " + peer, qos);

  std::string conv = topics::dm_conversation(sender.user, peer);
  if (receipt->status == "read") {
    // The read marker is what makes unread counts and a later device's state right.
    auto newest = *std::max_element(receipt->ids.begin(), receipt->ids.end());
    Status st = archive_.mark_read(sender.user, conv, newest);
    if (!st.is_ok()) {
      port_.log(LogLevel::kError, "archive.mark_read_failed: error=" + log_value(st.to_string()));
      return fail();
    }
  }
  std::string out = receipt_json(conv, sender.user, receipt->ids, receipt->status);
  // The sender's other devices learn it too (read state syncs across devices).
  port_.publish("", topics::inbox(sender.user, topics::kInboxReceipt), out, 1, false);
  if (stats_ != nullptr) stats_->message_routed(RoutedKind::kReceipt);
  // A receipt to someone who blocked me goes nowhere (and says nothing).
  if (directory_.is_blocked(peer, sender.user)) return consumed(payload);
  return accept(topics::inbox(peer, topics::kInboxReceipt), std::move(out));
}

MessageOutcome Router::group_receipt(const DeviceSession& sender, const std::string& gid,
                                     std::string_view payload, int qos) {
  Refusal why;
  auto receipt = parse_receipt(payload, &why);
  if (!receipt) return refuse(sender, "", why.code, why.reason, qos);
  if (receipt_limits_.take(sender.user) > 0) {
    return refuse(sender, "", RefusalCode::kRateLimited, "too many receipts, slow down", qos);
  }
  if (!directory_.is_member(gid, sender.user)) {
    return refuse(sender, "", RefusalCode::kNotAuthorized, "not a member of group " + gid, qos);
  }
  std::string conv = topics::group_conversation(gid);
  // Each message's sender hears about their own messages only.
  std::map<std::string, std::vector<std::string>> by_sender;
  std::vector<std::string> known;
  for (const auto& id : receipt->ids) {
    auto env = archive_.envelope(conv, id);
    if (!env.is_ok()) return fail();
    if (!env->has_value()) continue;
    auto doc = json::parse(**env, nullptr, false);
    std::string from = doc.is_object() ? doc.value("from", "") : "";
    if (from.empty()) continue;
    known.push_back(id);
    if (from != sender.user) by_sender[from].push_back(id);
  }
  if (known.empty()) {
    return refuse(sender, "", RefusalCode::kInvalidPayload, "no such messages in this group", qos);
  }
  if (receipt->status == "read") {
    Status st =
        archive_.mark_read(sender.user, conv, *std::max_element(known.begin(), known.end()));
    if (!st.is_ok()) return fail();
  }
  for (const auto& [from, ids] : by_sender) {
    if (directory_.is_blocked(from, sender.user)) continue;
    port_.publish("", topics::inbox(from, topics::kInboxReceipt),
                  receipt_json(conv, sender.user, ids, receipt->status), 1, false);
  }
  port_.publish("", topics::inbox(sender.user, topics::kInboxReceipt),
                receipt_json(conv, sender.user, known, receipt->status), 1, false);
  if (stats_ != nullptr) stats_->message_routed(RoutedKind::kReceipt);
  return consumed(payload);
}

std::optional<std::string> Router::parse_typing(std::string_view payload) const {
  auto doc = parse_limited(payload, 1024);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("state") ||
      !doc["state"].is_string()) {
    return std::nullopt;
  }
  auto state = doc["state"].get<std::string>();
  if (state != "composing" && state != "paused") return std::nullopt;
  return state;
}

std::string Router::typing_json(const std::string& conv, const std::string& from,
                                const std::string& state) const {
  nlohmann::ordered_json r;
  r["v"] = 1;
  r["conv"] = conv;
  r["from"] = from;
  r["state"] = state;
  return r.dump();
}

MessageOutcome Router::typing_rate_limited(const DeviceSession& sender) {
  if (stats_ != nullptr) stats_->message_refused(RefusalCode::kRateLimited);
  // QoS 0 has no acknowledgement to carry a refusal, so the device hears why
  // in an event, but at most once a second: the answers must not become a
  // flood of their own.
  if (typing_notices_.take(sender.client_id) == 0) {
    port_.publish(
        sender.client_id, topics::inbox(sender.user, topics::kInboxEvent),
        make_error_event("", RefusalCode::kRateLimited, "too many typing signals, slow down"), 1,
        false);
  }
  return {MessageOutcome::Action::kRefuse, {}, {}};
}

// Typing is QoS 0 end to end: Mosquitto does not queue QoS 0 for offline
// sessions (queue_qos0_messages false), so it never reaches an offline device.
MessageOutcome Router::direct_typing(const DeviceSession& sender, const std::string& peer,
                                     std::string_view payload) {
  auto state = parse_typing(payload);
  if (!state || peer == sender.user) {
    return refuse(sender, "", RefusalCode::kInvalidPayload, "typing must be {\"state\":...}", 0);
  }
  if (typing_limits_.take(sender.user) > 0) return typing_rate_limited(sender);
  if (directory_.is_blocked(peer, sender.user)) return consumed(payload);
  if (stats_ != nullptr) stats_->message_routed(RoutedKind::kTyping);
  return accept(topics::inbox(peer, topics::kInboxTyping),
                typing_json(topics::dm_conversation(sender.user, peer), sender.user, *state));
}

MessageOutcome Router::group_typing(const DeviceSession& sender, const std::string& gid,
                                    std::string_view payload) {
  auto state = parse_typing(payload);
  const Group* group = directory_.group(gid);
  if (!state || group == nullptr || group->members.count(sender.user) == 0) {
    return refuse(sender, "", RefusalCode::kNotAuthorized, "not a member", 0);
  }
  if (typing_limits_.take(sender.user) > 0) return typing_rate_limited(sender);
  std::string out = typing_json(topics::group_conversation(gid), sender.user, *state);
  for (const auto& m : group->members) {
    if (m == sender.user || directory_.is_blocked(m, sender.user)) continue;
    port_.publish("", topics::inbox(m, topics::kInboxTyping), out, 0, false);
  }
  if (stats_ != nullptr) stats_->message_routed(RoutedKind::kTyping);
  return consumed(payload);
}

// --- control ------------------------------------------------------------------

void Router::reply(const DeviceSession& to, const std::string& req, const Status& status,
                   const json& result) {
  nlohmann::ordered_json r;
  r["req"] = req;
  r["ok"] = status.is_ok();
  if (!status.is_ok()) {
    r["error"] = status_code_name(status.code());
    r["message"] = status.message();
  } else if (!result.is_null()) {
    r["result"] = result;
  }
  port_.publish(to.client_id, std::string(topics::kControlResponse), r.dump(), 1, false);
}

json Router::group_json(const Group& g) const {
  json j;
  j["id"] = g.id;
  j["name"] = g.name;
  j["members"] = std::vector<std::string>(g.members.begin(), g.members.end());
  j["admins"] = std::vector<std::string>(g.admins.begin(), g.admins.end());
  return j;
}

void Router::group_event(const Group& group, const std::string& action, const std::string& user,
                         const std::string& by, const std::string* also_to) {
  nlohmann::ordered_json ev;
  ev["v"] = 1;
  ev["type"] = "group";
  ev["action"] = action;
  ev["group"] = group.id;
  ev["name"] = group.name;
  ev["user"] = user;
  ev["by"] = by;
  ev["ts"] = clock_.now_ms();
  std::string out = ev.dump();
  for (const auto& m : group.members) {
    port_.publish("", topics::inbox(m, topics::kInboxEvent), out, 1, false);
  }
  if (also_to != nullptr)
    port_.publish("", topics::inbox(*also_to, topics::kInboxEvent), out, 1, false);
}

Status Router::control_group(const std::string& op, const json& doc, json* result) {
  auto str = [&](const char* key) -> std::string {
    return doc.contains(key) && doc[key].is_string() ? doc[key].get<std::string>() : "";
  };
  std::string by = str("by");
  if (!is_valid_user_id(by)) return invalid_argument("by must be a user id");

  if (op == "group.create") {
    std::string name = str("name");
    if (!valid_group_name(name)) return invalid_argument("name must be 1-100 characters");
    std::set<std::string> members{by};
    if (doc.contains("members")) {
      if (!doc["members"].is_array()) return invalid_argument("members must be an array");
      for (const auto& m : doc["members"]) {
        if (!m.is_string() || !is_valid_user_id(m.get_ref<const std::string&>())) {
          return invalid_argument("members must be user ids");
        }
        members.insert(m.get<std::string>());
      }
    }
    if (members.size() > options_.max_group_members) {
      return resource_exhausted("a group has at most " +
                                std::to_string(options_.max_group_members) + " members");
    }
    for (const auto& m : members) {
      auto e = archive_.has_user(m);
      if (!e) return e.status();
      if (!*e) return not_found("no such user: " + m);
    }
    store::GroupInfo info;
    info.id = new_group_id();
    info.name = name;
    info.creator = by;
    info.created_ms = clock_.now_ms();
    info.members.assign(members.begin(), members.end());
    info.admins = {by};
    Status st = archive_.create_group(info, ids_.next());
    if (!st.is_ok()) return st;
    directory_.put_group(info);
    // The creator first in join order, then the rest.
    const Group* g = directory_.group(info.id);
    group_event(*g, "created", by, by);
    *result = group_json(*g);
    return Status::ok();
  }

  std::string gid = str("gid"), user = str("user");
  if (!is_valid_group_id(gid)) return invalid_argument("gid must be a group id");
  if (!is_valid_user_id(user)) return invalid_argument("user must be a user id");
  const Group* g = directory_.group(gid);
  if (g == nullptr) return not_found("no such group: " + gid);
  bool by_admin = g->admins.count(by) > 0;

  if (op == "group.add") {
    if (!by_admin) return permission_denied("only group admins add members");
    if (g->members.count(user)) return already_exists(user + " is already a member");
    if (g->members.size() >= options_.max_group_members) {
      return resource_exhausted("the group is full (" + std::to_string(options_.max_group_members) +
                                ")");
    }
    auto e = archive_.has_user(user);
    if (!e) return e.status();
    if (!*e) return not_found("no such user: " + user);
    Status st = archive_.add_member(gid, user, ids_.next());
    if (!st.is_ok()) return st;
    directory_.add_member(gid, user);
    group_event(*g, "member_added", user, by);
  } else if (op == "group.remove") {
    if (!by_admin && by != user) return permission_denied("only group admins remove others");
    if (!g->members.count(user)) return not_found(user + " is not a member");
    Status st = archive_.remove_member(gid, user, ids_.next());
    if (!st.is_ok()) return st;
    directory_.remove_member(gid, user);
    // A group is never left without an admin while it has members.
    if (g->admins.empty() && !g->join_order.empty()) {
      std::string heir = g->join_order.front();
      if (archive_.set_admin(gid, heir, true).is_ok()) {
        directory_.set_admin(gid, heir, true);
        group_event(*g, "admin_added", heir, by);
      }
    }
    group_event(*g, "member_removed", user, by, &user);
  } else if (op == "group.admin") {
    if (!by_admin) return permission_denied("only group admins promote members");
    if (!g->members.count(user)) return not_found(user + " is not a member");
    if (!g->admins.count(user)) {
      Status st = archive_.set_admin(gid, user, true);
      if (!st.is_ok()) return st;
      directory_.set_admin(gid, user, true);
      group_event(*g, "admin_added", user, by);
    }
  } else {
    return invalid_argument("unknown op: " + op);
  }
  *result = group_json(*g);
  return Status::ok();
}

// Admin ops (issue 5). A ban is written to the archive before any connection
// is closed, so a device that reconnects at once is already refused.
Status Router::control_admin(const std::string& op, const json& doc, json* result) {
  if (bans_ == nullptr || gatekeeper_ == nullptr) return unavailable("admin ops are not set up");
  auto str = [&](const char* key) -> std::string {
    return doc.contains(key) && doc[key].is_string() ? doc[key].get<std::string>() : "";
  };
  if (op == "user.ban" || op == "user.unban") {
    std::string user = str("user");
    if (!is_valid_user_id(user)) return invalid_argument("user must be a user id");
    auto exists = archive_.has_user(user);
    if (!exists) return exists.status();
    if (!*exists) return not_found("no such user: " + user);
    const bool ban = op == "user.ban";
    Status st = bans_->set(user, ban);
    if (!st.is_ok()) return st;
    if (ban) {
      port_.kick_user(user);
      port_.log(LogLevel::kNotice, "user.banned: user=" + log_value(user) + " connections=closed");
    } else {
      port_.log(LogLevel::kNotice, "user.unbanned: user=" + log_value(user));
    }
    *result = json{{"user", user}, {"banned", ban}};
    return Status::ok();
  }
  if (op == "token.revoke") {
    // Refused at the next CONNECT and closed now wherever it is in use.
    std::string jti = str("jti");
    if (jti.empty() || jti.size() > 256 || jti.find('\0') != std::string::npos) {
      return invalid_argument("jti must be a token id of 1-256 bytes");
    }
    int64_t exp = 0;
    if (doc.contains("exp")) {
      if (!doc["exp"].is_number_integer() || doc["exp"].get<int64_t>() < 0) {
        return invalid_argument("exp must be a non-negative integer (seconds)");
      }
      exp = doc["exp"].get<int64_t>();
    }
    Status st = bans_->revoke(jti, exp);
    if (!st.is_ok()) return st;
    json closed = json::array();
    for (const auto& client_id : gatekeeper_->clients_with_jti(jti)) {
      port_.kick_client(client_id);
      closed.push_back(client_id);
    }
    port_.log(LogLevel::kNotice,
              "token.revoked: connections_closed=" + std::to_string(closed.size()));
    *result = json{{"jti", jti}, {"closed", std::move(closed)}};
    return Status::ok();
  }
  if (op == "client.kick") {
    std::string client_id = str("clientid");
    std::string user, device;
    if (!split_client_id(client_id, &user, &device)) {
      return invalid_argument("clientid must be <user>:<device>");
    }
    if (!gatekeeper_->is_connected(client_id)) return not_found(client_id + " is not connected");
    port_.kick_client(client_id);
    *result = json{{"clientid", client_id}};
    return Status::ok();
  }
  if (op == "client.list") {
    json clients = json::array();
    for (const auto& s : gatekeeper_->devices()) {
      clients.push_back(json{{"clientid", s.client_id},
                             {"user", s.user},
                             {"device", s.device},
                             {"jti", s.jti},
                             {"connected_ms", s.connected_ms}});
    }
    *result =
        json{{"clients", std::move(clients)},
             {"banned", std::vector<std::string>(bans_->users().begin(), bans_->users().end())}};
    return Status::ok();
  }
  return invalid_argument("unknown op: " + op);
}

// Push (docs/push.md): chat-api tells which devices have push targets, and
// which push records it has taken over.
Status Router::control_push(const std::string& op, const json& doc, json* result) {
  if (push_devices_ == nullptr) return unavailable("push is not set up");
  if (op == "push.devices") {
    const auto user = doc.find("user");
    const auto devices = doc.find("devices");
    if (user == doc.end() || !user->is_string() ||
        !is_valid_user_id(user->get_ref<const std::string&>())) {
      return invalid_argument("user must be a user id");
    }
    if (devices == doc.end() || !devices->is_array()) {
      return invalid_argument("devices must be an array of device ids");
    }
    std::vector<std::string> list;
    for (const auto& d : *devices) {
      if (!d.is_string()) return invalid_argument("devices must be an array of device ids");
      list.push_back(d.get<std::string>());
    }
    const std::string& id = user->get_ref<const std::string&>();
    // Forgetting works for any id (an account deleted meanwhile); adding needs a user.
    if (!list.empty()) {
      auto exists = archive_.has_user(id);
      if (!exists) return exists.status();
      if (!*exists) return not_found("no such user: " + id);
    }
    Status st = push_devices_->set(id, std::move(list));
    if (!st.is_ok()) return st;
    const auto* now = push_devices_->devices_of(id);
    *result = json{{"user", id}, {"devices", now != nullptr ? *now : std::vector<std::string>()}};
    return Status::ok();
  }
  if (op == "push.done") {
    const auto upto = doc.find("upto");
    if (upto == doc.end() || !upto->is_string() ||
        !is_valid_message_id(upto->get_ref<const std::string&>())) {
      return invalid_argument("upto must be a message id");
    }
    size_t deleted = 0;
    Status st = archive_.delete_push_records(upto->get<std::string>(), &deleted);
    if (!st.is_ok()) return st;
    *result = json{{"deleted", deleted}};
    return Status::ok();
  }
  return invalid_argument("unknown op: " + op);
}

void Router::on_control(const DeviceSession& sender, std::string_view payload) {
  auto doc = parse_limited(payload, 1024 * 1024);
  std::string req;
  if (!doc.is_discarded() && doc.is_object() && doc.contains("req") && doc["req"].is_string()) {
    req = doc["req"].get<std::string>();
  }
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("op") || !doc["op"].is_string()) {
    reply(sender, req, invalid_argument("control request must be {\"op\":...,\"req\":...}"));
    return;
  }
  // The plugin passes only service-role requests (plugin.cpp on_control);
  // checked again here so that no caller of the router can skip it.
  if (!sender.service) {
    return reply(sender, req, permission_denied("control ops are for the service role"));
  }
  const auto op = doc["op"].get<std::string>();
  auto user_arg = [&](const char* key, std::string* user) {
    if (!doc.contains(key) || !doc[key].is_string() ||
        !is_valid_user_id(doc[key].get_ref<const std::string&>())) {
      return false;
    }
    *user = doc[key].get<std::string>();
    return true;
  };
  std::string user, peer;
  if (op == "user.add") {
    if (!user_arg("user", &user)) return reply(sender, req, invalid_argument("bad user"));
    // "origin": "local" (default) or "external" (docs/oidc.md).
    const auto origin = doc.find("origin");
    const bool external = origin != doc.end() && *origin == "external";
    if (origin != doc.end() && !external && *origin != "local") {
      return reply(sender, req, invalid_argument("origin must be \"local\" or \"external\""));
    }
    // "sub": the provider's subject an external account is bound to; absent
    // for a CHAT_ADMINS account nobody signed in to yet.
    std::string sub;
    if (const auto it = doc.find("sub"); it != doc.end()) {
      if (!external || !it->is_string() ||
          !oidc::is_valid_subject(it->get_ref<const std::string&>())) {
        return reply(sender, req,
                     invalid_argument("sub must be 1 to 255 bytes without NUL, with origin "
                                      "external"));
      }
      sub = it->get<std::string>();
    }
    if (origins_ != nullptr) return reply(sender, req, origins_->add(user, external, sub));
    return reply(sender, req, archive_.add_user(user));
  }
  if (op == "user.remove") {
    if (!user_arg("user", &user)) return reply(sender, req, invalid_argument("bad user"));
    Status st = archive_.remove_user(user);
    if (st.is_ok() && origins_ != nullptr) st = origins_->removed(user);
    // A removed user's devices get no more pushes.
    if (st.is_ok() && push_devices_ != nullptr) st = push_devices_->set(user, {});
    if (st.is_ok()) {
      directory_.forget_user(user);
      port_.kick_user(user);
    }
    return reply(sender, req, st);
  }
  if (op == "block.set") {
    if (!user_arg("user", &user) || !user_arg("peer", &peer) || user == peer ||
        !doc.contains("blocked") || !doc["blocked"].is_boolean()) {
      return reply(sender, req,
                   invalid_argument("block.set needs user, peer (another user), blocked"));
    }
    bool on = doc["blocked"].get<bool>();
    Status st = archive_.set_block(user, peer, on);
    if (st.is_ok()) directory_.set_block(user, peer, on);
    return reply(sender, req, st);
  }
  if (op.rfind("group.", 0) == 0) {
    json result;
    Status st = control_group(op, doc, &result);
    return reply(sender, req, st, result);
  }
  if (op == "user.ban" || op == "user.unban" || op == "token.revoke" ||
      op.rfind("client.", 0) == 0) {
    json result;
    Status st = control_admin(op, doc, &result);
    return reply(sender, req, st, result);
  }
  if (op.rfind("push.", 0) == 0) {
    json result;
    Status st = control_push(op, doc, &result);
    return reply(sender, req, st, result);
  }
  if (op == "archive.checkpoint") {
    json result;
    Status st = control_checkpoint(doc, &result);
    return reply(sender, req, st, result);
  }
  if (op == "keys.changed") {
    json result;
    Status st = control_keys(doc, &result);
    return reply(sender, req, st, result);
  }
  if (op == "ping") return reply(sender, req, Status::ok());
  reply(sender, req, invalid_argument("unknown op: " + op));
}

}  // namespace chat::broker
