#include "chatctl/cli.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "chat/common/ids.h"
#include "chatctl/output.h"

namespace chat::tools {
namespace {

struct CommandSpec {
  std::string_view name;
  Command command;
  size_t min_args;
  size_t max_args;  // SIZE_MAX: unbounded
  std::string_view synopsis;
};

constexpr size_t kUnbounded = static_cast<size_t>(-1);

constexpr CommandSpec kCommands[] = {
    {"help", Command::kHelp, 0, kUnbounded, "help"},
    {"register", Command::kRegister, 1, 1, "register USER [--password P]"},
    {"login", Command::kLogin, 1, 1, "login USER [--password P]"},
    {"logout", Command::kLogout, 0, 0, "logout"},
    {"send", Command::kSend, 1, kUnbounded,
     "send PEER TEXT... | send PEER - | send --group GID TEXT... | "
     "send PEER|g:GID --file PATH [--caption TEXT]"},
    {"fetch", Command::kFetch, 1, 1, "fetch MEDIA_ID|URL [-o FILE]"},
    {"listen", Command::kListen, 0, 0, "listen [--count N] [--timeout S] [--no-receipts]"},
    {"history", Command::kHistory, 1, 1, "history PEER [--limit N] [--before ID]"},
    {"conversations", Command::kConversations, 0, 0, "conversations"},
    {"token", Command::kToken, 0, 0, "token"},
    {"group", Command::kGroup, 1, kUnbounded,
     "group create NAME [--members a,b,c] | add GID USER | remove GID USER | leave GID | "
     "admin GID USER | list | show GID"},
    {"read", Command::kRead, 1, 1, "read PEER|g:GID [--limit N]"},
    {"typing", Command::kTyping, 1, 1, "typing PEER|g:GID"},
    {"block", Command::kBlock, 1, 1, "block USER"},
    {"unblock", Command::kUnblock, 1, 1, "unblock USER"},
    {"blocks", Command::kBlocks, 0, 0, "blocks"},
    {"admin", Command::kAdmin, 1, 2,
     "admin users [--limit N] | clients | stats | ban USER | unban USER | kick CLIENTID | "
     "revoke JTI | backup DIR | restore DIR [--data-dir D] [--force]"},
    {"keys", Command::kKeys, 1, 1, "keys init [--force] | keys status | keys refill"},
    {"verify", Command::kVerify, 1, 1, "verify USER [--confirm]"},
    {"devices", Command::kDevices, 0, 2,
     "devices [list] | devices register --platform fcm|apns --token T | devices unregister "
     "[DEVICE]"},
};

struct AdminSpec {
  std::string_view name;
  AdminAction action;
  size_t args;
  std::string_view synopsis;
};

constexpr AdminSpec kAdminActions[] = {
    {"users", AdminAction::kUsers, 0, "admin users [--limit N]"},
    {"clients", AdminAction::kClients, 0, "admin clients"},
    {"stats", AdminAction::kStats, 0, "admin stats"},
    {"ban", AdminAction::kBan, 1, "admin ban USER"},
    {"unban", AdminAction::kUnban, 1, "admin unban USER"},
    {"kick", AdminAction::kKick, 1, "admin kick CLIENTID"},
    {"revoke", AdminAction::kRevoke, 1, "admin revoke JTI"},
    {"backup", AdminAction::kBackup, 1, "admin backup DIR"},
    {"restore", AdminAction::kRestore, 1, "admin restore DIR [--data-dir D] [--force]"},
};

struct GroupSpec {
  std::string_view name;
  GroupAction action;
  size_t min_args;
  size_t max_args;
  std::string_view synopsis;
};

constexpr GroupSpec kGroupActions[] = {
    {"create", GroupAction::kCreate, 1, kUnbounded, "group create NAME [--members a,b,c]"},
    {"add", GroupAction::kAdd, 2, 2, "group add GID USER"},
    {"remove", GroupAction::kRemove, 2, 2, "group remove GID USER"},
    {"leave", GroupAction::kLeave, 1, 1, "group leave GID"},
    {"admin", GroupAction::kAdmin, 2, 2, "group admin GID USER"},
    {"list", GroupAction::kList, 0, 0, "group list"},
    {"show", GroupAction::kShow, 1, 1, "group show GID"},
};

const CommandSpec* find_command(std::string_view name) {
  for (const auto& spec : kCommands) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

const CommandSpec& spec_of(Command command) {
  for (const auto& spec : kCommands) {
    if (spec.command == command) return spec;
  }
  return kCommands[0];
}

Status usage_error(std::string message) { return invalid_argument(std::move(message)); }

bool parse_positive_int(std::string_view s, int64_t max, int64_t* out) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 1 || v > max) return false;
  *out = v;
  return true;
}

bool parse_positive_seconds(std::string_view s, double* out) {
  std::string copy(s);
  if (copy.empty()) return false;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(copy.c_str(), &end);
  if (errno != 0 || end != copy.c_str() + copy.size() || !std::isfinite(v) || v <= 0) return false;
  *out = v;
  return true;
}

// A "-5"-like word is a positional argument (a message text), not an option.
bool looks_like_option(std::string_view word) {
  if (word.size() < 2 || word[0] != '-') return false;
  if (word[1] >= '0' && word[1] <= '9') return false;
  return true;
}

bool parse_port(std::string_view s, int* port) {
  int64_t v = 0;
  if (!parse_positive_int(s, 65535, &v)) return false;
  *port = static_cast<int>(v);
  return true;
}

Result<int> port_from_env(const EnvLookup& env, std::string_view name, int fallback) {
  auto value = env(name);
  if (!value) return fallback;
  int port = 0;
  if (!parse_port(*value, &port)) {
    return invalid_argument(std::string(name) + "=" + *value + " is not a port number (1-65535)");
  }
  return port;
}

}  // namespace

const char* command_name(Command command) { return spec_of(command).name.data(); }

Result<CommandLine> parse_command_line(const std::vector<std::string>& argv) {
  CommandLine out;
  std::vector<std::string> positional;
  bool help = false;
  bool options_done = false;
  // Per-command options seen, to check they fit the command afterwards.
  std::vector<std::pair<std::string, Command>> command_options;

  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (options_done || !looks_like_option(word)) {
      positional.push_back(word);
      continue;
    }
    if (word == "--") {
      options_done = true;
      continue;
    }
    if (word == "-h" || word == "--help") {
      help = true;
      continue;
    }
    if (word != "-o" && word.rfind("--", 0) != 0) return usage_error("unknown option " + word);

    std::string name = word == "-o" ? std::string("output") : word.substr(2);
    std::optional<std::string> inline_value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (name == "json") {
      if (inline_value) return usage_error("--json takes no value");
      out.json = true;
      continue;
    }
    if (name == "no-receipts") {
      if (inline_value) return usage_error("--no-receipts takes no value");
      out.no_receipts = true;
      command_options.emplace_back(name, Command::kListen);
      continue;
    }
    if (name == "force") {
      if (inline_value) return usage_error("--force takes no value");
      out.force = true;
      command_options.emplace_back(name, Command::kAdmin);  // or kKeys
      continue;
    }
    if (name == "e2e") {
      if (inline_value) return usage_error("--e2e takes no value");
      out.e2e = true;
      command_options.emplace_back(name, Command::kSend);
      continue;
    }
    if (name == "confirm") {
      if (inline_value) return usage_error("--confirm takes no value");
      out.confirm = true;
      command_options.emplace_back(name, Command::kVerify);
      continue;
    }
    static constexpr std::string_view kValued[] = {
        "api",   "mqtt",   "as",      "device",  "home",    "ca",      "password",
        "limit", "before", "count",   "timeout", "group",   "members", "platform",
        "token", "file",   "caption", "output",  "data-dir"};
    bool known = false;
    for (auto k : kValued) known = known || (k == name);
    if (!known) return usage_error("unknown option --" + name);

    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      if (i + 1 >= argv.size()) return usage_error("--" + name + " needs a value");
      value = argv[++i];
    }

    if (name == "api") {
      out.api = value;
    } else if (name == "mqtt") {
      out.mqtt = value;
    } else if (name == "as") {
      if (!is_valid_user_id(value))
        return usage_error("--as: '" + value + "' is not a valid user id");
      out.as_user = value;
    } else if (name == "device") {
      if (!is_valid_device_id(value)) {
        return usage_error("--device: '" + value +
                           "' is not a valid device id ([A-Za-z0-9_-]{1,64})");
      }
      out.device = value;
    } else if (name == "home") {
      if (value.empty()) return usage_error("--home needs a directory");
      out.home = value;
    } else if (name == "ca") {
      out.ca_file = value;
    } else if (name == "password") {
      out.password = value;
      command_options.emplace_back(name, Command::kLogin);
    } else if (name == "limit") {
      int64_t v = 0;
      if (!parse_positive_int(value, 1'000'000, &v)) {
        return usage_error("--limit: '" + value + "' is not a positive number");
      }
      out.limit = static_cast<int>(v);
      command_options.emplace_back(name, Command::kHistory);  // or kRead
    } else if (name == "before") {
      if (value.empty()) return usage_error("--before needs a message id");
      out.before = value;
      command_options.emplace_back(name, Command::kHistory);
    } else if (name == "count") {
      int64_t v = 0;
      if (!parse_positive_int(value, INT64_MAX, &v)) {
        return usage_error("--count: '" + value + "' is not a positive number");
      }
      out.count = v;
      command_options.emplace_back(name, Command::kListen);
    } else if (name == "timeout") {
      double v = 0;
      if (!parse_positive_seconds(value, &v)) {
        return usage_error("--timeout: '" + value + "' is not a positive number of seconds");
      }
      out.timeout_seconds = v;
      command_options.emplace_back(name, Command::kListen);
    } else if (name == "group") {
      auto gid = parse_group_id(value);
      if (!gid) return usage_error("--group: " + gid.status().message());
      out.group = *gid;
      command_options.emplace_back(name, Command::kSend);
    } else if (name == "file") {
      if (value.empty()) return usage_error("--file needs a path");
      out.file = value;
      command_options.emplace_back(name, Command::kSend);
    } else if (name == "caption") {
      out.caption = value;
      command_options.emplace_back(name, Command::kSend);
    } else if (name == "output") {
      if (value.empty()) return usage_error("-o needs a file name");
      out.output = value;
      command_options.emplace_back(name, Command::kFetch);
    } else if (name == "members") {
      auto members = parse_member_list(value);
      if (!members) return usage_error("--members: " + members.status().message());
      out.members.insert(out.members.end(), members->begin(), members->end());
      command_options.emplace_back(name, Command::kGroup);
    } else if (name == "platform") {
      if (value != "fcm" && value != "apns") {
        return usage_error("--platform: expected fcm or apns, got '" + value + "'");
      }
      out.platform = value;
      command_options.emplace_back(name, Command::kDevices);
    } else if (name == "token") {
      if (value.empty()) return usage_error("--token needs the provider's push token");
      out.push_token = value;
      command_options.emplace_back(name, Command::kDevices);
    } else if (name == "data-dir") {
      if (value.empty()) return usage_error("--data-dir needs a directory");
      out.data_dir = value;
      command_options.emplace_back(name, Command::kAdmin);
    }
  }

  if (help || positional.empty()) {
    out.command = Command::kHelp;
    return out;
  }

  const CommandSpec* spec = find_command(positional.front());
  if (spec == nullptr) return usage_error("unknown command '" + positional.front() + "'");
  out.command = spec->command;
  out.args.assign(positional.begin() + 1, positional.end());

  std::string_view command_word = spec->name;
  if (out.command == Command::kGroup && !out.args.empty()) {
    // The subcommand and its arguments.
    const GroupSpec* action = nullptr;
    for (const auto& g : kGroupActions) {
      if (g.name == out.args.front()) action = &g;
    }
    if (action == nullptr) {
      return usage_error("unknown group command '" + out.args.front() + "'; usage: chatctl " +
                         std::string(spec->synopsis));
    }
    out.group_action = action->action;
    out.args.erase(out.args.begin());
    if (out.args.size() < action->min_args || out.args.size() > action->max_args) {
      return usage_error("usage: chatctl " + std::string(action->synopsis));
    }
    if (out.group_action != GroupAction::kCreate && out.group_action != GroupAction::kList) {
      auto gid = parse_group_id(out.args.front());
      if (!gid) return usage_error(gid.status().message());
      out.args.front() = *gid;
    }
    if (out.args.size() == 2 && !is_valid_user_id(out.args[1])) {
      return usage_error("'" + out.args[1] + "' is not a valid user id");
    }
  }

  if (out.command == Command::kAdmin) {
    if (out.args.empty()) return usage_error("usage: chatctl " + std::string(spec->synopsis));
    const AdminSpec* action = nullptr;
    for (const auto& a : kAdminActions) {
      if (a.name == out.args.front()) action = &a;
    }
    if (action == nullptr) {
      return usage_error("unknown admin command '" + out.args.front() + "'; usage: chatctl " +
                         std::string(spec->synopsis));
    }
    out.admin_action = action->action;
    out.args.erase(out.args.begin());
    if (out.args.size() != action->args) {
      return usage_error("usage: chatctl " + std::string(action->synopsis));
    }
    if ((out.admin_action == AdminAction::kBan || out.admin_action == AdminAction::kUnban) &&
        !is_valid_user_id(out.args.front())) {
      return usage_error("'" + out.args.front() + "' is not a valid user id");
    }
    if (out.admin_action == AdminAction::kKick) {
      std::string user, device;
      if (!split_client_id(out.args.front(), &user, &device)) {
        return usage_error("'" + out.args.front() + "' is not a client id (USER:DEVICE)");
      }
    }
  }

  for (const auto& [name, owner] : command_options) {
    bool fits = owner == out.command || (name == "password" && out.command == Command::kRegister) ||
                (name == "limit" && out.command == Command::kRead) ||
                (name == "limit" && out.admin_action == AdminAction::kUsers);
    if (name == "members") fits = fits && out.group_action == GroupAction::kCreate;
    if (name == "data-dir" || (name == "force" && out.command != Command::kKeys)) {
      fits = fits && out.admin_action == AdminAction::kRestore;
    }
    if (name == "force" && out.command == Command::kKeys) {
      fits = !out.args.empty() && out.args.front() == "init";
    }
    if (!fits && out.command != Command::kHelp) {
      std::string where(command_word);
      if (out.command == Command::kGroup && !positional.empty() && positional.size() > 1)
        where += " " + positional[1];
      return usage_error("--" + name + " does not apply to '" + where + "'");
    }
  }
  if (out.command == Command::kSend && out.group) {
    // send --group GID TEXT...: the same as send g:GID TEXT...
    if (out.args.empty() && !out.file) {
      return usage_error("usage: chatctl send --group GID TEXT...");
    }
    out.args.insert(out.args.begin(), "g:" + *out.group);
  }
  if (out.command == Command::kKeys && !out.args.empty() && out.args.front() != "init" &&
      out.args.front() != "status" && out.args.front() != "refill") {
    return usage_error("unknown keys command '" + out.args.front() + "'; usage: chatctl " +
                       std::string(spec->synopsis));
  }
  if (out.command == Command::kVerify && !out.args.empty() && !is_valid_user_id(out.args.front())) {
    return usage_error("'" + out.args.front() + "' is not a valid user id");
  }
  if (out.command == Command::kSend && out.e2e && out.file) {
    return usage_error("--e2e does not go with --file (encrypted media is not supported yet)");
  }
  if (out.command == Command::kSend) {
    // send PEER --file PATH: the peer alone; otherwise PEER and the text.
    if (out.file && out.args.size() != 1) {
      return usage_error("usage: chatctl send PEER|g:GID --file PATH [--caption TEXT]");
    }
    if (!out.file && out.caption) return usage_error("--caption goes with --file");
    if (!out.file && out.args.size() < 2) {
      return usage_error("usage: chatctl " + std::string(spec->synopsis));
    }
  }
  if (out.command != Command::kGroup && out.command != Command::kAdmin &&
      (out.args.size() < spec->min_args || out.args.size() > spec->max_args)) {
    return usage_error("usage: chatctl " + std::string(spec->synopsis));
  }
  if (out.command == Command::kGroup && out.group_action == GroupAction::kNone) {
    return usage_error("usage: chatctl " + std::string(spec->synopsis));
  }
  if (out.command == Command::kDevices) {
    const std::string action = out.args.empty() ? "list" : out.args.front();
    const bool registering = action == "register";
    if ((action == "list" || registering) && out.args.size() > 1) {
      return usage_error("usage: chatctl " + std::string(spec->synopsis));
    }
    if (action != "list" && !registering && action != "unregister") {
      return usage_error("unknown devices command '" + action + "'; usage: chatctl " +
                         std::string(spec->synopsis));
    }
    if (registering && (!out.platform || !out.push_token)) {
      return usage_error("usage: chatctl devices register --platform fcm|apns --token T");
    }
    if (!registering && (out.platform || out.push_token)) {
      return usage_error("--platform and --token apply to 'devices register' only");
    }
    if (action == "unregister" && out.args.size() == 2 && !is_valid_device_id(out.args[1])) {
      return usage_error("'" + out.args[1] + "' is not a valid device id ([A-Za-z0-9_-]{1,64})");
    }
  }
  if ((out.command == Command::kBlock || out.command == Command::kUnblock) &&
      !is_valid_user_id(out.args.front())) {
    return usage_error("'" + out.args.front() + "' is not a valid user id");
  }
  return out;
}

Result<std::string> parse_group_id(std::string_view text) {
  std::string_view gid = text;
  if (gid.rfind("g:", 0) == 0) gid.remove_prefix(2);
  if (!is_valid_group_id(gid)) {
    return invalid_argument("'" + std::string(text) +
                            "' is not a group id ([A-Za-z0-9_-]{1,64}, optionally g:<id>)");
  }
  return std::string(gid);
}

Result<std::vector<std::string>> parse_member_list(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      if (!is_valid_user_id(item)) {
        return invalid_argument("'" + std::string(item) + "' is not a valid user id");
      }
      if (std::find(out.begin(), out.end(), item) == out.end()) out.emplace_back(item);
    }
    start = comma + 1;
  }
  return out;
}

std::string usage_text() {
  return R"USAGE(chatctl: command-line client of the chat platform

Usage: chatctl [global options] COMMAND [arguments]

Commands:
  register USER [--password P]   create an account (password: --password, $CHATCTL_PASSWORD,
                                 or asked twice on the terminal)
  login USER [--password P]      get tokens for USER on this device; USER becomes the default
                                 profile, which remembers the --api, --mqtt and --ca used
  logout                         revoke this device's refresh token and forget the tokens (the
                                 remembered servers stay)
  send PEER TEXT...              send a direct message and wait until the server has it
  send PEER -                    send each line of standard input as a message
  send --group GID TEXT...       send to a group (the same as send g:GID TEXT...)
  send --e2e PEER|g:GID TEXT...  end-to-end encrypted (Signal protocol) for every device of the
                                 conversation; `-` reads lines as above
  send PEER|g:GID --file PATH [--caption TEXT]
                                 upload a photo, video, audio file or PDF (at most 64 MiB by
                                 default; the type comes from its bytes) and send it as a media
                                 message; --group GID works here too
  fetch MEDIA_ID|URL [-o FILE]   download a media file (an id from a media message, or its
                                 signed /v1/media/... URL); FILE default: the id plus an
                                 extension; an existing partial FILE is resumed; a progress bar
                                 on a terminal
  listen [--count N] [--timeout S] [--no-receipts]
                                 print messages as they arrive (catching up with /v1/sync first),
                                 receipts, typing, group events and presence; acknowledges
                                 messages with "delivered" receipts unless --no-receipts;
                                 --count: exit after N messages, --timeout: give up after S seconds
  history PEER [--limit N] [--before ID]
                                 print the conversation with PEER (or g:GID), oldest first
  read PEER|g:GID [--limit N]    mark the newest messages from others as read
  typing PEER|g:GID              tell PEER (or the group) that you are typing
  conversations                  list conversations with unread counts and the last message
  group create NAME [--members a,b,c]
                                 create a group (you are its admin); prints its id
  group add GID USER             add a member (admins)
  group remove GID USER          remove a member (admins)
  group leave GID                leave the group
  group admin GID USER           make a member an admin (admins)
  group list                     your groups with their member counts
  group show GID                 a group's name, members and admins
  block USER | unblock USER      stop (or resume) receiving USER's messages, receipts, typing
                                 and presence
  blocks                         the users you block
  admin users [--limit N]        accounts with their admin/banned/deleted flags (admins only,
                                 like every admin command)
  admin clients                  connected devices: client id, user, device, since when
  admin stats                    users, banned users and connected devices
  admin ban USER | admin unban USER
                                 ban USER (all their connections close; logins, refreshes and
                                 tokens are refused) or lift the ban
  admin kick USER:DEVICE         close one device's connection
  admin revoke JTI               revoke one access token (its connections close; it and the
                                 refresh token issued with it are refused); `admin clients
                                 --json` shows each connection's jti
  admin backup DIR               online backup into DIR, an absolute path on the server that
                                 does not exist yet (or is empty): archive, accounts, media,
                                 push state, keys, manifest.json last
  admin restore DIR [--data-dir D] [--force]
                                 on the server, stack stopped: verify DIR's manifest and
                                 restore it into D (else $CHAT_DATA_DIR); --force moves
                                 existing data aside into D/pre-restore-<time>/
  devices [list]                 your devices with push targets (token hints only)
  devices register --platform fcm|apns --token T
                                 register this device's push token (--device, else the
                                 profile's device id); its notifications then reach it while
                                 it is offline
  devices unregister [DEVICE]    remove the push target of this device (or DEVICE)
  keys init [--force]            make this device's Signal identity and prekeys and upload the
                                 public halves (--force: a new identity, replacing the old one)
  keys status                    this device's identity fingerprint and its prekeys on the server
  keys refill                    top the server's one-time prekeys up to 100
  verify USER [--confirm]        the safety number of you and USER (compare it out of band);
                                 --confirm marks USER's current devices verified
  token                          print a valid access token (refreshed when needed)
  help                           this text

Global options (--api, --mqtt, --ca: the option, else its environment variable, else what the
profile remembers from its last login, else the default; register and login of a USER without
a profile use the current profile's):
  --api URL        REST API (default http://127.0.0.1:$CHAT_HTTP_PORT, port default 8080)
  --mqtt HOST:PORT MQTT broker (default 127.0.0.1:$CHAT_MQTT_PORT, port default 1883);
                   ssl://HOST:PORT or mqtts://HOST:PORT for TLS
  --as USER        profile to use (default: the last one logged in)
  --device ID      device id (default: cli-<8 hex>, created once per profile)
  --home DIR       where profiles live (default $CHATCTL_HOME, else $XDG_CONFIG_HOME/chatctl,
                   else ~/.config/chatctl)
  --ca FILE        extra CA certificate for https/TLS (default $CHATCTL_CA); --ca '' for none
  --json           machine-readable output: one JSON object per line

Examples:
  chatctl register alice
  chatctl login alice
  chatctl --api https://chat.example:8080 --mqtt mqtts://chat.example:8883 --ca ca.pem login alice
                   (TLS: once; later commands for alice need no options)
  chatctl --as alice listen
  chatctl --as bob send alice hello there
  seq 3 | chatctl --as bob send alice -
  chatctl --as alice history bob --limit 20
  GID=$(chatctl --as alice group create Climbing --members bob,carol)
  chatctl --as bob send --group "$GID" who is in for Saturday?
  chatctl --as carol read g:"$GID"
  chatctl --as alice send bob --file photo.jpg --caption "the view"
  chatctl --as bob fetch 3xV9c2kQ0fS7yT1uW4eZbA -o photo.jpg
  curl -H "Authorization: Bearer $(chatctl token)" http://127.0.0.1:8080/v1/conversations

Exit status: 0 ok, 1 refused or failed, 2 bad command line.
)USAGE";
}

EnvLookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
}

Result<ApiUrl> parse_api_url(std::string_view url) {
  ApiUrl out;
  std::string_view rest = url;
  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    std::string_view scheme = rest.substr(0, sep);
    if (scheme == "https") {
      out.tls = true;
    } else if (scheme != "http") {
      return invalid_argument("--api: unsupported scheme '" + std::string(scheme) +
                              "' (use http or https)");
    }
    rest.remove_prefix(sep + 3);
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (authority.empty()) return invalid_argument("--api: no host in '" + std::string(url) + "'");
  if (path.find_first_of("?#") != std::string_view::npos) {
    return invalid_argument("--api: a query or fragment is not allowed in '" + std::string(url) +
                            "'");
  }
  out.scheme_host_port = std::string(out.tls ? "https://" : "http://") + std::string(authority);
  out.base_path = std::string(path);
  return out;
}

Result<std::string> parse_mqtt_address(std::string_view address) {
  std::string_view rest = address;
  bool tls = false;
  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    std::string_view scheme = rest.substr(0, sep);
    if (scheme == "ssl" || scheme == "tls" || scheme == "mqtts") {
      tls = true;
    } else if (scheme != "tcp" && scheme != "mqtt") {
      return invalid_argument("--mqtt: unsupported scheme '" + std::string(scheme) +
                              "' (use tcp, mqtt, ssl or mqtts)");
    }
    rest.remove_prefix(sep + 3);
  }
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.empty()) return invalid_argument("--mqtt: no host in '" + std::string(address) + "'");

  std::string_view host = rest;
  std::string_view port_text;
  if (rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) {
      return invalid_argument("--mqtt: unterminated [ in '" + std::string(address) + "'");
    }
    host = rest.substr(0, close + 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return invalid_argument("--mqtt: bad address '" + std::string(address) + "'");
      port_text = after.substr(1);
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    if (rest.find(':') != colon) {
      return invalid_argument("--mqtt: write IPv6 addresses as [addr]:port");
    }
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  if (host.empty() || host.find_first_of("/ ") != std::string_view::npos) {
    return invalid_argument("--mqtt: bad host in '" + std::string(address) + "'");
  }
  int port = tls ? 8883 : 1883;
  if (!port_text.empty() && !parse_port(port_text, &port)) {
    return invalid_argument("--mqtt: bad port in '" + std::string(address) + "'");
  }
  return std::string(tls ? "ssl://" : "tcp://") + std::string(host) + ":" + std::to_string(port);
}

std::string api_url_text(const ApiUrl& url) { return url.scheme_host_port + url.base_path; }

namespace {

Status bad_remembered(const RememberedServers& remembered, std::string_view field,
                      std::string_view value, std::string_view problem, std::string_view option) {
  return invalid_argument(remembered.source + ": the remembered \"" + std::string(field) +
                          "\" value '" + sanitize_for_terminal(value) + "' is not valid (" +
                          std::string(problem) + "); log in again with " + std::string(option) +
                          " or fix the file");
}

}  // namespace

Result<Settings> resolve_settings(const CommandLine& command_line, const EnvLookup& env,
                                  const RememberedServers& remembered) {
  Settings s;

  // Each of api, mqtt and ca: the option, else the environment variable, else
  // the profile's remembered value, else the default.
  std::string api = command_line.api.value_or("");
  const bool api_remembered = api.empty() && !env("CHAT_HTTP_PORT") && !remembered.api.empty();
  if (api_remembered) api = remembered.api;
  if (api.empty()) {
    auto port = port_from_env(env, "CHAT_HTTP_PORT", 8080);
    if (!port) return port.status();
    api = "http://127.0.0.1:" + std::to_string(*port);
  }
  auto api_url = parse_api_url(api);
  if (!api_url) {
    if (!api_remembered) return api_url.status();
    return bad_remembered(remembered, "api", api, api_url.status().message(), "--api URL");
  }
  s.api = *api_url;

  std::string mqtt = command_line.mqtt.value_or("");
  const bool mqtt_remembered = mqtt.empty() && !env("CHAT_MQTT_PORT") && !remembered.mqtt.empty();
  if (mqtt_remembered) mqtt = remembered.mqtt;
  if (mqtt.empty()) {
    auto port = port_from_env(env, "CHAT_MQTT_PORT", 1883);
    if (!port) return port.status();
    mqtt = "127.0.0.1:" + std::to_string(*port);
  }
  auto mqtt_uri = parse_mqtt_address(mqtt);
  if (!mqtt_uri) {
    if (!mqtt_remembered) return mqtt_uri.status();
    return bad_remembered(remembered, "mqtt", mqtt, mqtt_uri.status().message(),
                          "--mqtt HOST:PORT");
  }
  s.mqtt_uri = *mqtt_uri;

  if (command_line.home) {
    s.home = *command_line.home;
  } else if (auto v = env("CHATCTL_HOME")) {
    s.home = *v;
  } else if (auto xdg = env("XDG_CONFIG_HOME")) {
    s.home = *xdg + "/chatctl";
  } else if (auto home = env("HOME")) {
    s.home = *home + "/.config/chatctl";
  } else {
    return invalid_argument("cannot find a home for profiles: set --home, CHATCTL_HOME or HOME");
  }

  // An explicit --ca "" means no extra CA, whatever the profile remembers.
  if (command_line.ca_file) {
    s.ca_file = *command_line.ca_file;
  } else if (auto ca = env("CHATCTL_CA")) {
    s.ca_file = *ca;
  } else if (!remembered.ca_file.empty()) {
    if (remembered.ca_file.front() != '/') {
      return bad_remembered(remembered, "ca", remembered.ca_file, "not an absolute path",
                            "--ca FILE");
    }
    s.ca_file = remembered.ca_file;
    s.ca_remembered = true;
  }
  return s;
}

}  // namespace chat::tools
