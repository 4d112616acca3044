// Media uploads and downloads (CONTRACT §4 POST/GET /v1/media; docs/media.md):
// the content type decided from the bytes, content-addressed blobs under
// $CHAT_DATA_DIR/media, metadata in chat-api's media store, thumbnails for
// still images, access rules, and signed expiring URLs.
//
// Thread-safe: the HTTP pool calls it from many threads at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "chat/common/clock.h"
#include "chat/common/status.h"
#include "chat/store/archive.h"
#include "chat/store/media.h"

namespace chat::api {

// ---- content types (media_sniff.cpp) ---------------------------------------

// How many leading bytes sniff_media_type looks at, at most.
inline constexpr size_t kSniffBytes = 64;

// The content type of a file that starts with `head` (its first kSniffBytes
// bytes, or all of it when shorter), or nullopt when it is not one of the
// allowed types: image/jpeg, image/png, image/gif, image/webp, video/mp4,
// video/webm, audio/ogg, audio/mpeg, audio/mp4, audio/wav, application/pdf.
// Decided from magic numbers only, never from what the client claims.
std::optional<std::string> sniff_media_type(std::string_view head);

// Whether a browser may show this type inline (image/, audio/, video/); every
// other type is served as an attachment.
bool is_inline_media_type(std::string_view content_type);

// Whether a thumbnail is made for this type (JPEG, PNG, WebP).
bool has_thumbnail_type(std::string_view content_type);

// A media id as POST /v1/media makes them: 22 base64url characters (128 random bits).
bool is_valid_media_id(std::string_view id);

// ---- thumbnails (thumbnails.cpp) -------------------------------------------

// Largest side of a thumbnail, in pixels.
inline constexpr int kThumbnailSize = 320;
// Images with more pixels than this get no thumbnail (decompression bombs).
inline constexpr uint64_t kThumbnailMaxPixels = 40'000'000;
// The cap for interlaced PNG and progressive JPEG, which libvips cannot
// shrink while loading (the whole image is decoded).
inline constexpr uint64_t kThumbnailMaxPixelsInterlaced = 10'000'000;
// How long an upload waits for the thumbnailer (one image at a time) before
// it is stored without a thumbnail.
inline constexpr int kThumbnailWaitMs = 2000;

// Writes a JPEG thumbnail (longest side at most kThumbnailSize, never
// enlarged) of the image file `source` to `dest`. False for anything libvips
// cannot read as an image (no thumbnail then; never a crash), for images over
// the pixel caps above, and when the thumbnailer stayed busy for
// kThumbnailWaitMs. Initializes libvips once, with one worker thread and its
// operation cache off; one thumbnail is made at a time.
bool make_thumbnail(const std::string& source, const std::string& dest);

// ---- the library ------------------------------------------------------------

// How much of a refused upload's body is still read (and dropped), so that a
// client still sending gets the 413/415 rather than a reset connection.
inline constexpr uint64_t kUploadDrainBytes = 1 << 20;
// How often (in bytes received) an upload checks the free space again.
inline constexpr uint64_t kSpaceCheckBytes = 4 << 20;

struct MediaOptions {
  std::string dir;                           // $CHAT_DATA_DIR/media
  std::string key_path;                      // the signing key ($CHAT_DATA_DIR/api/media-url.key)
  uint64_t max_bytes = 64ull * 1024 * 1024;  // CHAT_MEDIA_MAX_BYTES
  int64_t url_ttl_s = 7 * 24 * 3600;         // CHAT_MEDIA_URL_TTL
  uint64_t min_free_bytes = 1024ull << 20;   // CHAT_MEDIA_MIN_FREE_MB (0: no floor)
};

// Counters for /metrics.
struct MediaCounters {
  uint64_t uploads = 0;       // uploads stored
  uint64_t upload_bytes = 0;  // their bytes
  uint64_t deduplicated = 0;  // uploads whose bytes were already stored
  uint64_t refused = 0;       // uploads refused (too large, type not allowed)
  uint64_t thumbnails = 0;    // thumbnails made
};

class MediaLibrary {
 public:
  // Creates the directories and the signing key (32 random bytes, 0600) on
  // first start. Borrows `media` and `archive`, which must outlive it.
  static Result<std::unique_ptr<MediaLibrary>> open(const MediaOptions& options,
                                                    store::MediaStore& media,
                                                    store::ArchiveReader& archive,
                                                    const Clock& clock);
  ~MediaLibrary();

  const MediaOptions& options() const { return options_; }

  // One upload being streamed to a temporary file. Once the body went over
  // the limit (too_large()) or its first bytes are not an allowed type
  // (refused_type()) or the disk's free space would drop below the floor
  // (no_space(), checked every kSpaceCheckBytes), nothing more is stored and
  // write() keeps reading (and dropping) at most kUploadDrainBytes more before
  // it returns false to stop reading; it returns false at once when the disk
  // failed (error()).
  class Upload {
   public:
    ~Upload();  // removes the temporary file unless committed
    bool write(const char* data, size_t n);
    bool too_large() const { return too_large_; }
    bool refused_type() const { return refused_type_; }
    bool no_space() const { return no_space_; }
    const Status& error() const { return error_; }
    uint64_t size() const { return size_; }

   private:
    friend class MediaLibrary;
    Upload() = default;
    bool decide_type();
    bool drain(size_t n);

    const MediaLibrary* lib_ = nullptr;
    int fd_ = -1;
    std::string tmp_path_;
    void* sha_ = nullptr;  // EVP_MD_CTX
    uint64_t size_ = 0;
    uint64_t drained_ = 0;  // bytes read and dropped after a refusal
    std::string head_;      // the first kSniffBytes bytes
    std::optional<std::string> type_;
    bool too_large_ = false;
    bool refused_type_ = false;
    bool no_space_ = false;
    uint64_t next_space_check_ = 0;  // size_ at which free space is checked again
    Status error_;
  };

  Result<std::unique_ptr<Upload>> begin_upload();
  // Whether `incoming` more bytes leave at least min_free_bytes free on the
  // media directory's file system (statvfs; always true with no floor).
  bool has_room(uint64_t incoming) const;
  // Stores a complete upload: content type check (kInvalidArgument with
  // refused_type() set when not allowed; an empty body is kInvalidArgument),
  // fsync, the blob (kept once per content), its thumbnail, and the record.
  Result<store::MediaRecord> finish(Upload& upload, const std::string& uploader);

  // The record, when `user` may fetch it: the uploader, or a participant of
  // a conversation where a media message referenced it (group members only
  // for messages of their membership periods). The reference counts when its
  // sender is the uploader or could fetch it through an earlier counting
  // reference (so forwarding works, but a leaked id sent in a new message
  // grants nothing). kNotFound otherwise: existence is not revealed.
  Result<store::MediaRecord> find_for_user(const std::string& user, const std::string& id);
  // The record for a signed URL's id, exp and sig. kNotFound when the
  // signature is wrong, altered or expired, or the id unknown.
  Result<store::MediaRecord> find_signed(const std::string& id, std::string_view exp,
                                         std::string_view sig);

  // "/v1/media/<id>?exp=<unix s>&sig=<base64url HMAC-SHA256>", valid until
  // exp_s; `suffix` ("" or "/thumbnail") goes after the id.
  std::string signed_path(const std::string& id, int64_t exp_s, std::string_view suffix = "") const;
  // now + url_ttl_s.
  int64_t default_expiry_s() const;
  // The library clock's time, in unix seconds.
  int64_t now_s() const { return clock_.now_ms() / 1000; }

  std::string blob_path(const store::MediaRecord& record) const;
  std::string thumbnail_path(const store::MediaRecord& record) const;

  // Account deletion: removes every record of `user`, and each blob (and
  // thumbnail) no other record references.
  Status delete_user_media(const std::string& user);

  MediaCounters counters() const;
  // Counts an upload refused before finish() (too large, type not allowed).
  void note_refused();

 private:
  MediaLibrary(MediaOptions options, store::MediaStore& media, store::ArchiveReader& archive,
               const Clock& clock, std::string key);
  std::string sign(const std::string& id, int64_t exp_s) const;
  Result<bool> referenced_for(const std::string& user, const store::MediaRecord& record);

  MediaOptions options_;
  store::MediaStore& media_;
  store::ArchiveReader& archive_;
  const Clock& clock_;
  std::string key_;     // the HMAC key
  std::mutex blob_mu_;  // commit (blob + record) vs. deletion (record + blob)
  std::atomic<uint64_t> tmp_seq_{0};
  mutable std::mutex counters_mu_;
  MediaCounters counters_;
};

}  // namespace chat::api
