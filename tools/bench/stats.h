// Latency percentiles and the delivery accounting of one run.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <unordered_map>
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

// What one publisher did and what one subscriber got: the inputs of the
// exact accounting both engines share.
struct PublisherTally {
  uint32_t index = 0;
  uint64_t sent = 0, acked = 0, refused = 0;
  const std::vector<uint8_t>* ack = nullptr;  // per seq: 0 unacknowledged, 1 ok, 2 refused
};
struct SubscriberTally {
  int index = 0;
  const std::unordered_map<uint32_t, ReceiptLog>* receipts = nullptr;  // by publisher index
  uint64_t other_messages = 0;  // not on the counted topic, or no stamp
};

// Writes sent, acked, refused, unacked, expected, received, lost, duplicated,
// received_unacked, stray and other_messages into `report`. recipients[i]
// lists the subscriber indexes publisher i addresses.
void account_deliveries(const std::vector<PublisherTally>& pubs,
                        const std::vector<SubscriberTally>& subs,
                        const std::vector<std::vector<int>>& recipients, nlohmann::json* report);

// Writes send_s, deliver_s, acked_per_s, delivered_per_s (from the send start
// to the last ack / arrival, µs) and latency_ms percentiles. Reorders `lat_us`.
void report_rates(uint64_t start_us, uint64_t last_ack_us, uint64_t last_receive_us,
                  std::vector<uint32_t>* lat_us, nlohmann::json* report);

}  // namespace chat::bench
