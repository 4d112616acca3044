// Media on the real stack: chat-api streaming a 20 MiB upload and download
// (its memory watched through /proc), the broker indexing a real media
// message so the recipient may fetch it, and chatctl send --file / fetch.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "media_samples.h"
#include "stack.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

using chat::test_media::mp4_bytes;

// A /proc/<pid>/status field in KiB (VmHWM: peak resident set).
int64_t proc_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

class MediaStack : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << stack.logs();
  }
  json upload(const std::string& bytes, const std::string& token) {
    httplib::Client c = stack.http_client();
    c.set_read_timeout(30, 0);
    c.set_write_timeout(30, 0);
    auto r = c.Post("/v1/media", {{"Authorization", "Bearer " + token}}, bytes,
                    "application/octet-stream");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 201) << r->body;
    return json::parse(r->body, nullptr, false);
  }
  Stack stack;
};

TEST_F(MediaStack, TwentyMiBStreamInAndOutWithoutGrowingTheServer) {
  const std::string alice = stack.register_user("alice");
  const std::string bytes = mp4_bytes(20 << 20, 42);
  // Warm up the code paths (thread pool, RocksDB, OpenSSL) before the baseline.
  upload(mp4_bytes(256 << 10, 1), alice);
  const pid_t pid = stack.api_pid();
  const int64_t before = proc_kib(pid, "VmHWM");
  ASSERT_GT(before, 0);

  json up = upload(bytes, alice);
  ASSERT_EQ(up["size"], bytes.size());
  EXPECT_EQ(up["content_type"], "video/mp4");
  const std::string path = "/v1/media/" + up["id"].get<std::string>();

  httplib::Client c = stack.http_client();
  c.set_read_timeout(30, 0);
  auto r = c.Get(path.c_str(), {{"Authorization", "Bearer " + alice}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_TRUE(r->body == bytes);
  const int64_t after = proc_kib(pid, "VmHWM");
  // Streamed both ways: the peak grows by far less than the 20 MiB moved.
  EXPECT_LT(after - before, 6 * 1024) << "VmHWM " << before << " -> " << after << " KiB";
  std::printf("chat-api VmHWM %lld -> %lld KiB\n", static_cast<long long>(before),
              static_cast<long long>(after));

  // Resume the second half with a Range request.
  const size_t half = bytes.size() / 2;
  r = c.Get(path.c_str(), {{"Authorization", "Bearer " + alice},
                           {"Range", "bytes=" + std::to_string(half) + "-"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->get_header_value("Content-Range"), "bytes " + std::to_string(half) + "-" +
                                                      std::to_string(bytes.size() - 1) + "/" +
                                                      std::to_string(bytes.size()));
  EXPECT_TRUE(bytes.substr(0, half) + r->body == bytes);
  // The signed URL needs no token.
  r = c.Get(up["url"].get<std::string>().c_str(), {{"Range", "bytes=0-23"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 206);
  EXPECT_EQ(r->body, bytes.substr(0, 24));
}

TEST_F(MediaStack, AMediaMessageLetsTheRecipientFetchIt) {
  const std::string alice = stack.register_user("alice");
  const std::string bob = stack.register_user("bob");
  const std::string carol = stack.register_user("carol");
  json up = upload(mp4_bytes(4096, 7), alice);
  const std::string id = up["id"];
  const std::string path = "/v1/media/" + id;
  EXPECT_EQ(stack.get(path, bob).first, 404);

  MqttClient phone(stack.mqtt_port(), device("alice", "phone", alice));
  ASSERT_EQ(phone.connect(), 0);
  // A media message whose body does not name a media id is refused.
  EXPECT_EQ(phone.publish("dm/bob", R"({"cid":"m0","type":"media","body":{"url":"x"}})"), 0x87);
  json body{{"media", id},        {"content_type", up["content_type"]},
            {"size", up["size"]}, {"sha256", up["sha256"]},
            {"url", up["url"]},   {"caption", "look"}};
  ASSERT_TRUE(is_success(
      phone.publish("dm/bob", json{{"cid", "m1"}, {"type", "media"}, {"body", body}}.dump())));
  // Acknowledged means archived: bob may fetch it now; carol may not.
  EXPECT_EQ(stack.get(path, bob).first, 200);
  EXPECT_EQ(stack.get(path, carol).first, 404);
  EXPECT_EQ(stack.get(path, alice).first, 200);
}

TEST_F(MediaStack, ChatctlSendFileAndFetch) {
  stack.register_user("alice");
  stack.register_user("bob");
  const std::string home = stack.data_dir() + "/chatctl-home";
  const std::string work = stack.data_dir() + "/files";
  fs::create_directories(work);
  const std::string bytes = mp4_bytes(300 << 10, 9);
  write_file(work + "/clip.mp4", bytes);

  int run = 0;
  auto chatctl = [&](std::vector<std::string> args) {
    const std::string log = work + "/chatctl-" + std::to_string(++run) + ".log";
    std::vector<std::string> argv = {CHAT_BIN_DIR "/chatctl",
                                     "--home",
                                     home,
                                     "--api",
                                     stack.base_url(),
                                     "--mqtt",
                                     "127.0.0.1:" + std::to_string(stack.mqtt_port())};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p;
    p.start(argv, {}, log);
    int rc = p.wait(30s);
    return std::make_pair(rc, read_file(log));
  };
  ASSERT_EQ(chatctl({"login", "alice", "--password", "correct horse"}).first, 0);
  ASSERT_EQ(chatctl({"login", "bob", "--password", "correct horse"}).first, 0);

  auto sent = chatctl({"--as", "alice", "--json", "send", "bob", "--file", work + "/clip.mp4",
                       "--caption", "our clip"});
  ASSERT_EQ(sent.first, 0) << sent.second;
  json envelope;
  std::istringstream lines(sent.second);
  for (std::string line; std::getline(lines, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("type", "") == "media") envelope = j;
  }
  ASSERT_TRUE(envelope.is_object()) << sent.second;
  EXPECT_EQ(envelope["body"]["caption"], "our clip");
  EXPECT_EQ(envelope["body"]["size"], bytes.size());
  const std::string id = envelope["body"]["media"];

  // bob fetches it; then resumes a half-written copy.
  auto fetched = chatctl({"--as", "bob", "fetch", id, "-o", work + "/got.mp4"});
  ASSERT_EQ(fetched.first, 0) << fetched.second;
  EXPECT_TRUE(read_file(work + "/got.mp4") == bytes);
  write_file(work + "/partial.mp4", bytes.substr(0, 100000));
  fetched = chatctl({"--as", "bob", "fetch", id, "-o", work + "/partial.mp4"});
  ASSERT_EQ(fetched.first, 0) << fetched.second;
  EXPECT_NE(fetched.second.find("resumed"), std::string::npos) << fetched.second;
  EXPECT_TRUE(read_file(work + "/partial.mp4") == bytes);
  // history shows it as a media message.
  auto history = chatctl({"--as", "bob", "history", "alice"});
  EXPECT_NE(history.second.find("[media] video/mp4 300.0 KiB \"our clip\" (chatctl fetch " + id),
            std::string::npos)
      << history.second;
  // A type the server refuses: exit 1 with its reason.
  write_file(work + "/page.html", "<html><script>alert(1)</script></html>");
  auto refused = chatctl({"--as", "alice", "send", "bob", "--file", work + "/page.html"});
  EXPECT_EQ(refused.first, 1);
  EXPECT_NE(refused.second.find("415"), std::string::npos) << refused.second;
}

}  // namespace
}  // namespace chat::testing
