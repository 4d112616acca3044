// PresenceTracker: turns device sessions into the retained `presence/<uid>`
// topic (CONTRACT §3): online while any device of the user is connected,
// offline (with last-seen) within 2 s of the last one leaving, at most one
// published change per user per second (a reconnect storm publishes little),
// and everyone recorded online published offline after a broker crash.
//
// Not thread-safe (the broker's single plugin thread).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "chat/broker/broker_port.h"
#include "chat/common/clock.h"
#include "chat/store/archive.h"

namespace chat::broker {

class PresenceTracker {
 public:
  PresenceTracker(const Clock& clock, store::Archive& archive, BrokerPort& port)
      : clock_(clock), archive_(archive), port_(port) {}

  // At start: publishes offline for users the archive recorded online (the
  // broker died without saying they left).
  void recover();

  void device_connected(const std::string& user);
  void device_disconnected(const std::string& user);
  // Publishes due changes; call often (every TICK).
  void flush();

  bool online(const std::string& user) const;

 private:
  struct State {
    int devices = 0;
    bool published_online = false;
    int64_t published_ms = 0;  // when the last change went out
    int64_t changed_ms = 0;    // when `devices` last went 0 <-> >0
  };
  void publish(const std::string& user, State& s);

  const Clock& clock_;
  store::Archive& archive_;
  BrokerPort& port_;
  void touch(const std::string& user, State& s);

  std::unordered_map<std::string, State> users_;
  std::unordered_set<std::string> pending_;  // users whose status may need publishing
};

}  // namespace chat::broker
