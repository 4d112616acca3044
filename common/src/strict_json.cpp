#include "chat/common/strict_json.h"

#include <set>
#include <vector>

#include "chat/common/envelope.h"

namespace chat {

nlohmann::json parse_untrusted_json(std::string_view text, int max_depth, JsonRefusal* why) {
  using json = nlohmann::json;
  auto refuse = [why](JsonRefusal r) {
    if (why) *why = r;
    return json(json::value_t::discarded);
  };
  if (why) *why = JsonRefusal::kNone;
  if (!json_depth_within(text, max_depth)) return refuse(JsonRefusal::kTooDeep);
  // One set of member names per open object; the scan above bounds the stack.
  std::vector<std::set<std::string, std::less<>>> open;
  bool duplicate = false;
  json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.empty() && parsed.is_string() &&
            !open.back().insert(parsed.get_ref<const std::string&>()).second) {
          duplicate = true;
        }
        break;
      default:
        break;
    }
    return true;
  };
  json doc = json::parse(text.begin(), text.end(), on_event, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return refuse(JsonRefusal::kMalformed);
  if (duplicate) return refuse(JsonRefusal::kDuplicateKey);
  return doc;
}

std::string json_refusal_reason(JsonRefusal why, int max_depth) {
  switch (why) {
    case JsonRefusal::kNone:
      return "";
    case JsonRefusal::kTooDeep:
      return "JSON nests deeper than " + std::to_string(max_depth) + " levels";
    case JsonRefusal::kMalformed:
      return "not valid UTF-8 JSON";
    case JsonRefusal::kDuplicateKey:
      return "JSON repeats a member name in one object";
  }
  return "not valid JSON";
}

}  // namespace chat
