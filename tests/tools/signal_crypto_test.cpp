// The OpenSSL crypto provider of libsignal-protocol-c against published
// known-answer vectors (RFC 4231, FIPS 180-4, NIST SP 800-38A), and the
// Signal protocol on top of it between in-memory parties: X3DH with and
// without a one-time prekey, the ratchet both ways, sender keys.
#include "chatctl/signal_crypto.h"

#include <gtest/gtest.h>

#include "chatctl/e2e.h"

namespace chat::tools {
namespace {

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  }
  return out;
}

std::string hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string take(signal_buffer* buffer) {
  std::string out(reinterpret_cast<const char*>(signal_buffer_data(buffer)),
                  signal_buffer_len(buffer));
  signal_buffer_free(buffer);
  return out;
}

const signal_crypto_provider& provider() { return openssl_signal_crypto_provider(); }

std::string hmac(const std::string& key, const std::string& data) {
  void* ctx = nullptr;
  EXPECT_EQ(provider().hmac_sha256_init_func(&ctx, reinterpret_cast<const uint8_t*>(key.data()),
                                             key.size(), nullptr),
            0);
  // In two pieces: update must accumulate.
  size_t half = data.size() / 2;
  EXPECT_EQ(provider().hmac_sha256_update_func(ctx, reinterpret_cast<const uint8_t*>(data.data()),
                                               half, nullptr),
            0);
  EXPECT_EQ(
      provider().hmac_sha256_update_func(ctx, reinterpret_cast<const uint8_t*>(data.data()) + half,
                                         data.size() - half, nullptr),
      0);
  signal_buffer* out = nullptr;
  EXPECT_EQ(provider().hmac_sha256_final_func(ctx, &out, nullptr), 0);
  provider().hmac_sha256_cleanup_func(ctx, nullptr);
  return hex(take(out));
}

TEST(SignalCryptoProvider, HmacSha256Rfc4231) {
  EXPECT_EQ(hmac(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(hmac("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(
      hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(SignalCryptoProvider, Sha512AbcAndContextReuse) {
  void* ctx = nullptr;
  ASSERT_EQ(provider().sha512_digest_init_func(&ctx, nullptr), 0);
  const std::string expected =
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
      "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
  for (int round = 0; round < 2; ++round) {  // final prepares the context for reuse
    ASSERT_EQ(provider().sha512_digest_update_func(ctx, reinterpret_cast<const uint8_t*>("ab"), 2,
                                                   nullptr),
              0);
    ASSERT_EQ(provider().sha512_digest_update_func(ctx, reinterpret_cast<const uint8_t*>("c"), 1,
                                                   nullptr),
              0);
    signal_buffer* out = nullptr;
    ASSERT_EQ(provider().sha512_digest_final_func(ctx, &out, nullptr), 0);
    EXPECT_EQ(hex(take(out)), expected);
  }
  provider().sha512_digest_cleanup_func(ctx, nullptr);
}

struct AesVector {
  int cipher;
  const char* key;
  const char* iv;
  const char* ciphertext;  // of kPlaintext (without the PKCS#5 padding block for CBC)
};

// NIST SP 800-38A F.1 plaintext, four blocks.
const char* kPlaintext =
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710";

const AesVector kAesVectors[] = {
    // F.2.1, F.2.3, F.2.5: CBC-AES128/192/256.
    {SG_CIPHER_AES_CBC_PKCS5, "2b7e151628aed2a6abf7158809cf4f3c",
     "000102030405060708090a0b0c0d0e0f",
     "7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2"
     "73bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7"},
    {SG_CIPHER_AES_CBC_PKCS5, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "000102030405060708090a0b0c0d0e0f",
     "4f021db243bc633d7178183a9fa071e8b4d9ada9ad7dedf4e5e738763f69145a"
     "571b242012fb7ae07fa9baac3df102e008b0e27988598881d920a9e64f5615cd"},
    {SG_CIPHER_AES_CBC_PKCS5, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "000102030405060708090a0b0c0d0e0f",
     "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
     "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b"},
    // F.5.1, F.5.3, F.5.5: CTR-AES128/192/256.
    {SG_CIPHER_AES_CTR_NOPADDING, "2b7e151628aed2a6abf7158809cf4f3c",
     "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
     "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff"
     "5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee"},
    {SG_CIPHER_AES_CTR_NOPADDING, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
     "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
     "1abc932417521ca24f2b0459fe7e6e0b090339ec0aa6faefd5ccc2c6f4ce8e94"
     "1e36b26bd1ebc670d1bd1d665620abf74f78a7f6d29809585a97daec58c6b050"},
    {SG_CIPHER_AES_CTR_NOPADDING,
     "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
     "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
     "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
     "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"},
};

TEST(SignalCryptoProvider, AesNistSp80038a) {
  const std::string plaintext = unhex(kPlaintext);
  for (const auto& v : kAesVectors) {
    const std::string key = unhex(v.key);
    const std::string iv = unhex(v.iv);
    SCOPED_TRACE(std::string(v.cipher == SG_CIPHER_AES_CBC_PKCS5 ? "CBC " : "CTR ") + v.key);
    auto u8 = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
    signal_buffer* out = nullptr;
    ASSERT_EQ(provider().encrypt_func(&out, v.cipher, u8(key), key.size(), u8(iv), iv.size(),
                                      u8(plaintext), plaintext.size(), nullptr),
              0);
    std::string ciphertext = take(out);
    if (v.cipher == SG_CIPHER_AES_CBC_PKCS5) {
      ASSERT_EQ(ciphertext.size(), plaintext.size() + 16);  // a whole padding block
      EXPECT_EQ(hex(ciphertext.substr(0, plaintext.size())), v.ciphertext);
    } else {
      EXPECT_EQ(hex(ciphertext), v.ciphertext);
    }
    ASSERT_EQ(provider().decrypt_func(&out, v.cipher, u8(key), key.size(), u8(iv), iv.size(),
                                      u8(ciphertext), ciphertext.size(), nullptr),
              0);
    EXPECT_EQ(take(out), plaintext);
  }
}

TEST(SignalCryptoProvider, AesRefusesBadInput) {
  const std::string key(16, 'k'), iv(16, 'i'), data(20, 'd');
  auto u8 = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  signal_buffer* out = nullptr;
  EXPECT_LT(provider().encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, u8(key), 15, u8(iv), 16,
                                    u8(data), data.size(), nullptr),
            0);
  EXPECT_LT(
      provider().encrypt_func(&out, 99, u8(key), 16, u8(iv), 16, u8(data), data.size(), nullptr),
      0);
  // A CBC ciphertext whose padding is wrong does not decrypt.
  EXPECT_LT(provider().decrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, u8(key), 16, u8(iv), 16,
                                    u8(data), 16, nullptr),
            0);
  EXPECT_EQ(out, nullptr);
}

// One party: its state and name.
struct Party {
  std::string user;
  std::string device;
  E2eState state;
  std::string name() const { return signal_name(user, device); }
};

Party make_party(const std::string& user, const std::string& device, int prekeys) {
  Party p{user, device, {}};
  EXPECT_TRUE(generate_identity(p.state, 1700000000000).is_ok());
  EXPECT_TRUE(p.state.registration_id >= 1 && p.state.registration_id <= 16380);
  EXPECT_TRUE(generate_prekeys(p.state, prekeys));
  return p;
}

// What GET /v1/keys/{user} would answer for `p` (with its first prekey, or none).
PreKeyBundle bundle_of(const Party& p, bool with_prekey) {
  auto upload = key_upload_body(p.state, p.device, true, {p.state.prekeys.begin()->first});
  EXPECT_TRUE(upload);
  nlohmann::json device = {{"device", p.device},
                           {"registration_id", (*upload)["registration_id"]},
                           {"identity_key", (*upload)["identity_key"]},
                           {"signed_prekey", (*upload)["signed_prekey"]},
                           {"prekey", with_prekey ? (*upload)["prekeys"][0] : nlohmann::json()},
                           {"capabilities", (*upload)["capabilities"]}};
  auto bundle = parse_bundle(p.user, device);
  EXPECT_TRUE(bundle) << bundle.status().message();
  return *bundle;
}

void ratchet_both_ways(Party& a, Party& b, int expected_first_type) {
  auto first = encrypt_to(a.state, b.name(), "hello bob");
  ASSERT_TRUE(first) << first.status().message();
  EXPECT_EQ(first->type, expected_first_type);
  auto got = decrypt_from(b.state, a.name(), first->type, first->body);
  ASSERT_TRUE(got) << got.status().message();
  EXPECT_EQ(*got, "hello bob");
  // The same ciphertext again: a duplicate, never a second plaintext.
  EXPECT_EQ(decrypt_from(b.state, a.name(), first->type, first->body).status().code(),
            StatusCode::kAlreadyExists);
  for (int i = 0; i < 3; ++i) {
    auto reply = encrypt_to(b.state, a.name(), "reply " + std::to_string(i));
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->type, kE2eSignalMessage);
    auto back = decrypt_from(a.state, b.name(), reply->type, reply->body);
    ASSERT_TRUE(back) << back.status().message();
    EXPECT_EQ(*back, "reply " + std::to_string(i));
    auto again = encrypt_to(a.state, b.name(), "and " + std::to_string(i));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->type, kE2eSignalMessage);  // the session is confirmed now
    auto forth = decrypt_from(b.state, a.name(), again->type, again->body);
    ASSERT_TRUE(forth);
    EXPECT_EQ(*forth, "and " + std::to_string(i));
  }
}

TEST(SignalProtocol, X3dhWithOneTimePrekeyAndRatchet) {
  Party alice = make_party("alice", "laptop", 3);
  Party bob = make_party("bob", "web1", 3);
  PreKeyBundle bundle = bundle_of(bob, true);
  ASSERT_TRUE(bundle.prekey_id);
  const uint32_t used = *bundle.prekey_id;
  ASSERT_TRUE(process_bundle(alice.state, bundle).is_ok());
  EXPECT_TRUE(has_session(alice.state, bob.name()));
  ratchet_both_ways(alice, bob, kE2ePreKeyMessage);
  EXPECT_EQ(bob.state.prekeys.count(used), 0u);  // a one-time prekey is used once
  EXPECT_EQ(bob.state.identities.at(alice.name()).key, alice.state.identity_public);
  EXPECT_FALSE(bob.state.identities.at(alice.name()).verified);
}

TEST(SignalProtocol, X3dhOnTheSignedPrekeyAlone) {
  Party alice = make_party("alice", "laptop", 0);
  Party bob = make_party("bob", "web1", 1);
  PreKeyBundle bundle = bundle_of(bob, false);
  EXPECT_FALSE(bundle.prekey_id);
  ASSERT_TRUE(process_bundle(alice.state, bundle).is_ok());
  ratchet_both_ways(alice, bob, kE2ePreKeyMessage);
  EXPECT_EQ(bob.state.prekeys.size(), 1u);
}

TEST(SignalProtocol, ABadSignatureIsRefusedAndALostSessionDoesNotDecrypt) {
  Party alice = make_party("alice", "laptop", 0);
  Party bob = make_party("bob", "web1", 1);
  PreKeyBundle bundle = bundle_of(bob, true);
  PreKeyBundle forged = bundle;
  forged.signed_prekey_signature[5] ^= 1;
  EXPECT_FALSE(process_bundle(alice.state, forged).is_ok());
  ASSERT_TRUE(process_bundle(alice.state, bundle).is_ok());
  auto m1 = encrypt_to(alice.state, bob.name(), "one");
  ASSERT_TRUE(decrypt_from(bob.state, alice.name(), m1->type, m1->body));
  auto r = encrypt_to(bob.state, alice.name(), "ack");
  ASSERT_TRUE(decrypt_from(alice.state, bob.name(), r->type, r->body));
  auto m2 = encrypt_to(alice.state, bob.name(), "two");
  ASSERT_EQ(m2->type, kE2eSignalMessage);
  bob.state.delete_session(session_key(alice.name(), 1));
  EXPECT_EQ(decrypt_from(bob.state, alice.name(), m2->type, m2->body).status().code(),
            StatusCode::kNotFound);
  EXPECT_FALSE(decrypt_from(bob.state, alice.name(), m2->type, "garbage").is_ok());
}

TEST(SignalProtocol, SenderKeys) {
  Party alice = make_party("alice", "laptop", 0);
  Party bob = make_party("bob", "web1", 0);
  Party carol = make_party("carol", "cli", 0);
  const std::string group = "g:G1";
  auto skdm = sender_key_distribution(alice.state, group, alice.name());
  ASSERT_TRUE(skdm) << skdm.status().message();
  ASSERT_TRUE(process_sender_key_distribution(bob.state, group, alice.name(), *skdm).is_ok());
  ASSERT_TRUE(process_sender_key_distribution(carol.state, group, alice.name(), *skdm).is_ok());
  for (int i = 0; i < 3; ++i) {
    std::string text = "to the group " + std::to_string(i);
    auto sealed = group_encrypt(alice.state, group, alice.name(), text);
    ASSERT_TRUE(sealed);
    EXPECT_EQ(*group_decrypt(bob.state, group, alice.name(), *sealed), text);
    EXPECT_EQ(*group_decrypt(carol.state, group, alice.name(), *sealed), text);
    EXPECT_EQ(group_decrypt(carol.state, group, alice.name(), *sealed).status().code(),
              StatusCode::kAlreadyExists);
  }
  // The same distribution again: the key does not change.
  auto again = sender_key_distribution(alice.state, group, alice.name());
  ASSERT_TRUE(again);
  // Without the distribution message a member cannot read; in another group neither.
  Party dave = make_party("dave", "x", 0);
  auto sealed = group_encrypt(alice.state, group, alice.name(), "secret");
  EXPECT_FALSE(group_decrypt(dave.state, group, alice.name(), *sealed).is_ok());
  EXPECT_FALSE(group_decrypt(bob.state, "g:G2", alice.name(), *sealed).is_ok());
  // A new key after forgetting (a member left): the old holders cannot read it.
  forget_sender_key(alice.state, group, alice.name());
  auto rotated = sender_key_distribution(alice.state, group, alice.name());
  ASSERT_TRUE(rotated);
  auto after = group_encrypt(alice.state, group, alice.name(), "after rotation");
  EXPECT_FALSE(group_decrypt(bob.state, group, alice.name(), *after).is_ok());
  ASSERT_TRUE(process_sender_key_distribution(carol.state, group, alice.name(), *rotated).is_ok());
  EXPECT_EQ(*group_decrypt(carol.state, group, alice.name(), *after), "after rotation");
}

TEST(SignalProtocol, SafetyNumberIsSymmetricAndDependsOnEveryKey) {
  Party alice = make_party("alice", "laptop", 0);
  Party alice2 = make_party("alice", "phone", 0);
  Party bob = make_party("bob", "web1", 0);
  auto ab = safety_number("alice", {alice.state.identity_public, alice2.state.identity_public},
                          "bob", {bob.state.identity_public});
  ASSERT_TRUE(ab) << ab.status().message();
  EXPECT_EQ(ab->size(), 60u);
  EXPECT_EQ(group_digits(*ab).size(), 71u);  // 12 groups of 5, 11 spaces
  auto ba = safety_number("bob", {bob.state.identity_public}, "alice",
                          {alice2.state.identity_public, alice.state.identity_public});
  ASSERT_TRUE(ba);
  EXPECT_EQ(*ab, *ba);
  auto one =
      safety_number("alice", {alice.state.identity_public}, "bob", {bob.state.identity_public});
  ASSERT_TRUE(one);
  EXPECT_NE(*one, *ab);
}

}  // namespace
}  // namespace chat::tools
