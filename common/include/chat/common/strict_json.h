// JSON from untrusted peers (MQTT payloads, REST bodies): bounded nesting and
// no repeated member names. Pure; never throws.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace chat {

// Why parse_untrusted_json refused a document.
enum class JsonRefusal { kNone, kTooDeep, kMalformed, kDuplicateKey };

// Parses `text` as one JSON value (UTF-8, RFC 8259). Refuses, with a
// discarded value and *why set:
// - nesting deeper than `max_depth` arrays/objects (checked by a byte scan
//   before parsing, so a hostile document costs no parser recursion), kTooDeep;
// - anything nlohmann's parser refuses (ill-formed UTF-8 included), kMalformed;
// - an object that repeats a member name, at any depth, kDuplicateKey: two
//   components that kept different copies would disagree on what was sent.
nlohmann::json parse_untrusted_json(std::string_view text, int max_depth,
                                    JsonRefusal* why = nullptr);

// A short English reason for a refusal, for error events and 400 bodies.
std::string json_refusal_reason(JsonRefusal why, int max_depth);

}  // namespace chat
