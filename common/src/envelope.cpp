#include "chat/common/envelope.h"

#include "chat/common/base64.h"
#include "chat/common/ids.h"
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
  } else if (type->get_ref<const std::string&>() == "e2e" && is_signal_e2e_body(*body)) {
    // The Signal form only: any other e2e body is opaque, accepted as the
    // contract has always allowed. The topic is not known here: "group" is
    // allowed, and the router refuses it on dm/ topics (with the participant check).
    if (std::string why = check_e2e_body(*body, true); !why.empty()) {
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

namespace {

// At most `max` bytes of untrusted text for a refusal reason.
std::string quoted_prefix(std::string_view s, size_t max = 64) {
  return "'" + std::string(s.substr(0, max)) + (s.size() > max ? "...'" : "'");
}

}  // namespace

bool is_signal_e2e_body(const nlohmann::json& body) {
  return body.is_object() && (body.contains("to") || body.contains("group"));
}

std::string check_e2e_body(const nlohmann::json& body, bool group_topic) {
  if (!body.is_object()) return R"(an e2e body must be an object {"to":{...},"group":"..."})";
  for (const auto& [name, value] : body.items()) {
    if (name != "to" && name != "group") {
      return "an e2e body has only \"to\" and \"group\", not " + quoted_prefix(name);
    }
  }
  const auto group = body.find("group");
  if (group != body.end()) {
    if (!group_topic) return "body.group (a sender-key message) is for group conversations only";
    if (!group->is_string() || !is_standard_base64(group->get_ref<const std::string&>())) {
      return "body.group must be non-empty standard base64 with padding";
    }
  }
  const auto to = body.find("to");
  if (to == body.end()) {
    if (group == body.end()) return "an e2e body needs \"to\" or \"group\"";
    return "";
  }
  if (!to->is_object()) return "body.to must be an object keyed <user>:<device>";
  if (to->empty() && group == body.end()) return "body.to is empty and there is no body.group";
  if (to->size() > kMaxE2eRecipients) {
    return "body.to has " + std::to_string(to->size()) + " entries, at most " +
           std::to_string(kMaxE2eRecipients);
  }
  for (const auto& [key, entry] : to->items()) {
    if (!split_client_id(key, nullptr, nullptr)) {
      return "body.to key " + quoted_prefix(key) + " is not <user>:<device>";
    }
    const auto type = entry.is_object() ? entry.find("type") : entry.end();
    const auto text = entry.is_object() ? entry.find("body") : entry.end();
    const bool ok = entry.is_object() && entry.size() == 2 && type != entry.end() &&
                    type->is_number_integer() && (*type == 1 || *type == 3) &&
                    text != entry.end() && text->is_string() &&
                    is_standard_base64(text->get_ref<const std::string&>());
    if (!ok) {
      return "body.to[" + quoted_prefix(key) +
             R"(] must be {"type":1|3,"body":"<non-empty standard base64>"})";
    }
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

// Everything of an envelope before the body's JSON.
void append_envelope_head(std::string* out, const EnvelopeFields& f) {
  out->append("{\"v\":1,\"id\":");
  append_json_string(out, f.id);
  out->append(",\"ts\":");
  out->append(std::to_string(f.ts));
  out->append(",\"conv\":");
  append_json_string(out, f.conv);
  out->append(",\"from\":");
  append_json_string(out, f.from);
  out->append(",\"dev\":");
  append_json_string(out, f.dev);
  out->append(",\"to\":");
  append_json_string(out, f.to);
  out->append(",\"cid\":");
  append_json_string(out, f.cid);
  out->append(",\"type\":");
  append_json_string(out, f.type);
  out->append(",\"body\":");
}

}  // namespace

std::string make_envelope(const EnvelopeFields& f, const nlohmann::json& body) {
  // Written directly rather than through an ordered_json: this runs for every
  // message on the broker's only thread, and the output is the same bytes.
  std::string out;
  out.reserve(160 + f.id.size() + f.conv.size() + f.from.size() + f.dev.size() + f.to.size() +
              f.cid.size() + f.type.size());
  append_envelope_head(&out, f);
  out.append(body.dump());
  out.push_back('}');
  return out;
}

E2eEnvelopes::E2eEnvelopes(const EnvelopeFields& fields, const nlohmann::json& body) {
  split(fields, body);
}

void E2eEnvelopes::split(const EnvelopeFields& fields, const nlohmann::json& body) {
  append_envelope_head(&head_, fields);
  // The body as nlohmann dumps an object: members in key order ("group" < "to").
  if (const auto group = body.find("group"); group != body.end()) {
    group_ = "\"group\":" + group->dump();
  }
  const auto to = body.find("to");
  has_to_ = to != body.end() && to->is_object();
  // Shared by every user without entries ("to":{}, or the group alone).
  build(&no_entries_, nullptr);
  if (!has_to_) return;
  std::unordered_map<std::string, nlohmann::json> by_user;
  for (const auto& [key, entry] : to->items()) {
    auto& entries = by_user[key.substr(0, key.find(':'))];
    if (entries.is_null()) entries = nlohmann::json::object();
    entries[key] = entry;
  }
  to_.reserve(by_user.size());
  for (const auto& [user, entries] : by_user) to_.emplace(user, entries.dump());
}

void E2eEnvelopes::build(std::string* out, const std::string* to) const {
  out->clear();
  out->reserve(head_.size() + group_.size() + (to != nullptr ? to->size() : 2) + 12);
  out->append(head_);
  out->push_back('{');
  out->append(group_);
  if (has_to_) {
    if (!group_.empty()) out->push_back(',');
    out->append("\"to\":");
    out->append(to != nullptr ? std::string_view(*to) : std::string_view("{}"));
  }
  out->append("}}");
}

std::optional<E2eEnvelopes> E2eEnvelopes::from_envelope(std::string_view envelope) {
  auto doc = parse_untrusted_json(envelope, kMaxJsonDepth + 1);
  if (!doc.is_object()) return std::nullopt;
  auto str = [&](const char* name, std::string* out) {
    const auto it = doc.find(name);
    if (it == doc.end() || !it->is_string()) return false;
    *out = it->get<std::string>();
    return true;
  };
  EnvelopeFields f;
  const auto ts = doc.find("ts");
  const auto body = doc.find("body");
  if (!str("id", &f.id) || !str("conv", &f.conv) || !str("from", &f.from) || !str("dev", &f.dev) ||
      !str("to", &f.to) || !str("cid", &f.cid) || !str("type", &f.type) || f.type != "e2e" ||
      ts == doc.end() || !ts->is_number_integer() || body == doc.end() ||
      !is_signal_e2e_body(*body) || !check_e2e_body(*body, true).empty()) {
    return std::nullopt;
  }
  f.ts = ts->get<int64_t>();
  E2eEnvelopes out;
  out.split(f, *body);
  return out;
}

std::string E2eEnvelopes::for_user(const std::string& user) const {
  std::string scratch;
  return for_user(user, &scratch);
}

const std::string& E2eEnvelopes::for_user(const std::string& user, std::string* scratch) const {
  const auto entries = has_to_ ? to_.find(user) : to_.end();
  if (entries == to_.end()) return no_entries_;
  build(scratch, &entries->second);
  return *scratch;
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
