// What every benchmark message carries so the receiver can account for it:
// the publisher's index, a per-publisher sequence number and the send time.
// The stamp is the text "B|<pub>|<seq>|<send µs>|" followed by padding; in chat
// mode it is the message body, so it comes back inside the envelope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace chat::bench {

struct Stamp {
  uint32_t pub = 0;
  uint64_t seq = 0;
  uint64_t sent_us = 0;  // steady clock, µs
};

// Bare: the stamp, padded with 'x' to `size` bytes (never shorter than the stamp).
void build_bare_payload(std::string* out, const Stamp& stamp, size_t size);

// Chat: {"cid":"<cid_prefix><pub>-<seq>","type":"text","body":"<stamp + padding>"},
// padded so the whole payload has `size` bytes when it can.
void build_chat_payload(std::string* out, const Stamp& stamp, const std::string& cid_prefix,
                        size_t size);

// Most characters of a message's cid (CONTRACT §3, chat::parse_client_message).
inline constexpr size_t kMaxCidChars = 64;

// Chat, --e2e: an `e2e` message whose body has docs/e2e.md's structure,
//   {"cid":"<cid_prefix>B|<pub>|<seq>|<send µs>|","type":"e2e",
//    "body":{"to":{"<user>:<device>":{"type":1,"body":"<standard base64>"},...}}}
// one entry per recipient device. The broker delivers each recipient user only
// its own entries, so the stamp rides in the cid, which every copy keeps.
// The ciphertext stand-ins (base64 of pseudo-random bytes, distinct per entry)
// are made once, sized so that the whole payload has about
// `size_per_entry` * recipients bytes (each at least 4 base64 characters).
class E2ePayload {
 public:
  E2ePayload(const std::vector<std::string>& recipients, size_t size_per_entry,
             const std::string& cid_prefix);

  // False when the cid would exceed kMaxCidChars (`out` is then no payload).
  bool build(std::string* out, const Stamp& stamp) const;

  // The cid for `stamp`.
  std::string cid(const Stamp& stamp) const;
  size_t ciphertext_chars() const { return ciphertext_chars_; }

 private:
  std::string cid_prefix_;
  std::string tail_;  // `","type":"e2e","body":{...}}`
  size_t ciphertext_chars_ = 0;
};

// Finds and parses the stamp anywhere in a payload (a bare payload or an
// envelope). False when there is none.
bool parse_stamp(const char* data, size_t len, Stamp* out);

}  // namespace chat::bench
