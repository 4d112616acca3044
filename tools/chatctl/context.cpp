#include "chatctl/context.h"

#include <poll.h>

#include <algorithm>
#include <csignal>
#include <optional>

#include "chat/common/ids.h"
#include "chat/common/topics.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
#include "chatctl/random_ids.h"

namespace chat::tools {
namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct sigaction g_previous_int;
struct sigaction g_previous_term;

void write_line(std::FILE* f, std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), f);
  std::fputc('\n', f);
  if (std::fflush(f) != 0 || std::ferror(f)) {
    // The reader went away (`chatctl listen | head -1`; Paho ignores SIGPIPE):
    // stop like on Ctrl-C instead of writing into the void forever.
    StopSignal::request();
  }
}

}  // namespace

void Output::line(std::string_view text) { write_line(out_, text); }

void Output::json_line(const nlohmann::json& object) { write_line(out_, dump_json(object)); }

void Output::note(std::string_view text) {
  if (!json_) write_line(err_, text);
}

void Output::warn(std::string_view text) { write_line(err_, "chatctl: " + std::string(text)); }

void Output::error(std::string_view code, std::string_view message) {
  if (json_) {
    write_line(err_, dump_json({{"error", code}, {"message", message}}));
  } else {
    write_line(err_, "chatctl: " + std::string(message));
  }
}

bool Output::reader_gone() const {
  pollfd p{};
  p.fd = ::fileno(out_);
  if (p.fd < 0) return false;
  // Asking for no events: a pipe whose reader closed still reports POLLERR.
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

void Output::error(const Status& status) {
  error(status_code_name(status.code()), status.message());
}

StopSignal::StopSignal() {
  g_stop.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &g_previous_int);
  ::sigaction(SIGTERM, &sa, &g_previous_term);
}

StopSignal::~StopSignal() {
  ::sigaction(SIGINT, &g_previous_int, nullptr);
  ::sigaction(SIGTERM, &g_previous_term, nullptr);
}

bool StopSignal::requested() { return g_stop.load(); }

void StopSignal::request() { g_stop.store(true); }

Result<RememberedServers> remembered_servers(const ProfileStore& store,
                                             const CommandLine& command_line) {
  auto remembered_by = [&](std::string_view user) -> Result<RememberedServers> {
    auto profile = store.load(user);
    if (!profile) return profile.status();
    return RememberedServers{profile->api, profile->mqtt, profile->ca_file, store.path_for(user)};
  };
  if ((command_line.command == Command::kLogin || command_line.command == Command::kRegister) &&
      !command_line.args.empty() && is_valid_user_id(command_line.args.front())) {
    auto own = remembered_by(command_line.args.front());
    if (own || own.status().code() != StatusCode::kNotFound) return own;
  }
  std::string user;
  if (command_line.as_user) {
    user = *command_line.as_user;
  } else {
    auto current = store.current_user();
    if (!current && current.status().code() == StatusCode::kNotFound) return RememberedServers{};
    if (!current) return current.status();
    user = *current;
  }
  auto remembered = remembered_by(user);
  if (!remembered && remembered.status().code() == StatusCode::kNotFound) {
    return RememberedServers{};
  }
  return remembered;
}

Result<std::string> active_user(const Context& ctx) {
  if (ctx.command_line.as_user) return *ctx.command_line.as_user;
  auto current = ctx.store.current_user();
  if (current) return current;
  if (current.status().code() == StatusCode::kNotFound) {
    return unauthenticated("no profile selected: run `chatctl login USER` or pass --as USER");
  }
  return current.status();
}

Result<std::string> active_device(const Context& ctx, const Profile& profile) {
  if (ctx.command_line.device) return *ctx.command_line.device;
  if (!profile.device.empty()) return profile.device;
  auto saved = ctx.store.update(profile.user, /*create_missing=*/false, [](Profile& p) {
    if (p.device.empty()) p.device = new_device_id();
    return Status::ok();
  });
  if (!saved) return saved.status();
  return saved->device;
}

Result<ApiResponse> authed_get(Context& ctx, Credentials& credentials, std::string_view path) {
  return authed_request(ctx, credentials, "GET", path, nullptr);
}

Result<ApiResponse> authed_request(Context& ctx, Credentials& credentials, std::string_view method,
                                   std::string_view path, const nlohmann::json* body) {
  auto profile = credentials.fresh();
  if (!profile) return profile.status();
  auto response = ctx.api.request(method, path, body, profile->access_token);
  if (!response || response->status != 401) return response;
  profile = credentials.fresh(profile->access_token);
  if (!profile) return profile.status();
  return ctx.api.request(method, path, body, profile->access_token);
}

RestCall rest_call(Context& ctx, Credentials& credentials, std::string_view method,
                   const std::string& path, const nlohmann::json* body) {
  RestCall c{authed_request(ctx, credentials, method, path, body)};
  if (!c.response) {
    c.exit_status = fail(ctx, c.response.status());
  } else if (!c.response->ok()) {
    c.exit_status = fail(ctx, status_from_response(*c.response));
  }
  return c;
}

int fail(Context& ctx, const Status& status) {
  ctx.out.error(status);
  return kExitFailure;
}

Result<InboxSession> open_inbox(Context& ctx, Credentials& credentials, const std::string& device,
                                std::chrono::milliseconds timeout, bool persistent) {
  auto profile = credentials.fresh();
  if (!profile) return profile.status();
  for (int attempt = 0;; ++attempt) {
    MqttConnectOptions options;
    options.server_uri = ctx.settings.mqtt_uri;
    options.client_id = profile->user + ":" + device;
    options.user_name = profile->user;
    options.password = profile->access_token;
    options.ca_file = ctx.settings.ca_file;
    options.timeout = timeout;
    if (!persistent) options.session_expiry = std::chrono::seconds(0);
    InboxSession session;
    auto link = MqttLink::connect(options, &session.session_present);
    if (!link) {
      if (link.status().code() == StatusCode::kUnauthenticated && attempt == 0) {
        // Maybe revoked or signed with a rotated key: one fresh token, then give up.
        profile = credentials.fresh(profile->access_token);
        if (!profile) return profile.status();
        continue;
      }
      if (link.status().code() == StatusCode::kUnauthenticated) {
        return unauthenticated(link.status().message() + ": " + login_again_hint(profile->user));
      }
      return link.status();
    }
    session.link = std::move(*link);
    Status s = session.link->subscribe(topics::inbox(profile->user, "#"), 1, timeout);
    if (!s.is_ok()) return s;
    session.profile = std::move(*profile);
    return session;
  }
}

Result<std::string> send_topic_for(std::string_view peer) {
  std::string topic;
  if (peer.rfind("g:", 0) == 0) {
    topic = topics::group(peer.substr(2));
  } else {
    topic = topics::direct(peer);
  }
  auto parsed = topics::parse_send_topic(topic);
  if (parsed.kind != topics::SendKind::kDirect && parsed.kind != topics::SendKind::kGroup) {
    return invalid_argument("'" + std::string(peer) + "' is neither a user id nor g:<group id>");
  }
  return topic;
}

Result<std::string> conversation_for(std::string_view me, std::string_view peer) {
  if (peer.rfind("g:", 0) == 0) {
    if (!is_valid_group_id(peer.substr(2))) {
      return invalid_argument("'" + std::string(peer) + "' is not a valid group");
    }
    return topics::group_conversation(peer.substr(2));
  }
  if (!is_valid_user_id(peer))
    return invalid_argument("'" + std::string(peer) + "' is not a user id");
  return topics::dm_conversation(me, peer);
}

Status publish_once(Context& ctx, Credentials& credentials, const std::string& device,
                    const std::string& topic, const std::string& payload, int qos,
                    std::chrono::milliseconds timeout) {
  using SteadyClock = std::chrono::steady_clock;
  // After a refusing PUBACK, how long to wait for the error event that says why.
  constexpr auto kRefusalGrace = std::chrono::milliseconds(1500);
  const auto deadline = SteadyClock::now() + timeout;
  auto session = open_inbox(ctx, credentials, device, timeout, /*persistent=*/false);
  if (!session) return session.status();
  const std::string event_topic = topics::inbox(credentials.user(), topics::kInboxEvent);
  auto seq = session->link->publish(topic, payload, qos);
  if (!seq) return seq.status();

  std::optional<SteadyClock::time_point> refused_until;
  std::string refusal = "the broker refused the publish to " + topic;
  while (true) {
    auto now = SteadyClock::now();
    if (refused_until && now >= *refused_until) break;
    if (!refused_until && now >= deadline) {
      session->link->disconnect(std::chrono::milliseconds(300));
      return unavailable("no acknowledgement from the broker for " + topic + " within " +
                         std::to_string(timeout.count() / 1000) + " s");
    }
    auto event = session->link->next_event(refused_until ? *refused_until : deadline);
    if (!event) continue;
    if (event->kind == MqttEvent::Kind::kConnectionLost) return unavailable(event->detail);
    if (event->kind == MqttEvent::Kind::kPublishDone && event->publish_seq == *seq) {
      if (event->publish_ok) {
        session->link->disconnect();
        return Status::ok();
      }
      if (event->reason_code < 0x80) return unavailable(event->detail);
      refusal += " (" + event->detail + ")";
      refused_until = std::min(deadline, SteadyClock::now() + kRefusalGrace);
      continue;
    }
    if (event->kind == MqttEvent::Kind::kMessage && event->topic == event_topic) {
      auto j = parse_json(event->payload);
      // Receipts and typing carry no cid: an error without one is ours.
      if (json_string(j, "type") == "error" && json_string(j, "cid").empty()) {
        session->link->disconnect(std::chrono::milliseconds(300));
        std::string code = json_string(j, "code");
        std::string reason = json_string(j, "reason");
        return permission_denied(
            "refused: " + sanitize_for_terminal(code.empty() ? "error" : code) +
            (reason.empty() ? "" : ": " + sanitize_for_terminal(reason)));
      }
    }
  }
  session->link->disconnect(std::chrono::milliseconds(300));
  return permission_denied(refusal);
}

}  // namespace chat::tools
