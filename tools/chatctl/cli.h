// chatctl's command line: what the user typed (CommandLine), and the settings it
// resolves to once defaults and environment variables are applied (Settings).
//
// Pure: no I/O. The environment is passed in as a lookup function so tests can
// fake it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/status.h"

namespace chat::tools {

// Process exit statuses (README: "Exit codes").
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // refused, failed, timed out
inline constexpr int kExitUsage = 2;    // bad command line

enum class Command {
  kHelp,
  kRegister,       // register USER
  kLogin,          // login USER
  kLogout,         // logout
  kSend,           // send PEER TEXT... | send PEER -
  kListen,         // listen
  kHistory,        // history PEER
  kConversations,  // conversations
  kToken,          // token
  kGroup,          // group ACTION ...
  kRead,           // read CONV
  kTyping,         // typing PEER|g:GID
  kBlock,          // block USER
  kUnblock,        // unblock USER
  kBlocks,         // blocks
  kAdmin,          // admin ACTION ... (admin role)
  kFetch,          // fetch MEDIA [-o FILE]
  kDevices,        // devices [list] | register --platform P --token T | unregister [DEVICE]
  kKeys,           // keys init [--force] | keys status | keys refill (end-to-end keys)
  kVerify,         // verify USER [--confirm] (safety number)
};

// `group` subcommands.
enum class GroupAction {
  kNone,
  kCreate,  // group create NAME... [--members a,b,c]
  kAdd,     // group add GID USER
  kRemove,  // group remove GID USER
  kLeave,   // group leave GID
  kAdmin,   // group admin GID USER
  kList,    // group list
  kShow,    // group show GID
};

// `admin` subcommands (the admin REST API; the profile must be an admin).
enum class AdminAction {
  kNone,
  kUsers,    // admin users [--limit N]
  kClients,  // admin clients
  kStats,    // admin stats
  kBan,      // admin ban USER
  kUnban,    // admin unban USER
  kKick,     // admin kick CLIENTID
  kRevoke,   // admin revoke JTI
  kBackup,   // admin backup DIR (a directory on the server)
  kRestore,  // admin restore DIR [--data-dir D] [--force] (local, stack stopped)
};

const char* command_name(Command command);

// Everything given on the command line, before defaults are applied.
struct CommandLine {
  Command command = Command::kHelp;
  // Positional arguments after the command (after the subcommand for `group`).
  // `send --group GID TEXT...` is stored as `send g:GID TEXT...`; a group id
  // given to `group` as g:GID is stored without the prefix.
  std::vector<std::string> args;
  GroupAction group_action = GroupAction::kNone;
  AdminAction admin_action = AdminAction::kNone;

  // Global options (any command).
  std::optional<std::string> api;      // --api URL
  std::optional<std::string> mqtt;     // --mqtt HOST:PORT (or tcp://, ssl://, mqtts:// URL)
  std::optional<std::string> as_user;  // --as USER
  std::optional<std::string> device;   // --device ID
  std::optional<std::string> home;     // --home DIR
  std::optional<std::string> ca_file;  // --ca FILE: extra CA for https / ssl MQTT
  bool json = false;                   // --json

  // Per-command options.
  std::optional<std::string> password;    // register, login: --password P
  std::optional<int> limit;               // history, read: --limit N (N >= 1)
  std::optional<std::string> before;      // history: --before ID
  std::optional<int64_t> count;           // listen: --count N (N >= 1)
  std::optional<double> timeout_seconds;  // listen: --timeout S (S > 0)
  bool no_receipts = false;               // listen: --no-receipts
  std::optional<std::string> group;       // send: --group GID (without "g:")
  std::optional<std::string> file;        // send: --file PATH (a media message)
  std::optional<std::string> caption;     // send --file: --caption TEXT
  std::optional<std::string> output;      // fetch: -o / --output FILE
  std::vector<std::string> members;       // group create: --members a,b,c (user ids)
  std::optional<std::string> platform;    // devices register: --platform fcm|apns
  std::optional<std::string> push_token;  // devices register: --token T
  std::optional<std::string> data_dir;    // admin restore: --data-dir DIR
  bool force = false;                     // admin restore, keys init: --force
  bool e2e = false;                       // send: --e2e (end-to-end encrypted)
  bool confirm = false;                   // verify: --confirm
};

// "GID" or "g:GID" -> GID; kInvalidArgument when not a valid group id.
Result<std::string> parse_group_id(std::string_view text);
// "a,b,c" -> {a,b,c}: user ids, empty items skipped, duplicates removed (first
// kept); kInvalidArgument naming the first invalid id.
Result<std::vector<std::string>> parse_member_list(std::string_view text);

// Parses argv without the program name. Options may appear before or after the
// command, as `--name value` or `--name=value`; `--` ends option parsing (so a
// message may start with `--`). A lone `-` is a positional argument.
// `-h`/`--help` anywhere, `help`, or no arguments at all give Command::kHelp.
// Any mistake is kInvalidArgument with a message meant for the user.
Result<CommandLine> parse_command_line(const std::vector<std::string>& argv);

// The usage text with examples (printed by `help` and on usage errors).
std::string usage_text();

// Returns the value of an environment variable; nullopt when unset or empty.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
EnvLookup process_environment();

// The REST base URL split for the HTTP client.
struct ApiUrl {
  std::string scheme_host_port;  // "http://127.0.0.1:8080"
  std::string base_path;         // "" or "/prefix" (no trailing slash)
  bool tls = false;
};
// Accepts http://host[:port][/path] and https://...; a URL without a scheme is
// taken as http.
Result<ApiUrl> parse_api_url(std::string_view url);

// The MQTT server URI for Paho: "tcp://host:port" or "ssl://host:port".
// Accepts HOST:PORT, HOST (port 1883, or 8883 for TLS), and URLs with the
// schemes tcp, mqtt, ssl, tls, mqtts. IPv6 hosts are written [addr]:port.
Result<std::string> parse_mqtt_address(std::string_view address);

// The REST base URL as text again ("https://host:8443/prefix"); parse_api_url
// accepts it.
std::string api_url_text(const ApiUrl& url);

// The servers a profile remembers from its last login ("" = nothing
// remembered), and the profile file they come from (for error messages).
struct RememberedServers {
  std::string api;      // as api_url_text
  std::string mqtt;     // as parse_mqtt_address returns it
  std::string ca_file;  // an absolute path
  std::string source;   // the profile file
};

// What the commands run with, after defaults.
struct Settings {
  ApiUrl api;                  // Default: http://127.0.0.1:$CHAT_HTTP_PORT (port default 8080).
  std::string mqtt_uri;        // Default: tcp://127.0.0.1:$CHAT_MQTT_PORT (port default 1883).
  std::string home;            // Default: $CHATCTL_HOME, else $XDG_CONFIG_HOME/chatctl,
                               // else $HOME/.config/chatctl.
  std::string ca_file;         // Default: $CHATCTL_CA, else none (system trust store).
  bool ca_remembered = false;  // ca_file came from RememberedServers
};

// For each of api, mqtt and ca: the option, else its environment variable
// (CHAT_HTTP_PORT, CHAT_MQTT_PORT, CHATCTL_CA), else the value remembered in
// the profile, else the default. A bad option or variable is kInvalidArgument
// naming it; a bad remembered value is kInvalidArgument naming
// `remembered.source`. (Only the values actually used are checked.)
Result<Settings> resolve_settings(const CommandLine& command_line, const EnvLookup& env,
                                  const RememberedServers& remembered = {});

}  // namespace chat::tools
