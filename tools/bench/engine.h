// chat-bench's load engine: libmosquitto clients driven without their own
// threads. Each event-loop thread (a Worker) owns a set of connections and
// runs one epoll loop over their sockets, calling mosquitto_loop_read /
// _write / _misc itself; every connection is touched only by its worker.
// Every phase (connect, subscribe, publish, drain) is bounded in time.
#pragma once

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/options.h"

namespace chat::bench {

// Runs the scenario of `config` and returns the report (see docs/benchmarks.md
// for the fields). Throws std::runtime_error when the run cannot be set up
// (REST failures, every connection refused, ...).
nlohmann::json run_benchmark(const Config& config);

// The fields every report starts with: what was run, with which bounds.
nlohmann::json report_header(const Config& config, int threads);

// The summary printed without --json.
std::string format_report(const nlohmann::json& report);

// True when the report shows a loss --expect-no-loss refuses: an acknowledged
// message some recipient never got, a refused or never-acknowledged publish,
// or a connection that failed.
bool report_has_loss(const nlohmann::json& report);

// Asks every running phase to end (SIGINT).
void request_stop();

}  // namespace chat::bench
