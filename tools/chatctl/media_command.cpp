// `chatctl send --file` (the upload half) and `chatctl fetch`.
//
// fetch streams the body to FILE as it arrives; when FILE already holds part
// of it (an interrupted fetch), only the rest is asked for with a Range
// header. A progress bar goes to stderr when stderr is a terminal.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>

#include "chat/common/ids.h"
#include "chatctl/commands.h"
#include "chatctl/json_access.h"
#include "chatctl/media.h"

namespace chat::tools {
namespace {

namespace fs = std::filesystem;

// "[#########           ]  45%  9.0 MiB / 20.0 MiB", redrawn at most 10 times a second.
class ProgressBar {
 public:
  explicit ProgressBar(bool on) : on_(on && ::isatty(STDERR_FILENO) == 1) {}
  ~ProgressBar() {
    if (drawn_) std::fputc('\n', stderr);
  }
  void update(uint64_t done, uint64_t total, bool force = false) {
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    constexpr int kWidth = 30;
    if (total > 0) {
      const int filled = static_cast<int>(kWidth * std::min<double>(1.0, double(done) / total));
      std::fprintf(stderr, "\r[%s%s] %3d%%  %s / %s ", std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, ' ').c_str(),
                   static_cast<int>(100.0 * std::min<double>(1.0, double(done) / total)),
                   human_size(done).c_str(), human_size(total).c_str());
    } else {
      std::fprintf(stderr, "\r%s ", human_size(done).c_str());
    }
    std::fflush(stderr);
  }

 private:
  bool on_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

// "bytes a-b/n" -> n (0 when absent or malformed); "bytes */n" too.
uint64_t total_of(const std::string& content_range) {
  auto slash = content_range.rfind('/');
  if (slash == std::string::npos) return 0;
  try {
    return std::stoull(content_range.substr(slash + 1));
  } catch (...) {
    return 0;
  }
}

// What `fetch` was given: the path to GET and whether it needs our token.
struct FetchTarget {
  std::string path;
  std::string id;
  bool signed_url = false;
};

Result<FetchTarget> fetch_target(const std::string& arg) {
  FetchTarget t;
  std::string rest = arg;
  // A full URL: keep the path and query (the API base is ours anyway).
  if (auto scheme = rest.find("://"); scheme != std::string::npos) {
    auto slash = rest.find('/', scheme + 3);
    rest = slash == std::string::npos ? "" : rest.substr(slash);
  }
  if (rest.rfind("/v1/media/", 0) == 0) {
    t.path = rest;
    t.signed_url = rest.find("sig=") != std::string::npos;
    t.id = rest.substr(10, rest.find_first_of("/?", 10) - 10);
  } else {
    t.id = rest;
    t.path = "/v1/media/" + rest;
  }
  bool id_ok = !t.id.empty() && t.id.size() <= 64;
  for (char c : t.id) {
    id_ok = id_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_');
  }
  if (!id_ok) return invalid_argument("'" + arg + "' is not a media id or /v1/media/ URL");
  return t;
}

}  // namespace

std::string human_size(uint64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  } else if (bytes < 1024ull * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  }
  return buf;
}

std::string extension_for(const std::string& type) {
  static const std::pair<const char*, const char*> kExt[] = {
      {"image/jpeg", ".jpg"},  {"image/png", ".png"},      {"image/gif", ".gif"},
      {"image/webp", ".webp"}, {"video/mp4", ".mp4"},      {"video/webm", ".webm"},
      {"audio/ogg", ".ogg"},   {"audio/mpeg", ".mp3"},     {"audio/mp4", ".m4a"},
      {"audio/wav", ".wav"},   {"application/pdf", ".pdf"}};
  for (auto [t, e] : kExt) {
    if (type == t) return e;
  }
  return "";
}

Result<nlohmann::json> upload_media(Context& ctx, Credentials& credentials, const std::string& path,
                                    const std::string& caption) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    return invalid_argument("--file: '" + path + "' is not a file");
  auto profile = credentials.fresh();
  if (!profile) return profile.status();
  auto response = ctx.api.post_file("/v1/media", path, profile->access_token);
  if (response && response->status == 401) {
    profile = credentials.fresh(profile->access_token);
    if (!profile) return profile.status();
    response = ctx.api.post_file("/v1/media", path, profile->access_token);
  }
  if (!response) return response.status();
  if (!response->ok()) return status_from_response(*response);
  const nlohmann::json& up = response->json;
  if (json_string(up, "id").empty()) return internal_error("POST /v1/media answered without an id");
  nlohmann::json body{{"media", up["id"]},
                      {"content_type", json_string(up, "content_type")},
                      {"size", json_int(up, "size", 0)},
                      {"sha256", json_string(up, "sha256")},
                      {"url", json_string(up, "url")},
                      {"thumbnail", up.value("thumbnail", false)}};
  if (!caption.empty()) body["caption"] = caption;
  ctx.out.note("uploaded " + path + " (" + json_string(up, "content_type") + ", " +
               human_size(static_cast<uint64_t>(json_int(up, "size", 0))) + ")");
  return body;
}

int run_fetch(Context& ctx) {
  auto target = fetch_target(ctx.command_line.args.at(0));
  if (!target) {
    ctx.out.error("usage", target.status().message());
    return kExitUsage;
  }
  std::optional<Credentials> credentials;
  std::string token;
  if (!target->signed_url) {
    auto user = active_user(ctx);
    if (!user) return fail(ctx, user.status());
    credentials.emplace(ctx.store, ctx.api, ctx.clock, *user);
    auto profile = credentials->fresh();
    if (!profile) return fail(ctx, profile.status());
    token = profile->access_token;
  }

  // -o FILE (resumed when it holds part of the content), else <id>.<ext>.
  const bool named = ctx.command_line.output.has_value();
  std::string out_path = named ? *ctx.command_line.output : target->id;
  std::error_code ec;
  const uint64_t have =
      named && fs::is_regular_file(out_path, ec) ? fs::file_size(out_path, ec) : 0;
  const std::string range = have > 0 ? "bytes=" + std::to_string(have) + "-" : "";

  StopSignal stop;
  ProgressBar bar(!ctx.out.json());
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(nullptr, &std::fclose);
  uint64_t offset = 0, written = 0, total = 0;
  std::string write_error;
  auto got = ctx.api.download(
      target->path, token, range, [&](const Download& head, const char* data, size_t n) {
        if (StopSignal::requested()) return false;
        if (!file) {
          // 206: append to what we have; 200: the whole content, from the start.
          offset = head.status == 206 ? have : 0;
          total = head.status == 206 ? total_of(head.content_range) : head.content_length;
          if (!named) out_path = target->id + extension_for(head.content_type);
          file.reset(std::fopen(out_path.c_str(), offset > 0 ? "ab" : "wb"));
          if (!file) {
            write_error = "cannot write " + out_path + ": " + std::strerror(errno);
            return false;
          }
        }
        if (std::fwrite(data, 1, n, file.get()) != n) {
          write_error = "cannot write " + out_path + ": " + std::strerror(errno);
          return false;
        }
        written += n;
        bar.update(offset + written, total);
        return true;
      });
  if (file) bar.update(offset + written, total, /*force=*/true);
  file.reset();
  if (!write_error.empty()) return fail(ctx, unavailable(write_error));
  if (!got) {
    return fail(ctx, StopSignal::requested()
                         ? unavailable("interrupted; run the same fetch again to resume")
                         : got.status());
  }
  if (got->status == 416 && have > 0 && total_of(got->content_range) == have) {
    offset = have;  // the file was complete already
  } else if (got->status < 200 || got->status >= 300) {
    ApiResponse r;
    r.status = got->status;
    r.body = got->error_body;
    r.json = parse_json(r.body);
    return fail(ctx, status_from_response(r));
  }
  const uint64_t size = offset + written;
  if (ctx.out.json()) {
    ctx.out.json_line({{"file", out_path},
                       {"size", size},
                       {"content_type", got->content_type},
                       {"resumed_from", offset}});
  } else {
    ctx.out.line("saved " + out_path + " (" + human_size(size) +
                 (offset > 0 ? ", resumed at " + human_size(offset) : std::string()) + ")");
  }
  return kExitOk;
}

}  // namespace chat::tools
