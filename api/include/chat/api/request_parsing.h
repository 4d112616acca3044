// The pieces of chat-api that read client text from an HTTP request: form
// bodies, query numbers, bearer credentials, byte ranges, ETag lists, JSON
// bodies. Pure functions over strings, so the route handlers stay thin and
// fuzz/http_parsing_fuzz.cpp can drive them directly. Never throw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "chat/common/status.h"

namespace chat::api {

// application/x-www-form-urlencoded decoding of one name or value: '+' is a
// space, %XX a byte; a '%' without two hex digits is malformed (nullopt).
std::optional<std::string> form_decode(std::string_view s);

// RFC 6749 §3.2: parameters sent without a value are treated as omitted, and
// a parameter must not appear more than once (invalid argument).
Result<std::map<std::string, std::string>> parse_form(std::string_view body);

// The `limit` query parameter (`text` nullopt when absent): absent -> `fallback`;
// digits only, at least 1; larger values (any number of digits) clamp to `max`.
Result<size_t> parse_limit_text(std::optional<std::string_view> text, size_t fallback, size_t max);

// The token of an `Authorization: Bearer <token>` header value (scheme
// case-insensitive, spaces before the token skipped); "" for anything else.
std::string bearer_token(std::string_view header);

// A decimal Content-Length of at most 19 digits (so it fits in 64 bits).
bool parse_u64(std::string_view s, uint64_t* out);

// Whether a Content-Length header value says more than `max` bytes (a
// malformed one counts as over).
bool content_length_over(std::string_view text, size_t max);

// The single byte range a Range header asks for, resolved against `size`.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
};
enum class RangeAnswer { kWhole, kPartial, kUnsatisfiable };

// RFC 9110 §14.2: one range (first-last, first-, -suffix) of a non-empty
// representation. Several ranges are refused (unsatisfiable): serving them
// (multipart/byteranges, possibly overlapping) costs more than it is worth.
// kPartial and kWhole fill *out with first <= last < size.
RangeAnswer resolve_range(std::string_view header, uint64_t size, ByteRange* out);

// If-None-Match (RFC 9110 §13.1.2, weak comparison): "*" or a list of tags.
bool none_match(std::string_view header, std::string_view etag);

// {"error":code,"message":message} for any bytes: a message quoting client
// input that is not UTF-8 gets U+FFFD in their place (nlohmann's default
// would throw, turning a 400 into a 500).
std::string error_body(std::string_view code, std::string_view message);

// Deepest JSON nesting a REST body may have.
inline constexpr int kMaxBodyJsonDepth = 64;

// A REST request body that must be a JSON object: nested at most
// kMaxBodyJsonDepth deep, no repeated member names (strict_json.h).
// Invalid argument, with a reason fit for the 400 body, otherwise.
Result<nlohmann::json> parse_json_object_body(std::string_view body);

}  // namespace chat::api
