// Latency percentiles and the delivery accounting of one run.
#pragma once

#include <cstdint>
#include <vector>

namespace chat::bench {

struct Percentiles {
  uint64_t samples = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0, mean_ms = 0;
};

// Percentiles of latencies in µs (nearest rank). Reorders `us`.
Percentiles percentiles(std::vector<uint32_t>* us);

// Per (recipient, publisher): how often each sequence number arrived.
// Counts saturate at 255.
class ReceiptLog {
 public:
  // Records one arrival; returns its count so far (1 = first).
  int record(uint64_t seq) {
    if (seq >= counts_.size()) counts_.resize(seq + 1 + counts_.size() / 2, 0);
    uint8_t& c = counts_[seq];
    if (c < 255) ++c;
    return c;
  }
  int count(uint64_t seq) const { return seq < counts_.size() ? counts_[seq] : 0; }
  uint64_t size() const { return counts_.size(); }

 private:
  std::vector<uint8_t> counts_;
};

}  // namespace chat::bench
