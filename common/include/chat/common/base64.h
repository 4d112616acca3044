// Standard base64 with padding (RFC 4648 §4), the text form docs/e2e.md uses
// for Signal keys, signatures and ciphertexts. One implementation for the key
// directory (chat-api), the broker's e2e body check, chatctl and chat-bench.
//
// Why not OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock: EVP_DecodeBlock is not a
// strict decoder. It ignores the padding when counting the output (returns 3
// bytes for "Zg=="), accepts non-canonical trailing bits ("Zh=="), '=' inside
// the text ("Zm=vYg==") and three pads ("Zm9vY==="), and skips leading and
// trailing whitespace. A key must have exactly one text form, so decoding is
// our own; the encoder is the matching few lines rather than EVP_EncodeBlock
// (whose length is an int) so the pair is tested together.
//
// All functions are pure and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace chat {

// `bytes` in the standard alphabet (A-Z a-z 0-9 + /) with '=' padding to a
// multiple of 4 characters; "" for no bytes. Never fails.
std::string base64_encode(std::string_view bytes);

// The bytes `text` encodes, or nullopt unless `text` is exactly what
// base64_encode makes of them: the standard alphabet, a multiple of 4 long,
// padding required (one or two '=' only at the very end), canonical (the bits
// the padding leaves unused are zero, so "Zh==" is refused), no whitespace or
// line breaks. "" decodes to no bytes. Untrusted input is fine.
std::optional<std::string> base64_decode_strict(std::string_view text);

// A cheaper, looser check, as the broker applies to e2e ciphertexts (it never
// decodes them): true for non-empty text of the standard alphabet, a multiple
// of 4 long, with at most two '=' and only at the end. It differs from
// base64_decode_strict on purpose, and both behaviours are relied on:
//   - "" is refused here (an e2e body or group ciphertext is never empty),
//     while base64_decode_strict("") yields no bytes;
//   - non-canonical trailing bits are accepted here ("Zh==" is true): the
//     broker only checks the shape of ciphertexts it passes on unread.
bool is_standard_base64(std::string_view text);

}  // namespace chat
