#include "chat/api/push_worker.h"

#include <algorithm>
#include <exception>
#include <nlohmann/json.hpp>

#include "chat/api/log.h"
#include "chat/api/service.h"
#include "chat/common/ids.h"
#include "chat/common/log_fields.h"

namespace chat::api {

using nlohmann::json;

namespace {

// How often a pending device-list resync is tried (docs/push.md).
constexpr auto kResyncInterval = std::chrono::seconds(5);
// Wake-ups closer together than this share one archive catch-up.
constexpr auto kMinCatchUpInterval = std::chrono::milliseconds(50);

const char* outcome_name(PushOutcome outcome) {
  switch (outcome) {
    case PushOutcome::kSent:
      return "sent";
    case PushOutcome::kRetry:
      return "retry";
    case PushOutcome::kUnregistered:
      return "unregistered";
    case PushOutcome::kRejected:
      return "rejected";
  }
  return "unknown";
}

std::string target_of(const store::PushJob& job) { return job.user + ":" + job.device; }

// A record's "targets" as (user, device) pairs; malformed entries are skipped.
std::vector<std::pair<std::string, std::string>> record_targets(const json& record) {
  std::vector<std::pair<std::string, std::string>> out;
  auto it = record.find("targets");
  if (it == record.end() || !it->is_array()) return out;
  for (const auto& t : *it) {
    std::string user, device;
    if (t.is_string() && split_client_id(t.get_ref<const std::string&>(), &user, &device)) {
      out.emplace_back(std::move(user), std::move(device));
    }
  }
  return out;
}

std::string string_member(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

int64_t push_retry_delay_ms(const PushWorkerOptions& options, int attempts,
                            std::chrono::seconds retry_after) {
  int64_t delay = std::max<int64_t>(options.backoff_min_ms, 1);
  for (int i = 1; i < attempts && delay < options.backoff_max_ms; ++i) delay *= 2;
  delay = std::min(delay, options.backoff_max_ms);
  const int64_t asked = std::min<int64_t>(std::max<int64_t>(retry_after.count(), 0) * 1000,
                                          options.retry_after_max_ms);
  return std::max(delay, asked);
}

std::string push_preview(const std::string& envelope, size_t max_chars) {
  auto j = json::parse(envelope, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  auto body = j.find("body");
  if (body == j.end()) return "";
  std::string text;
  if (body->is_string()) {
    text = body->get<std::string>();
  } else if (body->is_object()) {
    text = string_member(*body, "text");
  }
  // Cut at a code point boundary: count lead bytes.
  size_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) == 0x80) continue;
    if (chars == max_chars) return text.substr(0, i) + "\u2026";
    ++chars;
  }
  return text;
}

PushWorker::PushWorker(store::PushStore& store, store::ArchiveReader& archive,
                       DeviceRegistry& devices, ControlChannel& control, PushProviders providers,
                       PushMetrics& metrics, const Clock& clock, PushWorkerOptions options)
    : store_(store),
      archive_(archive),
      devices_(devices),
      control_(control),
      providers_(std::move(providers)),
      metrics_(metrics),
      clock_(clock),
      options_(options) {
  metrics_.set_queue_depth_source([&store] { return store.queue_depth(); });
}

PushWorker::~PushWorker() {
  stop();
  metrics_.set_queue_depth_source(nullptr);
}

void PushWorker::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  stopping_ = false;
  dispatcher_ = std::thread([this] { dispatch_loop(); });
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    senders_.emplace_back([this] { sender_loop(); });
  }
}

void PushWorker::stop() {
  {
    std::lock_guard lock(mu_);
    if (!started_) return;
    stopping_ = true;
  }
  wake_cv_.notify_all();
  work_cv_.notify_all();
  if (dispatcher_.joinable()) dispatcher_.join();
  for (auto& t : senders_) {
    if (t.joinable()) t.join();
  }
  senders_.clear();
  std::lock_guard lock(mu_);
  work_.clear();
  in_flight_.clear();
  started_ = false;
}

void PushWorker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  wake_cv_.notify_one();
}

// ---- the feed ------------------------------------------------------------------

Result<size_t> PushWorker::take_records() {
  if (Status s = archive_.catch_up(); !s.is_ok()) return s;
  size_t taken = 0;
  for (;;) {
    auto cursor = store_.cursor();
    if (!cursor) return cursor.status();
    auto records = archive_.push_records(*cursor, options_.batch);
    if (!records) return records.status();
    if (records->empty()) break;
    std::vector<store::PushJob> jobs;
    const int64_t now = clock_.now_ms();
    for (const auto& record : *records) {
      auto j = json::parse(record.json, nullptr, /*allow_exceptions=*/false);
      const auto targets = j.is_object() ? record_targets(j) : decltype(record_targets(j)){};
      if (targets.empty()) {
        logger().warn("push.record_malformed: id={} action=skipped", log_value(record.id));
        continue;
      }
      // The age limit runs from the message's time (records written before
      // "ts" existed: from now).
      auto ts = j.find("ts");
      const int64_t created_ms = ts != j.end() && ts->is_number_integer() && ts->get<int64_t>() > 0
                                     ? ts->get<int64_t>()
                                     : now;
      for (const auto& [user, device] : targets) {
        if (now - created_ms > options_.max_age_ms) {
          auto target = store_.target(user, device);
          const std::string platform =
              target && target->has_value() ? (*target)->platform : std::string("unknown");
          metrics_.failed(platform, "expired");
          logger().warn("push.given_up: message={} target={} platform={} attempts=0 reason=expired",
                        log_value(record.id), log_value(user + ":" + device), log_value(platform));
          continue;
        }
        store::PushJob job;
        job.message_id = record.id;
        job.user = user;
        job.device = device;
        job.conv = string_member(j, "conv");
        job.from = string_member(j, "from");
        job.type = string_member(j, "type");
        job.created_ms = created_ms;
        job.due_ms = now;
        jobs.push_back(std::move(job));
      }
    }
    size_t queued = 0;
    if (Status s = store_.enqueue(jobs, records->back().id, &queued); !s.is_ok()) return s;
    logger().debug("push.records_taken: records={} jobs={} cursor={}", records->size(), queued,
                   log_value(records->back().id));
    taken += records->size();
    if (records->size() < options_.batch) break;
  }
  return taken;
}

Status PushWorker::confirm_records() {
  auto cursor = store_.cursor();
  if (!cursor) return cursor.status();
  std::lock_guard lock(confirm_mu_);
  if (cursor->empty() || *cursor == confirmed_) return Status::ok();
  auto answer = control_.call({{"op", "push.done"}, {"upto", *cursor}}, kControlTimeout);
  if (!answer) return answer.status();
  confirmed_ = *cursor;
  return Status::ok();
}

// ---- sending -------------------------------------------------------------------

Result<size_t> PushWorker::send_due() {
  size_t attempted = 0;
  for (;;) {
    auto due = store_.due_jobs(clock_.now_ms(), options_.batch);
    if (!due) return due.status();
    for (const auto& job : *due) process(job);
    attempted += due->size();
    if (due->size() < options_.batch) break;
  }
  return attempted;
}

std::string PushWorker::preview_for(const store::PushJob& job) {
  // Content-free unless the operator allows previews, and then only of plain text.
  if (!options_.preview || job.type != "text") return "";
  auto envelope = archive_.envelope(job.conv, job.message_id);
  if (!envelope || !envelope->has_value()) return "";
  return push_preview(**envelope, options_.preview_chars);
}

void PushWorker::log_missing_provider(const std::string& platform) {
  std::lock_guard lock(confirm_mu_);
  if (!missing_logged_.insert(platform).second) return;
  logger().warn(
      "push.provider_missing: platform={} action=dropped hint=\"configure CHAT_FCM_* / "
      "CHAT_APNS_* (docs/push.md); logged once\"",
      log_value(platform));
}

void PushWorker::process(const store::PushJob& job) {
  const int64_t now = clock_.now_ms();
  const auto done = [&](const char* why) {
    if (Status s = store_.complete(job); !s.is_ok()) {
      logger().error("push.store_failed: message={} target={} step=complete after={} error={}",
                     log_value(job.message_id), log_value(target_of(job)), why,
                     log_value(s.to_string()));
    }
  };
  // A store failure before the send: retried after a backoff (attempts
  // unchanged), never at once (that would spin the dispatcher).
  const auto store_failed = [&](const char* step, const Status& error) {
    store::PushJob next = job;
    next.due_ms = now + push_retry_delay_ms(options_, std::max(job.attempts, 1), {});
    Status s = store_.reschedule(next);
    logger().error(
        "push.store_failed: message={} target={} step={} error={} retry_in_ms={} "
        "rescheduled={}",
        log_value(job.message_id), log_value(target_of(job)), step, log_value(error.to_string()),
        next.due_ms - now, s.is_ok());
  };
  auto target = store_.target(job.user, job.device);
  if (!target) return store_failed("target", target.status());
  if (!target->has_value()) {
    // Unregistered since the message was archived: nobody to notify.
    logger().debug("push.dropped: message={} target={} reason=no_target", log_value(job.message_id),
                   log_value(target_of(job)));
    return done("no_target");
  }
  const store::PushTargetRecord& t = **target;
  auto provider = providers_.find(t.platform);
  if (provider == providers_.end() || provider->second == nullptr) {
    log_missing_provider(t.platform);
    metrics_.failed(t.platform, "provider_missing");
    return done("provider_missing");
  }
  if (now - job.created_ms > options_.max_age_ms) {
    metrics_.failed(t.platform, "expired");
    logger().warn("push.given_up: message={} target={} platform={} attempts={} reason=expired",
                  log_value(job.message_id), log_value(target_of(job)), log_value(t.platform),
                  job.attempts);
    return done("expired");
  }
  if (job.in_flight) {
    // A send was started and its outcome never stored (a crash, or a failed
    // complete()): it may have reached the device. At most once (CONTRACT §4):
    // dropped, the device's sync still gets the message.
    metrics_.failed(t.platform, "uncertain");
    logger().warn("push.dropped_uncertain: message={} target={} platform={} attempts={}",
                  log_value(job.message_id), log_value(target_of(job)), log_value(t.platform),
                  job.attempts);
    return done("uncertain");
  }
  if (Status s = store_.mark_in_flight(job); !s.is_ok()) {
    if (s.code() == StatusCode::kNotFound) return;  // completed meanwhile
    return store_failed("mark_in_flight", s);
  }

  PushNotification notification{job.message_id, job.conv,         job.from,
                                job.type,       preview_for(job), job.created_ms};
  PushTarget push_target{t.user, t.device, t.platform, t.token};
  PushResult result;
  try {
    result = provider->second->send(push_target, notification);
  } catch (const std::exception& e) {
    result = PushResult{};  // kRetry: a provider bug must not lose the job
    result.reason = "exception: " + log_error(e);
  }
  const int attempts = job.attempts + 1;
  switch (result.outcome) {
    case PushOutcome::kSent:
      metrics_.sent(t.platform);
      logger().info("push.sent: message={} target={} platform={} attempts={}",
                    log_value(job.message_id), log_value(target_of(job)), log_value(t.platform),
                    attempts);
      return done("sent");
    case PushOutcome::kRejected:
      metrics_.failed(t.platform, "rejected");
      logger().warn("push.rejected: message={} target={} platform={} http={} reason={}",
                    log_value(job.message_id), log_value(target_of(job)), log_value(t.platform),
                    result.http_status, log_value(result.reason));
      return done("rejected");
    case PushOutcome::kUnregistered: {
      metrics_.failed(t.platform, "unregistered");
      auto removed = devices_.remove_unregistered(t.user, t.device, t.token);
      if (removed && *removed) metrics_.target_removed();
      logger().info("push.unregistered: message={} target={} platform={} http={} removed={}",
                    log_value(job.message_id), log_value(target_of(job)), log_value(t.platform),
                    result.http_status, removed && *removed);
      return done("unregistered");
    }
    case PushOutcome::kRetry:
      break;
  }
  const int64_t delay = push_retry_delay_ms(options_, attempts, result.retry_after);
  if (attempts >= options_.max_attempts || now + delay - job.created_ms > options_.max_age_ms) {
    metrics_.failed(t.platform, "gave_up");
    logger().warn("push.given_up: message={} target={} platform={} attempts={} http={} reason={}",
                  log_value(job.message_id), log_value(target_of(job)), log_value(t.platform),
                  attempts, result.http_status, log_value(result.reason));
    return done("gave_up");
  }
  metrics_.failed(t.platform, "retry");
  store::PushJob next = job;
  next.attempts = attempts;
  next.due_ms = now + delay;
  next.in_flight = false;  // the provider answered: not sent, safe to send again
  logger().info(
      "push.retry: message={} target={} platform={} attempts={} http={} reason={} "
      "retry_in_ms={}",
      log_value(job.message_id), log_value(target_of(job)), log_value(t.platform), attempts,
      result.http_status, log_value(result.reason), delay);
  if (Status s = store_.reschedule(next); !s.is_ok() && s.code() != StatusCode::kNotFound) {
    logger().error("push.store_failed: message={} target={} step=reschedule outcome={} error={}",
                   log_value(job.message_id), log_value(target_of(job)),
                   outcome_name(result.outcome), log_value(s.to_string()));
  }
}

// ---- the threads -----------------------------------------------------------------

void PushWorker::dispatch_loop() {
  auto last_poll = std::chrono::steady_clock::time_point{};
  auto last_resync = std::chrono::steady_clock::time_point{};
  bool feed_failing = false;
  bool wake_pending = false;  // a wake-up waiting for kMinCatchUpInterval
  for (;;) {
    bool woken = false;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      woken = woken_;
      woken_ = false;
      kick_ = false;
    }
    const auto steady_now = std::chrono::steady_clock::now();
    wake_pending = wake_pending || woken;
    const auto since_poll = steady_now - last_poll;
    if (since_poll >= options_.poll_interval ||
        (wake_pending && since_poll >= kMinCatchUpInterval)) {
      wake_pending = false;
      last_poll = steady_now;
      auto taken = take_records();
      if (!taken && !feed_failing) {
        logger().warn("push.feed_failed: error={} retrying=true",
                      log_value(taken.status().to_string()));
      }
      feed_failing = !taken;
    }
    if (steady_now - last_confirm_ >= options_.confirm_interval) {
      last_confirm_ = steady_now;
      confirm_records().ignore_error();  // tried again next interval
    }
    if (devices_.resync_pending() && steady_now - last_resync >= kResyncInterval) {
      last_resync = steady_now;
      devices_.reconcile(archive_).ignore_error();  // still pending on failure
    }

    {
      // Read under mu_: a sender records a job's outcome in the store before
      // it takes mu_ to drop the job from in_flight_, so a job read here is
      // either still in flight (skipped) or still queued (not sent twice).
      std::lock_guard lock(mu_);
      auto due = store_.due_jobs(clock_.now_ms(), options_.batch);
      if (due) {
        for (auto& job : *due) {
          if (in_flight_.insert(job.key()).second) work_.push_back(std::move(job));
        }
      }
    }
    work_cv_.notify_all();

    // Sleep until the next poll, the next due job, a wake-up or the senders
    // running out of work.
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(options_.poll_interval);
    auto next = store_.next_due_ms();
    if (next && next->has_value()) {
      const int64_t until = **next - clock_.now_ms();
      if (until > 0) wait = std::min(wait, std::chrono::milliseconds(until));
    }
    if (wake_pending) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          kMinCatchUpInterval - (std::chrono::steady_clock::now() - last_poll));
      wait = std::min(wait, std::max(left, std::chrono::milliseconds(1)));
    }
    std::unique_lock lock(mu_);
    wake_cv_.wait_for(lock, wait, [&] { return stopping_ || woken_ || kick_; });
  }
}

void PushWorker::sender_loop() {
  for (;;) {
    store::PushJob job;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !work_.empty(); });
      if (stopping_) return;  // sends in flight are finished; queued ones wait
      job = std::move(work_.front());
      work_.pop_front();
    }
    process(job);
    {
      std::lock_guard lock(mu_);
      in_flight_.erase(job.key());
      // Let the dispatcher hand out what is due now (a retry, a job it skipped).
      if (work_.empty()) kick_ = true;
    }
    wake_cv_.notify_one();
  }
}

}  // namespace chat::api
