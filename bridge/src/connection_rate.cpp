#include "chat/bridge/connection_rate.h"

namespace chat::bridge {

ConnectionRate::ConnectionRate(const Clock& clock, double per_second, double burst,
                               size_t max_addresses)
    : limiter_(clock, RateLimit{per_second, burst}, max_addresses),
      log_allowance_(clock, RateLimit{1000.0 / kLogEveryMs, 1}, max_addresses) {}

ConnectionRate::Verdict ConnectionRate::admit(const std::string& ip) {
  const std::string key = address_key(ip);  // IPv6: the client's /64
  if (limiter_.take(key) == 0) return Verdict::kAdmit;
  return log_allowance_.take(key) == 0 ? Verdict::kRefuseAndLog : Verdict::kRefuse;
}

void ConnectionRate::prune() {
  limiter_.prune();
  log_allowance_.prune();
}

}  // namespace chat::bridge
