#include "chat/api/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace chat::api {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto made = spdlog::get("api");
    if (!made) made = spdlog::stdout_color_mt("api");
    // The component's only logger: anything logged through spdlog's default
    // logger lands here too, and spdlog's unnamed default logger is dropped.
    spdlog::set_default_logger(made);
    return made;
  }();
  return *instance;
}

}  // namespace chat::api
