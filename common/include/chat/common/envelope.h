// Message payloads as clients send them, and envelopes as the platform
// delivers them (CONTRACT §3). Pure, allocation-light, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace chat {

// Why a publish is refused; the names are the contract's error codes.
enum class RefusalCode { kNotAuthorized, kInvalidPayload, kTooLarge, kRateLimited, kUnknownPeer };
const char* refusal_code_name(RefusalCode code);

struct Refusal {
  RefusalCode code;
  std::string reason;
};

inline constexpr size_t kDefaultMaxPayload = 64 * 1024;
// Deepest JSON nesting accepted from clients. Parsing, copying and printing
// JSON recurse, so unbounded nesting would let a client exhaust the broker's stack.
inline constexpr int kMaxJsonDepth = 64;

// True when `text` nests arrays/objects at most `max_depth` deep (a byte scan
// that ignores brackets inside strings; it does not validate the JSON).
bool json_depth_within(std::string_view text, int max_depth);

// {"cid":"...","type":"...","body":<any JSON>} as published by a device.
struct ClientMessage {
  std::string cid;
  std::string type;
  nlohmann::json body;
};

// Validates a message payload: at most `max_payload` bytes, UTF-8 JSON object
// nested at most kMaxJsonDepth deep, `cid` a string of 1-64 characters (code
// points) without control characters, `type` one of the contract's types or `x-...`,
// `body` present; a `media` body checked by check_media_body, an `e2e` body in
// the Signal form (is_signal_e2e_body) by check_e2e_body, any other e2e body
// accepted as opaque. Returns false and fills `refusal` otherwise.
bool parse_client_message(std::string_view payload, size_t max_payload, ClientMessage* out,
                          Refusal* refusal);

bool is_valid_message_type(std::string_view type);

// A `media` message's body (docs/media.md): an object whose "media" is the id
// POST /v1/media returned ([A-Za-z0-9_-]{1,64}); "content_type", "sha256",
// "url", "caption" strings, "size" a non-negative integer and "thumbnail" a
// boolean or a string when present. Other members are allowed. Returns "" when
// valid, or why not.
std::string check_media_body(const nlohmann::json& body);

// Most entries in an `e2e` body's "to" (docs/e2e.md).
inline constexpr size_t kMaxE2eRecipients = 1000;

// Whether an `e2e` body is in the Signal form of docs/e2e.md: a JSON object
// with a "to" or a "group" member. Only that form is checked (check_e2e_body,
// the router's participant check) and delivered per user; any other e2e body
// (a string, null, an array, a number, an object with neither member) is an
// opaque body as the contract has always allowed: accepted, archived and
// delivered unchanged.
bool is_signal_e2e_body(const nlohmann::json& body);

// An `e2e` message's body (docs/e2e.md, "e2e messages"): an object holding
// "to" (an object of at most kMaxE2eRecipients entries, each keyed
// "<user>:<device>" with the contract's id syntax and each exactly
// {"type":1|3,"body":<standard base64>}) and/or "group" (standard base64;
// only when `group_topic`, i.e. on g/<gid>), nothing else; an empty "to" only
// beside a "group". Standard base64 here is is_standard_base64 (base64.h).
// Structure only: the ciphertexts stay unread, and whether
// each key's user takes part in the conversation is the router's check.
// Returns "" when valid, or why not.
std::string check_e2e_body(const nlohmann::json& body, bool group_topic);

// The media id a validated message references: body.media of a `media`
// message, "" for every other type.
std::string media_reference(const ClientMessage& message);

// Best effort: the `cid` of a payload that failed validation, for the error
// event ("" when none can be read).
std::string extract_cid(std::string_view payload);

struct EnvelopeFields {
  std::string id;
  int64_t ts = 0;
  std::string conv;
  std::string from;
  std::string dev;
  std::string to;
  std::string cid;
  std::string type;
};

// {"v":1,"id":...,"ts":...,"conv":...,"from":...,"dev":...,"to":...,"cid":...,"type":...,"body":...}
std::string make_envelope(const EnvelopeFields& fields, const nlohmann::json& body);

// Per-user delivery of an `e2e` message (docs/e2e.md): each recipient user
// gets the envelope with body.to cut down to that user's "<user>:<device>"
// entries (an empty object when it has none; body.group kept), while the
// archive keeps the whole body. Built once per message (one pass over "to",
// one small dump per user that has entries); for_user() is then string
// concatenation, so a group message costs no parse or dump per member.
class E2eEnvelopes {
 public:
  // `body` must be in the Signal form and have passed check_e2e_body.
  E2eEnvelopes(const EnvelopeFields& fields, const nlohmann::json& body);
  // From an envelope as archived (a duplicate cid's re-send). nullopt when it
  // is not a well-formed `e2e` envelope in the Signal form (an opaque e2e
  // body included): deliver it unchanged then.
  static std::optional<E2eEnvelopes> from_envelope(std::string_view envelope);

  // Byte for byte make_envelope(fields, body with "to" cut to `user`'s entries).
  std::string for_user(const std::string& user) const;
  // The same bytes without a copy for a user who has no entries (most
  // members of a sender-key group message): they all share one prebuilt
  // envelope. Otherwise built into *scratch, which is returned.
  const std::string& for_user(const std::string& user, std::string* scratch) const;

 private:
  E2eEnvelopes() = default;
  void split(const EnvelopeFields& fields, const nlohmann::json& body);

  // The envelope of a user with entries `to` (dumped; nullptr: none).
  void build(std::string* out, const std::string* to) const;

  std::string head_;   // the envelope up to and including `"body":`
  std::string group_;  // `"group":"..."`, or "" when the body has none
  bool has_to_ = false;
  std::unordered_map<std::string, std::string> to_;  // user -> its entries, dumped
  // The whole envelope of every user without entries.
  std::string no_entries_;
};

// {"v":1,"type":"error","cid":...,"code":...,"reason":...} (cid omitted when empty).
std::string make_error_event(std::string_view cid, RefusalCode code, std::string_view reason);

}  // namespace chat
