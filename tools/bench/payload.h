// What every benchmark message carries so the receiver can account for it:
// the publisher's index, a per-publisher sequence number and the send time.
// The stamp is the text "B|<pub>|<seq>|<send µs>|" followed by padding; in chat
// mode it is the message body, so it comes back inside the envelope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

// Finds and parses the stamp anywhere in a payload (a bare payload or an
// envelope). False when there is none.
bool parse_stamp(const char* data, size_t len, Stamp* out);

}  // namespace chat::bench
