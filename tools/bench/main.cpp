// chat-bench: load generator for the chat platform and a bare MQTT broker.
// Everything lives in chat_bench (tools/bench/); see chat-bench --help.
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "bench/engine.h"
#include "bench/options.h"
#include "bench/rest.h"

int main(int argc, char** argv) {
  using namespace chat::bench;
  Config config;
  bool help = false;
  std::string err = parse_args(std::vector<std::string>(argv + 1, argv + argc), &config, &help);
  if (help) {
    std::cout << usage();
    return 0;
  }
  if (!err.empty()) {
    std::cerr << "chat-bench: " << err << "\n(chat-bench --help lists the options)\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = [](int) { request_stop(); };
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  nlohmann::json report;
  try {
    report = run_benchmark(config);
  } catch (const std::exception& e) {
    std::cerr << "chat-bench: " << e.what() << "\n";
    return 3;
  }
  if (config.json) {
    std::cout << report.dump() << std::endl;
  } else {
    std::cout << format_report(report) << std::flush;
  }
  if (config.expect_no_loss && report_has_loss(report)) {
    std::cerr << "chat-bench: loss: not everything acknowledged was delivered\n";
    return 1;
  }
  return 0;
}
