// Password hashing for chat-api's accounts: Argon2id (RFC 9106) via libargon2,
// with the OWASP minimum parameters by default (t=2, m=19 MiB, p=1) and a
// random 16-byte salt per hash. Hashes are the PHC-style encoded strings
// ("$argon2id$v=19$m=...,t=...,p=...$salt$hash"), so parameters can be raised
// later without invalidating stored hashes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "chat/common/status.h"

namespace chat::api {

// Password length rules, in Unicode code points (UTF-8 decoded).
inline constexpr size_t kMinPasswordChars = 8;
inline constexpr size_t kMaxPasswordChars = 1024;

// Code points in a UTF-8 string (continuation bytes are not counted).
size_t utf8_length(std::string_view s);

// kInvalidArgument naming the rule when the password is too short or too long.
Status check_password_rules(std::string_view password);

struct HasherParams {
  uint32_t time_cost = 2;       // Default: 2 passes.
  uint32_t memory_kib = 19456;  // Default: 19456 KiB (19 MiB).
  uint32_t parallelism = 1;     // Default: 1 lane.
  // At most this many hashes run at the same time (each holds memory_kib);
  // others wait. Default: 0 = the number of CPUs.
  unsigned max_concurrent = 0;
};

// Thread-safe.
class PasswordHasher {
 public:
  explicit PasswordHasher(HasherParams params = {});
  ~PasswordHasher();

  Result<std::string> hash(std::string_view password) const;
  // True when `password` matches the encoded hash. A malformed hash is false.
  bool verify(std::string_view encoded, std::string_view password) const;
  // Spends the time of one verification, for unknown users, so response time
  // does not reveal whether an account exists.
  void verify_dummy(std::string_view password) const;

 private:
  struct Gate;
  HasherParams params_;
  std::unique_ptr<Gate> gate_;
  std::string dummy_hash_;
};

}  // namespace chat::api
