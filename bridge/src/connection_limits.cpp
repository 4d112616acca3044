#include "chat/bridge/connection_limits.h"

namespace chat::bridge {

ConnectionLimits::ConnectionLimits(size_t max_total, size_t max_per_ip)
    : max_total_(max_total), max_per_ip_(max_per_ip) {}

Admission ConnectionLimits::check(const std::string& ip) const {
  if (total_ >= max_total_) return Admission::kTooManyConnections;
  if (count(ip) >= max_per_ip_) return Admission::kTooManyForIp;
  return Admission::kAdmit;
}

Admission ConnectionLimits::acquire(const std::string& ip) {
  Admission a = check(ip);
  if (a != Admission::kAdmit) return a;
  ++per_ip_[ip];
  ++total_;
  return a;
}

void ConnectionLimits::release(const std::string& ip) {
  auto it = per_ip_.find(ip);
  if (it == per_ip_.end()) return;  // never admitted: nothing to forget
  if (--it->second == 0) per_ip_.erase(it);
  --total_;
}

size_t ConnectionLimits::count(const std::string& ip) const {
  auto it = per_ip_.find(ip);
  return it == per_ip_.end() ? 0 : it->second;
}

}  // namespace chat::bridge
