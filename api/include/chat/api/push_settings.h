// The push pipeline's settings (docs/push.md, "Settings"): how many workers
// send, how many devices a user may register, whether a text preview may be
// shown, and when a notification that keeps failing is given up. Part of
// Config (config.h: Config::push); parsed once at start.
#pragma once

#include <cstddef>
#include <cstdint>

#include "chat/common/settings.h"
#include "chat/common/status.h"

namespace chat::api {

struct PushSettings {
  // CHAT_PUSH_WORKERS. Default: 4. Notifications sent at the same time, 1-64.
  int workers = 4;
  // CHAT_PUSH_MAX_DEVICES. Default: 10. Devices with a push target per user,
  // 1-100; registering one more is refused (409 too_many_devices).
  size_t max_devices = 10;
  // CHAT_PUSH_PREVIEW. Default: 0. 1: a `text` message's notification carries
  // its first 100 characters. Never for e2e or any other type.
  bool preview = false;
  // CHAT_PUSH_MAX_ATTEMPTS. Default: 20. Sends tried per notification before
  // it is given up, 1-1000 (with retries 1 s, 2 s, 4 s ... at most 5 min apart).
  int max_attempts = 20;
  // CHAT_PUSH_MAX_AGE. Default: 86400. Seconds after which an unsent
  // notification is given up (60-604800): a day-old "new message" is noise.
  int64_t max_age_s = 24 * 3600;
};

// Reads the variables above into *out (unset keeps the default). Errors are
// kInvalidArgument with one line naming the variable.
Status read_push_settings(const settings::Lookup& lookup, PushSettings* out);

}  // namespace chat::api
