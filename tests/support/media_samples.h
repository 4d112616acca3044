// Upload bodies for the media tests: what chat-api's magic-number sniffing
// accepts, with random bytes after the header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

namespace chat::test_media {

// An MP4 (ftyp isom) header followed by random bytes: sniffed as video/mp4.
inline std::string mp4_bytes(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  const std::string head(
      "\0\0\0\x18"
      "ftypisom\0\0\x02\0isomiso2",
      24);
  out.replace(0, head.size(), head);
  return out;
}

}  // namespace chat::test_media
