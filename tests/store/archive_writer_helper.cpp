// A broker stand-in for the crash tests (archive_test.cpp, ReaderSurvives*):
// a separate process that owns the archive as its primary and dies without
// closing it, as a broker killed with SIGKILL does.
//
//   archive_writer_helper <archive dir>
//
// Opens the Archive (recovering whatever the previous owner left in the WAL),
// prints "ready" (or "error <message>" and exits 1), then obeys one command per
// line on stdin, answering each with one line:
//   append <first> <count>  appends messages with ids id(first) .. id(first +
//                           count - 1) to dm:alice:bob; answers "done" once
//                           the WAL has them
//   block <0|1>             alice unblocks (0) / blocks (1) bob; "done"
//   kill                    raise(SIGKILL): no answer, the DB is never closed
// End of input is "kill" too.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "chat/common/ids.h"
#include "chat/store/archive.h"

namespace {

// The same ids and envelopes as the tests' helpers (archive_test.cpp).
std::string id_of(uint64_t n) { return chat::IdGenerator::format(0x0190000000000000ULL + n); }

[[noreturn]] void die() {
  std::fflush(stdout);
  raise(SIGKILL);
  _exit(2);  // not reached
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("error usage: archive_writer_helper <archive dir>\n");
    return 1;
  }
  chat::store::ArchiveOptions options;
  options.path = argv[1];
  auto opened = chat::store::Archive::open(options);
  if (!opened.is_ok()) {
    std::printf("error %s\n", opened.status().to_string().c_str());
    return 1;
  }
  // Never destroyed: the process dies with the DB open.
  auto* archive = std::move(opened).value().release();
  std::printf("ready\n");
  std::fflush(stdout);

  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "append") {
      uint64_t first = 0;
      uint64_t count = 0;
      in >> first >> count;
      for (uint64_t n = first; n < first + count; ++n) {
        chat::store::AppendRequest request;
        request.id = id_of(n);
        request.conv = "dm:alice:bob";
        request.from = "alice";
        request.client_id = "alice:phone";
        request.cid = "c" + std::to_string(n);
        request.envelope = R"({"id":")" + request.id +
                           R"(","conv":"dm:alice:bob","from":"alice",)" + R"("body":"m)" +
                           std::to_string(n) + R"("})";
        request.participants = {"alice", "bob"};
        chat::Status s = archive->append(request);
        if (!s.is_ok()) {
          std::printf("error %s\n", s.to_string().c_str());
          die();
        }
      }
      std::printf("done\n");
      std::fflush(stdout);
    } else if (command == "block") {
      int flag = 0;
      in >> flag;
      chat::Status s = archive->set_block("alice", "bob", flag != 0);
      if (!s.is_ok()) {
        std::printf("error %s\n", s.to_string().c_str());
        die();
      }
      std::printf("done\n");
      std::fflush(stdout);
    } else if (command == "kill") {
      die();
    } else {
      std::printf("error unknown command %s\n", command.c_str());
      std::fflush(stdout);
    }
  }
  die();
}
