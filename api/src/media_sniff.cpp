// Content types from magic numbers (media.h). The client's Content-Type is
// never trusted: a browser shown an upload inline must get what the bytes are.
#include <algorithm>
#include <array>
#include <string_view>

#include "chat/api/media.h"

namespace chat::api {
namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

bool at(std::string_view s, size_t offset, std::string_view what) {
  return s.size() >= offset + what.size() && s.substr(offset, what.size()) == what;
}

// ISO BMFF (MP4 family): "ftyp" at 4, the major brand at 8.
std::optional<std::string> sniff_ftyp(std::string_view head) {
  if (!at(head, 4, "ftyp") || head.size() < 12) return std::nullopt;
  const std::string_view brand = head.substr(8, 4);
  static constexpr std::array<std::string_view, 3> kAudio = {"M4A ", "M4B ", "M4P "};
  static constexpr std::array<std::string_view, 14> kVideo = {
      "isom", "iso2", "iso3", "iso4", "iso5", "iso6", "iso8",
      "mp41", "mp42", "avc1", "dash", "M4V ", "mmp4", "MSNV"};
  if (std::find(kAudio.begin(), kAudio.end(), brand) != kAudio.end()) return "audio/mp4";
  if (std::find(kVideo.begin(), kVideo.end(), brand) != kVideo.end()) return "video/mp4";
  return std::nullopt;  // HEIC, AVIF, QuickTime, 3GP...: not allowed
}

// MPEG audio frame header: 11 sync bits, a known version and layer, a bitrate
// index that is neither free (0) nor bad (15), a sampling rate index below 3.
bool is_mpeg_audio_frame(std::string_view head) {
  if (head.size() < 4) return false;
  const auto b = [&head](size_t i) { return static_cast<unsigned char>(head[i]); };
  if (b(0) != 0xFF || (b(1) & 0xE0) != 0xE0) return false;
  const int version = (b(1) >> 3) & 3;  // 1 is reserved
  const int layer = (b(1) >> 1) & 3;    // 0 is reserved
  const int bitrate = b(2) >> 4;
  const int rate = (b(2) >> 2) & 3;
  return version != 1 && layer != 0 && bitrate != 0 && bitrate != 15 && rate != 3;
}

}  // namespace

std::optional<std::string> sniff_media_type(std::string_view head) {
  if (starts_with(head, "\xFF\xD8\xFF")) return "image/jpeg";
  if (starts_with(head, "\x89PNG\r\n\x1A\n")) return "image/png";
  if (starts_with(head, "GIF87a") || starts_with(head, "GIF89a")) return "image/gif";
  if (starts_with(head, "RIFF") && at(head, 8, "WEBP")) return "image/webp";
  if (starts_with(head, "RIFF") && at(head, 8, "WAVE")) return "audio/wav";
  if (starts_with(head, "%PDF-")) return "application/pdf";
  if (starts_with(head, "OggS")) return "audio/ogg";
  if (starts_with(head, std::string_view("\x1A\x45\xDF\xA3", 4))) {
    // EBML: WebM when the DocType says so (Matroska in general is not allowed).
    if (head.substr(0, kSniffBytes).find("webm") != std::string_view::npos) return "video/webm";
    return std::nullopt;
  }
  if (auto mp4 = sniff_ftyp(head)) return mp4;
  if (starts_with(head, "ID3") || is_mpeg_audio_frame(head)) return "audio/mpeg";
  return std::nullopt;
}

bool is_inline_media_type(std::string_view t) {
  return starts_with(t, "image/") || starts_with(t, "audio/") || starts_with(t, "video/");
}

bool has_thumbnail_type(std::string_view t) {
  return t == "image/jpeg" || t == "image/png" || t == "image/webp";
}

bool is_valid_media_id(std::string_view id) {
  if (id.size() != 22) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

}  // namespace chat::api
