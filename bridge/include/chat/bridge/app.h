// chat-bridge's start-up: configuration, signals, the server, exit codes.
#pragma once

namespace chat::bridge {

// The whole process. Exit codes: 0 clean stop (SIGINT/SIGTERM), 1 runtime
// failure (cannot listen: one line on stderr saying why), 2 bad configuration
// or usage (one line naming the variable).
int run(int argc, char** argv);

}  // namespace chat::bridge
