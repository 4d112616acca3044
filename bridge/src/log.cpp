#include "chat/bridge/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace chat::bridge {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto made = spdlog::get("bridge");
    if (!made) made = spdlog::stdout_color_mt("bridge");
    // The component's only logger: anything logged through spdlog's default
    // logger lands here too, and spdlog's unnamed default logger is dropped.
    spdlog::set_default_logger(made);
    return made;
  }();
  return *instance;
}

}  // namespace chat::bridge
