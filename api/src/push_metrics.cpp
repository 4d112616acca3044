#include "chat/api/push_metrics.h"

#include "chat/api/metrics.h"

namespace chat::api {

void PushMetrics::sent(std::string_view platform) {
  std::lock_guard lock(mu_);
  auto it = sent_.find(platform);
  if (it == sent_.end()) it = sent_.emplace(std::string(platform), 0).first;
  ++it->second;
}

void PushMetrics::failed(std::string_view platform, std::string_view reason) {
  std::lock_guard lock(mu_);
  ++failed_[{std::string(platform), std::string(reason)}];
}

void PushMetrics::target_removed() {
  std::lock_guard lock(mu_);
  ++targets_removed_;
}

void PushMetrics::set_queue_depth_source(std::function<size_t()> source) {
  std::lock_guard lock(mu_);
  queue_depth_ = std::move(source);
}

uint64_t PushMetrics::sent_count(std::string_view platform) const {
  std::lock_guard lock(mu_);
  auto it = sent_.find(platform);
  return it == sent_.end() ? 0 : it->second;
}

uint64_t PushMetrics::failed_count(std::string_view platform, std::string_view reason) const {
  std::lock_guard lock(mu_);
  auto it = failed_.find({std::string(platform), std::string(reason)});
  return it == failed_.end() ? 0 : it->second;
}

uint64_t PushMetrics::targets_removed() const {
  std::lock_guard lock(mu_);
  return targets_removed_;
}

void PushMetrics::write(PromWriter& w) const {
  std::lock_guard lock(mu_);
  w.family("chat_push_sent_total", "Push notifications the provider accepted, by platform.",
           "counter");
  // Both platforms always appear, so a rate() over them starts at 0.
  for (const char* platform : {"apns", "fcm"}) {
    auto it = sent_.find(std::string_view(platform));
    w.sample("chat_push_sent_total", {{"platform", platform}},
             static_cast<double>(it == sent_.end() ? 0 : it->second));
  }
  w.family("chat_push_failed_total",
           "Push sends that did not deliver, by platform and reason (retry: tried again later; "
           "gave_up: attempts or age exhausted; rejected; unregistered; provider_missing; "
           "expired).",
           "counter");
  for (const auto& [key, n] : failed_) {
    w.sample("chat_push_failed_total", {{"platform", key.first}, {"reason", key.second}},
             static_cast<double>(n));
  }
  w.family("chat_push_queue_depth", "Push notifications queued and not yet sent or given up.",
           "gauge");
  w.sample("chat_push_queue_depth", {}, queue_depth_ ? static_cast<double>(queue_depth_()) : 0);
  w.family("chat_push_targets_removed_total",
           "Push targets removed because the provider reported the token unregistered.", "counter");
  w.sample("chat_push_targets_removed_total", {}, static_cast<double>(targets_removed_));
}

}  // namespace chat::api
