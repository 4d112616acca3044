// Standard base64 (base64.h): the RFC 4648 §10 vectors, OpenSSL's encoder as
// an independent oracle, the strict decoder's refusals (padding, canonical
// form, alphabet, whitespace), and how is_standard_base64 differs from it.
#include "chat/common/base64.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <string>
#include <vector>

namespace chat {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string openssl_encode(const std::string& bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

TEST(Base64, Rfc4648Section10Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [bytes, text] : vectors) {
    EXPECT_EQ(base64_encode(bytes), text) << bytes;
    auto decoded = base64_decode_strict(text);
    ASSERT_TRUE(decoded.has_value()) << text;
    EXPECT_EQ(*decoded, bytes);
    EXPECT_EQ(is_standard_base64(text), *text != '\0') << text;
  }
}

TEST(Base64, UsesTheStandardAlphabetNotBase64url) {
  EXPECT_EQ(base64_encode(std::string("\xfb\xff\xbf", 3)), "+/+/");
  EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
  EXPECT_EQ(base64_decode_strict("+/+/"), std::string("\xfb\xff\xbf", 3));
  EXPECT_FALSE(base64_decode_strict("-_-_"));
  EXPECT_FALSE(base64_decode_strict("-_8="));
  EXPECT_FALSE(is_standard_base64("-_-_"));
  // Every byte value, NUL included, round-trips.
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(base64_decode_strict(base64_encode(all)), all);
}

// Random lengths and bytes: the encoder agrees with OpenSSL's, the decoder
// gives the bytes back, and the broker's check accepts every non-empty text.
TEST(Base64, AgreesWithOpenSslAndRoundTrips) {
  std::mt19937 rng(4648);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes(rng() % 70, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng() & 0xff);
    const std::string text = base64_encode(bytes);
    ASSERT_EQ(text, openssl_encode(bytes)) << round;
    ASSERT_EQ(base64_decode_strict(text), bytes) << text;
    ASSERT_EQ(is_standard_base64(text), !bytes.empty()) << text;
  }
}

TEST(Base64, StrictDecoderRefusesAnythingButTheOneCanonicalForm) {
  for (const char* bad : {
           "Zg",       // no padding
           "Zm9vYg",   // no padding
           "Zm9vYg=",  // short padding
           "Zm9",      // length not a multiple of 4
           "A",
           "Zh==",      // unused bits set (1 byte)
           "Zm9vYh==",  // unused bits set (1 byte)
           "Zm9=",      // unused bits set (2 bytes)
           "Zm=vYg==",  // padding in the middle
           "Zg==Zg==",  // padding before the last group
           "=AAA",      // padding first
           "A=AA",      // padding at the second position
           "AA=A",      // data after padding
           "Zm9vY===",  // three pads
           "A===",
           "====",
           "Zm9v_g==",      // base64url alphabet
           "Zm9v Yg==",     // space
           " Zg==",         // leading space
           "Zg== ",         // trailing space
           "Zm9vYg==\n",    // newline
           "Zm9v\r\nYg==",  // CRLF line break
           "Zm9v\tYg==",    // tab
           "Zm9vYg==\x80",  // non-ASCII
       }) {
    EXPECT_FALSE(base64_decode_strict(bad)) << bad;
  }
  EXPECT_FALSE(base64_decode_strict(std::string("Zm9v\0Yg=", 8)));   // NUL
  EXPECT_FALSE(base64_decode_strict(std::string("\xc3\xa9Zg", 4)));  // UTF-8
}

// For one and two trailing bytes, exactly the texts whose unused bits are
// zero decode: each byte string has one text form.
TEST(Base64, ExactlyTheCanonicalTrailingGroupsDecode) {
  for (int i = 0; i < 64; ++i) {
    for (int j = 0; j < 64; ++j) {
      const std::string one = std::string{kAlphabet[i], kAlphabet[j]} + "==";
      EXPECT_EQ(base64_decode_strict(one).has_value(), (j & 15) == 0) << one;
      EXPECT_TRUE(is_standard_base64(one)) << one;
      const std::string two = std::string{'Z', kAlphabet[i], kAlphabet[j]} + "=";
      EXPECT_EQ(base64_decode_strict(two).has_value(), (j & 3) == 0) << two;
      EXPECT_TRUE(is_standard_base64(two)) << two;
    }
  }
}

TEST(Base64, IsStandardBase64ChecksTheShape) {
  for (const char* ok :
       {"AAAA", "AA==", "AAA=", "+/9a", "BQ/4zy1+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}) {
    EXPECT_TRUE(is_standard_base64(ok)) << ok;
  }
  for (const char* bad : {"", "A", "AA", "AAA", "====", "A===", "AA=A", "=AAA", "A=AA",
                          "AA==AA==", "AA-_", "AA A", "AAAA=", "AAAA\n", " AAA", "AAA\x80"}) {
    EXPECT_FALSE(is_standard_base64(bad)) << bad;
  }
}

// The documented differences, and nothing else: "" and non-canonical
// trailing bits. Over every 4-character text of a small alphabet, whatever
// the strict decoder accepts is_standard_base64 accepts too, and what only
// is_standard_base64 accepts is a padded group with unused bits set.
TEST(Base64, IsStandardBase64DiffersOnlyInEmptinessAndCanonicalForm) {
  EXPECT_FALSE(is_standard_base64(""));
  EXPECT_EQ(base64_decode_strict(""), std::string());
  EXPECT_TRUE(is_standard_base64("Zh=="));
  EXPECT_FALSE(base64_decode_strict("Zh=="));

  const std::string chars = "ABQh+/=-\n ";
  std::vector<std::string> texts;
  for (char a : chars)
    for (char b : chars)
      for (char c : chars)
        for (char d : chars) texts.push_back({a, b, c, d});
  for (const auto& t : texts) {
    const auto decoded = base64_decode_strict(t);
    if (decoded) {
      EXPECT_TRUE(is_standard_base64(t)) << t;
      EXPECT_EQ(base64_encode(*decoded), t);  // canonical: the one text form
    } else if (is_standard_base64(t)) {
      // Only a padded group whose unused bits are set.
      const size_t pad = t[3] != '=' ? 0 : t[2] == '=' ? 2 : 1;
      ASSERT_GT(pad, 0u) << t;
      const std::string_view alphabet(kAlphabet);
      const size_t last = alphabet.find(t[3 - pad]);
      ASSERT_NE(last, std::string_view::npos) << t;
      EXPECT_NE(last & (pad == 2 ? 15 : 3), 0u) << t;
    }
  }
}

}  // namespace
}  // namespace chat
