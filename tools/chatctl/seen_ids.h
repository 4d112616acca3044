// SeenIds: the bounded memory `listen` uses to print every message once.
//
// A message can reach a device up to three times (live from the persistent
// session, again after a reconnect, and from /v1/sync); the contract tells
// clients to de-duplicate by server id. The set remembers the most recent
// `capacity` ids and forgets the oldest first. Not thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_set>

namespace chat::tools {

class SeenIds {
 public:
  // Default: 100,000 ids (a few MB).
  explicit SeenIds(size_t capacity = 100'000) : capacity_(capacity == 0 ? 1 : capacity) {}

  // True when `id` was not in the set (it is now); false for a repeat.
  bool insert(std::string_view id);
  bool contains(std::string_view id) const { return ids_.count(std::string(id)) != 0; }
  size_t size() const { return ids_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  std::unordered_set<std::string> ids_;
  std::deque<std::string> order_;  // insertion order, oldest first
};

}  // namespace chat::tools
