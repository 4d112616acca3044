// Append throughput of the archive: store_bench [participants] [messages] [dir].
// Each message has a ~100-byte envelope. With 2 participants the messages go
// round-robin over 100 DMs; with more, round-robin over 4 groups of that size.
// Not a test: run by hand (see store/README.md for the last figures).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "chat/common/ids.h"
#include "chat/store/archive.h"

int main(int argc, char** argv) {
  using namespace chat;
  const size_t participants = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100;
  const size_t messages = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 20000;
  std::string dir =
      argc > 3 ? argv[3] : (std::filesystem::temp_directory_path() / "chat-store-bench").string();
  std::filesystem::remove_all(dir);

  store::ArchiveOptions options;
  options.path = dir;
  auto opened = store::Archive::open(options);
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.status().to_string().c_str());
    return 1;
  }
  auto archive = std::move(opened).value();

  const size_t convs = participants <= 2 ? 100 : 4;
  std::vector<std::vector<std::string>> members(convs);
  std::vector<std::string> conv_ids(convs);
  for (size_t c = 0; c < convs; ++c) {
    for (size_t p = 0; p < participants; ++p) {
      members[c].push_back("user" + std::to_string((c * participants + p) % 1000));
    }
    conv_ids[c] = participants <= 2 ? "dm:" + members[c][0] + ":" + members[c][1]
                                    : "g:group" + std::to_string(c);
  }

  uint64_t base = 0x0190000000000000ULL;
  auto thread_cpu = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  };
  const double cpu_start = thread_cpu();
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < messages; ++i) {
    const size_t c = i % convs;
    store::AppendRequest request;
    request.id = IdGenerator::format(base + i + 1);
    request.conv = conv_ids[c];
    request.from = members[c][i % participants];
    request.client_id = request.from + ":phone";
    request.cid = "c" + std::to_string(i);
    std::string head = R"({"v":1,"id":")" + request.id + R"(","conv":")" + request.conv +
                       R"(","from":")" + request.from + R"(","body":")";
    request.envelope = head + std::string(head.size() < 98 ? 98 - head.size() : 1, 'x') + "\"}";
    request.participants = members[c];
    Status s = archive->append(request);
    if (!s.is_ok()) {
      std::fprintf(stderr, "append: %s\n", s.to_string().c_str());
      return 1;
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = thread_cpu() - cpu_start;
  // Wall-clock rate, and the rate the writer thread's own CPU time allows
  // (less sensitive to other load on a shared machine).
  std::printf(
      "participants=%zu messages=%zu seconds=%.3f appends/s=%.0f cpu-bound appends/s=%.0f\n",
      participants, messages, seconds, static_cast<double>(messages) / seconds,
      static_cast<double>(messages) / cpu);
  // The slowest mark_read: from the conversation's first message, so the
  // unread recount walks all of it (up to the 10,000 cap).
  start = std::chrono::steady_clock::now();
  Status marked = archive->mark_read(members[0][1], conv_ids[0], IdGenerator::format(base + 1));
  if (!marked.is_ok()) {
    std::fprintf(stderr, "mark_read: %s\n", marked.to_string().c_str());
    return 1;
  }
  std::printf(
      "mark_read over %zu messages: %.2f ms\n", (messages + convs - 1) / convs,
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  archive.reset();
  if (argc <= 3) std::filesystem::remove_all(dir);  // a directory given is kept for inspection
  return 0;
}
