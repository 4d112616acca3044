#include "chatctl/signal_crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <climits>
#include <cstring>
#include <memory>

namespace chat::tools {
namespace {

struct HmacContext {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  ~HmacContext() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

int random_bytes(uint8_t* data, size_t len, void*) {
  if (len > INT_MAX) return SG_ERR_INVAL;
  return RAND_bytes(data, static_cast<int>(len)) == 1 ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

int hmac_init(void** context, const uint8_t* key, size_t key_len, void*) {
  auto hmac = std::make_unique<HmacContext>();
  hmac->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (hmac->mac == nullptr) return SG_ERR_UNKNOWN;
  hmac->ctx = EVP_MAC_CTX_new(hmac->mac);
  if (hmac->ctx == nullptr) return SG_ERR_NOMEM;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  // A zero-length key is legal HMAC; OpenSSL wants a non-null pointer for it.
  static const uint8_t kEmpty[1] = {0};
  if (EVP_MAC_init(hmac->ctx, key_len == 0 ? kEmpty : key, key_len, params) != 1) {
    return SG_ERR_UNKNOWN;
  }
  *context = hmac.release();
  return SG_SUCCESS;
}

int hmac_update(void* context, const uint8_t* data, size_t len, void*) {
  auto* hmac = static_cast<HmacContext*>(context);
  return EVP_MAC_update(hmac->ctx, data, len) == 1 ? SG_SUCCESS : SG_ERR_UNKNOWN;
}

int hmac_final(void* context, signal_buffer** output, void*) {
  auto* hmac = static_cast<HmacContext*>(context);
  uint8_t mac[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (EVP_MAC_final(hmac->ctx, mac, &len, sizeof mac) != 1) return SG_ERR_UNKNOWN;
  signal_buffer* buffer = signal_buffer_create(mac, len);
  if (buffer == nullptr) return SG_ERR_NOMEM;
  *output = buffer;
  return SG_SUCCESS;
}

void hmac_cleanup(void* context, void*) { delete static_cast<HmacContext*>(context); }

int sha512_init(void** context, void*) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return SG_ERR_NOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return SG_ERR_UNKNOWN;
  }
  *context = ctx;
  return SG_SUCCESS;
}

int sha512_update(void* context, const uint8_t* data, size_t len, void*) {
  return EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(context), data, len) == 1 ? SG_SUCCESS
                                                                             : SG_ERR_UNKNOWN;
}

// Finalises and re-initialises the context for reuse, as the callback's
// contract asks.
int sha512_final(void* context, signal_buffer** output, void*) {
  auto* ctx = static_cast<EVP_MD_CTX*>(context);
  uint8_t md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx, md, &len) != 1) return SG_ERR_UNKNOWN;
  if (EVP_DigestInit_ex(ctx, EVP_sha512(), nullptr) != 1) return SG_ERR_UNKNOWN;
  signal_buffer* buffer = signal_buffer_create(md, len);
  if (buffer == nullptr) return SG_ERR_NOMEM;
  *output = buffer;
  return SG_SUCCESS;
}

void sha512_cleanup(void* context, void*) { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(context)); }

const EVP_CIPHER* aes_cipher(int cipher, size_t key_len) {
  if (cipher == SG_CIPHER_AES_CBC_PKCS5) {
    switch (key_len) {
      case 16:
        return EVP_aes_128_cbc();
      case 24:
        return EVP_aes_192_cbc();
      case 32:
        return EVP_aes_256_cbc();
    }
  } else if (cipher == SG_CIPHER_AES_CTR_NOPADDING) {
    switch (key_len) {
      case 16:
        return EVP_aes_128_ctr();
      case 24:
        return EVP_aes_192_ctr();
      case 32:
        return EVP_aes_256_ctr();
    }
  }
  return nullptr;
}

int aes(bool encrypt, signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
        const uint8_t* iv, size_t iv_len, const uint8_t* input, size_t input_len) {
  const EVP_CIPHER* evp = aes_cipher(cipher, key_len);
  if (evp == nullptr || iv_len != 16 || input_len > INT_MAX - 32) return SG_ERR_INVAL;
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  if (!ctx) return SG_ERR_NOMEM;
  if (EVP_CipherInit_ex(ctx.get(), evp, nullptr, key, iv, encrypt ? 1 : 0) != 1) {
    return SG_ERR_UNKNOWN;
  }
  EVP_CIPHER_CTX_set_padding(ctx.get(), cipher == SG_CIPHER_AES_CBC_PKCS5 ? 1 : 0);
  std::unique_ptr<uint8_t[]> out(new uint8_t[input_len + 32]);
  int len = 0;
  int final_len = 0;
  if (EVP_CipherUpdate(ctx.get(), out.get(), &len, input, static_cast<int>(input_len)) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out.get() + len, &final_len) != 1) {
    std::memset(out.get(), 0, input_len + 32);
    return SG_ERR_UNKNOWN;  // bad padding on decrypt lands here
  }
  signal_buffer* buffer = signal_buffer_create(out.get(), static_cast<size_t>(len + final_len));
  std::memset(out.get(), 0, input_len + 32);
  if (buffer == nullptr) return SG_ERR_NOMEM;
  *output = buffer;
  return SG_SUCCESS;
}

int aes_encrypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
                const uint8_t* iv, size_t iv_len, const uint8_t* plaintext, size_t plaintext_len,
                void*) {
  return aes(true, output, cipher, key, key_len, iv, iv_len, plaintext, plaintext_len);
}

int aes_decrypt(signal_buffer** output, int cipher, const uint8_t* key, size_t key_len,
                const uint8_t* iv, size_t iv_len, const uint8_t* ciphertext, size_t ciphertext_len,
                void*) {
  return aes(false, output, cipher, key, key_len, iv, iv_len, ciphertext, ciphertext_len);
}

}  // namespace

const signal_crypto_provider& openssl_signal_crypto_provider() {
  static const signal_crypto_provider provider = {
      random_bytes,  hmac_init,    hmac_update,    hmac_final,  hmac_cleanup, sha512_init,
      sha512_update, sha512_final, sha512_cleanup, aes_encrypt, aes_decrypt,  nullptr};
  return provider;
}

}  // namespace chat::tools
