// Message payloads as clients send them, and envelopes as the platform
// delivers them (CONTRACT §3). Pure, allocation-light, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

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
// `body` present. Returns false and fills `refusal` otherwise.
bool parse_client_message(std::string_view payload, size_t max_payload, ClientMessage* out,
                          Refusal* refusal);

bool is_valid_message_type(std::string_view type);

// A `media` message's body (docs/media.md): an object whose "media" is the id
// POST /v1/media returned ([A-Za-z0-9_-]{1,64}); "content_type", "sha256",
// "url", "caption" strings, "size" a non-negative integer and "thumbnail" a
// boolean or a string when present. Other members are allowed. Returns "" when
// valid, or why not.
std::string check_media_body(const nlohmann::json& body);

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

// {"v":1,"type":"error","cid":...,"code":...,"reason":...} (cid omitted when empty).
std::string make_error_event(std::string_view cid, RefusalCode code, std::string_view reason);

}  // namespace chat
