// POST /v1/media, GET /v1/media/{id}, GET /v1/media/{id}/thumbnail
// (CONTRACT §4; docs/media.md). The logic is MediaLibrary's (media.h); this
// file is the HTTP side: streaming in and out, ETag, Range, cache headers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "chat/api/http_server.h"
#include "chat/api/log.h"
#include "chat/api/media.h"
#include "chat/api/request_parsing.h"
#include "chat/common/log_fields.h"
#include "http_internal.h"

namespace chat::api {

using http_internal::require_principal;
using http_internal::write_error;
using http_internal::write_status;
using httplib::Request;
using httplib::Response;
using nlohmann::json;

namespace http_internal {
uint64_t media_max_bytes(const Service& service) {
  return service.media() != nullptr ? service.media()->options().max_bytes : 0;
}
}  // namespace http_internal

namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Cache lifetime of a response to a bearer token (private caches only).
constexpr int64_t kPrivateMaxAgeS = 3600;

// An open blob, closed when the last response holding it is gone.
struct OpenFile {
  int fd = -1;
  ~OpenFile() {
    if (fd >= 0) ::close(fd);
  }
};

// Range, If-None-Match and Content-Length parsing: request_parsing.h.

json upload_json(const MediaLibrary& media, const store::MediaRecord& r) {
  const int64_t exp = media.default_expiry_s();
  json out{{"id", r.id},
           {"size", r.size},
           {"content_type", r.content_type},
           {"sha256", r.sha256},
           {"url", media.signed_path(r.id, exp)},
           {"url_expires", exp},
           {"thumbnail", r.thumbnail}};
  if (r.thumbnail) out["thumbnail_url"] = media.signed_path(r.id, exp, "/thumbnail");
  return out;
}

}  // namespace

void HttpServer::register_media_routes() {
  Service& service = service_;

  server_->Post("/v1/media", [&service](const Request& req, Response& res,
                                        const httplib::ContentReader& read_body) {
    MediaLibrary* media = service.media();
    if (media == nullptr) {
      return write_error(res, 503, "unavailable", "media storage is not set up on this server");
    }
    auto caller = require_principal(service, req, res);  // counts as a REST write
    if (!caller) return;
    if (req.is_multipart_form_data()) {
      return write_error(res, 415, "unsupported_media_type",
                         "send the file's bytes as the body, not multipart/form-data");
    }
    const uint64_t max = media->options().max_bytes;
    if (req.has_header("Content-Length")) {
      uint64_t declared = 0;
      if (!parse_u64(req.get_header_value("Content-Length"), &declared)) {
        return write_error(res, 400, "invalid_argument", "malformed Content-Length");
      }
      if (declared > max) {
        // A body a little over the limit is read and dropped first, so the
        // client sees the answer (a larger one: the connection may reset).
        media->note_refused();
        if (declared - max <= kUploadDrainBytes) {
          read_body([](const char*, size_t) { return true; });
        }
        return write_error(res, 413, "too_large",
                           "the upload limit is " + std::to_string(max) + " bytes");
      }
    }
    const std::string length = req.get_header_value("Content-Length");
    uint64_t incoming = 0;
    if (!length.empty()) parse_u64(length, &incoming);
    auto no_space = [&] {
      media->note_refused();
      logger().warn("media.refused: user={} reason=disk_floor", log_value(caller->user));
      write_error(res, 507, "insufficient_storage",
                  "the server is short of disk space; try again later");
    };
    if (!media->has_room(incoming)) {
      // Read and drop at most kUploadDrainBytes, so the client sees the answer.
      uint64_t drained = 0;
      read_body([&drained](const char*, size_t n) {
        drained += n;
        return drained <= kUploadDrainBytes;
      });
      return no_space();
    }
    auto upload = media->begin_upload();
    if (!upload) return write_status(res, upload.status());
    MediaLibrary::Upload& up = **upload;
    const bool complete =
        read_body([&up](const char* data, size_t n) { return up.write(data, n); });
    if (up.too_large()) {
      media->note_refused();
      logger().info("media.refused: user={} reason=too_large", log_value(caller->user));
      return write_error(res, 413, "too_large",
                         "the upload limit is " + std::to_string(max) + " bytes");
    }
    if (up.no_space()) return no_space();
    if (up.refused_type()) {
      media->note_refused();
      logger().info("media.refused: user={} reason=type", log_value(caller->user));
      return write_error(res, 415, "unsupported_media_type",
                         "allowed: JPEG, PNG, GIF, WebP, MP4, WebM, Ogg, MP3, M4A, WAV, PDF "
                         "(decided from the bytes)");
    }
    if (!up.error().is_ok()) return write_status(res, up.error());
    if (!complete) return write_error(res, 400, "invalid_argument", "the body could not be read");
    auto record = media->finish(up, caller->user);
    if (!record) {
      if (up.refused_type()) {
        return write_error(res, 415, "unsupported_media_type", record.status().message());
      }
      return write_status(res, record.status());
    }
    res.set_header("Location", "/v1/media/" + record->id);
    res.status = 201;
    res.set_content(upload_json(*media, *record).dump(), "application/json");
  });

  // GET (and HEAD) of the bytes or the thumbnail.
  auto serve = [&service](bool thumbnail) {
    return [&service, thumbnail](const Request& req, Response& res) {
      // cpp-httplib 0.11.4 would apply the Range header itself, also to our
      // error bodies, and trusts ranges it cannot satisfy: we decide, and hand
      // it back only the one range we checked.
      auto& ranges = const_cast<Request&>(req).ranges;
      ranges.clear();

      MediaLibrary* media = service.media();
      if (media == nullptr) {
        return write_error(res, 503, "unavailable", "media storage is not set up on this server");
      }
      const std::string id = req.matches[1].str();
      Result<store::MediaRecord> record = not_found("no such media");
      const bool signed_url = req.has_param("sig") || req.has_param("exp");
      int64_t signed_exp = 0;
      if (signed_url) {
        const std::string exp = req.get_param_value("exp");
        record = media->find_signed(id, exp, req.get_param_value("sig"));
        if (record) std::from_chars(exp.data(), exp.data() + exp.size(), signed_exp);
      } else {
        auto caller = require_principal(service, req, res);
        if (!caller) return;
        record = media->find_for_user(caller->user, id);
      }
      if (!record) {
        if (record.status().code() == StatusCode::kNotFound) {
          return write_error(res, 404, "not_found", "no such media");
        }
        return write_status(res, record.status());
      }
      if (thumbnail && !record->thumbnail) {
        return write_error(res, 404, "not_found", "this media has no thumbnail");
      }
      const std::string path =
          thumbnail ? media->thumbnail_path(*record) : media->blob_path(*record);
      const std::string content_type = thumbnail ? "image/jpeg" : record->content_type;
      const std::string etag = "\"" + record->sha256 + (thumbnail ? "-t320" : "") + "\"";

      res.set_header("ETag", etag);
      res.set_header("Accept-Ranges", "bytes");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Content-Security-Policy", "default-src 'none'; sandbox");
      if (signed_url) {
        const int64_t left = std::max<int64_t>(0, signed_exp - media->now_s());
        res.set_header("Cache-Control", "public, max-age=" + std::to_string(left) + ", immutable");
      } else {
        res.set_header("Cache-Control",
                       "private, max-age=" + std::to_string(kPrivateMaxAgeS) + ", immutable");
        res.set_header("Vary", "Authorization");
      }
      res.set_header("Content-Disposition",
                     is_inline_media_type(content_type) ? "inline" : "attachment");

      if (none_match(req.get_header_value("If-None-Match"), etag)) {
        res.status = 304;
        return;
      }

      auto file = std::make_shared<OpenFile>();
      file->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      struct stat st {};
      if (file->fd < 0 || ::fstat(file->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        logger().error("media.blob_missing: id={} thumbnail={}", record->id, thumbnail);
        res.headers.clear();
        return write_status(res, internal_error("media blob missing"));
      }
      const uint64_t size = static_cast<uint64_t>(st.st_size);

      const std::string range_header = req.get_header_value("Range");
      const std::string if_range = req.get_header_value("If-Range");
      if (!range_header.empty() && (if_range.empty() || if_range == etag)) {
        ByteRange range;
        switch (resolve_range(range_header, size, &range)) {
          case RangeAnswer::kUnsatisfiable:
            res.set_header("Content-Range", "bytes */" + std::to_string(size));
            return write_error(res, 416, "range_not_satisfiable",
                               "one byte range inside the content is supported");
          case RangeAnswer::kPartial:
            ranges.emplace_back(static_cast<ssize_t>(range.first),
                                static_cast<ssize_t>(range.last));
            res.status = 206;
            break;
          case RangeAnswer::kWhole:
            break;
        }
      }
      if (res.status != 206) res.status = 200;
      res.set_content_provider(static_cast<size_t>(size), content_type,
                               [file](size_t offset, size_t length, httplib::DataSink& sink) {
                                 char buf[kReadChunk];
                                 const size_t want = std::min(length, sizeof buf);
                                 ssize_t n =
                                     ::pread(file->fd, buf, want, static_cast<off_t>(offset));
                                 if (n <= 0) return false;  // the blob shrank: abort the response
                                 return sink.write(buf, static_cast<size_t>(n));
                               });
    };
  };
  server_->Get(R"(/v1/media/([^/]+))", serve(false));
  server_->Get(R"(/v1/media/([^/]+)/thumbnail)", serve(true));
}

}  // namespace chat::api
