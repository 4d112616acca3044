#include "chat/api/push_settings.h"

namespace chat::api {

Status read_push_settings(const settings::Lookup& lookup, PushSettings* out) {
  if (Status s = settings::read_int(lookup, "CHAT_PUSH_WORKERS", 1, 64, &out->workers);
      !s.is_ok()) {
    return s;
  }
  if (Status s = settings::read_int(lookup, "CHAT_PUSH_MAX_DEVICES", 1, 100, &out->max_devices);
      !s.is_ok()) {
    return s;
  }
  if (auto v = lookup("CHAT_PUSH_PREVIEW")) {
    if (*v == "1" || *v == "true") {
      out->preview = true;
    } else if (*v == "0" || *v == "false") {
      out->preview = false;
    } else {
      return settings::bad("CHAT_PUSH_PREVIEW", *v, "0 or 1");
    }
  }
  if (Status s = settings::read_int(lookup, "CHAT_PUSH_MAX_ATTEMPTS", 1, 1000, &out->max_attempts);
      !s.is_ok()) {
    return s;
  }
  return settings::read_int(lookup, "CHAT_PUSH_MAX_AGE", 60, 7 * 24 * 3600, &out->max_age_s);
}

}  // namespace chat::api
