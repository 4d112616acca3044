#include "chat/broker/push_devices.h"

#include <algorithm>

#include "chat/common/ids.h"

namespace chat::broker {

Status PushDevices::load() {
  auto all = archive_.push_devices();
  if (!all) return all.status();
  devices_.clear();
  for (auto& [user, devices] : *all) {
    std::sort(devices.begin(), devices.end());
    devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
    if (!devices.empty()) devices_.emplace(std::move(user), std::move(devices));
  }
  return Status::ok();
}

const std::vector<std::string>* PushDevices::devices_of(const std::string& user) const {
  auto it = devices_.find(user);
  return it == devices_.end() ? nullptr : &it->second;
}

Status PushDevices::set(const std::string& user, std::vector<std::string> devices) {
  if (!is_valid_user_id(user)) return invalid_argument("user must be a user id");
  for (const auto& device : devices) {
    if (!is_valid_device_id(device)) {
      return invalid_argument("devices must be device ids (^[A-Za-z0-9_-]{1,64}$)");
    }
  }
  std::sort(devices.begin(), devices.end());
  devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
  if (devices.size() > kMaxPushDevicesPerUser) {
    return invalid_argument("at most " + std::to_string(kMaxPushDevicesPerUser) +
                            " devices per user");
  }
  Status st = archive_.set_push_devices(user, devices);
  if (!st.is_ok()) return st;
  if (devices.empty()) {
    devices_.erase(user);
  } else {
    devices_[user] = std::move(devices);
  }
  return Status::ok();
}

}  // namespace chat::broker
