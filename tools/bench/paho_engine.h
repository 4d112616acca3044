// chat-bench's second load engine: Eclipse Paho C (MQTTAsync), which speaks
// MQTT over TCP and over WebSocket with the same code. The bridge benchmark
// runs it both ways against the same broker, so the ratio isolates the
// bridge; the libmosquitto engine (engine.h) stays the fast default.
//
// Scenarios: pairs, fan-in and custom (publisher i -> subscriber i % M). The
// report has the fields of engine.h's, plus "client" and "transport".
#pragma once

#include <nlohmann/json.hpp>

#include "bench/options.h"

namespace chat::bench {

// Throws std::runtime_error when the run cannot be set up.
nlohmann::json run_paho_benchmark(const Config& config);

}  // namespace chat::bench
