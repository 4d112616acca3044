// Thumbnails with libvips (media.h). libvips is initialized once and kept
// small: one worker thread, no operation cache, untrusted loaders blocked.
// One thumbnail at a time: uploads wait for each other here, not for memory.
#include <vips/vips.h>

#include <mutex>

#include "chat/api/log.h"
#include "chat/api/media.h"

namespace chat::api {
namespace {

std::mutex g_thumbnail_mu;

bool init_vips() {
  static const bool ok = [] {
    if (VIPS_INIT("chat-api") != 0) {
      logger().error("media.vips_init_failed: error={}", vips_error_buffer());
      vips_error_clear();
      return false;
    }
    vips_concurrency_set(1);
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    vips_block_untrusted_set(TRUE);
    return true;
  }();
  return ok;
}

}  // namespace

bool make_thumbnail(const std::string& source, const std::string& dest) {
  std::lock_guard lock(g_thumbnail_mu);
  if (!init_vips()) return false;
  // The header first (no pixels are decoded): refuse decompression bombs.
  VipsImage* header = vips_image_new_from_file(source.c_str(), nullptr);
  if (header == nullptr) {
    vips_error_clear();
    return false;
  }
  const uint64_t pixels = static_cast<uint64_t>(vips_image_get_width(header)) *
                          static_cast<uint64_t>(vips_image_get_height(header));
  g_object_unref(header);
  if (pixels == 0 || pixels > kThumbnailMaxPixels) return false;

  VipsImage* thumb = nullptr;
  if (vips_thumbnail(source.c_str(), &thumb, kThumbnailSize, "height", kThumbnailSize, "size",
                     VIPS_SIZE_DOWN, nullptr) != 0) {
    vips_error_clear();
    return false;
  }
  const int rc = vips_jpegsave(thumb, dest.c_str(), "Q", 80, "strip", TRUE, nullptr);
  g_object_unref(thumb);
  if (rc != 0) {
    vips_error_clear();
    return false;
  }
  return true;
}

}  // namespace chat::api
