// Signal key material for tests, made the way clients make it: key pairs
// and XEdDSA signatures from libsignal-protocol-c, whose random numbers come
// from OpenSSL (link PkgConfig::SIGNAL, OpenSSL::Crypto and chat_common).
#pragma once

#include <gtest/gtest.h>
#include <openssl/rand.h>
#include <signal/curve.h>
#include <signal/signal_protocol.h>

#include <string>
#include <vector>

#include "chat/common/base64.h"

namespace chat::test_support {

inline int signal_test_random(uint8_t* data, size_t len, void*) {
  return RAND_bytes(data, static_cast<int>(len)) == 1 ? 0 : SG_ERR_UNKNOWN;
}
// Never called by key generation and signing, but the library wants them set.
inline int no_hmac_init(void**, const uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
inline int no_hmac_update(void*, const uint8_t*, size_t, void*) { return SG_ERR_UNKNOWN; }
inline int no_hmac_final(void*, signal_buffer**, void*) { return SG_ERR_UNKNOWN; }
inline void no_hmac_cleanup(void*, void*) {}

class SignalKeys {
 public:
  SignalKeys() {
    EXPECT_EQ(signal_context_create(&ctx_, nullptr), 0);
    signal_crypto_provider provider{};
    provider.random_func = signal_test_random;
    provider.hmac_sha256_init_func = no_hmac_init;
    provider.hmac_sha256_update_func = no_hmac_update;
    provider.hmac_sha256_final_func = no_hmac_final;
    provider.hmac_sha256_cleanup_func = no_hmac_cleanup;
    EXPECT_EQ(signal_context_set_crypto_provider(ctx_, &provider), 0);
  }
  ~SignalKeys() {
    for (ec_key_pair* p : pairs_) SIGNAL_UNREF(p);
    signal_context_destroy(ctx_);
  }
  SignalKeys(const SignalKeys&) = delete;
  SignalKeys& operator=(const SignalKeys&) = delete;

  // A new key pair; returns its index.
  size_t generate() {
    ec_key_pair* pair = nullptr;
    EXPECT_EQ(curve_generate_key_pair(ctx_, &pair), 0);
    pairs_.push_back(pair);
    return pairs_.size() - 1;
  }
  // The serialised public key (33 bytes, 0x05 + 32).
  std::string public_key(size_t i) const {
    signal_buffer* buf = nullptr;
    EXPECT_EQ(ec_public_key_serialize(&buf, ec_key_pair_get_public(pairs_[i])), 0);
    std::string out(reinterpret_cast<const char*>(signal_buffer_data(buf)), signal_buffer_len(buf));
    signal_buffer_free(buf);
    return out;
  }
  // A PUT /v1/keys body for a new device: a fresh identity, signed prekey
  // `spk_id` (signed by it) and one-time prekeys 1..n.
  std::string upload_body(const std::string& device, int n, std::string* identity_b64 = nullptr) {
    const size_t identity = generate();
    const std::string spk = public_key(generate());
    std::string body = "{\"device\":\"" + device + "\",\"registration_id\":1234,";
    const std::string id_b64 = chat::base64_encode(public_key(identity));
    if (identity_b64 != nullptr) *identity_b64 = id_b64;
    body += "\"identity_key\":\"" + id_b64 + "\",";
    body += "\"signed_prekey\":{\"id\":1,\"key\":\"" + chat::base64_encode(spk) +
            "\",\"signature\":\"" + chat::base64_encode(sign(identity, spk)) + "\"},";
    body += "\"prekeys\":[";
    for (int i = 1; i <= n; ++i) {
      body += (i > 1 ? "," : "") + std::string("{\"id\":") + std::to_string(i) + ",\"key\":\"" +
              chat::base64_encode(public_key(generate())) + "\"}";
    }
    body += "]}";
    return body;
  }

  // Pair i's XEdDSA signature of `message`.
  std::string sign(size_t i, const std::string& message) const {
    signal_buffer* sig = nullptr;
    EXPECT_EQ(
        curve_calculate_signature(ctx_, &sig, ec_key_pair_get_private(pairs_[i]),
                                  reinterpret_cast<const uint8_t*>(message.data()), message.size()),
        0);
    std::string out(reinterpret_cast<const char*>(signal_buffer_data(sig)), signal_buffer_len(sig));
    signal_buffer_free(sig);
    return out;
  }

 private:
  signal_context* ctx_ = nullptr;
  std::vector<ec_key_pair*> pairs_;
};

}  // namespace chat::test_support
