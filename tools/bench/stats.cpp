#include "bench/stats.h"

#include <algorithm>
#include <cmath>

namespace chat::bench {

Percentiles percentiles(std::vector<uint32_t>* us) {
  Percentiles p;
  p.samples = us->size();
  if (us->empty()) return p;
  std::sort(us->begin(), us->end());
  auto at = [&](double q) {
    // Nearest rank: the smallest value with at least q of the samples <= it.
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(us->size())));
    if (rank == 0) rank = 1;
    return static_cast<double>((*us)[rank - 1]) / 1000.0;
  };
  p.p50_ms = at(0.50);
  p.p90_ms = at(0.90);
  p.p99_ms = at(0.99);
  p.max_ms = static_cast<double>(us->back()) / 1000.0;
  double sum = 0;
  for (uint32_t v : *us) sum += v;
  p.mean_ms = sum / static_cast<double>(us->size()) / 1000.0;
  return p;
}

void account_deliveries(const std::vector<PublisherTally>& pubs,
                        const std::vector<SubscriberTally>& subs,
                        const std::vector<std::vector<int>>& recipients, nlohmann::json* report) {
  uint64_t sent = 0, acked = 0, refused = 0, expected = 0, received = 0, lost = 0, dup = 0;
  uint64_t received_unacked = 0, stray = 0, other = 0;
  for (const PublisherTally& p : pubs) {
    sent += p.sent;
    acked += p.acked;
    refused += p.refused;
    for (int r : recipients[p.index]) {
      const SubscriberTally& s = subs[static_cast<size_t>(r)];
      auto it = s.receipts->find(p.index);
      const ReceiptLog* log = it == s.receipts->end() ? nullptr : &it->second;
      for (uint64_t seq = 0; seq < p.sent; ++seq) {
        int c = log ? log->count(seq) : 0;
        if ((*p.ack)[seq] == 1) {
          ++expected;
          if (c == 0) ++lost;
        } else if (c > 0) {
          ++received_unacked;
        }
        if (c > 0) ++received;
        if (c > 1) dup += static_cast<uint64_t>(c - 1);
      }
    }
  }
  // Arrivals from a publisher that does not address that subscriber.
  for (const SubscriberTally& s : subs) {
    other += s.other_messages;
    for (const auto& [pub, log] : *s.receipts) {
      const auto& rs = recipients[pub];
      if (std::find(rs.begin(), rs.end(), s.index) == rs.end()) {
        for (uint64_t seq = 0; seq < log.size(); ++seq)
          stray += static_cast<uint64_t>(log.count(seq));
      }
    }
  }
  nlohmann::json& r = *report;
  r["sent"] = sent;
  r["acked"] = acked;
  r["refused"] = refused;
  r["unacked"] = sent - acked - refused;
  r["expected"] = expected;
  r["received"] = received;
  r["lost"] = lost;
  r["duplicated"] = dup;
  r["received_unacked"] = received_unacked;
  r["stray"] = stray;
  r["other_messages"] = other;
}

void report_rates(uint64_t start_us, uint64_t last_ack_us, uint64_t last_receive_us,
                  std::vector<uint32_t>* lat_us, nlohmann::json* report) {
  nlohmann::json& r = *report;
  const double ack_s = static_cast<double>(last_ack_us - std::min(start_us, last_ack_us)) * 1e-6;
  const double recv_s =
      static_cast<double>(last_receive_us - std::min(start_us, last_receive_us)) * 1e-6;
  const double acked = r.value("acked", 0.0), received = r.value("received", 0.0);
  r["send_s"] = ack_s;
  r["deliver_s"] = recv_s;
  r["acked_per_s"] = ack_s > 0 ? acked / ack_s : 0.0;
  r["delivered_per_s"] = recv_s > 0 ? received / recv_s : 0.0;
  Percentiles pc = percentiles(lat_us);
  r["latency_ms"] = {{"p50", pc.p50_ms}, {"p90", pc.p90_ms},   {"p99", pc.p99_ms},
                     {"max", pc.max_ms}, {"mean", pc.mean_ms}, {"samples", pc.samples}};
}

}  // namespace chat::bench
