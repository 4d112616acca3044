#include "chat/api/secrets.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

#include "chat/common/hex.h"
#include "chat/common/jwt.h"

namespace chat::api {

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // No safe way to continue without randomness: tokens would be guessable.
    std::fputs("chat-api: fatal: RAND_bytes failed\n", stderr);
    std::abort();
  }
  return out;
}

std::string random_token(size_t n) { return jwt::base64url_encode(random_bytes(n)); }

std::string random_hex(size_t n) {
  std::string b = random_bytes(n);
  return to_hex(reinterpret_cast<const unsigned char*>(b.data()), b.size());
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    std::fputs("chat-api: fatal: SHA-256 failed\n", stderr);
    std::abort();
  }
  return to_hex(md, len);
}

}  // namespace chat::api
