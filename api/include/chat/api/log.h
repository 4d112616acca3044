// chat-api's one named spdlog logger, "api".
#pragma once

#include <spdlog/logger.h>

#include <memory>

namespace chat::api {

// The "api" logger, created (stdout, colour when a terminal) on first use and
// registered with spdlog. Thread-safe.
spdlog::logger& logger();

}  // namespace chat::api
