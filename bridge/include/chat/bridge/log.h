// chat-bridge's one named spdlog logger, "bridge".
#pragma once

#include <spdlog/logger.h>

namespace chat::bridge {

// The "bridge" logger, created (stdout, colour when a terminal) on first use
// and registered with spdlog. Thread-safe.
spdlog::logger& logger();

}  // namespace chat::bridge
