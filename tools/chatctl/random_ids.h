// Identifiers chatctl makes up itself: message cids and device ids.
// Thread-safe (each thread has its own generator, seeded from the OS).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace chat::tools {

// A ULID: 26 characters of Crockford base32, 48 bits of milliseconds since the
// epoch followed by 80 random bits. Unique per device for practical purposes,
// as the contract asks of a `cid`, and sortable by creation time.
std::string new_message_cid(int64_t now_ms);

// "cli-" followed by 8 lowercase hex digits: the default device id.
std::string new_device_id();

// True for 26 characters of Crockford base32 (upper case) whose first
// character is at most '7' (a ULID's 128-bit range).
bool is_ulid(std::string_view s);

}  // namespace chat::tools
