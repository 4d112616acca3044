// The push pipeline's counters for GET /metrics (docs/operations.md,
// "Metrics"; docs/push.md). Thread-safe: the push workers count, the
// /metrics handler reads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

namespace chat::api {

class PromWriter;

class PushMetrics {
 public:
  // A notification the provider accepted.
  void sent(std::string_view platform);
  // A send that did not deliver, by reason: retry (transient, tried again
  // later), gave_up (attempts or age exhausted), rejected, unregistered,
  // provider_missing (no provider configured for the platform), expired.
  void failed(std::string_view platform, std::string_view reason);
  // A push target removed because the provider reported it unregistered.
  void target_removed();
  // Where chat_push_queue_depth comes from (the push store's count).
  void set_queue_depth_source(std::function<size_t()> source);

  uint64_t sent_count(std::string_view platform) const;
  uint64_t failed_count(std::string_view platform, std::string_view reason) const;
  uint64_t targets_removed() const;

  // chat_push_sent_total{platform}, chat_push_failed_total{platform,reason},
  // chat_push_queue_depth, chat_push_targets_removed_total.
  void write(PromWriter& w) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> sent_;               // by platform
  std::map<std::pair<std::string, std::string>, uint64_t> failed_;  // (platform, reason)
  uint64_t targets_removed_ = 0;
  std::function<size_t()> queue_depth_;
};

}  // namespace chat::api
