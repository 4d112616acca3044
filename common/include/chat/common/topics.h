// The one place topic strings and conversation ids are built and parsed
// (CONTRACT §3). Pure functions; no allocation beyond the returned strings.
#pragma once

#include <string>
#include <string_view>

namespace chat::topics {

inline constexpr std::string_view kControl = "$CONTROL/chat/v1";
inline constexpr std::string_view kControlResponse = "$CONTROL/chat/v1/response";
// The broker plugin's periodic stats snapshot (docs/protocol.md): published
// to subscribers every few seconds; only the service role may subscribe.
inline constexpr std::string_view kControlStats = "$CONTROL/chat/v1/stats";
// Push wake-ups (docs/push.md): the broker publishes {"id":"<message id>"}
// (QoS 0) after archiving a push record; only the service role may subscribe.
inline constexpr std::string_view kControlPush = "$CONTROL/chat/v1/push";
// Mosquitto's own counter of outgoing messages it dropped because a session's
// queue was full (slow or offline consumers; retained, every sys_interval).
// Only the service role may subscribe (chat-api's /metrics).
inline constexpr std::string_view kSysMessagesDropped = "$SYS/broker/publish/messages/dropped";
// Where the router parks publishes it has fully handled (duplicates): a `$`
// topic no client may subscribe to, so Mosquitto acknowledges and drops it.
inline constexpr std::string_view kDiscard = "$chat/discard";

// What a device publishes.
enum class SendKind {
  kInvalid,
  kDirect,
  kGroup,
  kDirectReceipt,
  kGroupReceipt,
  kDirectTyping,
  kGroupTyping
};

struct SendTopic {
  SendKind kind = SendKind::kInvalid;
  std::string target;  // peer user id or group id
};

// What a device publishes to: dm/<peer>, g/<gid>, and their /receipt and
// /typing leaves (`leaf` empty for the message topic itself).
std::string direct(std::string_view peer, std::string_view leaf = {});
std::string group(std::string_view gid, std::string_view leaf = {});
inline constexpr std::string_view kReceipt = "receipt";
inline constexpr std::string_view kTyping = "typing";

// dm/<peer>, g/<gid>, dm/<peer>/receipt, g/<gid>/receipt, dm/<peer>/typing, g/<gid>/typing.
// Anything else (including ids that fail their syntax) is kInvalid.
SendTopic parse_send_topic(std::string_view topic);

// What the platform delivers under u/<user>/.
inline constexpr std::string_view kInboxMsg = "msg";
inline constexpr std::string_view kInboxReceipt = "receipt";
inline constexpr std::string_view kInboxTyping = "typing";
inline constexpr std::string_view kInboxEvent = "event";
std::string inbox(std::string_view user, std::string_view leaf);

std::string presence(std::string_view user);
// True for presence/<valid user id> (no wildcards).
bool parse_presence(std::string_view topic, std::string* user);

// Subscription filters a device of `user` may use: u/<user>/# and u/<user>/<leaf>
// for the four leaves.
bool is_own_inbox_filter(std::string_view filter, std::string_view user);

// Conversation ids: dm:<a>:<b> with a < b (byte order), g:<gid>.
std::string dm_conversation(std::string_view a, std::string_view b);
std::string group_conversation(std::string_view gid);
enum class ConvKind { kInvalid, kDirect, kGroup };
struct Conversation {
  ConvKind kind = ConvKind::kInvalid;
  std::string a, b;  // direct: the two users, a < b
  std::string gid;   // group
};
Conversation parse_conversation(std::string_view conv);

}  // namespace chat::topics
