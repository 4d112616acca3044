#include "chat/broker/presence.h"

#include <nlohmann/json.hpp>

#include "chat/common/log_fields.h"
#include "chat/common/topics.h"

namespace chat::broker {
namespace {

constexpr int64_t kMinIntervalMs = 1000;   // at most one change per user per second
constexpr int64_t kOfflineGraceMs = 1500;  // offline after 1.5 s (the contract allows 2 s)

std::string presence_json(bool online, int64_t ts) {
  nlohmann::ordered_json p;
  p["v"] = 1;
  p["status"] = online ? "online" : "offline";
  p["ts"] = ts;
  return p.dump();
}

}  // namespace

void PresenceTracker::recover() {
  auto all = archive_.presence_all();
  if (!all) {
    port_.log(LogLevel::kWarning,
              "presence.recover_failed: error=" + log_value(all.status().to_string()));
    return;
  }
  int64_t now = clock_.now_ms();
  for (const auto& [user, json] : *all) {
    auto doc = nlohmann::json::parse(json, nullptr, false);
    if (doc.is_object() && doc.value("status", "") == "online") {
      std::string p = presence_json(false, now);
      port_.publish("", topics::presence(user), p, 1, true);
      archive_.put_presence(user, p).ignore_error();
    }
  }
}

void PresenceTracker::touch(const std::string& user, State& s) {
  s.changed_ms = clock_.now_ms();
  pending_.insert(user);
}

void PresenceTracker::device_connected(const std::string& user) {
  State& s = users_[user];
  if (s.devices++ == 0) touch(user, s);
}

void PresenceTracker::device_disconnected(const std::string& user) {
  auto it = users_.find(user);
  if (it == users_.end() || it->second.devices == 0) return;
  if (--it->second.devices == 0) touch(user, it->second);
}

bool PresenceTracker::online(const std::string& user) const {
  auto it = users_.find(user);
  return it != users_.end() && it->second.devices > 0;
}

void PresenceTracker::publish(const std::string& user, State& s) {
  bool now_online = s.devices > 0;
  int64_t now = clock_.now_ms();
  // The offline status carries the last-seen time: when the last device left.
  std::string p = presence_json(now_online, now_online ? now : s.changed_ms);
  port_.publish("", topics::presence(user), p, 1, true);
  Status st = archive_.put_presence(user, p);
  if (!st.is_ok())
    port_.log(LogLevel::kWarning, "presence.record_failed: user=" + log_value(user) +
                                      " error=" + log_value(st.to_string()));
  s.published_online = now_online;
  s.published_ms = now;
}

void PresenceTracker::flush() {
  if (pending_.empty()) return;
  int64_t now = clock_.now_ms();
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto u = users_.find(*it);
    if (u == users_.end()) {
      it = pending_.erase(it);
      continue;
    }
    State& s = u->second;
    bool want_online = s.devices > 0;
    bool done = false;
    if (want_online == s.published_online) {
      done = true;  // a flap that ended where it started publishes nothing
    } else if (!want_online && now - s.changed_ms < kOfflineGraceMs) {
      // wait: a device reconnecting within the grace keeps the user online
    } else if (now - s.published_ms >= kMinIntervalMs) {
      publish(u->first, s);
      done = true;
    }
    if (!done) {
      ++it;
      continue;
    }
    if (s.devices == 0) {
      // Keep the state until a second after the last change, so a device
      // that comes straight back still waits its turn.
      if (now - s.published_ms < kMinIntervalMs) {
        ++it;
        continue;
      }
      users_.erase(u);
    }
    it = pending_.erase(it);
  }
}

}  // namespace chat::broker
