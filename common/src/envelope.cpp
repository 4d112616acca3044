#include "chat/common/envelope.h"

#include "chat/common/strict_json.h"

namespace chat {

const char* refusal_code_name(RefusalCode code) {
  switch (code) {
    case RefusalCode::kNotAuthorized:
      return "not_authorized";
    case RefusalCode::kInvalidPayload:
      return "invalid_payload";
    case RefusalCode::kTooLarge:
      return "too_large";
    case RefusalCode::kRateLimited:
      return "rate_limited";
    case RefusalCode::kUnknownPeer:
      return "unknown_peer";
  }
  return "invalid_payload";
}

bool is_valid_message_type(std::string_view type) {
  static constexpr std::string_view kTypes[] = {"text",   "media",    "e2e",   "edit",
                                                "delete", "reaction", "system"};
  for (auto t : kTypes) {
    if (type == t) return true;
  }
  // Client extensions: "x-" plus 1-62 characters of [a-z0-9._-].
  if (type.size() > 2 && type.size() <= 64 && type.substr(0, 2) == "x-") {
    for (char c : type.substr(2)) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
      if (!ok) return false;
    }
    return true;
  }
  return false;
}

bool json_depth_within(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

namespace {

// Code points in valid UTF-8 (the parser has validated it), or -1 when the
// string holds a control character (NUL included).
int cid_length(const std::string& s) {
  int n = 0;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return -1;
    if ((c & 0xc0) != 0x80) ++n;
  }
  return n;
}

}  // namespace

bool parse_client_message(std::string_view payload, size_t max_payload, ClientMessage* out,
                          Refusal* refusal) {
  auto refuse = [&](RefusalCode code, std::string reason) {
    if (refusal) *refusal = Refusal{code, std::move(reason)};
    return false;
  };
  if (payload.size() > max_payload) {
    return refuse(RefusalCode::kTooLarge, "payload is " + std::to_string(payload.size()) +
                                              " bytes, limit " + std::to_string(max_payload));
  }
  if (!json_depth_within(payload, kMaxJsonDepth)) {
    return refuse(RefusalCode::kInvalidPayload,
                  "payload nests deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  // nlohmann's lexer rejects ill-formed UTF-8 inside strings; no exceptions.
  // A repeated member name is refused (docs/protocol.md, "Hostile input").
  JsonRefusal json_refusal = JsonRefusal::kNone;
  auto doc = parse_untrusted_json(payload, kMaxJsonDepth, &json_refusal);
  if (json_refusal == JsonRefusal::kDuplicateKey)
    return refuse(RefusalCode::kInvalidPayload, "payload repeats a member name in one object");
  if (doc.is_discarded())
    return refuse(RefusalCode::kInvalidPayload, "payload is not valid UTF-8 JSON");
  if (!doc.is_object())
    return refuse(RefusalCode::kInvalidPayload, "payload must be a JSON object");

  auto cid = doc.find("cid");
  if (cid == doc.end() || !cid->is_string()) {
    return refuse(RefusalCode::kInvalidPayload, "cid must be a string");
  }
  const auto& cid_s = cid->get_ref<const std::string&>();
  int cid_len = cid_length(cid_s);
  if (cid_len < 1 || cid_len > 64) {
    return refuse(RefusalCode::kInvalidPayload,
                  "cid must be 1-64 characters, no control characters");
  }
  auto type = doc.find("type");
  if (type == doc.end() || !type->is_string() ||
      !is_valid_message_type(type->get_ref<const std::string&>())) {
    return refuse(RefusalCode::kInvalidPayload,
                  "type must be text, media, e2e, edit, delete, reaction, system or x-...");
  }
  auto body = doc.find("body");
  if (body == doc.end()) return refuse(RefusalCode::kInvalidPayload, "body is missing");
  if (type->get_ref<const std::string&>() == "media") {
    if (std::string why = check_media_body(*body); !why.empty()) {
      return refuse(RefusalCode::kInvalidPayload, why);
    }
  }

  if (out) {
    out->cid = cid_s;
    out->type = type->get<std::string>();
    out->body = std::move(*body);
  }
  return true;
}

std::string check_media_body(const nlohmann::json& body) {
  if (!body.is_object()) return "a media message's body must be an object";
  auto media = body.find("media");
  if (media == body.end() || !media->is_string()) {
    return "a media message's body.media must be the media id string";
  }
  const auto& id = media->get_ref<const std::string&>();
  bool id_ok = !id.empty() && id.size() <= 64;
  for (char c : id) {
    id_ok = id_ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-');
  }
  if (!id_ok) return "body.media must be a media id ([A-Za-z0-9_-]{1,64})";
  for (const char* name : {"content_type", "sha256", "url", "caption"}) {
    auto it = body.find(name);
    if (it != body.end() && !it->is_string())
      return std::string("body.") + name + " must be a string";
  }
  if (auto size = body.find("size"); size != body.end() && !size->is_number_unsigned()) {
    return "body.size must be a non-negative integer";
  }
  if (auto thumb = body.find("thumbnail");
      thumb != body.end() && !thumb->is_boolean() && !thumb->is_string()) {
    return "body.thumbnail must be a boolean or a URL string";
  }
  return "";
}

std::string media_reference(const ClientMessage& message) {
  if (message.type != "media" || !message.body.is_object()) return "";
  auto media = message.body.find("media");
  if (media == message.body.end() || !media->is_string()) return "";
  return media->get<std::string>();
}

std::string extract_cid(std::string_view payload) {
  if (!json_depth_within(payload, kMaxJsonDepth)) return "";
  auto doc = nlohmann::json::parse(payload.begin(), payload.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return "";
  auto cid = doc.find("cid");
  if (cid == doc.end() || !cid->is_string()) return "";
  const auto& s = cid->get_ref<const std::string&>();
  int len = cid_length(s);
  return len >= 1 && len <= 64 ? s : "";
}

namespace {

// `s` as a JSON string, escaped exactly as nlohmann's dump() does (short
// escapes where JSON has them, other control characters as \u00xx, UTF-8 as is).
void append_json_string(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t plain = 0;  // start of the run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
    }
  }
  out->append(s.data() + plain, s.size() - plain);
  out->push_back('"');
}

}  // namespace

std::string make_envelope(const EnvelopeFields& f, const nlohmann::json& body) {
  // Written directly rather than through an ordered_json: this runs for every
  // message on the broker's only thread, and the output is the same bytes.
  std::string out;
  out.reserve(160 + f.id.size() + f.conv.size() + f.from.size() + f.dev.size() + f.to.size() +
              f.cid.size() + f.type.size());
  out.append("{\"v\":1,\"id\":");
  append_json_string(&out, f.id);
  out.append(",\"ts\":");
  out.append(std::to_string(f.ts));
  out.append(",\"conv\":");
  append_json_string(&out, f.conv);
  out.append(",\"from\":");
  append_json_string(&out, f.from);
  out.append(",\"dev\":");
  append_json_string(&out, f.dev);
  out.append(",\"to\":");
  append_json_string(&out, f.to);
  out.append(",\"cid\":");
  append_json_string(&out, f.cid);
  out.append(",\"type\":");
  append_json_string(&out, f.type);
  out.append(",\"body\":");
  out.append(body.dump());
  out.push_back('}');
  return out;
}

std::string make_error_event(std::string_view cid, RefusalCode code, std::string_view reason) {
  nlohmann::ordered_json ev;
  ev["v"] = 1;
  ev["type"] = "error";
  if (!cid.empty()) ev["cid"] = std::string(cid);
  ev["code"] = refusal_code_name(code);
  ev["reason"] = std::string(reason);
  return ev.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace chat
