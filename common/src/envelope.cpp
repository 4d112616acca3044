#include "chat/common/envelope.h"

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
  auto doc = nlohmann::json::parse(payload.begin(), payload.end(), nullptr, false);
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

  if (out) {
    out->cid = cid_s;
    out->type = type->get<std::string>();
    out->body = std::move(*body);
  }
  return true;
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

std::string make_envelope(const EnvelopeFields& f, const nlohmann::json& body) {
  nlohmann::ordered_json env;
  env["v"] = 1;
  env["id"] = f.id;
  env["ts"] = f.ts;
  env["conv"] = f.conv;
  env["from"] = f.from;
  env["dev"] = f.dev;
  env["to"] = f.to;
  env["cid"] = f.cid;
  env["type"] = f.type;
  env["body"] = body;
  return env.dump();
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
