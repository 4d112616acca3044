#include "chat/api/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace chat::api {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    if (auto existing = spdlog::get("api")) return existing;
    return spdlog::stdout_color_mt("api");
  }();
  return *instance;
}

}  // namespace chat::api
