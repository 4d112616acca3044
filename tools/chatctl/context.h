// What every chatctl command runs with, and the helpers they share: output,
// the active profile, authenticated REST calls, and opening the device's
// MQTT session.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "chat/common/clock.h"
#include "chat/common/status.h"
#include "chatctl/api_client.h"
#include "chatctl/cli.h"
#include "chatctl/credentials.h"
#include "chatctl/mqtt_link.h"
#include "chatctl/profile.h"

namespace chat::tools {

// Where results and diagnostics go. Results on `out` (flushed per line, so a
// pipe sees each message at once); diagnostics on `err`. In JSON mode every
// result line is one JSON object, and errors are {"error","message"} objects.
class Output {
 public:
  Output(std::FILE* out, std::FILE* err, bool json) : out_(out), err_(err), json_(json) {}

  bool json() const { return json_; }
  void line(std::string_view text);              // a result line for people
  void json_line(const nlohmann::json& object);  // a result line in JSON mode
  void note(std::string_view text);              // progress for people; silent in JSON mode
  void warn(std::string_view text);              // "chatctl: text" on err (both modes)
  // "chatctl: message" or {"error":code,"message":message} on err.
  void error(std::string_view code, std::string_view message);
  void error(const Status& status);
  // True when nobody reads `out` any more (the other end of a pipe closed),
  // so a long-running command can stop without waiting for its next write.
  bool reader_gone() const;

 private:
  std::FILE* out_;
  std::FILE* err_;
  bool json_;
};

// Set by SIGINT/SIGTERM while a long-running command (listen, send -) runs,
// or when standard output is gone.
class StopSignal {
 public:
  // Installs the handlers; the previous ones come back on destruction.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  static bool requested();
  // Asks the running command to stop, as the signals do.
  static void request();
};

struct Context {
  CommandLine command_line;
  Settings settings;
  ProfileStore store;
  ApiClient api;
  const Clock& clock;
  Output& out;
  EnvLookup env;

  Context(CommandLine cl, Settings s, const Clock& c, Output& o, EnvLookup e)
      : command_line(std::move(cl)),
        settings(std::move(s)),
        store(settings.home),
        api(settings.api, settings.ca_file),
        clock(c),
        out(o),
        env(std::move(e)) {}
};

// The servers remembered by the profile whose settings a command runs with:
// for `login USER` and `register USER`, USER's profile when there is one;
// otherwise (and for every other command) --as USER, else <home>/current.
// Nothing remembered when there is no such profile; a profile that cannot be
// read is an error naming its file.
Result<RememberedServers> remembered_servers(const ProfileStore& store,
                                             const CommandLine& command_line);

// The user whose profile a command uses: --as, else <home>/current.
// kUnauthenticated with a hint to log in when neither names one.
Result<std::string> active_user(const Context& ctx);

// The device id for this run: --device, else the profile's (one is created and
// saved when the profile has none).
Result<std::string> active_device(const Context& ctx, const Profile& profile);

// GET with the profile's access token; on 401 the token is refreshed once and
// the call repeated. Non-2xx answers are returned, not turned into errors.
Result<ApiResponse> authed_get(Context& ctx, Credentials& credentials, std::string_view path);
// The same for any method (ApiClient::request); `body` nullptr: none.
Result<ApiResponse> authed_request(Context& ctx, Credentials& credentials, std::string_view method,
                                   std::string_view path, const nlohmann::json* body = nullptr);

// authed_request for commands that need a 2xx answer: a transport failure or
// a non-2xx answer is reported (fail()) and its exit status kept.
struct RestCall {
  Result<ApiResponse> response;
  int exit_status = kExitOk;
  bool ok() const { return exit_status == kExitOk; }
};
RestCall rest_call(Context& ctx, Credentials& credentials, std::string_view method,
                   const std::string& path, const nlohmann::json* body = nullptr);

// Reports a failed command and returns the exit status for it.
int fail(Context& ctx, const Status& status);

// Connects as `device` with the current access token and subscribes to
// u/<me>/# at QoS 1. On a CONNACK that refuses the token, refreshes it once and
// tries again.
struct InboxSession {
  std::unique_ptr<MqttLink> link;
  Profile profile;  // as used to connect (token and all)
  bool session_present = false;
};
// `persistent`: keep the session (and its queue) while the device is away;
// false for short-lived connections that must not collect a queue.
Result<InboxSession> open_inbox(Context& ctx, Credentials& credentials, const std::string& device,
                                std::chrono::milliseconds timeout, bool persistent = true);

// dm/<peer> for a user id, g/<gid> for "g:<gid>" (checked with
// topics::parse_send_topic); kInvalidArgument otherwise.
Result<std::string> send_topic_for(std::string_view peer);
// The conversation id of `peer` seen from `me`: dm:<a>:<b> or g:<gid>.
Result<std::string> conversation_for(std::string_view me, std::string_view peer);

// Connects a short-lived session as `device` (no stored session), publishes
// `payload` to `topic` at `qos` and waits up to `timeout` for the PUBACK (QoS
// 1/2) or for the packet to be written (QoS 0). A refusal (PUBACK >= 0x80, or
// an error event without a cid on u/<me>/event) is kPermissionDenied with the
// server's code and reason.
Status publish_once(Context& ctx, Credentials& credentials, const std::string& device,
                    const std::string& topic, const std::string& payload, int qos,
                    std::chrono::milliseconds timeout);

}  // namespace chat::tools
