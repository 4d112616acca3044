#include "chat/api/request_parsing.h"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "chat/common/strict_json.h"

namespace chat::api {
namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> form_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

Result<std::map<std::string, std::string>> parse_form(std::string_view body) {
  std::map<std::string, std::string> out;
  while (!body.empty()) {
    auto amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    auto name = form_decode(pair.substr(0, eq));
    auto value =
        form_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!name || !value) return invalid_argument("malformed form encoding");
    if (value->empty()) continue;
    if (!out.emplace(std::move(*name), std::move(*value)).second) {
      return invalid_argument("a parameter appears more than once");
    }
  }
  return out;
}

Result<size_t> parse_limit_text(std::optional<std::string_view> text, size_t fallback, size_t max) {
  if (!text) return fallback;
  if (text->empty()) return invalid_argument("limit must be a positive integer");
  for (char c : *text) {
    if (c < '0' || c > '9') return invalid_argument("limit must be a positive integer");
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec == std::errc::result_out_of_range) return max;
  if (ec != std::errc() || end != text->data() + text->size()) {
    return invalid_argument("limit must be a positive integer");
  }
  if (v == 0) return invalid_argument("limit must be at least 1");
  return static_cast<size_t>(std::min<uint64_t>(v, max));
}

std::string bearer_token(std::string_view h) {
  constexpr std::string_view kScheme = "bearer ";
  if (h.size() <= kScheme.size()) return "";
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(h[i])) != kScheme[i]) return "";
  }
  size_t start = h.find_first_not_of(' ', kScheme.size());
  return start == std::string_view::npos ? std::string() : std::string(h.substr(start));
}

bool parse_u64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool content_length_over(std::string_view text, size_t max) {
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  return ec != std::errc() || end != text.data() + text.size() || n > max;
}

RangeAnswer resolve_range(std::string_view header, uint64_t size, ByteRange* out) {
  constexpr std::string_view kUnit = "bytes=";
  if (header.substr(0, kUnit.size()) != kUnit) return RangeAnswer::kUnsatisfiable;
  std::string_view spec = header.substr(kUnit.size());
  while (!spec.empty() && spec.front() == ' ') spec.remove_prefix(1);
  while (!spec.empty() && spec.back() == ' ') spec.remove_suffix(1);
  if (spec.find(',') != std::string_view::npos) return RangeAnswer::kUnsatisfiable;
  const size_t dash = spec.find('-');
  if (dash == std::string_view::npos || size == 0) return RangeAnswer::kUnsatisfiable;
  std::string_view a = spec.substr(0, dash), b = spec.substr(dash + 1);
  uint64_t first = 0, last = 0;
  if (a.empty()) {
    if (!parse_u64(b, &last) || last == 0) return RangeAnswer::kUnsatisfiable;
    out->first = last >= size ? 0 : size - last;
    out->last = size - 1;
  } else {
    if (!parse_u64(a, &first) || first >= size) return RangeAnswer::kUnsatisfiable;
    if (b.empty()) {
      last = size - 1;
    } else if (!parse_u64(b, &last) || last < first) {
      return RangeAnswer::kUnsatisfiable;
    }
    out->first = first;
    out->last = std::min(last, size - 1);
  }
  return out->first == 0 && out->last == size - 1 ? RangeAnswer::kWhole : RangeAnswer::kPartial;
}

bool none_match(std::string_view header, std::string_view etag) {
  if (header.empty()) return false;
  std::string_view rest = header;
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item == "*") return true;
    if (item.substr(0, 2) == "W/") item.remove_prefix(2);
    if (item == etag) return true;
  }
  return false;
}

std::string error_body(std::string_view code, std::string_view message) {
  return nlohmann::json{{"error", code}, {"message", message}}.dump(
      -1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<nlohmann::json> parse_json_object_body(std::string_view body) {
  JsonRefusal why = JsonRefusal::kNone;
  nlohmann::json doc = parse_untrusted_json(body, kMaxBodyJsonDepth, &why);
  if (why == JsonRefusal::kTooDeep || why == JsonRefusal::kDuplicateKey) {
    return invalid_argument("the body must be a JSON object: " +
                            json_refusal_reason(why, kMaxBodyJsonDepth));
  }
  if (doc.is_discarded() || !doc.is_object()) {
    return invalid_argument("the body must be a JSON object");
  }
  return doc;
}

}  // namespace chat::api
