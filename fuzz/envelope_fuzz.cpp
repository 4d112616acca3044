// Fuzzes what a client publishes as a chat message (common/envelope.h,
// common/strict_json.h): the payload validator, the error event, and the
// envelope the broker builds from a valid payload.
//
// Invariants: no exception escapes; a payload that validates has a 1-64
// character cid and a known type; the envelope built from it is JSON that
// carries exactly that cid, type and body; re-serialising the message
// validates again with the same result (parse -> serialise -> parse); an
// e2e message in the Signal form (docs/e2e.md) passed check_e2e_body and its
// per-user envelopes split its "to" exactly; any other e2e body is opaque
// (CONTRACT §3): accepted, and its archived envelope is re-sent unchanged.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/envelope.h"
#include "chat/common/strict_json.h"
#include "fuzz_check.h"

using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: the payload limit (small limits exercise the too_large path).
  const size_t max_payload = (data[0] & 1) ? chat::kDefaultMaxPayload : 64 + data[0];
  std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);

  chat::ClientMessage msg;
  chat::Refusal why;
  const bool ok = chat::parse_client_message(payload, max_payload, &msg, &why);
  const std::string cid = chat::extract_cid(payload);

  // The error event is JSON whatever the cid and reason bytes are.
  const std::string event = chat::make_error_event(payload.substr(0, 80), why.code, payload);
  FUZZ_CHECK(json::accept(event));

  if (!ok) {
    FUZZ_CHECK(!why.reason.empty());
    if (why.code == chat::RefusalCode::kTooLarge) FUZZ_CHECK(payload.size() > max_payload);
    return 0;
  }
  FUZZ_CHECK(payload.size() <= max_payload);
  FUZZ_CHECK(chat::is_valid_message_type(msg.type));
  FUZZ_CHECK(!msg.cid.empty() && msg.cid.size() <= 64 * 4);
  FUZZ_CHECK(cid == msg.cid);  // extract_cid agrees with the validator
  if (msg.type == "media") {
    FUZZ_CHECK(chat::check_media_body(msg.body).empty());
    FUZZ_CHECK(!chat::media_reference(msg).empty());
  }
  const bool signal_e2e = msg.type == "e2e" && chat::is_signal_e2e_body(msg.body);
  if (signal_e2e) FUZZ_CHECK(chat::check_e2e_body(msg.body, true).empty());

  // The envelope the router stores and delivers.
  chat::EnvelopeFields f;
  f.id = "0000018bcfe56800";
  f.ts = 1'700'000'000'000;
  f.conv = "dm:alice:bob";
  f.from = "alice";
  f.dev = "phone";
  f.to = "bob";
  f.cid = msg.cid;
  f.type = msg.type;
  const std::string envelope = chat::make_envelope(f, msg.body);
  chat::JsonRefusal refusal;
  json env = chat::parse_untrusted_json(envelope, chat::kMaxJsonDepth + 1, &refusal);
  FUZZ_CHECK(refusal == chat::JsonRefusal::kNone);
  FUZZ_CHECK(env.is_object());
  FUZZ_CHECK(env["cid"] == msg.cid);
  FUZZ_CHECK(env["type"] == msg.type);
  FUZZ_CHECK(env["body"] == msg.body);
  FUZZ_CHECK(env["v"] == 1);

  // An opaque e2e body (CONTRACT §3): its archived envelope is re-sent as is.
  if (msg.type == "e2e" && !signal_e2e) {
    FUZZ_CHECK(!chat::E2eEnvelopes::from_envelope(envelope).has_value());
  }

  // An e2e message per user (docs/e2e.md): each cut is JSON with the same
  // envelope fields, holds only that user's "to" entries (and the group), and
  // the cuts together are the whole "to"; built again from the archived
  // envelope, the same bytes.
  if (signal_e2e) {
    f.type = "e2e";
    const std::string whole = chat::make_envelope(f, msg.body);
    chat::E2eEnvelopes split(f, msg.body);
    auto from_archive = chat::E2eEnvelopes::from_envelope(whole);
    FUZZ_CHECK(from_archive.has_value());
    json all_to = json::object();
    std::vector<std::string> users{"alice", "bob"};
    if (msg.body.contains("to")) {
      for (const auto& [key, entry] : msg.body["to"].items()) {
        users.push_back(key.substr(0, key.find(':')));
      }
    }
    for (const auto& user : users) {
      const std::string cut = split.for_user(user);
      FUZZ_CHECK(cut == from_archive->for_user(user));
      std::string scratch;
      FUZZ_CHECK(cut == split.for_user(user, &scratch));  // shared or built, the same bytes
      json c = chat::parse_untrusted_json(cut, chat::kMaxJsonDepth + 1, &refusal);
      FUZZ_CHECK(refusal == chat::JsonRefusal::kNone && c.is_object());
      FUZZ_CHECK(c["cid"] == msg.cid && c["id"] == f.id && c["type"] == "e2e");
      FUZZ_CHECK(c["body"].value("group", json()) == msg.body.value("group", json()));
      FUZZ_CHECK(c["body"].contains("to") == msg.body.contains("to"));
      if (!c["body"].contains("to")) continue;
      for (const auto& [key, entry] : c["body"]["to"].items()) {
        FUZZ_CHECK(key.rfind(user + ":", 0) == 0);
        FUZZ_CHECK(msg.body["to"][key] == entry);
        all_to[key] = entry;
      }
    }
    if (msg.body.contains("to")) FUZZ_CHECK(all_to == msg.body["to"]);
  }

  // Serialise the message again: it validates, to the same message.
  json again{{"cid", msg.cid}, {"type", msg.type}, {"body", msg.body}};
  const std::string text = again.dump();
  chat::ClientMessage msg2;
  chat::Refusal why2;
  if (text.size() <= max_payload) {
    FUZZ_CHECK(chat::parse_client_message(text, max_payload, &msg2, &why2));
    FUZZ_CHECK(msg2.cid == msg.cid && msg2.type == msg.type && msg2.body == msg.body);
  }
  return 0;
}
