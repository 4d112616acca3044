// Talking to the person at the terminal: password prompts without echo.
#pragma once

#include <string>
#include <string_view>

#include "chat/common/status.h"

namespace chat::tools {

// Shows `prompt` on the controlling terminal (/dev/tty) and reads one line
// with echo turned off. The terminal's settings are restored afterwards, also
// when SIGINT/SIGTERM/SIGHUP/SIGQUIT arrive during the prompt (then the signal
// proceeds as it would have). kUnavailable when there is no terminal.
Result<std::string> prompt_password(std::string_view prompt);

}  // namespace chat::tools
