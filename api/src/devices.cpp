#include "chat/api/devices.h"

#include <algorithm>
#include <map>
#include <set>

#include "chat/api/log.h"
#include "chat/api/service.h"
#include "chat/common/ids.h"
#include "chat/common/log_fields.h"

namespace chat::api {
namespace {

bool is_valid_token(std::string_view token) {
  if (token.empty() || token.size() > kMaxPushTokenBytes) return false;
  return std::all_of(token.begin(), token.end(), [](char c) { return c > ' ' && c < 127; });
}

bool is_hex_digit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

Status check_push_token(std::string_view platform, std::string_view token) {
  if (platform == "apns") {
    if (token.size() < 64 || token.size() > 200 || token.size() % 2 != 0 ||
        !std::all_of(token.begin(), token.end(), is_hex_digit)) {
      return invalid_argument(
          "an APNs device token must be 64 to 200 hex digits (an even count): send the "
          "device token's bytes hex-encoded");
    }
    return Status::ok();
  }
  if (!is_valid_token(token)) {
    return invalid_argument("token must be 1 to " + std::to_string(kMaxPushTokenBytes) +
                            " printable ASCII characters without spaces");
  }
  return Status::ok();
}

std::string token_hint(std::string_view token) {
  if (token.size() < 12) return "";
  return "..." + std::string(token.substr(token.size() - 6));
}

DeviceRegistry::DeviceRegistry(store::PushStore& store, ControlChannel& control, const Clock& clock,
                               size_t max_devices)
    : store_(store), control_(control), clock_(clock), max_devices_(max_devices) {}

std::shared_ptr<DeviceRegistry::UserSync> DeviceRegistry::sync_of(const std::string& user) {
  std::lock_guard lock(sync_mu_);
  auto& sync = sync_[user];
  if (!sync) sync = std::make_shared<UserSync>();
  return sync;
}

void DeviceRegistry::note_change(const std::string& user) {
  auto sync = sync_of(user);
  std::lock_guard lock(sync_mu_);
  ++sync->changed;
}

Status DeviceRegistry::tell_broker(const std::string& user) {
  auto sync = sync_of(user);
  uint64_t needed = 0;
  {
    std::lock_guard lock(sync_mu_);
    needed = sync->changed;
  }
  std::lock_guard send(sync->send_mu);
  uint64_t version = 0;
  {
    std::lock_guard lock(sync_mu_);
    if (sync->confirmed >= needed) return Status::ok();  // a send since our change covered it
    version = sync->changed;
  }
  auto targets = store_.targets_of(user);
  if (!targets) return targets.status();
  std::vector<std::string> devices;
  for (const auto& t : *targets) devices.push_back(t.device);
  auto answer = control_.call({{"op", "push.devices"}, {"user", user}, {"devices", devices}},
                              kControlTimeout);
  if (!answer) {
    logger().warn("push.devices_unconfirmed: user={} error={} action=resync_later", log_value(user),
                  log_value(answer.status().to_string()));
    return answer.status();
  }
  std::lock_guard lock(sync_mu_);
  sync->confirmed = std::max(sync->confirmed, version);
  return Status::ok();
}

Status DeviceRegistry::tell_broker_all(const std::vector<std::string>& users) {
  Status first;
  for (const auto& user : users) {
    Status s = tell_broker(user);
    if (!s.is_ok()) {
      resync_pending_.store(true);
      if (first.is_ok()) first = s;
    }
  }
  if (first.is_ok()) return first;
  return unavailable("the broker did not confirm the device list (" + first.message() +
                     "); it is stored and will be sent again: repeat the request to be sure");
}

Result<bool> DeviceRegistry::register_device(const std::string& user, std::string_view device,
                                             std::string_view platform, std::string_view token) {
  if (!is_valid_device_id(device)) {
    return invalid_argument("device must match ^[A-Za-z0-9_-]{1,64}$ (your own device id)");
  }
  if (platform != "fcm" && platform != "apns") {
    return invalid_argument("platform must be \"fcm\" or \"apns\"");
  }
  if (Status s = check_push_token(platform, token); !s.is_ok()) return s;
  store::PushTargetRecord target;
  target.user = user;
  target.device = std::string(device);
  target.platform = std::string(platform);
  target.token = std::string(token);
  target.created_ms = clock_.now_ms();

  std::unique_lock lock(mu_);
  auto change = store_.put_target(target, max_devices_);
  if (change) {
    note_change(user);
    if (!change->displaced_user.empty()) note_change(change->displaced_user);
  }
  lock.unlock();  // the broker is told outside the lock
  if (!change) {
    if (change.status().code() == StatusCode::kResourceExhausted) {
      return resource_exhausted("at most " + std::to_string(max_devices_) +
                                " devices with push per user (CHAT_PUSH_MAX_DEVICES): remove one "
                                "with DELETE /v1/devices/{device} first");
    }
    return change.status();
  }
  std::vector<std::string> users{user};
  if (!change->displaced_user.empty()) {
    // The token moved here from another device (a reinstall, a new account on
    // the same phone): that device no longer gets pushes.
    logger().info("push.token_moved: from={}:{} to={}:{}", log_value(change->displaced_user),
                  log_value(change->displaced_device), log_value(user), log_value(device));
    if (change->displaced_user != user) users.push_back(change->displaced_user);
  }
  logger().info("push.registered: user={} device={} platform={} created={}", log_value(user),
                log_value(device), log_value(platform), change->created);
  if (Status s = tell_broker_all(users); !s.is_ok()) return s;
  return change->created;
}

Status DeviceRegistry::unregister_device(const std::string& user, std::string_view device) {
  if (!is_valid_device_id(device)) {
    return invalid_argument("device must match ^[A-Za-z0-9_-]{1,64}$");
  }
  Status s;
  {
    std::lock_guard lock(mu_);
    s = store_.delete_target(user, std::string(device));
    if (s.is_ok()) note_change(user);
  }
  if (s.code() == StatusCode::kNotFound) return not_found("this device has no push target");
  if (!s.is_ok()) return s;
  logger().info("push.unregistered: user={} device={}", log_value(user), log_value(device));
  return tell_broker_all({user});
}

Result<std::vector<DeviceInfo>> DeviceRegistry::list(const std::string& user) const {
  auto targets = store_.targets_of(user);
  if (!targets) return targets.status();
  std::vector<DeviceInfo> out;
  for (const auto& t : *targets) {
    out.push_back(DeviceInfo{t.device, t.platform, token_hint(t.token), t.created_ms});
  }
  return out;
}

Status DeviceRegistry::forget_user(const std::string& user) {
  Result<size_t> removed = size_t{0};
  {
    std::lock_guard lock(mu_);
    removed = store_.delete_targets_of(user);
    if (removed && *removed > 0) note_change(user);
  }
  if (!removed) return removed.status();
  if (*removed == 0) return Status::ok();
  logger().info("push.forgotten: user={} targets={}", log_value(user), *removed);
  // The broker's user.remove already dropped its list; this covers a broker
  // that did not know the user any more.
  return tell_broker_all({user});
}

Result<bool> DeviceRegistry::remove_unregistered(const std::string& user, const std::string& device,
                                                 const std::string& token) {
  Result<bool> removed = false;
  {
    std::lock_guard lock(mu_);
    removed = store_.delete_target_if_token(user, device, token);
    if (removed && *removed) note_change(user);
  }
  if (!removed) return removed;
  if (!*removed) return false;
  logger().info("push.target_removed: user={} device={} reason=unregistered", log_value(user),
                log_value(device));
  // Not confirmed: the resync sends it later; the target is gone either way.
  tell_broker_all({user}).ignore_error();
  return true;
}

Status DeviceRegistry::reconcile(store::ArchiveReader& archive) {
  // Cleared first: a change failing while this runs sets it again.
  resync_pending_.store(false);
  Status failed;
  const auto mark_failed = [&](Status s) {
    resync_pending_.store(true);
    if (failed.is_ok()) failed = std::move(s);
  };
  if (Status s = archive.catch_up(); !s.is_ok()) {
    mark_failed(s);
    return failed;
  }
  auto broker = archive.push_devices();
  if (!broker) {
    mark_failed(broker.status());
    return failed;
  }
  auto ours = store_.all_devices();
  if (!ours) {
    mark_failed(ours.status());
    return failed;
  }
  std::map<std::string, std::vector<std::string>> theirs;
  for (auto& [user, devices] : *broker) {
    std::sort(devices.begin(), devices.end());
    theirs[user] = std::move(devices);
  }
  std::set<std::string> differ;
  for (const auto& [user, devices] : *ours) {
    auto it = theirs.find(user);
    if (it == theirs.end() || it->second != devices) differ.insert(user);
  }
  for (const auto& [user, devices] : theirs) {
    if (!ours->count(user) && !devices.empty()) differ.insert(user);
  }
  size_t sent = 0;
  for (const auto& user : differ) {
    note_change(user);  // the broker's list differs: send even if a send was confirmed
    Status s = tell_broker(user);
    // A user the broker no longer knows cannot get devices: nothing to send.
    if (!s.is_ok() && s.code() != StatusCode::kNotFound) {
      mark_failed(s);
    } else {
      ++sent;
    }
  }
  if (!differ.empty()) {
    logger().info("push.resync: users_differing={} confirmed={}", differ.size(), sent);
  }
  return failed;
}

}  // namespace chat::api
