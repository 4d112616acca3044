// Percent-encoding for URLs and form bodies (RFC 3986 unreserved characters
// pass through). Used by every HTTP client of ours: chatctl, chat-bench, tests.
#pragma once

#include <string>
#include <string_view>

namespace chat {

std::string url_encode(std::string_view text);

}  // namespace chat
