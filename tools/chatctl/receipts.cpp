#include "chatctl/receipts.h"

#include <algorithm>

#include "chat/common/ids.h"
#include "chat/common/topics.h"
#include "chatctl/json_access.h"

namespace chat::tools {

Result<std::string> receipt_topic_for(std::string_view me, std::string_view conv) {
  auto parsed = topics::parse_conversation(conv);
  if (parsed.kind == topics::ConvKind::kGroup) return topics::group(parsed.gid, topics::kReceipt);
  if (parsed.kind == topics::ConvKind::kDirect) {
    if (parsed.a == me && parsed.b != me) return topics::direct(parsed.b, topics::kReceipt);
    if (parsed.b == me && parsed.a != me) return topics::direct(parsed.a, topics::kReceipt);
  }
  return invalid_argument("no receipt topic for conversation '" + std::string(conv) + "'");
}

std::string receipt_payload(const std::vector<std::string>& ids, std::string_view status) {
  return dump_json({{"ids", ids}, {"status", status}});
}

std::vector<std::string> ids_to_mark_read(const nlohmann::json& messages, std::string_view me,
                                          int64_t unread) {
  std::vector<std::string> from_others;
  if (messages.is_array()) {
    for (const auto& envelope : messages) {
      std::string from = json_string(envelope, "from");
      std::string id = json_string(envelope, "id");
      if (from.empty() || from == me || !is_valid_message_id(id)) continue;
      from_others.push_back(std::move(id));
    }
  }
  size_t keep = static_cast<size_t>(std::max<int64_t>(unread, 1));
  if (from_others.size() > keep) {
    from_others.erase(from_others.begin(), from_others.end() - static_cast<std::ptrdiff_t>(keep));
  }
  return from_others;
}

void ReceiptBatcher::add(const std::string& conv, const std::string& id) {
  Queue& q = pending_[conv];
  if (q.index.insert(id).second) q.ids.push_back(id);
}

std::vector<ReceiptBatcher::Batch> ReceiptBatcher::take_due(int64_t now_ms) {
  std::vector<Batch> out;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto last = last_sent_ms_.find(it->first);
    if (last != last_sent_ms_.end() && now_ms - last->second < min_interval_ms_) {
      ++it;
      continue;
    }
    Queue& q = it->second;
    Batch batch;
    batch.conv = it->first;
    size_t n = std::min(q.ids.size(), max_ids_);
    batch.ids.assign(q.ids.begin(), q.ids.begin() + static_cast<std::ptrdiff_t>(n));
    for (const auto& id : batch.ids) q.index.erase(id);
    q.ids.erase(q.ids.begin(), q.ids.begin() + static_cast<std::ptrdiff_t>(n));
    last_sent_ms_[it->first] = now_ms;
    out.push_back(std::move(batch));
    if (q.ids.empty()) {
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

void ReceiptBatcher::requeue(const Batch& batch) {
  Queue& q = pending_[batch.conv];
  std::vector<std::string> front;
  for (const auto& id : batch.ids) {
    if (q.index.insert(id).second) front.push_back(id);
  }
  q.ids.insert(q.ids.begin(), front.begin(), front.end());
  if (q.ids.empty()) pending_.erase(batch.conv);
}

void ReceiptBatcher::drop(const std::string& conv) { pending_.erase(conv); }

size_t ReceiptBatcher::pending_ids() const {
  size_t n = 0;
  for (const auto& [conv, q] : pending_) n += q.ids.size();
  return n;
}

std::optional<int64_t> ReceiptBatcher::next_due_ms() const {
  std::optional<int64_t> due;
  for (const auto& [conv, q] : pending_) {
    auto last = last_sent_ms_.find(conv);
    int64_t t = last == last_sent_ms_.end() ? INT64_MIN : last->second + min_interval_ms_;
    if (!due || t < *due) due = t;
  }
  return due;
}

std::vector<std::string> presence_peers(std::string_view me, const nlohmann::json& conversations,
                                        const std::vector<nlohmann::json>& groups, size_t cap) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto take = [&](const std::string& user) {
    if (out.size() >= cap || user == me || !is_valid_user_id(user)) return;
    if (seen.insert(user).second) out.push_back(user);
  };
  if (conversations.is_array()) {
    for (const auto& c : conversations) {
      auto parsed = topics::parse_conversation(json_string(c, "conv"));
      if (parsed.kind != topics::ConvKind::kDirect) continue;
      if (parsed.a == me) take(parsed.b);
      if (parsed.b == me) take(parsed.a);
    }
  }
  for (const auto& g : groups) {
    const auto& members = json_field(g, "members");
    if (!members.is_array()) continue;
    for (const auto& m : members) {
      if (m.is_string()) take(m.get<std::string>());
    }
  }
  return out;
}

bool PresenceTracker::update(const std::string& user, const std::string& status, bool retained) {
  auto it = status_.find(user);
  if (it == status_.end()) {
    status_.emplace(user, status);
    return status == "online" || !retained;
  }
  if (it->second == status) return false;
  it->second = status;
  return true;
}

std::optional<std::string> PresenceTracker::status_of(const std::string& user) const {
  auto it = status_.find(user);
  if (it == status_.end()) return std::nullopt;
  return it->second;
}

}  // namespace chat::tools
