// chat-api's push pipeline (docs/push.md): from the broker's push records to
// one notification per message and target device.
//
//  1. The feed (take_records): the broker writes a push record with every
//     archived message that has recipient devices with a push target that
//     are not connected. chat-api reads them through its archive secondary
//     from a cursor kept in its push store, and turns each into one job per
//     target, queued in the same write that moves the cursor: a record is
//     taken over exactly once, across restarts too. Woken by the broker's
//     QoS 0 wake-up (wake()) and by a poll every second.
//  2. confirm_records tells the broker (push.done) which records it may
//     delete.
//  3. The senders (process): a pool of CHAT_PUSH_WORKERS threads sends due
//     jobs through the provider of the target's platform; a job is deleted
//     once sent, refused or given up, and rescheduled with exponential
//     backoff (1 s doubling to 5 min, at least the provider's Retry-After)
//     on a transient failure. A target the provider reports unregistered is
//     removed.
//
// The threads (start/stop) only sequence these steps; tests call them
// directly with an injected clock. stop() lets every send in flight finish.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "chat/api/control.h"
#include "chat/api/devices.h"
#include "chat/api/push_metrics.h"
#include "chat/api/push_provider.h"
#include "chat/api/push_providers.h"
#include "chat/common/clock.h"
#include "chat/common/status.h"
#include "chat/store/archive.h"
#include "chat/store/push_store.h"

namespace chat::api {

struct PushWorkerOptions {
  int workers = 4;                        // Default: 4 (CHAT_PUSH_WORKERS). Sender threads.
  bool preview = false;                   // Default: false (CHAT_PUSH_PREVIEW).
  size_t preview_chars = 100;             // Default: 100. Code points of a text preview.
  int max_attempts = 20;                  // Default: 20 (CHAT_PUSH_MAX_ATTEMPTS).
  int64_t max_age_ms = 24 * 3600 * 1000;  // Default: 24 h (CHAT_PUSH_MAX_AGE).
  int64_t backoff_min_ms = 1000;          // Default: 1 s, the first retry's delay.
  int64_t backoff_max_ms = 300 * 1000;    // Default: 5 min, the longest backoff.
  // A provider's Retry-After is honoured up to this. Default: 1 h.
  int64_t retry_after_max_ms = 3600 * 1000;
  // How often the feed looks for records without a wake-up. Default: 1 s.
  std::chrono::milliseconds poll_interval{1000};
  // How often taken-over records are confirmed (push.done). Default: 2 s.
  std::chrono::milliseconds confirm_interval{2000};
  // Records read per feed pass, jobs per dispatch pass. Default: 256.
  size_t batch = 256;
};

// The delay before retry number `attempts` (1 = the first retry):
// backoff_min_ms doubling per attempt, capped at backoff_max_ms, and never
// shorter than `retry_after` (capped at retry_after_max_ms).
int64_t push_retry_delay_ms(const PushWorkerOptions& options, int attempts,
                            std::chrono::seconds retry_after);

// The first `max_chars` code points of a text message's body (a string, or
// an object's "text" string), with "…" when cut; "" when there is none.
std::string push_preview(const std::string& envelope, size_t max_chars);

class PushWorker {
 public:
  // Borrows everything but the providers; the rest must outlive the worker.
  PushWorker(store::PushStore& store, store::ArchiveReader& archive, DeviceRegistry& devices,
             ControlChannel& control, PushProviders providers, PushMetrics& metrics,
             const Clock& clock, PushWorkerOptions options);
  ~PushWorker();  // stop()s

  PushWorker(const PushWorker&) = delete;
  PushWorker& operator=(const PushWorker&) = delete;

  // Starts the dispatcher and the sender threads; returns at once.
  void start();
  // Stops taking work, lets every send in flight finish, joins the threads.
  // Queued jobs stay queued (sent after the next start).
  void stop();
  // The broker's wake-up: new push records exist. Cheap; any thread.
  void wake();

  // ---- the steps (the threads' work; tests call them directly)

  // Takes every new push record over (catch-up, records after the cursor,
  // jobs + cursor in one write). Returns how many records were taken.
  Result<size_t> take_records();
  // push.done up to the cursor, when it moved since the last confirmation.
  Status confirm_records();
  // Sends every job due now, one after the other on the calling thread.
  // Returns how many sends were attempted.
  Result<size_t> send_due();
  // One job: look up its target, send, and store the outcome.
  void process(const store::PushJob& job);

 private:
  void dispatch_loop();
  void sender_loop();
  std::string preview_for(const store::PushJob& job);
  void log_missing_provider(const std::string& platform);

  store::PushStore& store_;
  store::ArchiveReader& archive_;
  DeviceRegistry& devices_;
  ControlChannel& control_;
  PushProviders providers_;
  PushMetrics& metrics_;
  const Clock& clock_;
  PushWorkerOptions options_;

  std::mutex mu_;
  std::condition_variable wake_cv_;  // the dispatcher waits here
  std::condition_variable work_cv_;  // the senders wait here
  bool started_ = false;             // guarded by mu_
  bool stopping_ = false;            // guarded by mu_
  bool woken_ = false;               // wake(): poll the feed now; guarded by mu_
  bool kick_ = false;                // the senders ran out of work; guarded by mu_
  std::deque<store::PushJob> work_;  // handed to senders; guarded by mu_
  std::set<std::string> in_flight_;  // job keys in work_ or being sent; guarded by mu_
  std::thread dispatcher_;
  std::vector<std::thread> senders_;

  std::mutex confirm_mu_;
  std::string confirmed_;  // the last cursor push.done acknowledged; guarded by confirm_mu_
  std::chrono::steady_clock::time_point last_confirm_{};
  std::set<std::string> missing_logged_;  // platforms logged once; guarded by confirm_mu_
};

}  // namespace chat::api
