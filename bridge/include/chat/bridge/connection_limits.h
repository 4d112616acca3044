// ConnectionLimits: accounting of open WebSockets, in total and per client IP
// (CHAT_WS_MAX_CONNECTIONS, CHAT_WS_MAX_PER_IP).
//
// Pure bookkeeping, no I/O; not thread-safe (the bridge has one thread).
// Addresses are compared as given: the caller passes one canonical spelling
// (chat-bridge strips the "::ffff:" of IPv4-mapped IPv6 addresses).
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>

namespace chat::bridge {

enum class Admission {
  kAdmit,
  kTooManyConnections,  // the total limit is reached
  kTooManyForIp,        // this address's limit is reached
};

class ConnectionLimits {
 public:
  ConnectionLimits(size_t max_total, size_t max_per_ip);

  // Whether one more connection from `ip` would be admitted now.
  Admission check(const std::string& ip) const;
  // Counts one more connection from `ip` when admitted; counts nothing otherwise.
  Admission acquire(const std::string& ip);
  // Forgets one connection from `ip` (one that acquire() admitted).
  void release(const std::string& ip);

  size_t total() const { return total_; }
  size_t count(const std::string& ip) const;
  // Number of distinct addresses with at least one connection.
  size_t addresses() const { return per_ip_.size(); }

 private:
  size_t max_total_;
  size_t max_per_ip_;
  size_t total_ = 0;
  std::unordered_map<std::string, size_t> per_ip_;
};

}  // namespace chat::bridge
