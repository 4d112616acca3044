// chatctl's commands. run_chatctl() is the whole program; main.cpp only calls it.
//
// Each run_<command> returns the process exit status (kExitOk, kExitFailure,
// kExitUsage) after printing its result or error through ctx.out.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "chat/common/clock.h"
#include "chatctl/cli.h"
#include "chatctl/context.h"

namespace chat::tools {

int run_chatctl(int argc, char** argv);
// The same with everything injected (tests).
int run_chatctl(const std::vector<std::string>& args, const EnvLookup& env, std::FILE* out,
                std::FILE* err, const Clock& clock);

int run_register(Context& ctx);
int run_login(Context& ctx);
int run_logout(Context& ctx);
int run_token(Context& ctx);
int run_history(Context& ctx);
int run_conversations(Context& ctx);
int run_send(Context& ctx);  // send_command.cpp
// Sends one message as `device` to `topic` with `cid` on a short-lived
// connection and waits for its envelope (send_command.cpp); a refusal is
// kPermissionDenied, anything else that keeps it from the server kUnavailable.
Result<nlohmann::json> send_one_message(Context& ctx, Credentials& credentials,
                                        const std::string& device, const std::string& topic,
                                        const std::string& type, const nlohmann::json& body,
                                        const std::string& cid);
int run_keys(Context& ctx);    // keys_command.cpp
int run_verify(Context& ctx);  // keys_command.cpp
int run_fetch(Context& ctx);   // media_command.cpp
int run_listen(Context& ctx);  // listen_command.cpp
int run_group(Context& ctx);   // group_commands.cpp
int run_block(Context& ctx, bool block);
int run_blocks(Context& ctx);
int run_read(Context& ctx);  // read_command.cpp
int run_typing(Context& ctx);
int run_admin(Context& ctx);    // admin_commands.cpp
int run_devices(Context& ctx);  // device_commands.cpp

}  // namespace chat::tools
