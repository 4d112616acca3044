#include "chatctl/output.h"

#include <ctime>

#include "chatctl/json_access.h"
#include "chatctl/media.h"

namespace chat::tools {
namespace {

constexpr size_t kMaxErrorSnippet = 200;

void append_hex_escape(std::string& out, const char* prefix, uint32_t value, int digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += prefix;
  for (int i = digits - 1; i >= 0; --i) out.push_back(kHex[(value >> (4 * i)) & 0xF]);
}

// Length of the UTF-8 sequence starting at s[i] and its code point; 0 when invalid.
size_t decode_utf8(std::string_view s, size_t i, uint32_t* cp) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  size_t len;
  uint32_t value;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    value = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    value = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    value = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    value = (value << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (value < kMin[len] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return len;
}

bool is_bidi_control(uint32_t cp) {
  return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E ||
         cp == 0x200F || cp == 0x061C;
}

std::string stamp(int64_t ts_ms, bool with_date) {
  return "[" + format_clock(ts_ms, with_date) + "] ";
}

std::string reason_phrase(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not found";
    case 409:
      return "conflict";
    case 413:
      return "payload too large";
    case 415:
      return "unsupported media type";
    case 429:
      return "too many requests";
    case 500:
      return "internal server error";
    case 502:
      return "bad gateway";
    case 503:
      return "service unavailable";
    case 504:
      return "gateway timeout";
    default:
      return "";
  }
}

}  // namespace

std::string format_clock(int64_t ts_ms, bool with_date) {
  std::time_t seconds = static_cast<std::time_t>(ts_ms >= 0 ? ts_ms / 1000 : 0);
  std::tm local{};
  if (::localtime_r(&seconds, &local) == nullptr)
    return with_date ? "----------  --:--:--" : "--:--:--";
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, with_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &local);
  return std::string(buf, n);
}

std::string sanitize_for_terminal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    size_t len = decode_utf8(text, i, &cp);
    if (len == 0) {
      append_hex_escape(out, "\\x", static_cast<unsigned char>(text[i]), 2);
      ++i;
      continue;
    }
    if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp < 0x20 || cp == 0x7F) {
      append_hex_escape(out, "\\x", cp, 2);
    } else if ((cp >= 0x80 && cp <= 0x9F) || is_bidi_control(cp)) {
      append_hex_escape(out, "\\u", cp, 4);
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string format_body(std::string_view type, const nlohmann::json& body) {
  std::string shown;
  if (type == "e2e") {
    shown = "(encrypted)";
  } else if (body.is_string()) {
    shown = body.get<std::string>();
  } else if (type == "media" && body.is_object() && json_field(body, "media").is_string()) {
    // [media] image/jpeg 1.2 MiB "caption" (chatctl fetch <id>)
    const std::string content_type = json_string(body, "content_type");
    shown = content_type.empty() ? std::string("file") : content_type;
    if (json_field(body, "size").is_number_unsigned()) {
      shown += " " + human_size(json_field(body, "size").get<uint64_t>());
    }
    if (!json_string(body, "caption").empty()) {
      shown += " " + dump_json(json_string(body, "caption"));
    }
    shown += " (chatctl fetch " + json_string(body, "media") + ")";
  } else if (type == "media" && body.is_object() && json_field(body, "url").is_string()) {
    shown = json_string(body, "url");
  } else {
    shown = dump_json(body);
  }
  shown = sanitize_for_terminal(shown);
  if (type == "text" || type.empty()) return shown;
  return "[" + sanitize_for_terminal(type) + "] " + shown;
}

std::string format_message_line(const nlohmann::json& envelope, bool with_date) {
  std::string conv = json_string(envelope, "conv");
  std::string line = stamp(json_int(envelope, "ts"), with_date);
  if (conv.rfind("g:", 0) == 0) line += "[" + sanitize_for_terminal(conv) + "] ";
  line += sanitize_for_terminal(json_string(envelope, "from"));
  line += " -> ";
  line += sanitize_for_terminal(json_string(envelope, "to"));
  line += ": ";
  line += format_body(json_string(envelope, "type"), json_field(envelope, "body"));
  return line;
}

std::string format_receipt_line(const nlohmann::json& receipt, int64_t now_ms) {
  int64_t ts = json_int(receipt, "ts", now_ms);
  std::string status = json_string(receipt, "status");
  const auto& ids = json_field(receipt, "ids");
  size_t count = ids.is_array() ? ids.size() : 0;
  std::string line = stamp(ts, false) + sanitize_for_terminal(json_string(receipt, "from")) + " ";
  line += status == "read"        ? "read"
          : status == "delivered" ? "received"
                                  : sanitize_for_terminal(status);
  line += " " + std::to_string(count) + (count == 1 ? " message" : " messages");
  std::string conv = json_string(receipt, "conv");
  if (!conv.empty()) line += " in " + sanitize_for_terminal(conv);
  return line;
}

std::string format_typing_line(const nlohmann::json& typing, int64_t now_ms) {
  if (json_string(typing, "state") != "composing") return "";
  std::string line = stamp(now_ms, false) + sanitize_for_terminal(json_string(typing, "from")) +
                     " is typing\u2026";
  std::string conv = json_string(typing, "conv");
  if (conv.rfind("g:", 0) == 0) line += " in " + sanitize_for_terminal(conv);
  return line;
}

namespace {

std::string group_event_text(const nlohmann::json& event) {
  std::string action = json_string(event, "action");
  std::string user = sanitize_for_terminal(json_string(event, "user"));
  std::string by = sanitize_for_terminal(json_string(event, "by"));
  std::string gid = json_string(event, "group");
  std::string name = sanitize_for_terminal(json_string(event, "name"));
  if (name.empty()) name = gid.empty() ? "a group" : "g:" + sanitize_for_terminal(gid);
  std::string text;
  if (action == "created") {
    text = (by.empty() ? user : by) + " created " + name;
  } else if (action == "member_added") {
    text = by + " added " + user + " to " + name;
  } else if (action == "member_removed") {
    text = (by.empty() || by == user) ? user + " left " + name
                                      : by + " removed " + user + " from " + name;
  } else if (action == "admin_added") {
    text = (by.empty() || by == user) ? user + " is now an admin of " + name
                                      : by + " made " + user + " an admin of " + name;
  } else {
    return "";
  }
  if (!gid.empty()) text += " (g:" + sanitize_for_terminal(gid) + ")";
  return text;
}

}  // namespace

std::string format_event_line(const nlohmann::json& event, int64_t now_ms) {
  std::string type = json_string(event, "type");
  int64_t ts = json_int(event, "ts", now_ms);
  if (type == "error") {
    std::string line =
        stamp(ts, false) + "! error " + sanitize_for_terminal(json_string(event, "code"));
    std::string reason = json_string(event, "reason");
    if (!reason.empty()) line += ": " + sanitize_for_terminal(reason);
    std::string cid = json_string(event, "cid");
    if (!cid.empty()) line += " (cid " + sanitize_for_terminal(cid) + ")";
    return line;
  }
  if (type == "group") {
    std::string text = group_event_text(event);
    if (!text.empty()) return stamp(ts, false) + text;
  }
  nlohmann::json rest = event.is_object() ? event : nlohmann::json::object();
  rest.erase("v");
  rest.erase("type");
  std::string line =
      stamp(ts, false) + "event " + (type.empty() ? "?" : sanitize_for_terminal(type));
  if (!rest.empty()) line += ": " + sanitize_for_terminal(dump_json(rest));
  return line;
}

std::string format_presence_line(std::string_view user, const nlohmann::json& presence,
                                 int64_t now_ms) {
  std::string status = json_string(presence, "status");
  std::string line = stamp(now_ms, false) + sanitize_for_terminal(user);
  if (status == "online") return line + " is online";
  if (status != "offline") return line + " is " + sanitize_for_terminal(status);
  int64_t ts = json_int(presence, "ts", 0);
  if (ts <= 0) return line + " is offline";
  std::string seen = format_clock(ts, true);  // "YYYY-MM-DD HH:MM:SS"
  std::string today = format_clock(now_ms, true);
  seen.resize(seen.size() - 3);  // drop ":SS"
  if (seen.compare(0, 10, today, 0, 10) == 0) seen.erase(0, 11);
  return line + " was last seen " + seen;
}

namespace {

size_t json_array_size(const nlohmann::json& j, std::string_view key) {
  const auto& v = json_field(j, key);
  return v.is_array() ? v.size() : 0;
}

bool json_array_has(const nlohmann::json& j, std::string_view key, std::string_view value) {
  const auto& v = json_field(j, key);
  if (!v.is_array()) return false;
  for (const auto& item : v) {
    if (item.is_string() && item.get_ref<const std::string&>() == value) return true;
  }
  return false;
}

}  // namespace

std::string format_group_line(const nlohmann::json& group, std::string_view me) {
  std::string line = "g:" + sanitize_for_terminal(json_string(group, "id"));
  line += "  " + sanitize_for_terminal(json_string(group, "name"));
  size_t members = json_array_size(group, "members");
  line += "  (" + std::to_string(members) + (members == 1 ? " member" : " members");
  if (!me.empty() && json_array_has(group, "admins", me)) line += ", admin";
  return line + ")";
}

std::string format_group_details(const nlohmann::json& group, std::string_view me) {
  std::string out = format_group_line(group, me);
  const auto& members = json_field(group, "members");
  if (!members.is_array()) return out;
  for (const auto& m : members) {
    if (!m.is_string()) continue;
    const std::string& user = m.get_ref<const std::string&>();
    out += "\n  " + sanitize_for_terminal(user);
    if (json_array_has(group, "admins", user)) out += " (admin)";
  }
  return out;
}

std::string format_conversation_line(const nlohmann::json& conversation) {
  std::string line = sanitize_for_terminal(json_string(conversation, "conv"));
  line += "  " + std::to_string(json_int(conversation, "unread")) + " unread";
  const auto& last = json_field(conversation, "last");
  if (last.is_object()) line += "  " + format_message_line(last, /*with_date=*/true);
  return line;
}

std::string format_http_error(int status, std::string_view body) {
  std::string where = "HTTP " + std::to_string(status);
  auto j = parse_json(body);
  std::string error = json_string(j, "error");
  std::string message = json_string(j, "message");
  if (!error.empty() || !message.empty()) {
    if (message.empty()) return sanitize_for_terminal(error) + " (" + where + ")";
    if (error.empty()) return sanitize_for_terminal(message) + " (" + where + ")";
    return sanitize_for_terminal(message) + " (" + sanitize_for_terminal(error) + ", " + where +
           ")";
  }
  std::string phrase = reason_phrase(status);
  std::string out = phrase.empty() ? where : where + " " + phrase;
  std::string_view snippet = body.substr(0, kMaxErrorSnippet);
  while (!snippet.empty() && (snippet.back() == '\n' || snippet.back() == ' '))
    snippet.remove_suffix(1);
  if (!snippet.empty()) {
    out += ": " + sanitize_for_terminal(snippet);
    if (body.size() > kMaxErrorSnippet) out += "...";
  }
  return out;
}

}  // namespace chat::tools
