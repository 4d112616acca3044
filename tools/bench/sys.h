// Clocks, /proc readings and small utilities both load engines share.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace chat::bench {

using Clock = std::chrono::steady_clock;

// Steady-clock microseconds since the process started: the time base of the
// stamps in benchmark payloads (sender and receiver are the same process).
uint64_t now_us();
double seconds_since(Clock::time_point t);
Clock::time_point after(double seconds);

// VmRSS of a process in KiB, -1 when unreadable.
long rss_kb(int pid);
// CPU seconds (user + system) of a process (all threads), of its main thread,
// and of this process.
double process_cpu(int pid);
double main_thread_cpu(int pid);
double self_cpu();
// Raises RLIMIT_NOFILE as far as allowed (10,000 connections need it).
void raise_fd_limit();
// The SIGINT flag every phase loop of both engines polls.
bool stop_requested();
void request_stop_flag();

// n random characters of [a-z0-9].
std::string random_tag(size_t n);

}  // namespace chat::bench
