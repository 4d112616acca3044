// Server message ids and identifier syntax (CONTRACT §2).
//
// A server id is 16 lowercase hex digits of a 64-bit value:
//   [44 bits: ms since epoch][12 bits: sequence][8 bits: node]
// Fixed width, so byte order == numeric order == archive order. The generator
// never goes backwards: after a restart it starts above the archive's greatest
// id, and when the clock steps back it keeps counting from the last id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chat/common/clock.h"

namespace chat {

bool is_valid_user_id(std::string_view s);     // ^[a-z0-9][a-z0-9_.-]{0,31}$
bool is_valid_device_id(std::string_view s);   // ^[A-Za-z0-9_-]{1,64}$
bool is_valid_group_id(std::string_view s);    // ^[A-Za-z0-9_-]{1,64}$
bool is_valid_message_id(std::string_view s);  // 16 lowercase hex digits

// Splits "<user>:<device>"; false when either part is invalid.
bool split_client_id(std::string_view client_id, std::string* user, std::string* device);

// Not thread-safe: owned by the broker's single plugin thread.
class IdGenerator {
 public:
  IdGenerator(const Clock& clock, uint8_t node = 0) : clock_(clock), node_(node) {}

  // Raises the floor: every id returned afterwards is greater than `id`.
  void observe(std::string_view id);
  std::string next();

  static std::string format(uint64_t value);
  static bool parse(std::string_view id, uint64_t* value);
  // Milliseconds encoded in an id.
  static int64_t timestamp_ms(std::string_view id);

 private:
  const Clock& clock_;
  uint8_t node_;
  uint64_t last_ = 0;
};

}  // namespace chat
