// Fuzzes chat-api's parsing of client text (api/request_parsing.h): form
// bodies (the OAuth token endpoint), `limit`, bearer credentials,
// Content-Length, Range, If-None-Match, JSON bodies, error bodies, and the
// path/cursor ids the routes check (conversation ids, message ids).
//
// Invariants: no exception escapes; form encoding round-trips through
// url_encode; an accepted limit is within [1, max] and equals the number
// given when that fits; a resolved range lies inside the content; an accepted
// JSON body is an object that serialises and parses back equal; every error
// body is JSON whatever bytes the message quotes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "chat/api/request_parsing.h"
#include "chat/common/ids.h"
#include "chat/common/topics.h"
#include "chat/common/url.h"
#include "fuzz_check.h"

using nlohmann::json;
namespace api = chat::api;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 8) {
    case 0: {  // application/x-www-form-urlencoded (POST /v1/oauth/token)
      auto form = api::parse_form(text);
      if (form) {
        std::string again;
        for (const auto& [name, value] : *form) {
          FUZZ_CHECK(!value.empty());
          again +=
              (again.empty() ? "" : "&") + chat::url_encode(name) + "=" + chat::url_encode(value);
        }
        auto back = api::parse_form(again);
        FUZZ_CHECK(back.is_ok() && *back == *form);
      }
      auto decoded = api::form_decode(chat::url_encode(text));
      FUZZ_CHECK(decoded && *decoded == text);
      break;
    }
    case 1: {  // ?limit=
      const size_t max = 500;
      auto limit = api::parse_limit_text(text, 50, max);
      if (limit) {
        FUZZ_CHECK(*limit >= 1 && *limit <= max);
        if (text.size() <= 3)
          FUZZ_CHECK(*limit == std::min<size_t>(std::stoul(std::string(text)), max));
      }
      auto absent = api::parse_limit_text(std::nullopt, 50, max);
      FUZZ_CHECK(absent.is_ok() && *absent == 50);
      break;
    }
    case 2: {  // Authorization: Bearer <token>
      std::string token = api::bearer_token(text);
      if (!token.empty()) {
        FUZZ_CHECK(text.size() >= token.size() + 7);
        FUZZ_CHECK(text.substr(text.size() - token.size()) == token);
        FUZZ_CHECK(token.front() != ' ');
      }
      break;
    }
    case 3: {  // Range against a size taken from the input
      if (text.size() < 8) break;
      uint64_t content = 0;
      for (int i = 0; i < 8; ++i) content = content << 8 | static_cast<uint8_t>(text[i]);
      if (text[0] & 1) content %= 4096;  // small sizes are the interesting ones
      api::ByteRange r;
      switch (api::resolve_range(text.substr(8), content, &r)) {
        case api::RangeAnswer::kWhole:
          FUZZ_CHECK(r.first == 0 && r.last + 1 == content);
          break;
        case api::RangeAnswer::kPartial:
          FUZZ_CHECK(r.first <= r.last && r.last < content);
          FUZZ_CHECK(!(r.first == 0 && r.last + 1 == content));
          break;
        case api::RangeAnswer::kUnsatisfiable:
          break;
      }
      break;
    }
    case 4: {  // If-None-Match, Content-Length
      auto nl = text.find('\n');
      std::string_view header = text.substr(0, nl);
      if (nl != std::string_view::npos) (void)api::none_match(header, text.substr(nl + 1));
      // A match names the tag (or "*") somewhere in the list.
      if (api::none_match(header, "\"abc\"")) {
        FUZZ_CHECK(header.find("\"abc\"") != std::string_view::npos ||
                   header.find('*') != std::string_view::npos);
      }
      if (header == "*" || header == "\"abc\"" || header == "W/\"abc\"") {
        FUZZ_CHECK(api::none_match(header, "\"abc\""));
      }
      uint64_t n = 0;
      if (api::parse_u64(header, &n)) {
        FUZZ_CHECK(std::to_string(n).size() <= header.size());
        FUZZ_CHECK(!api::content_length_over(header, n));
        if (n > 0) FUZZ_CHECK(api::content_length_over(header, n - 1));
      }
      break;
    }
    case 5: {  // JSON request bodies
      auto body = api::parse_json_object_body(text);
      if (body) {
        FUZZ_CHECK(body->is_object());
        auto back = api::parse_json_object_body(body->dump());
        FUZZ_CHECK(back.is_ok() && *back == *body);
      } else {
        FUZZ_CHECK(body.status().code() == chat::StatusCode::kInvalidArgument);
      }
      break;
    }
    case 6: {  // error bodies quoting client bytes
      json e = json::parse(api::error_body("invalid_argument", text), nullptr, false);
      FUZZ_CHECK(e.is_object() && e["error"] == "invalid_argument" && e["message"].is_string());
      break;
    }
    case 7: {  // path and cursor ids
      auto conv = chat::topics::parse_conversation(text);
      if (conv.kind == chat::topics::ConvKind::kDirect) {
        FUZZ_CHECK(chat::topics::dm_conversation(conv.a, conv.b) == text);
      } else if (conv.kind == chat::topics::ConvKind::kGroup) {
        FUZZ_CHECK(chat::topics::group_conversation(conv.gid) == text);
      }
      uint64_t v = 0;
      FUZZ_CHECK(chat::is_valid_message_id(text) == chat::IdGenerator::parse(text, &v));
      if (chat::is_valid_message_id(text)) FUZZ_CHECK(chat::IdGenerator::format(v) == text);
      break;
    }
  }
  return 0;
}
