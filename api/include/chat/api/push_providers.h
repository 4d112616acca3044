// Builds the push providers chat-api's push worker sends through, from the
// CHAT_FCM_* / CHAT_APNS_* / CHAT_PUSH_CA settings (push_config.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "chat/api/config.h"
#include "chat/api/push_provider.h"
#include "chat/common/status.h"

namespace chat::api {

// Providers by platform ("fcm", "apns"): only those whose settings are present.
using PushProviders = std::map<std::string, std::unique_ptr<PushProvider>, std::less<>>;

// Reads the credential files and builds the configured providers. Does no
// network I/O (the first OAuth token is fetched on the first send). An
// unreadable file, a key of the wrong kind or malformed credentials is
// kInvalidArgument with one line naming the variable: a start-up error (exit 2).
// No provider configured: an empty map.
Result<PushProviders> make_push_providers(const Config& config);

}  // namespace chat::api
