// Receipts and presence, the parts without I/O: which receipts to send and
// when, which messages `read` marks, whose presence `listen` watches, and which
// presence updates are worth a line. Tests pin them down (tests/tools/).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/status.h"

namespace chat::tools {

// Where a receipt for conversation `conv` goes, seen from `me`:
// dm/<peer>/receipt for dm:<a>:<b> (peer = the one that is not me),
// g/<gid>/receipt for g:<gid>; kInvalidArgument for anything else (including
// a dm conversation `me` is not part of).
Result<std::string> receipt_topic_for(std::string_view me, std::string_view conv);

// {"ids":[...],"status":status}
std::string receipt_payload(const std::vector<std::string>& ids, std::string_view status);

// The ids a `read` marks, from a page of history (oldest first): the messages
// not from `me`, the last max(unread, 1) of them, oldest first. Empty when the
// page holds no message from others.
std::vector<std::string> ids_to_mark_read(const nlohmann::json& messages, std::string_view me,
                                          int64_t unread);

// Delivered receipts waiting to be sent, batched per conversation: at most
// one receipt per conversation per `min_interval_ms`, each with at most
// `max_ids` ids (the server takes up to 1000). Times are any monotonic
// milliseconds. Not thread-safe.
class ReceiptBatcher {
 public:
  explicit ReceiptBatcher(int64_t min_interval_ms = 1000, size_t max_ids = 500)
      : min_interval_ms_(min_interval_ms), max_ids_(max_ids == 0 ? 1 : max_ids) {}

  struct Batch {
    std::string conv;
    std::vector<std::string> ids;  // in the order added
  };

  // Queues `id` of `conv` (a repeat of a queued id is ignored).
  void add(const std::string& conv, const std::string& id);
  // The batches that may go out at `now_ms`, removed from the queue; each
  // conversation's clock starts again. Conversations whose last batch went out
  // less than min_interval_ms ago wait.
  std::vector<Batch> take_due(int64_t now_ms);
  // Puts a batch that could not be sent back in front of its queue, without
  // touching the conversation's clock.
  void requeue(const Batch& batch);
  // Forgets what is queued for `conv` (e.g. a group I am no longer in).
  void drop(const std::string& conv);

  bool empty() const { return pending_.empty(); }
  size_t pending_ids() const;
  // The earliest time take_due() returns something; nullopt when empty.
  std::optional<int64_t> next_due_ms() const;

 private:
  struct Queue {
    std::vector<std::string> ids;
    std::set<std::string> index;
  };
  int64_t min_interval_ms_;
  size_t max_ids_;
  std::map<std::string, Queue> pending_;
  std::map<std::string, int64_t> last_sent_ms_;
};

// The users whose presence `listen` watches: the peers of my direct
// conversations (GET /v1/conversations, most recent first), then the members
// of my groups (group objects with "members"), never me, each once, at most
// `cap`.
std::vector<std::string> presence_peers(std::string_view me, const nlohmann::json& conversations,
                                        const std::vector<nlohmann::json>& groups, size_t cap);

// Remembers the last presence status seen per user and says which updates are
// news. The first status seen for a user is news when it is "online", or when
// it arrived live (not the retained state sent on subscribing): a screen full
// of "was last seen" lines for everybody at start says nothing. After that,
// only a change of status is news (a retained copy after a reconnect is not).
class PresenceTracker {
 public:
  bool update(const std::string& user, const std::string& status, bool retained);
  std::optional<std::string> status_of(const std::string& user) const;

 private:
  std::map<std::string, std::string> status_;
};

}  // namespace chat::tools
