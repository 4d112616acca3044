// The crypto provider libsignal-protocol-c runs on, over OpenSSL 3: random
// bytes (RAND_bytes), HMAC-SHA256 (EVP_MAC), SHA-512 (EVP_MD_CTX) and AES
// in CBC with PKCS#5 padding or CTR without padding, 128/192/256-bit keys
// (EVP_CIPHER). Stateless: the same provider serves every signal_context.
#pragma once

#include <signal_protocol.h>

#include <string>
#include <string_view>

#include "chat/common/status.h"

namespace chat::tools {

// The provider's callbacks; user_data is unused (null).
const signal_crypto_provider& openssl_signal_crypto_provider();

// Standard base64 with padding (RFC 4648 §4), as docs/e2e.md uses for keys
// and ciphertexts.
std::string base64_encode(std::string_view bytes);
// Strict: the standard alphabet, padding required, no whitespace, and no
// stray bits in the last group; kInvalidArgument otherwise.
Result<std::string> base64_decode(std::string_view text);

}  // namespace chat::tools
