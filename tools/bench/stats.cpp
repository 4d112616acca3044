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

}  // namespace chat::bench
