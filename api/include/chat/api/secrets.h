// Random secrets and digests (OpenSSL): token ids, refresh tokens, their hashes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace chat::api {

// `n` bytes from the OpenSSL CSPRNG. Aborts if the CSPRNG fails (never expected).
std::string random_bytes(size_t n);
// `n` random bytes, base64url without padding.
std::string random_token(size_t n);
// `n` random bytes as lowercase hex.
std::string random_hex(size_t n);
// SHA-256 of `data` as lowercase hex.
std::string sha256_hex(std::string_view data);

}  // namespace chat::api
