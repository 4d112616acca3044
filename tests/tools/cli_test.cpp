#include "chatctl/cli.h"

#include <gtest/gtest.h>

#include <map>

namespace chat::tools {
namespace {

Result<CommandLine> parse(std::vector<std::string> argv) { return parse_command_line(argv); }

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
}

TEST(ParseCommandLine, NoArgumentsIsHelp) {
  auto cl = parse({});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->command, Command::kHelp);
}

TEST(ParseCommandLine, HelpFlagAnywhere) {
  auto cl = parse({"send", "bob", "--help"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->command, Command::kHelp);
  EXPECT_EQ(parse({"help"})->command, Command::kHelp);
  EXPECT_EQ(parse({"-h"})->command, Command::kHelp);
}

TEST(ParseCommandLine, GlobalOptionsBeforeAndAfterTheCommand) {
  auto cl = parse({"--as", "alice", "send", "bob", "hello", "world", "--json", "--device=phone-1"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->command, Command::kSend);
  EXPECT_EQ(cl->as_user, "alice");
  EXPECT_EQ(cl->device, "phone-1");
  EXPECT_TRUE(cl->json);
  EXPECT_EQ(cl->args, (std::vector<std::string>{"bob", "hello", "world"}));
}

TEST(ParseCommandLine, DoubleDashEndsOptions) {
  auto cl = parse({"send", "bob", "--", "--not-an-option", "--json"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_FALSE(cl->json);
  EXPECT_EQ(cl->args, (std::vector<std::string>{"bob", "--not-an-option", "--json"}));
}

TEST(ParseCommandLine, DashAndNegativeNumbersArePositional) {
  auto cl = parse({"send", "bob", "-"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->args, (std::vector<std::string>{"bob", "-"}));
  cl = parse({"send", "bob", "-5", "degrees"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->args, (std::vector<std::string>{"bob", "-5", "degrees"}));
}

TEST(ParseCommandLine, PerCommandOptions) {
  auto cl = parse({"history", "bob", "--limit", "20", "--before=00000000000000ff"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->command, Command::kHistory);
  EXPECT_EQ(cl->limit, 20);
  EXPECT_EQ(cl->before, "00000000000000ff");

  cl = parse({"listen", "--count", "3", "--timeout", "2.5"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->count, 3);
  EXPECT_DOUBLE_EQ(*cl->timeout_seconds, 2.5);

  cl = parse({"register", "alice", "--password", "secret123"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->password, "secret123");
  cl = parse({"login", "alice", "--password=x y"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->password, "x y");
}

TEST(ParseCommandLine, UsageErrors) {
  auto expect_error = [](std::vector<std::string> argv, std::string_view fragment) {
    auto cl = parse_command_line(argv);
    ASSERT_FALSE(cl.is_ok()) << "accepted: " << ::testing::PrintToString(argv);
    EXPECT_EQ(cl.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(cl.status().message().find(fragment), std::string::npos) << cl.status().message();
  };
  expect_error({"frobnicate"}, "unknown command");
  expect_error({"listen", "--bogus"}, "unknown option");
  expect_error({"listen", "-x"}, "unknown option");
  expect_error({"send", "bob"}, "usage: chatctl send");
  expect_error({"register"}, "usage: chatctl register");
  expect_error({"login", "a", "b"}, "usage: chatctl login");
  expect_error({"logout", "extra"}, "usage: chatctl logout");
  expect_error({"history", "bob", "--limit"}, "needs a value");
  expect_error({"history", "bob", "--limit", "0"}, "--limit");
  expect_error({"history", "bob", "--limit", "-3"}, "--limit");
  expect_error({"history", "bob", "--limit", "ten"}, "--limit");
  expect_error({"listen", "--count", "1.5"}, "--count");
  expect_error({"listen", "--timeout", "0"}, "--timeout");
  expect_error({"listen", "--timeout", "soon"}, "--timeout");
  expect_error({"send", "bob", "hi", "--limit", "3"}, "does not apply");
  expect_error({"history", "bob", "--count", "3"}, "does not apply");
  expect_error({"listen", "--password", "x"}, "does not apply");
  expect_error({"--as", "Alice", "token"}, "--as");
  expect_error({"--device", "bad device", "token"}, "--device");
  expect_error({"--json=yes", "token"}, "--json");
}

TEST(ParseCommandLine, GroupCommands) {
  auto cl = parse({"group", "create", "Climbing", "club", "--members", "bob,carol, bob,"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->command, Command::kGroup);
  EXPECT_EQ(cl->group_action, GroupAction::kCreate);
  EXPECT_EQ(cl->args, (std::vector<std::string>{"Climbing", "club"}));
  EXPECT_EQ(cl->members, (std::vector<std::string>{"bob", "carol"}));

  cl = parse({"group", "create", "Solo"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_TRUE(cl->members.empty());

  cl = parse({"group", "add", "g:Gx7", "carol"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->group_action, GroupAction::kAdd);
  EXPECT_EQ(cl->args, (std::vector<std::string>{"Gx7", "carol"}));  // g: dropped

  struct Case {
    std::vector<std::string> argv;
    GroupAction action;
    std::vector<std::string> args;
  };
  for (const auto& c : std::vector<Case>{
           {{"group", "remove", "Gx7", "bob"}, GroupAction::kRemove, {"Gx7", "bob"}},
           {{"group", "leave", "Gx7"}, GroupAction::kLeave, {"Gx7"}},
           {{"group", "admin", "Gx7", "bob"}, GroupAction::kAdmin, {"Gx7", "bob"}},
           {{"group", "list"}, GroupAction::kList, {}},
           {{"group", "show", "g:Gx7"}, GroupAction::kShow, {"Gx7"}},
       }) {
    cl = parse(c.argv);
    ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
    EXPECT_EQ(cl->group_action, c.action);
    EXPECT_EQ(cl->args, c.args);
  }
}

TEST(ParseCommandLine, SendToAGroup) {
  auto cl = parse({"send", "--group", "Gx7", "hello", "all"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->command, Command::kSend);
  EXPECT_EQ(cl->args, (std::vector<std::string>{"g:Gx7", "hello", "all"}));
  cl = parse({"send", "hi", "--group=g:Gx7"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->args, (std::vector<std::string>{"g:Gx7", "hi"}));
  cl = parse({"send", "--group", "Gx7", "-"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_EQ(cl->args, (std::vector<std::string>{"g:Gx7", "-"}));
}

TEST(ParseCommandLine, ReadTypingBlocksListen) {
  auto cl = parse({"read", "g:Gx7", "--limit", "20"});
  ASSERT_TRUE(cl.is_ok()) << cl.status().to_string();
  EXPECT_EQ(cl->command, Command::kRead);
  EXPECT_EQ(cl->args, (std::vector<std::string>{"g:Gx7"}));
  EXPECT_EQ(cl->limit, 20);
  EXPECT_EQ(parse({"typing", "bob"})->command, Command::kTyping);
  EXPECT_EQ(parse({"block", "bob"})->command, Command::kBlock);
  EXPECT_EQ(parse({"unblock", "bob"})->command, Command::kUnblock);
  EXPECT_EQ(parse({"blocks"})->command, Command::kBlocks);
  cl = parse({"listen", "--no-receipts"});
  ASSERT_TRUE(cl.is_ok());
  EXPECT_TRUE(cl->no_receipts);
  EXPECT_FALSE(parse({"listen"})->no_receipts);
}

TEST(ParseCommandLine, GroupAndNewCommandUsageErrors) {
  auto expect_error = [](std::vector<std::string> argv, std::string_view fragment) {
    auto cl = parse_command_line(argv);
    ASSERT_FALSE(cl.is_ok()) << "accepted: " << ::testing::PrintToString(argv);
    EXPECT_EQ(cl.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(cl.status().message().find(fragment), std::string::npos) << cl.status().message();
  };
  expect_error({"group"}, "usage: chatctl group");
  expect_error({"group", "fly"}, "unknown group command 'fly'");
  expect_error({"group", "create"}, "usage: chatctl group create NAME");
  expect_error({"group", "add", "Gx7"}, "usage: chatctl group add GID USER");
  expect_error({"group", "leave"}, "usage: chatctl group leave GID");
  expect_error({"group", "list", "extra"}, "usage: chatctl group list");
  expect_error({"group", "show", "bad/gid"}, "not a group id");
  expect_error({"group", "add", "Gx7", "Carol!"}, "not a valid user id");
  expect_error({"group", "create", "x", "--members", "bob,Bad Id"}, "--members: 'Bad Id'");
  expect_error({"group", "add", "Gx7", "bob", "--members", "carol"},
               "does not apply to 'group add'");
  expect_error({"send", "bob", "hi", "--members", "carol"}, "does not apply");
  expect_error({"send", "--group", "bad/gid", "hi"}, "--group");
  expect_error({"send", "--group", "Gx7"}, "usage: chatctl send --group GID TEXT");
  expect_error({"history", "bob", "--group", "Gx7"}, "does not apply");
  expect_error({"read"}, "usage: chatctl read");
  expect_error({"read", "bob", "--before", "x"}, "does not apply");
  expect_error({"typing"}, "usage: chatctl typing");
  expect_error({"block", "Bob!"}, "not a valid user id");
  expect_error({"blocks", "bob"}, "usage: chatctl blocks");
  expect_error({"history", "bob", "--no-receipts"}, "does not apply");
  expect_error({"listen", "--no-receipts=yes"}, "takes no value");
}

TEST(ParseGroupId, Forms) {
  EXPECT_EQ(*parse_group_id("Gx7"), "Gx7");
  EXPECT_EQ(*parse_group_id("g:Gx7"), "Gx7");
  EXPECT_FALSE(parse_group_id("").is_ok());
  EXPECT_FALSE(parse_group_id("g:").is_ok());
  EXPECT_FALSE(parse_group_id("a b").is_ok());
  EXPECT_FALSE(parse_group_id(std::string(65, 'a')).is_ok());
}

TEST(ParseMemberList, Forms) {
  EXPECT_EQ(*parse_member_list("a,b,c"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(*parse_member_list(" a , ,a,b "), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(parse_member_list("")->empty());
  EXPECT_FALSE(parse_member_list("a,B").is_ok());
}

TEST(ResolveSettings, Defaults) {
  auto cl = parse({"token"});
  ASSERT_TRUE(cl.is_ok());
  auto s = resolve_settings(*cl, fake_env({{"HOME", "/home/u"}}));
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->api.scheme_host_port, "http://127.0.0.1:8080");
  EXPECT_EQ(s->api.base_path, "");
  EXPECT_EQ(s->mqtt_uri, "tcp://127.0.0.1:1883");
  EXPECT_EQ(s->home, "/home/u/.config/chatctl");
  EXPECT_EQ(s->ca_file, "");
}

TEST(ResolveSettings, EnvironmentPortsAndHomes) {
  auto cl = parse({"token"});
  auto s = resolve_settings(*cl, fake_env({{"HOME", "/home/u"},
                                           {"XDG_CONFIG_HOME", "/xdg"},
                                           {"CHAT_HTTP_PORT", "18080"},
                                           {"CHAT_MQTT_PORT", "11883"},
                                           {"CHATCTL_CA", "/ca.pem"}}));
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->api.scheme_host_port, "http://127.0.0.1:18080");
  EXPECT_EQ(s->mqtt_uri, "tcp://127.0.0.1:11883");
  EXPECT_EQ(s->home, "/xdg/chatctl");
  EXPECT_EQ(s->ca_file, "/ca.pem");

  s = resolve_settings(*cl, fake_env({{"HOME", "/home/u"}, {"CHATCTL_HOME", "/profiles"}}));
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->home, "/profiles");
}

TEST(ResolveSettings, OptionsWinOverEnvironment) {
  auto cl = parse({"--api", "https://chat.example:8443/base/", "--mqtt", "mqtts://chat.example",
                   "--home", "/h", "--ca", "/my-ca.pem", "token"});
  ASSERT_TRUE(cl.is_ok());
  auto s = resolve_settings(*cl, fake_env({{"CHATCTL_HOME", "/ignored"}, {"CHAT_HTTP_PORT", "1"}}));
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->api.scheme_host_port, "https://chat.example:8443");
  EXPECT_EQ(s->api.base_path, "/base");
  EXPECT_TRUE(s->api.tls);
  EXPECT_EQ(s->mqtt_uri, "ssl://chat.example:8883");
  EXPECT_EQ(s->home, "/h");
  EXPECT_EQ(s->ca_file, "/my-ca.pem");
}

TEST(ResolveSettings, BadValuesNameTheirSource) {
  auto cl = parse({"token"});
  auto s = resolve_settings(*cl, fake_env({{"HOME", "/h"}, {"CHAT_HTTP_PORT", "http"}}));
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("CHAT_HTTP_PORT"), std::string::npos);
  s = resolve_settings(*cl, fake_env({{"HOME", "/h"}, {"CHAT_MQTT_PORT", "70000"}}));
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("CHAT_MQTT_PORT"), std::string::npos);
  s = resolve_settings(*cl, fake_env({}));
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("--home"), std::string::npos);
}

TEST(ResolveSettings, RememberedServersComeAfterOptionsAndEnvironment) {
  RememberedServers remembered{"https://chat.example:8443/base", "ssl://chat.example:8883",
                               "/etc/chat/ca.pem", "/h/alice.json"};
  auto cl = parse({"token"});
  auto s = resolve_settings(*cl, fake_env({{"HOME", "/h"}}), remembered);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(api_url_text(s->api), "https://chat.example:8443/base");
  EXPECT_TRUE(s->api.tls);
  EXPECT_EQ(s->mqtt_uri, "ssl://chat.example:8883");
  EXPECT_EQ(s->ca_file, "/etc/chat/ca.pem");
  EXPECT_TRUE(s->ca_remembered);

  // Each environment variable wins over its remembered value only.
  s = resolve_settings(*cl, fake_env({{"HOME", "/h"}, {"CHAT_HTTP_PORT", "9000"}}), remembered);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(api_url_text(s->api), "http://127.0.0.1:9000");
  EXPECT_EQ(s->mqtt_uri, "ssl://chat.example:8883");
  s = resolve_settings(*cl, fake_env({{"HOME", "/h"}, {"CHAT_MQTT_PORT", "1884"}}), remembered);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(api_url_text(s->api), "https://chat.example:8443/base");
  EXPECT_EQ(s->mqtt_uri, "tcp://127.0.0.1:1884");
  s = resolve_settings(*cl, fake_env({{"HOME", "/h"}, {"CHATCTL_CA", "/env-ca.pem"}}), remembered);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(s->ca_file, "/env-ca.pem");
  EXPECT_FALSE(s->ca_remembered);

  // Options win over both; an explicit empty --ca means no extra CA.
  cl = parse({"--api", "http://10.0.0.1:81", "--mqtt", "10.0.0.1", "--ca=", "token"});
  ASSERT_TRUE(cl.is_ok());
  s = resolve_settings(*cl, fake_env({{"HOME", "/h"}, {"CHATCTL_CA", "/env-ca.pem"}}), remembered);
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(api_url_text(s->api), "http://10.0.0.1:81");
  EXPECT_EQ(s->mqtt_uri, "tcp://10.0.0.1:1883");
  EXPECT_EQ(s->ca_file, "");
  EXPECT_FALSE(s->ca_remembered);

  // Nothing remembered: today's defaults.
  s = resolve_settings(*parse({"token"}), fake_env({{"HOME", "/h"}}), RememberedServers{});
  ASSERT_TRUE(s.is_ok());
  EXPECT_EQ(api_url_text(s->api), "http://127.0.0.1:8080");
  EXPECT_EQ(s->mqtt_uri, "tcp://127.0.0.1:1883");
  EXPECT_EQ(s->ca_file, "");
}

TEST(ResolveSettings, BadRememberedValuesNameTheProfile) {
  auto cl = parse({"token"});
  auto env = fake_env({{"HOME", "/h"}});
  auto check = [&](RememberedServers r, const std::string& field) {
    r.source = "/h/alice.json";
    auto s = resolve_settings(*cl, env, r);
    ASSERT_FALSE(s.is_ok()) << field;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    std::string m = s.status().message();
    EXPECT_EQ(m.rfind("/h/alice.json: ", 0), 0u) << field << ": " << m;
    EXPECT_NE(m.find("remembered \"" + field + "\""), std::string::npos) << m;
  };
  check({"ftp://chat.example", "", "", ""}, "api");
  check({"", "ws://chat.example", "", ""}, "mqtt");
  check({"", "[::1", "", ""}, "mqtt");
  check({"", "", "relative/ca.pem", ""}, "ca");

  // A bad remembered value that an option or variable replaces is not used, so
  // not an error (logging in again with --api repairs the profile).
  RememberedServers bad{"ftp://chat.example", "ws://x", "relative.pem", "/h/alice.json"};
  auto fixed = parse({"--api", "http://127.0.0.1:1", "--ca", "/ca.pem", "token"});
  auto s = resolve_settings(*fixed, fake_env({{"HOME", "/h"}, {"CHAT_MQTT_PORT", "1884"}}), bad);
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
}

TEST(ParseApiUrl, Forms) {
  auto u = parse_api_url("127.0.0.1:9000");
  ASSERT_TRUE(u.is_ok());
  EXPECT_EQ(u->scheme_host_port, "http://127.0.0.1:9000");
  EXPECT_FALSE(u->tls);
  u = parse_api_url("http://localhost/");
  ASSERT_TRUE(u.is_ok());
  EXPECT_EQ(u->scheme_host_port, "http://localhost");
  EXPECT_EQ(u->base_path, "");
  EXPECT_FALSE(parse_api_url("ftp://x").is_ok());
  EXPECT_FALSE(parse_api_url("http://").is_ok());
  EXPECT_FALSE(parse_api_url("http://x/a?b=1").is_ok());
}

TEST(ParseMqttAddress, Forms) {
  EXPECT_EQ(*parse_mqtt_address("localhost:1884"), "tcp://localhost:1884");
  EXPECT_EQ(*parse_mqtt_address("localhost"), "tcp://localhost:1883");
  EXPECT_EQ(*parse_mqtt_address("tcp://10.0.0.1:2000"), "tcp://10.0.0.1:2000");
  EXPECT_EQ(*parse_mqtt_address("mqtt://h:1"), "tcp://h:1");
  EXPECT_EQ(*parse_mqtt_address("ssl://h"), "ssl://h:8883");
  EXPECT_EQ(*parse_mqtt_address("mqtts://h:9883"), "ssl://h:9883");
  EXPECT_EQ(*parse_mqtt_address("[::1]:1883"), "tcp://[::1]:1883");
  EXPECT_EQ(*parse_mqtt_address("[::1]"), "tcp://[::1]:1883");
  EXPECT_FALSE(parse_mqtt_address("").is_ok());
  EXPECT_FALSE(parse_mqtt_address("h:port").is_ok());
  EXPECT_FALSE(parse_mqtt_address("h:0").is_ok());
  EXPECT_FALSE(parse_mqtt_address("::1").is_ok());
  EXPECT_FALSE(parse_mqtt_address("ws://h:1").is_ok());
}

TEST(UsageText, MentionsEveryCommandAndExample) {
  std::string text = usage_text();
  for (const char* word :
       {"register",     "login",         "logout",       "send",         "listen",
        "history",      "conversations", "token",        "--json",       "Examples",
        "group create", "group add",     "group remove", "group leave",  "group admin",
        "group list",   "group show",    "send --group", "read",         "typing",
        "block",        "unblock",       "blocks",       "--no-receipts"}) {
    EXPECT_NE(text.find(word), std::string::npos) << word;
  }
  EXPECT_NE(text.find("remembers the --api, --mqtt and --ca used"), std::string::npos);
}

}  // namespace
}  // namespace chat::tools
