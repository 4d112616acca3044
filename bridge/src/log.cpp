#include "chat/bridge/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace chat::bridge {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    if (auto existing = spdlog::get("bridge")) return existing;
    return spdlog::stdout_color_mt("bridge");
  }();
  return *instance;
}

}  // namespace chat::bridge
