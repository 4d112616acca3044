// Thumbnails with libvips (media.h). libvips is initialized once and kept
// small: one worker thread, no operation cache, untrusted loaders blocked.
// One thumbnail at a time: uploads wait for each other here (at most
// kThumbnailWaitMs, then they go without), not for memory.
#include <vips/vips.h>

#include <chrono>
#include <mutex>

#include "chat/api/log.h"
#include "chat/api/media.h"

namespace chat::api {
namespace {

std::timed_mutex g_thumbnail_mu;

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
  std::unique_lock lock(g_thumbnail_mu, std::defer_lock);
  if (!lock.try_lock_for(std::chrono::milliseconds(kThumbnailWaitMs))) {
    logger().warn("media.thumbnail_busy: waited_ms={}", kThumbnailWaitMs);
    return false;
  }
  if (!init_vips()) return false;
  // The header first (no pixels are decoded): refuse decompression bombs.
  VipsImage* header =
      vips_image_new_from_file(source.c_str(), "access", VIPS_ACCESS_SEQUENTIAL, nullptr);
  if (header == nullptr) {
    vips_error_clear();
    return false;
  }
  const uint64_t pixels = static_cast<uint64_t>(vips_image_get_width(header)) *
                          static_cast<uint64_t>(vips_image_get_height(header));
  // Interlaced PNG and progressive JPEG are decoded whole: a lower cap.
  auto flag = [header](const char* name) {
    int value = 0;
    return vips_image_get_typeof(header, name) != 0 &&
           vips_image_get_int(header, name, &value) == 0 && value != 0;
  };
  const bool interlaced = flag("interlaced") || flag("jpeg-multiscan");
  g_object_unref(header);
  vips_error_clear();
  const uint64_t cap = interlaced ? kThumbnailMaxPixelsInterlaced : kThumbnailMaxPixels;
  if (pixels == 0 || pixels > cap) {
    logger().info("media.thumbnail_skipped: pixels={} interlaced={}", pixels, interlaced);
    return false;
  }

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
