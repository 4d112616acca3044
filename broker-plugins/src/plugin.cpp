// Mosquitto 2.0 plugin entry points (plugin API v5): thin, noexcept
// trampolines from C callbacks into the Gatekeeper and Router. No logic here.

#include <exception>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
}

#include "chat/broker/account_origins.h"
#include "chat/broker/bans.h"
#include "chat/broker/config.h"
#include "chat/broker/directory.h"
#include "chat/broker/gatekeeper.h"
#include "chat/broker/presence.h"
#include "chat/broker/push_devices.h"
#include "chat/broker/router.h"
#include "chat/broker/stats.h"
#include "chat/common/ids.h"
#include "chat/common/log_fields.h"
#include "chat/common/topics.h"
#include "chat/store/archive.h"

namespace chat::broker {
namespace {

// The plugin's one "logger": Mosquitto's log (mosquitto_log_printf), every
// line `chat: <event>: key=value ...` (docs/operations.md "Logs").
void log_line(LogLevel level, const std::string& message) {
  int l = MOSQ_LOG_INFO;
  switch (level) {
    case LogLevel::kDebug:
      l = MOSQ_LOG_DEBUG;
      break;
    case LogLevel::kInfo:
      l = MOSQ_LOG_INFO;
      break;
    case LogLevel::kNotice:
      l = MOSQ_LOG_NOTICE;
      break;
    case LogLevel::kWarning:
      l = MOSQ_LOG_WARNING;
      break;
    case LogLevel::kError:
      l = MOSQ_LOG_ERR;
      break;
  }
  mosquitto_log_printf(l, "chat: %s", message.c_str());
}

// An exception escaping a callback. log_error: never a JSON parser's quote
// of a payload.
void log_callback_error(const char* callback, const std::exception& e) {
  log_line(LogLevel::kError, std::string("callback.error: callback=") + callback +
                                 " error=" + log_value(log_error(e)));
}

class MosquittoPort final : public BrokerPort {
 public:
  void publish(std::string_view client_id, const std::string& topic, std::string_view payload,
               int qos, bool retain) override {
    std::string id(client_id);
    int rc = mosquitto_broker_publish_copy(id.empty() ? nullptr : id.c_str(), topic.c_str(),
                                           static_cast<int>(payload.size()), payload.data(), qos,
                                           retain, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      log(LogLevel::kWarning,
          "publish.failed: topic=" + log_value(topic) + " rc=" + std::to_string(rc));
    }
  }
  void kick_client(const std::string& client_id) override {
    mosquitto_kick_client_by_clientid(client_id.c_str(), false);
  }
  void kick_user(const std::string& user) override {
    mosquitto_kick_client_by_username(user.c_str(), false);
  }
  void log(LogLevel level, const std::string& message) override { log_line(level, message); }
};

// How often TICK compares the provider's JWKS file with the one loaded.
constexpr int64_t kJwksCheckIntervalS = 2;

// All plugin state, passed to every callback as userdata.
struct Plugin {
  mosquitto_plugin_id_t* id = nullptr;
  PluginConfig config;
  MosquittoPort port;
  std::unique_ptr<store::Archive> archive;
  bool archive_stuck_logged = false;  // archive.recovery_stuck is logged once
  std::unique_ptr<Directory> directory;
  std::unique_ptr<BanList> bans;
  std::unique_ptr<AccountOrigins> origins;
  std::unique_ptr<PushDevices> push_devices;
  std::unique_ptr<PresenceTracker> presence;
  std::unique_ptr<Gatekeeper> gatekeeper;
  std::unique_ptr<Router> router;
  time_t last_expiry_scan = 0;
  BrokerStats stats;
  int64_t started_ms = 0;
  int64_t last_stats_s = 0;
  // The external provider's JWKS file as last read (rotation: reread when it changes).
  std::optional<oidc::FileWatch> oidc_jwks_watch;
  int64_t last_jwks_check_s = 0;
};

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return unavailable("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status load(Plugin& p, std::vector<std::pair<std::string, std::string>> options) {
  auto config = PluginConfig::from_options(options);
  if (!config) return config.status();
  p.config = *config;

  auto jwks = read_file(p.config.jwks_file);
  if (!jwks) return invalid_argument("plugin_opt_jwks_file: " + jwks.status().message());
  auto keys = jwt::KeySet::from_jwks(*jwks);
  if (!keys) return invalid_argument("plugin_opt_jwks_file: " + keys.status().message());
  std::optional<jwt::KeySet> oidc_keys;
  if (p.config.oidc.enabled()) {
    p.oidc_jwks_watch.emplace(p.config.oidc_jwks_file);
    p.oidc_jwks_watch->mark_read();
    auto parsed = oidc::load_jwks_file(p.config.oidc_jwks_file);
    if (!parsed) return invalid_argument("plugin_opt_oidc_jwks_file: " + parsed.status().message());
    oidc_keys = std::move(parsed).value();
  }

  store::ArchiveOptions ao;
  ao.path = p.config.archive_path;
  ao.sync_writes = p.config.sync_writes;
  ao.min_free_bytes = p.config.archive_min_free_mb << 20;
  auto archive = store::Archive::open(ao);
  if (!archive) return archive.status();
  p.archive = std::move(*archive);

  jwt::VerifyOptions vo;
  vo.issuer = p.config.issuer;
  vo.audience = p.config.audience;
  vo.leeway_s = p.config.leeway_s;
  p.directory = std::make_unique<Directory>(*p.archive);
  Status loaded = p.directory->load();
  if (!loaded.is_ok()) return loaded;
  p.bans = std::make_unique<BanList>(*p.archive);
  loaded = p.bans->load();
  if (!loaded.is_ok()) return loaded;
  p.origins = std::make_unique<AccountOrigins>(*p.archive);
  loaded = p.origins->load();
  if (!loaded.is_ok()) return loaded;
  p.push_devices = std::make_unique<PushDevices>(*p.archive);
  loaded = p.push_devices->load();
  if (!loaded.is_ok()) return loaded;

  store::Archive* a = p.archive.get();
  Directory* d = p.directory.get();
  // Presence subscriptions: users who share a conversation or a group.
  p.gatekeeper = std::make_unique<Gatekeeper>(
      SystemClock::instance(), std::move(*keys), vo,
      [a, d](const std::string& me, const std::string& peer) {
        // A block hides presence both ways.
        if (d->is_blocked(me, peer) || d->is_blocked(peer, me)) return false;
        if (d->share_group(me, peer)) return true;
        auto r = a->has_conversation(me, topics::dm_conversation(me, peer));
        return r.is_ok() && *r;
      });

  p.presence = std::make_unique<PresenceTracker>(SystemClock::instance(), *p.archive, p.port);
  p.presence->recover();
  BanList* bans = p.bans.get();
  p.gatekeeper->set_banned_check([bans](const std::string& user) { return bans->is_banned(user); });
  p.gatekeeper->set_revoked_check([bans](const std::string& jti) { return bans->is_revoked(jti); });
  // Revocations of tokens long expired refuse nothing any more.
  bans->forget_expired(SystemClock::instance().now_s(), jwt::kMaxLeewayS);
  AccountOrigins* origins = p.origins.get();
  MosquittoPort* port = &p.port;
  origins->set_admins(p.config.admins);
  for (const std::string& user : origins->unrecognized()) {
    port->log(LogLevel::kWarning,
              "account.origin_unrecognized: user=" + log_value(user) + " action=refuse_all_tokens");
  }
  p.gatekeeper->set_origin_check([origins, port](const std::string& user, bool external,
                                                 const std::string& sub) {
    const auto before = origins->subject(user);
    Status st = origins->admit(user, external, sub);
    if (st.is_ok() && external && (!before || before->empty())) {
      port->log(LogLevel::kNotice, std::string(before ? "account.bound" : "account.provisioned") +
                                       ": user=" + log_value(user) +
                                       " origin=external sub=" + log_value(sub));
    }
    return st;
  });
  if (oidc_keys) p.gatekeeper->set_external(p.config.oidc, std::move(*oidc_keys));
  PresenceTracker* presence = p.presence.get();
  p.gatekeeper->set_session_observer([presence](const DeviceSession& s, bool started) {
    if (s.service) return;
    if (started)
      presence->device_connected(s.user);
    else
      presence->device_disconnected(s.user);
  });

  RouterOptions ro;
  ro.max_payload = p.config.max_payload;
  ro.rate_msgs = p.config.rate_msgs;
  ro.rate_burst = p.config.rate_burst;
  ro.rate_typing = p.config.rate_typing;
  ro.rate_typing_burst = p.config.rate_typing_burst;
  ro.rate_receipts = p.config.rate_receipts;
  ro.rate_receipts_burst = p.config.rate_receipts_burst;
  ro.node_id = static_cast<uint8_t>(p.config.node_id);
  ro.max_group_members = p.config.max_group_members;
  ro.group_fanout_bytes = p.config.group_fanout_bytes;
  p.router =
      std::make_unique<Router>(SystemClock::instance(), *p.archive, *p.directory, p.port, ro);
  p.router->set_stats(&p.stats);
  p.router->set_admin(p.bans.get(), p.gatekeeper.get());
  p.router->set_origins(p.origins.get());
  const Gatekeeper* gatekeeper = p.gatekeeper.get();
  p.router->set_push(p.push_devices.get(), [gatekeeper](const std::string& client_id) {
    return gatekeeper->is_connected(client_id);
  });
  p.started_ms = SystemClock::instance().now_ms();
  return p.router->init();
}

// Disk full or an I/O error under the archive (docs/operations.md, "Disk
// full"): once a second, check the free-space reserve and resume the archive
// if a failed append left it unwritable (so both happen without traffic),
// and on every change of state log it and publish a stats snapshot at once
// (chat-api's /healthz and /metrics read it).
void track_archive(Plugin& p) {
  // kUnavailable while below the reserve or until a recovery succeeded;
  // health() says the rest. Cheap when writable (a statvfs at most).
  p.archive->try_recover().ignore_error();
  const store::ArchiveHealth h = p.archive->health();
  p.stats.archive_recoveries = h.recoveries;
  const char* reason = h.writable         ? ""
                       : h.recovery_stuck ? "recovery_stuck"
                       : h.low_space      ? "low_space"
                                          : "write_error";
  if (h.recovery_stuck && !p.archive_stuck_logged) {
    p.archive_stuck_logged = true;
    p.port.log(LogLevel::kError, "archive.recovery_stuck: error=" + log_value(h.last_error) +
                                     " hint=" + log_value("restart the broker"));
  }
  if (h.writable == p.stats.archive_writable && p.stats.archive_reason == reason) return;
  p.stats.archive_writable = h.writable;
  p.stats.archive_reason = reason;
  if (h.writable) {
    p.port.log(LogLevel::kNotice,
               "archive.recovered: write_failures=" + std::to_string(h.write_failures) +
                   " recoveries=" + std::to_string(h.recoveries) +
                   " reopens=" + std::to_string(h.reopens));
  } else {  // newly unwritable, or for another reason
    std::string line = "archive.unwritable: reason=" + std::string(reason);
    if (h.low_space) {
      line += " free_mb=" + std::to_string(h.free_bytes >> 20) +
              " reserve_mb=" + std::to_string(p.config.archive_min_free_mb);
    } else {
      line += " error=" + log_value(h.last_error);
    }
    p.port.log(LogLevel::kError, line + " action=messages_refused_without_puback");
  }
  p.last_stats_s = 0;  // publish now
}

// Rereads the external provider's JWKS (rotation). A bad file keeps the keys
// in use. Never logs key material.
void reload_oidc_keys(Plugin& p, const char* why) {
  // Marked read even when it does not parse: a bad file is reported once,
  // not every check, and the next replacement is seen.
  p.oidc_jwks_watch->mark_read();
  const std::string& path = p.config.oidc_jwks_file;
  auto keys = oidc::load_jwks_file(path);
  if (!keys) {
    p.port.log(LogLevel::kError,
               "oidc.keys.rejected: setting=plugin_opt_oidc_jwks_file file=" + log_value(path) +
                   " error=" + log_value(keys.status().message()) + " keeping=previous_keys");
    return;
  }
  const size_t n = keys->size();
  p.gatekeeper->replace_external_keys(std::move(keys).value());
  p.port.log(LogLevel::kNotice, "oidc.keys.loaded: count=" + std::to_string(n) +
                                    " file=" + log_value(path) + " trigger=" + why);
}

int on_reload(int, void*, void* userdata) noexcept {
  try {
    auto* p = static_cast<Plugin*>(userdata);
    if (p->oidc_jwks_watch) reload_oidc_keys(*p, "reload");
  } catch (const std::exception& e) {
    log_callback_error("reload", e);
  }
  return MOSQ_ERR_SUCCESS;
}

int on_basic_auth(int, void* event_data, void* userdata) noexcept {
  try {
    auto* p = static_cast<Plugin*>(userdata);
    auto* ev = static_cast<mosquitto_evt_basic_auth*>(event_data);
    const char* client_id = mosquitto_client_id(ev->client);
    Status st = p->gatekeeper->authenticate(ev->client, client_id ? client_id : "", ev->username,
                                            ev->password);
    if (st.is_ok()) {
      p->stats.connection_accepted();
      return MOSQ_ERR_SUCCESS;
    }
    p->stats.connection_refused(st.code());
    // Not a user id (e.g. a client that put its token there): not logged.
    const std::string user = ev->username == nullptr          ? "-"
                             : is_valid_user_id(ev->username) ? log_value(ev->username)
                                                              : "(invalid)";
    p->port.log(LogLevel::kNotice,
                "connect.refused: client=" + log_value(client_id ? client_id : "-") +
                    " user=" + user + " reason=" + log_value(st.message()));
    return MOSQ_ERR_AUTH;
  } catch (const std::exception& e) {
    log_callback_error("basic_auth", e);
    return MOSQ_ERR_AUTH;
  }
}

Access to_access(int access) {
  switch (access) {
    case MOSQ_ACL_SUBSCRIBE:
      return Access::kSubscribe;
    case MOSQ_ACL_UNSUBSCRIBE:
      return Access::kUnsubscribe;
    case MOSQ_ACL_READ:
      return Access::kRead;
    default:
      return Access::kWrite;
  }
}

int on_acl_check(int, void* event_data, void* userdata) noexcept {
  try {
    auto* p = static_cast<Plugin*>(userdata);
    auto* ev = static_cast<mosquitto_evt_acl_check*>(event_data);
    const char* client_id = mosquitto_client_id(ev->client);
    Access access = to_access(ev->access);
    std::string_view topic = ev->topic ? ev->topic : "";
    if (p->gatekeeper->allowed(ev->client, client_id ? client_id : "", access, topic, ev->qos)) {
      return MOSQ_ERR_SUCCESS;
    }
    if (access == Access::kWrite) {
      if (const DeviceSession* s = p->gatekeeper->session(ev->client)) {
        std::string_view payload(static_cast<const char*>(ev->payload),
                                 ev->payload ? ev->payloadlen : 0);
        p->router->on_write_denied(*s, topic, payload, ev->qos);
      }
    }
    return MOSQ_ERR_ACL_DENIED;
  } catch (const std::exception& e) {
    log_callback_error("acl_check", e);
    return MOSQ_ERR_ACL_DENIED;
  }
}

int on_message(int, void* event_data, void* userdata) noexcept {
  try {
    auto* p = static_cast<Plugin*>(userdata);
    auto* ev = static_cast<mosquitto_evt_message*>(event_data);
    const DeviceSession* s = p->gatekeeper->session(ev->client);
    if (s == nullptr) return MOSQ_ERR_ACL_DENIED;
    std::string_view payload(static_cast<const char*>(ev->payload),
                             ev->payload ? ev->payloadlen : 0);
    MessageOutcome out = p->router->on_message(*s, ev->topic, payload, ev->qos);
    switch (out.action) {
      case MessageOutcome::Action::kRefuse:
        return MOSQ_ERR_ACL_DENIED;
      case MessageOutcome::Action::kFail:
        // Any error other than ACL_DENIED makes handle__publish return it, and
        // Mosquitto closes the connection without acknowledging.
        return MOSQ_ERR_UNKNOWN;
      case MessageOutcome::Action::kAccept:
        break;
    }
    // 2.0.11 does not free a replaced topic: we do. A replaced payload is
    // freed by the broker and must come from mosquitto_malloc.
    char* topic = mosquitto_strdup(out.topic.c_str());
    auto* payload_copy = static_cast<char*>(mosquitto_malloc(out.payload.size() + 1));
    if (topic == nullptr || payload_copy == nullptr) {
      mosquitto_free(topic);
      mosquitto_free(payload_copy);
      return MOSQ_ERR_NOMEM;
    }
    memcpy(payload_copy, out.payload.data(), out.payload.size());
    payload_copy[out.payload.size()] = '\0';
    mosquitto_free(ev->topic);
    ev->topic = topic;
    ev->payload = payload_copy;
    ev->payloadlen = static_cast<uint32_t>(out.payload.size());
    ev->retain = false;
    // What reaches the peer is the envelope alone: client-set MQTT 5
    // properties (user properties, response topic, ...) are not archived, so
    // they are not delivered either.
    mosquitto_property_free_all(&ev->properties);
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    log_callback_error("message", e);
    return MOSQ_ERR_UNKNOWN;
  }
}

int on_control(int, void* event_data, void* userdata) noexcept {
  try {
    auto* p = static_cast<Plugin*>(userdata);
    auto* ev = static_cast<mosquitto_evt_control*>(event_data);
    const DeviceSession* s = p->gatekeeper->session(ev->client);
    if (s == nullptr || !s->service) return MOSQ_ERR_ACL_DENIED;
    std::string_view payload(static_cast<const char*>(ev->payload),
                             ev->payload ? ev->payloadlen : 0);
    p->router->on_control(*s, payload);
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    log_callback_error("control", e);
    return MOSQ_ERR_UNKNOWN;
  }
}

int on_tick(int, void*, void* userdata) noexcept {
  try {
    auto* p = static_cast<Plugin*>(userdata);
    p->presence->flush();  // every pass (~100 ms): offline must go out within 2 s
    // 2.0.11 leaves the event's time fields zero: use our clock.
    time_t now = static_cast<time_t>(chat::SystemClock::instance().now_s());
    if (now == p->last_expiry_scan) return MOSQ_ERR_SUCCESS;  // once a second is enough
    p->last_expiry_scan = now;
    p->router->on_tick();
    track_archive(*p);
    if (p->oidc_jwks_watch && now - p->last_jwks_check_s >= kJwksCheckIntervalS) {
      p->last_jwks_check_s = now;
      if (p->oidc_jwks_watch->changed()) reload_oidc_keys(*p, "file_changed");
    }
    if (now - p->last_stats_s >= kStatsIntervalS) {
      p->last_stats_s = now;
      p->port.publish("", std::string(topics::kControlStats),
                      p->stats.to_json(chat::SystemClock::instance().now_ms(), p->started_ms,
                                       p->gatekeeper->connected_devices()),
                      0, false);
    }
    for (const auto& client_id : p->gatekeeper->take_expired()) {
      p->port.log(LogLevel::kNotice,
                  "token.expired: client=" + log_value(client_id) + " action=disconnect");
      p->port.kick_client(client_id);
    }
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    log_callback_error("tick", e);
    return MOSQ_ERR_SUCCESS;
  }
}

int on_disconnect(int, void* event_data, void* userdata) noexcept {
  auto* p = static_cast<Plugin*>(userdata);
  auto* ev = static_cast<mosquitto_evt_disconnect*>(event_data);
  p->gatekeeper->disconnected(ev->client);
  return MOSQ_ERR_SUCCESS;
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback cb;
  const void* data;
};

const Registration kCallbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, on_basic_auth, nullptr},
    {MOSQ_EVT_ACL_CHECK, on_acl_check, nullptr},
    {MOSQ_EVT_MESSAGE, on_message, nullptr},
    {MOSQ_EVT_CONTROL, on_control, topics::kControl.data()},
    {MOSQ_EVT_TICK, on_tick, nullptr},
    {MOSQ_EVT_DISCONNECT, on_disconnect, nullptr},
    {MOSQ_EVT_RELOAD, on_reload, nullptr},
};

}  // namespace
}  // namespace chat::broker

using chat::broker::Plugin;

// The library is built with hidden visibility; only these three are exported.
#define CHAT_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" {

CHAT_PLUGIN_EXPORT int mosquitto_plugin_version(int supported_version_count,
                                                const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

CHAT_PLUGIN_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata,
                                             struct mosquitto_opt* options, int option_count) {
  try {
    auto plugin = std::make_unique<Plugin>();
    plugin->id = identifier;
    std::vector<std::pair<std::string, std::string>> opts;
    for (int i = 0; i < option_count; ++i) {
      opts.emplace_back(options[i].key ? options[i].key : "",
                        options[i].value ? options[i].value : "");
    }
    chat::Status st = chat::broker::load(*plugin, std::move(opts));
    if (!st.is_ok()) {
      chat::broker::log_line(chat::broker::LogLevel::kError,
                             "plugin.start_failed: error=" + chat::log_value(st.message()));
      return MOSQ_ERR_INVAL;
    }
    for (const auto& r : chat::broker::kCallbacks) {
      int rc = mosquitto_callback_register(identifier, r.event, r.cb, r.data, plugin.get());
      if (rc != MOSQ_ERR_SUCCESS) {
        chat::broker::log_line(chat::broker::LogLevel::kError,
                               "plugin.start_failed: error=callback_register event=" +
                                   std::to_string(r.event) + " rc=" + std::to_string(rc));
        return rc;
      }
    }
    chat::broker::log_line(chat::broker::LogLevel::kNotice,
                           "plugin.ready: archive=" + chat::log_value(plugin->config.archive_path) +
                               " issuer=" + chat::log_value(plugin->config.issuer));
    *userdata = plugin.release();
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    chat::broker::log_line(chat::broker::LogLevel::kError,
                           "plugin.start_failed: error=" + chat::log_value(chat::log_error(e)));
    return MOSQ_ERR_UNKNOWN;
  }
}

CHAT_PLUGIN_EXPORT int mosquitto_plugin_cleanup(void* userdata, struct mosquitto_opt*, int) {
  auto* plugin = static_cast<Plugin*>(userdata);
  if (plugin == nullptr) return MOSQ_ERR_SUCCESS;
  for (const auto& r : chat::broker::kCallbacks) {
    mosquitto_callback_unregister(plugin->id, r.event, r.cb, r.data);
  }
  delete plugin;
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
