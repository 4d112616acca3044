#include "chat/bridge/app.h"

#include <netdb.h>
#include <signal.h>
#include <spdlog/cfg/env.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "chat/bridge/config.h"
#include "chat/bridge/log.h"
#include "chat/bridge/server.h"
#include "chat/common/log_fields.h"

namespace chat::bridge {
namespace {

int fail(int code, const std::string& what) {
  std::fprintf(stderr, "chat-bridge: %s\n", what.c_str());
  return code;
}

// The broker's address as a numeric IP, resolved once so the event loop
// never waits on DNS.
Result<std::string> resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    return invalid_argument("CHAT_BRIDGE_UPSTREAM: cannot resolve '" + host +
                            "': " + gai_strerror(rc));
  }
  char numeric[NI_MAXHOST] = {};
  rc = getnameinfo(found->ai_addr, found->ai_addrlen, numeric, sizeof numeric, nullptr, 0,
                   NI_NUMERICHOST);
  freeaddrinfo(found);
  if (rc != 0) {
    return invalid_argument("CHAT_BRIDGE_UPSTREAM: cannot resolve '" + host +
                            "': " + gai_strerror(rc));
  }
  return std::string(numeric);
}

}  // namespace

int run(int argc, char** argv) {
  if (argc > 1) {
    std::fprintf(stderr,
                 "usage: chat-bridge\n"
                 "Configuration comes from CHAT_* environment variables (see bridge/README.md).\n");
    return 2;
  }
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug shows every open and close
  logger();                        // "bridge", from here on spdlog's default logger too
  auto config_or = Config::from_env();
  if (!config_or) return fail(2, config_or.status().message());
  const Config config = std::move(config_or).value();
  if (Status s = config.check_files(); !s.is_ok()) return fail(2, s.message());
  auto upstream = resolve(config.upstream_host);
  if (!upstream) return fail(2, upstream.status().message());

  // SIGINT/SIGTERM arrive through a signalfd on the event loop; SIGPIPE is
  // of no use to a server that checks every write.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
    return fail(1, std::string("cannot block SIGINT/SIGTERM: ") + std::strerror(errno));
  }
  signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd < 0) return fail(1, std::string("signalfd: ") + std::strerror(errno));

  auto server = Server::start(config, *upstream, signal_fd);
  if (!server) {
    return fail(server.status().code() == StatusCode::kInvalidArgument ? 2 : 1,
                server.status().message());
  }
  const std::string url =
      std::string(config.tls() ? "wss" : "ws") + "://" +
      (config.bind.find(':') != std::string::npos ? "[" + config.bind + "]" : config.bind) + ":" +
      std::to_string((*server)->port()) + "/mqtt";
  logger().info(
      "listening: url={} bind={} port={} upstream={} upstream_ip={} tls={} max_connections={} "
      "max_per_ip={} buffer_bytes={} max_frame_bytes={} idle_s={}",
      log_value(url), log_value(config.bind), (*server)->port(), log_value(config.upstream()),
      log_value(*upstream), config.tls() ? "on" : "off", config.max_connections, config.max_per_ip,
      config.buffer_bytes, config.max_frame_bytes, config.idle_timeout_s);
  Status s = (*server)->run();
  if (!s.is_ok()) return fail(1, s.message());
  logger().info("stopped: status=ok");
  return 0;
}

}  // namespace chat::bridge
