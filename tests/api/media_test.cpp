// POST /v1/media and GET /v1/media/{id}[/thumbnail] against the real HTTP
// server, a real media store and blob directory, and a real archive (written
// here as the broker would) read through the secondary.
#include "chat/api/media.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>
#include <vips/vips.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "chat/api/secrets.h"
#include "chat/store/media.h"
#include "http_fixture.h"
#include "media_samples.h"

namespace chat::api {
namespace {

using test_support::HttpServerTest;
using test_support::json;
namespace fs = std::filesystem;

std::string random_bytes_of(size_t n, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

using chat::test_media::mp4_bytes;

// A real JPEG made with libvips: w x h pixels of a gradient.
std::string make_jpeg(int w, int h) {
  static const bool vips_ready = VIPS_INIT("media_test") == 0;
  EXPECT_TRUE(vips_ready);
  VipsImage* img = nullptr;
  EXPECT_EQ(vips_xyz(&img, w, h, nullptr), 0);
  VipsImage* band = nullptr;
  EXPECT_EQ(vips_extract_band(img, &band, 0, nullptr), 0);
  VipsImage* u8 = nullptr;
  EXPECT_EQ(vips_cast_uchar(band, &u8, nullptr), 0);
  void* buf = nullptr;
  size_t len = 0;
  EXPECT_EQ(vips_jpegsave_buffer(u8, &buf, &len, nullptr), 0);
  std::string out(static_cast<const char*>(buf), len);
  g_free(buf);
  g_object_unref(u8);
  g_object_unref(band);
  g_object_unref(img);
  return out;
}

// The resident set size of this process (the in-process server's), in bytes.
size_t resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

// Sends `head` (request line and headers) on a raw connection, reads the
// answer's status line before any body byte is sent, then sends `body_bytes`
// of chunked body (64 KiB chunks) as long as the server takes them. Returns
// the status code read (0 when none came within 5 s); `*answer` (if given)
// gets the whole answer: status line, headers and Content-Length body.
int chunked_head_then_body(int port, const std::string& head, size_t body_bytes,
                           std::string* answer_out = nullptr) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  // Until the headers and the body they announce are in (or the timeout).
  std::string answer;
  char buf[4096];
  while (true) {
    const size_t end = answer.find("\r\n\r\n");
    if (end != std::string::npos) {
      const size_t cl = answer.find("Content-Length: ");
      const size_t want = cl == std::string::npos || cl > end
                              ? 0
                              : std::strtoul(answer.c_str() + cl + 16, nullptr, 10);
      if (answer.size() >= end + 4 + want) break;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
  }
  if (answer_out != nullptr) *answer_out = answer;
  const std::string chunk = "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
  for (size_t sent = 0; sent < body_bytes; sent += 0x10000) {
    if (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) break;
  }
  ::close(fd);
  if (answer.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(answer.c_str() + 9);
}

class MediaTest : public HttpServerTest {
 protected:
  void start_media(std::map<std::string, std::string> env = {}) {
    customize_service_ = [this](Service& service) {
      auto store = store::MediaStore::open(config_.media_db_path());
      ASSERT_TRUE(store.is_ok()) << store.status().to_string();
      media_store_ = std::move(store).value();
      MediaOptions o;
      o.dir = config_.media_dir();
      o.key_path = config_.media_key_path();
      o.max_bytes = config_.media_max_bytes;
      o.url_ttl_s = config_.media_url_ttl_s;
      o.min_free_bytes = static_cast<uint64_t>(config_.media_min_free_mb) << 20;
      auto lib = MediaLibrary::open(o, *media_store_, *reader_, clock_);
      ASSERT_TRUE(lib.is_ok()) << lib.status().to_string();
      media_ = std::move(lib).value();
      service.set_media(media_.get());
    };
    start(std::move(env));
  }

  void TearDown() override {
    client_.reset();
    if (server_) {
      server_->stop();
      if (thread_.joinable()) thread_.join();
    }
    server_.reset();
    media_.reset();
    media_store_.reset();
    HttpServerTest::TearDown();
  }

  httplib::Result upload(const std::string& bytes, const std::string& token,
                         const std::string& content_type = "application/octet-stream") {
    httplib::Headers headers{{"Authorization", "Bearer " + token}};
    return client_->Post("/v1/media", headers, bytes, content_type.c_str());
  }

  // The same as a chunked upload (no Content-Length), 8 KiB at a time.
  httplib::Result upload_chunked(const std::string& bytes, const std::string& token) {
    size_t sent = 0;
    return client_->Post(
        "/v1/media", {{"Authorization", "Bearer " + token}},
        [&](size_t, httplib::DataSink& sink) {
          if (sent >= bytes.size()) {
            sink.done();
            return true;
          }
          size_t n = std::min<size_t>(8192, bytes.size() - sent);
          sink.write(bytes.data() + sent, n);
          sent += n;
          return true;
        },
        "video/mp4");
  }

  // Uploads and expects 201; returns the answer.
  json stored(const std::string& bytes, const std::string& token) {
    auto r = upload(bytes, token);
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 201) << r->body;
    return body_of(r);
  }

  httplib::Result fetch(const std::string& path, const std::string& token,
                        httplib::Headers headers = {}) {
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_->Get(path.c_str(), headers);
  }

  // Archives a media message as the broker would (with the mediaref index).
  std::string send_media(const std::string& from, const std::string& conv,
                         const std::vector<std::string>& participants, const std::string& media) {
    EnvelopeFields f;
    f.id = ids_.next();
    f.ts = clock_.now_ms();
    f.conv = conv;
    f.from = from;
    f.dev = "phone";
    f.to = conv;
    f.cid = "m" + std::to_string(++cid_);
    f.type = "media";
    store::AppendRequest req;
    req.id = f.id;
    req.conv = conv;
    req.from = from;
    req.client_id = from + ":phone";
    req.cid = f.cid;
    req.envelope = make_envelope(f, json{{"media", media}});
    req.participants = participants;
    req.media = media;
    EXPECT_TRUE(archive_->append(req).is_ok());
    return f.id;
  }

  size_t blob_count() {
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(config_.media_dir() + "/blobs")) {
      if (e.is_regular_file() && e.path().extension() != ".jpg") ++n;
    }
    return n;
  }

  std::unique_ptr<store::MediaStore> media_store_;
  std::unique_ptr<MediaLibrary> media_;
};

TEST(MediaSniffTest, AllowedTypesFromMagicNumbers) {
  EXPECT_EQ(sniff_media_type("\xFF\xD8\xFF\xE0rest"), "image/jpeg");
  EXPECT_EQ(sniff_media_type("\x89PNG\r\n\x1A\n...."), "image/png");
  EXPECT_EQ(sniff_media_type("GIF89a..."), "image/gif");
  EXPECT_EQ(sniff_media_type(std::string("RIFF\x10\0\0\0WEBPVP8 ", 16)), "image/webp");
  EXPECT_EQ(sniff_media_type(std::string("RIFF\x10\0\0\0WAVEfmt ", 16)), "audio/wav");
  EXPECT_EQ(sniff_media_type("%PDF-1.7"), "application/pdf");
  EXPECT_EQ(sniff_media_type("OggS\0\x02"), "audio/ogg");
  EXPECT_EQ(sniff_media_type("ID3\x04\0"), "audio/mpeg");
  EXPECT_EQ(sniff_media_type("\xFF\xFB\x90\x64"), "audio/mpeg");
  EXPECT_EQ(sniff_media_type(mp4_bytes(64)), "video/mp4");
  EXPECT_EQ(sniff_media_type(std::string("\0\0\0\x20"
                                         "ftypM4A \0\0\0\0",
                                         16)),
            "audio/mp4");
  EXPECT_EQ(
      sniff_media_type(std::string("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm", 16)),
      "video/webm");
}

TEST(MediaSniffTest, EverythingElseIsRefused) {
  EXPECT_FALSE(sniff_media_type("<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>"));
  EXPECT_FALSE(sniff_media_type("<!DOCTYPE html><html>"));
  EXPECT_FALSE(sniff_media_type("<?xml version=\"1.0\"?><svg/>"));
  EXPECT_FALSE(sniff_media_type("plain text"));
  EXPECT_FALSE(
      sniff_media_type(std::string("\0\0\0\x18"
                                   "ftypheic\0\0\0\0",
                                   16)));  // HEIC
  EXPECT_FALSE(sniff_media_type(
      std::string("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x88matroska", 20)));
  EXPECT_FALSE(sniff_media_type("\xFF\xFF\xFF\xFF"));  // no valid MPEG frame
  EXPECT_FALSE(sniff_media_type(""));
  EXPECT_FALSE(is_inline_media_type("application/pdf"));
  EXPECT_TRUE(is_inline_media_type("video/mp4"));
}

TEST_F(MediaTest, UploadThenDownloadWithCacheHeaders) {
  start_media();
  const std::string alice = token_for("alice");
  const std::string bytes = mp4_bytes(300 * 1024);
  // The client's Content-Type is ignored: the bytes decide.
  json up = stored(bytes, alice);
  EXPECT_EQ(up["content_type"], "video/mp4");
  EXPECT_EQ(up["size"], bytes.size());
  EXPECT_EQ(up["sha256"], sha256_hex(bytes));
  EXPECT_EQ(up["thumbnail"], false);
  const std::string id = up["id"];
  EXPECT_TRUE(is_valid_media_id(id)) << id;
  EXPECT_EQ(up["url"].get<std::string>().rfind("/v1/media/" + id + "?exp=", 0), 0u);

  auto r = fetch("/v1/media/" + id, alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, bytes);
  EXPECT_EQ(r->get_header_value("Content-Type"), "video/mp4");
  EXPECT_EQ(r->get_header_value("ETag"), "\"" + sha256_hex(bytes) + "\"");
  EXPECT_EQ(r->get_header_value("Accept-Ranges"), "bytes");
  EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(r->get_header_value("Content-Disposition"), "inline");
  EXPECT_EQ(r->get_header_value("Cache-Control").rfind("private", 0), 0u);

  // If-None-Match -> 304 without a body.
  r = fetch("/v1/media/" + id, alice,
            {{"If-None-Match", "\"other\", " + r->get_header_value("ETag")}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 304);
  EXPECT_TRUE(r->body.empty());

  // Without a token: 401; a PDF is an attachment.
  EXPECT_EQ(fetch("/v1/media/" + id, "")->status, 401);
  json pdf = stored("%PDF-1.4\n" + random_bytes_of(1000), alice);
  EXPECT_EQ(pdf["content_type"], "application/pdf");
  r = fetch("/v1/media/" + pdf["id"].get<std::string>(), alice);
  EXPECT_EQ(r->get_header_value("Content-Disposition"), "attachment");
}

TEST_F(MediaTest, RangesOneSatisfiableOrElse416) {
  start_media();
  const std::string alice = token_for("alice");
  const std::string bytes = mp4_bytes(10000);
  const std::string id = stored(bytes, alice)["id"];
  const std::string path = "/v1/media/" + id;

  auto r = fetch(path, alice, {{"Range", "bytes=100-199"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->body, bytes.substr(100, 100));
  EXPECT_EQ(r->get_header_value("Content-Range"), "bytes 100-199/10000");

  r = fetch(path, alice, {{"Range", "bytes=9000-"}});
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->body, bytes.substr(9000));
  r = fetch(path, alice, {{"Range", "bytes=-10"}});
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->body, bytes.substr(9990));
  r = fetch(path, alice, {{"Range", "bytes=9990-20000"}});  // end clamped
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->body, bytes.substr(9990));

  for (const char* bad :
       {"bytes=0-1,5-6", "bytes=0-,0-,0-,0-", "bytes=10000-", "bytes=20000-20001", "bytes=-0"}) {
    r = fetch(path, alice, {{"Range", bad}});
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 416) << bad;
    EXPECT_EQ(r->get_header_value("Content-Range"), "bytes */10000") << bad;
    EXPECT_EQ(body_of(r)["error"], "range_not_satisfiable") << bad;
  }
  // An error answer is never cut by a Range header.
  r = fetch("/v1/media/AAAAAAAAAAAAAAAAAAAAAA", alice, {{"Range", "bytes=0-3"}});
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(body_of(r)["error"], "not_found");
  // If-Range with another tag: the whole content.
  r = fetch(path, alice, {{"Range", "bytes=0-3"}, {"If-Range", "\"stale\""}});
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), bytes.size());
}

TEST_F(MediaTest, LimitsAndTypes) {
  start_media({{"CHAT_MEDIA_MAX_BYTES", "100000"}});
  const std::string alice = token_for("alice");
  // Exactly the limit is fine; one byte more is 413 (Content-Length).
  EXPECT_EQ(upload(mp4_bytes(100000), alice)->status, 201);
  auto r = upload(mp4_bytes(100001), alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(body_of(r)["error"], "too_large");

  // Chunked, no Content-Length: cut at limit + 1.
  const std::string big = mp4_bytes(150000);
  r = upload_chunked(big, alice);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 413);

  // Types from the bytes: SVG, HTML and unknown bytes are 415 whatever the header says.
  client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
  for (const std::string& bad :
       {std::string("<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"),
        std::string("<html><script>alert(1)</script></html>"), random_bytes_of(5000, 7)}) {
    r = upload(bad, alice, "image/png");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 415) << bad.substr(0, 20);
    EXPECT_EQ(body_of(r)["error"], "unsupported_media_type");
  }
  EXPECT_EQ(upload("", alice)->status, 400);
  // Other routes keep their 64 KiB body limit.
  r = post_json("/v1/reports", json{{"user", "bob"}, {"reason", std::string(70000, 'x')}}, alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  // No temporary files are left behind.
  client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
  EXPECT_TRUE(fs::is_empty(config_.media_dir() + "/tmp"));
}

TEST_F(MediaTest, SameBytesTwiceAreStoredOnce) {
  start_media();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  const std::string bytes = mp4_bytes(50000, 3);
  json a = stored(bytes, alice);
  json b = stored(bytes, bob);
  EXPECT_NE(a["id"], b["id"]);
  EXPECT_EQ(a["sha256"], b["sha256"]);
  EXPECT_EQ(blob_count(), 1u);
  stored(mp4_bytes(50000, 4), alice);
  EXPECT_EQ(blob_count(), 2u);

  // Deleting alice keeps the blob bob still references, and removes hers alone.
  emulate_broker();
  auto r = del("/v1/users/me", alice);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204) << r->body;
  EXPECT_EQ(blob_count(), 1u);
  EXPECT_EQ(fetch("/v1/media/" + b["id"].get<std::string>(), bob)->body, bytes);
  EXPECT_FALSE(media_store_->get(a["id"]).value().has_value());
}

TEST_F(MediaTest, ThumbnailForJpegAndNoneForBrokenImages) {
  start_media();
  const std::string alice = token_for("alice");
  json up = stored(make_jpeg(800, 400), alice);
  EXPECT_EQ(up["content_type"], "image/jpeg");
  ASSERT_EQ(up["thumbnail"], true);
  auto r = fetch("/v1/media/" + up["id"].get<std::string>() + "/thumbnail", alice);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/jpeg");
  VipsImage* thumb = vips_image_new_from_buffer(r->body.data(), r->body.size(), "", nullptr);
  ASSERT_NE(thumb, nullptr);
  EXPECT_EQ(vips_image_get_width(thumb), 320);
  EXPECT_EQ(vips_image_get_height(thumb), 160);
  g_object_unref(thumb);
  // The signed thumbnail URL works without a token.
  r = fetch(up["thumbnail_url"].get<std::string>(), "");
  EXPECT_EQ(r->status, 200);

  // PNG magic, then garbage: stored, no thumbnail, no crash.
  json broken = stored(std::string("\x89PNG\r\n\x1A\n", 8) + random_bytes_of(4000, 9), alice);
  EXPECT_EQ(broken["content_type"], "image/png");
  EXPECT_EQ(broken["thumbnail"], false);
  EXPECT_EQ(fetch("/v1/media/" + broken["id"].get<std::string>() + "/thumbnail", alice)->status,
            404);
  // A truncated JPEG: stored either way, the server keeps serving.
  const std::string jpeg = make_jpeg(200, 200);
  stored(jpeg.substr(0, jpeg.size() / 2), alice);
  EXPECT_EQ(get("/healthz")->status == 200 || get("/healthz")->status == 503, true);
}

TEST_F(MediaTest, ConversationMembersAfterAMediaMessage) {
  start_media();
  emulate_broker();
  const std::string alice = token_for("alice");
  const std::string bob = token_for("bob");
  const std::string carol = token_for("carol");
  const std::string dave = token_for("dave");
  const std::string id = stored(mp4_bytes(2000), alice)["id"];
  const std::string path = "/v1/media/" + id;

  EXPECT_EQ(fetch(path, bob)->status, 404);
  send_media("alice", topics::dm_conversation("alice", "bob"), {"alice", "bob"}, id);
  EXPECT_EQ(fetch(path, bob)->status, 200);
  EXPECT_EQ(fetch(path, carol)->status, 404);
  EXPECT_EQ(body_of(fetch(path, carol))["error"], "not_found");

  // Bob forwards it to carol: she may fetch it.
  send_media("bob", topics::dm_conversation("bob", "carol"), {"bob", "carol"}, id);
  EXPECT_EQ(fetch(path, carol)->status, 200);
  // Dave learns the id and sends it to himself in a DM with someone: nothing.
  send_media("dave", topics::dm_conversation("alice", "dave"), {"alice", "dave"}, id);
  EXPECT_EQ(fetch(path, dave)->status, 404);

  // Groups: members of the message's period; a later member is not.
  auto g = post_json("/v1/groups", {{"name", "g"}, {"members", {"bob"}}}, alice);
  ASSERT_EQ(g->status, 201) << g->body;
  const std::string gid = body_of(g)["id"];
  const std::string id2 = stored(mp4_bytes(2000, 8), alice)["id"];
  send_media("alice", topics::group_conversation(gid), {"alice", "bob"}, id2);
  EXPECT_EQ(fetch("/v1/media/" + id2, bob)->status, 200);
  ASSERT_EQ(put("/v1/groups/" + gid + "/members/dave", alice)->status, 204);
  EXPECT_EQ(fetch("/v1/media/" + id2, dave)->status, 404);
  // Bob leaves: he keeps what was sent while he was a member.
  ASSERT_EQ(del("/v1/groups/" + gid + "/members/bob", bob)->status, 204);
  EXPECT_EQ(fetch("/v1/media/" + id2, bob)->status, 200);
}

TEST_F(MediaTest, SignedUrls) {
  start_media({{"CHAT_MEDIA_URL_TTL", "600"}});
  const std::string alice = token_for("alice");
  const std::string bytes = mp4_bytes(3000);
  json up = stored(bytes, alice);
  const std::string url = up["url"];
  EXPECT_EQ(up["url_expires"].get<int64_t>(), clock_.now_ms() / 1000 + 600);

  auto r = fetch(url, "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, bytes);
  const std::string cc = r->get_header_value("Cache-Control");
  EXPECT_EQ(cc.rfind("public, max-age=", 0), 0u) << cc;
  EXPECT_LE(std::stoll(cc.substr(16)), 600);
  EXPECT_NE(cc.find("immutable"), std::string::npos);

  // Altered signature, altered expiry, another id, missing parts: 404.
  std::string altered = url;
  altered.back() = altered.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(fetch(altered, "")->status, 404);
  std::string later = url;
  later.replace(later.find("exp=") + 4, 1, "9");
  EXPECT_EQ(fetch(later, "")->status, 404);
  const std::string other = stored(mp4_bytes(3000, 5), alice)["id"];
  std::string swapped = url;
  swapped.replace(10, 22, other);
  EXPECT_EQ(fetch(swapped, "")->status, 404);
  EXPECT_EQ(fetch(url.substr(0, url.find("&sig=")), "")->status, 404);

  // Expired.
  clock_.advance_ms(601 * 1000);
  EXPECT_EQ(fetch(url, "")->status, 404);
}

TEST_F(MediaTest, TraversalAttemptsNeverLeaveTheMediaDirectory) {
  start_media();
  const std::string alice = token_for("alice");
  stored(mp4_bytes(1000), alice);
  for (const char* path :
       {"/v1/media/..", "/v1/media/%2e%2e", "/v1/media/%252e%252e", "/v1/media/..%2f..%2fapi",
        "/v1/media/%2e%2e%2f%2e%2e%2fapi%2fmedia-url.key", "/v1/media/abc%00def",
        "/v1/media/AAAAAAAAAAAAAAAAAAAA%00", "/v1/media/../../etc/passwd",
        "/v1/media/%2e%2e/thumbnail", "/v1/media/blobs", "/v1/media/tmp"}) {
    auto r = fetch(path, alice);
    ASSERT_TRUE(r) << path;
    EXPECT_TRUE(r->status == 400 || r->status == 404) << path << " " << r->status;
  }
}

TEST_F(MediaTest, ChunkedBodiesAreRefusedBeforeReadingExceptForUploads) {
  start_media();
  const std::string alice = token_for("alice");
  const size_t before = resident_bytes();
  // 10 MiB chunked to a JSON route, to an unknown path, and with a
  // Content-Length too: refused from the headers alone (the answer comes
  // before any body byte is sent).
  for (const std::string& head :
       {std::string("POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"),
        std::string("POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
        std::string("PUT /v1/users/me HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n")}) {
    EXPECT_EQ(chunked_head_then_body(port_, head, 10u << 20), 411) << head;
  }
  // The server did not keep the bodies (it would hold 10 MiB each). Not under
  // AddressSanitizer: its quarantine keeps freed memory resident on purpose.
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(resident_bytes(), before + (8u << 20));
#else
  (void)before;
#endif
  // The answer is the JSON error. (Not through httplib's chunked client: the
  // server answers without reading the body, so that client's write of it may
  // fail first, and it reports the failed write rather than the answer.)
  std::string answer;
  EXPECT_EQ(chunked_head_then_body(port_,
                                   "POST /v1/users HTTP/1.1\r\nHost: x\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n",
                                   0, &answer),
            411);
  const size_t body_at = answer.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos) << answer;
  EXPECT_EQ(json::parse(answer.substr(body_at + 4), nullptr, false)["error"], "length_required")
      << answer;
  // A chunked upload to /v1/media still works.
  client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
  const std::string bytes = mp4_bytes(300000, 5);
  auto r = upload_chunked(bytes, alice);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(body_of(r)["size"], bytes.size());
}

// A black one-band w x h image, saved as JPEG (progressive when `interlace`)
// or PNG (Adam7-interlaced when `interlace`).
std::string black_image(int w, int h, bool png, bool interlace) {
  VipsImage* img = nullptr;
  EXPECT_EQ(vips_black(&img, w, h, nullptr), 0);
  VipsImage* u8 = nullptr;
  EXPECT_EQ(vips_cast_uchar(img, &u8, nullptr), 0);
  void* buf = nullptr;
  size_t len = 0;
  if (png) {
    EXPECT_EQ(
        vips_pngsave_buffer(u8, &buf, &len, "interlace", interlace, "compression", 1, nullptr), 0);
  } else {
    EXPECT_EQ(vips_jpegsave_buffer(u8, &buf, &len, "interlace", interlace, nullptr), 0);
  }
  std::string out(static_cast<const char*>(buf), len);
  g_free(buf);
  g_object_unref(u8);
  g_object_unref(img);
  return out;
}

TEST_F(MediaTest, ThumbnailPixelCapsLowerForInterlacedImages) {
  start_media();
  const std::string alice = token_for("alice");
  make_jpeg(1, 1);  // libvips initialised
  // 12 megapixels: a baseline JPEG gets a thumbnail; a progressive JPEG or
  // an interlaced PNG (decoded whole) does not.
  EXPECT_EQ(stored(black_image(4000, 3000, false, false), alice)["thumbnail"], true);
  EXPECT_EQ(stored(black_image(4000, 3000, false, true), alice)["thumbnail"], false);
  EXPECT_EQ(stored(black_image(4000, 3000, true, true), alice)["thumbnail"], false);
  // Under 10 megapixels, interlaced is fine.
  EXPECT_EQ(stored(black_image(3000, 3000, false, true), alice)["thumbnail"], true);
  // Over 40 megapixels: none, whatever the format.
  EXPECT_EQ(stored(black_image(7000, 6000, false, false), alice)["thumbnail"], false);
  // No thumbnail temporaries are left behind.
  EXPECT_TRUE(fs::is_empty(config_.media_dir() + "/tmp"));
}

TEST_F(MediaTest, DiskFloorRefusesUploadsWith507AndLeavesNothing) {
  // A floor larger than any disk's free space.
  start_media({{"CHAT_MEDIA_MIN_FREE_MB", "1073741824"}});
  const std::string alice = token_for("alice");
  auto r = upload(mp4_bytes(50000), alice);  // with Content-Length
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 507);
  EXPECT_EQ(body_of(r)["error"], "insufficient_storage");
  // Chunked: refused while streaming (at the first check).
  const std::string big = mp4_bytes(200000);
  r = upload_chunked(big, alice);
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 507);
  EXPECT_EQ(body_of(r)["error"], "insufficient_storage");
  client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
  EXPECT_EQ(blob_count(), 0u);
  EXPECT_TRUE(fs::is_empty(config_.media_dir() + "/tmp"));
  EXPECT_EQ(media_->counters().refused, 2u);
}

TEST_F(MediaTest, DiskFloorZeroIsOff) {
  start_media({{"CHAT_MEDIA_MIN_FREE_MB", "0"}});
  EXPECT_EQ(upload(mp4_bytes(50000), token_for("alice"))->status, 201);
}

TEST_F(MediaTest, DiskFloorIsCheckedWhileStreaming) {
  start_media({{"CHAT_MEDIA_MIN_FREE_MB", "0"}});
  // A second library on the same directory whose floor leaves ~2 MiB: an
  // upload may start, but not go on past the next space check (4 MiB).
  struct statvfs st {};
  ASSERT_EQ(::statvfs(config_.media_dir().c_str(), &st), 0);
  const uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  MediaOptions o = media_->options();
  o.min_free_bytes = free_bytes - (2u << 20);
  auto lib = MediaLibrary::open(o, *media_store_, *reader_, clock_);
  ASSERT_TRUE(lib.is_ok());
  if (!(*lib)->has_room(0)) GTEST_SKIP() << "the disk's free space changed meanwhile";
  EXPECT_FALSE((*lib)->has_room(64u << 20));
  auto up = (*lib)->begin_upload();
  ASSERT_TRUE(up.is_ok());
  const std::string bytes = mp4_bytes(4096);
  EXPECT_TRUE((*up)->write(bytes.data(), bytes.size()) || (*up)->no_space());
  EXPECT_TRUE((*up)->no_space());
  EXPECT_EQ((*up)->size(), 0u);
  up = Result<std::unique_ptr<MediaLibrary::Upload>>(internal_error("gone"));
  EXPECT_TRUE(fs::is_empty(config_.media_dir() + "/tmp"));
}

}  // namespace
}  // namespace chat::api
