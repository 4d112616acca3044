// The crypto provider libsignal-protocol-c runs on, over OpenSSL 3: random
// bytes (RAND_bytes), HMAC-SHA256 (EVP_MAC), SHA-512 (EVP_MD_CTX) and AES
// in CBC with PKCS#5 padding or CTR without padding, 128/192/256-bit keys
// (EVP_CIPHER). Stateless: the same provider serves every signal_context.
#pragma once

#include <signal_protocol.h>

namespace chat::tools {

// The provider's callbacks; user_data is unused (null).
const signal_crypto_provider& openssl_signal_crypto_provider();

}  // namespace chat::tools
