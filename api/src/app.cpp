#include "chat/api/app.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>
#include <thread>

#include "chat/api/backup.h"
#include "chat/api/control.h"
#include "chat/api/devices.h"
#include "chat/api/http_server.h"
#include "chat/api/key_directory.h"
#include "chat/api/log.h"
#include "chat/api/media.h"
#include "chat/api/passwords.h"
#include "chat/api/push_metrics.h"
#include "chat/api/push_providers.h"
#include "chat/api/push_worker.h"
#include "chat/api/service.h"
#include "chat/api/tokens.h"
#include "chat/common/clock.h"
#include "chat/common/log_fields.h"
#include "chat/common/oidc.h"

namespace chat::api {
namespace {

namespace fs = std::filesystem;

// Whether something accepts TCP connections on host:port within `timeout_ms`:
// /healthz's test of chat-bridge (whatever it serves, ws or wss, accepting is
// what "usable" needs; the broker behind it is checked on its own).
bool accepts_connections(const std::string& host, int port, int timeout_ms) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
  bool ok = false;
  for (addrinfo* ai = res; ai != nullptr && !ok; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t len = sizeof err;
      rc = (::poll(&p, 1, timeout_ms) == 1 &&
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
               ? 0
               : -1;
    }
    ok = rc == 0;
    ::close(fd);
  }
  freeaddrinfo(res);
  return ok;
}

constexpr auto kArchivePatience = std::chrono::seconds(10);

Status make_dir(const std::string& path, fs::perms perms) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return internal_error("cannot create " + path + ": " + ec.message());
  fs::permissions(path, perms, fs::perm_options::replace, ec);
  if (ec) return internal_error("cannot set permissions of " + path + ": " + ec.message());
  return Status::ok();
}

// SIGHUP: rotation of the provider's keys. A bad file keeps the keys in use.
void reload_oidc_jwks(const Config& config, TokenIssuer& tokens) {
  auto keys = oidc::load_jwks_file(config.oidc_jwks);
  if (!keys) {
    logger().error(
        "oidc.keys.rejected: setting=CHAT_OIDC_JWKS file={} error={} keeping=previous_keys",
        log_value(config.oidc_jwks), log_value(keys.status().message()));
    return;
  }
  const size_t n = keys->size();
  tokens.replace_external_keys(std::move(keys).value());
  logger().info("oidc.keys.loaded: count={} file={} trigger=SIGHUP", n,
                log_value(config.oidc_jwks));
}

int fail(std::string_view what) {
  std::fprintf(stderr, "chat-api: %.*s\n", static_cast<int>(what.size()), what.data());
  return 1;
}

}  // namespace

Result<DataDir> init_data_dir(const Config& config) {
  std::error_code ec;
  fs::create_directories(config.data_dir, ec);
  if (ec)
    return internal_error("cannot create CHAT_DATA_DIR " + config.data_dir + ": " + ec.message());
  // keys/ must stay readable by the broker (it may run as another user);
  // the private key inside is 0600. api/ holds credentials: ours alone.
  constexpr auto kShared = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec;
  if (Status s = make_dir(config.keys_dir(), kShared); !s.is_ok()) return s;
  if (Status s = make_dir(config.api_dir(), fs::perms::owner_all); !s.is_ok()) return s;

  auto signer = jwt::Signer::load_or_create(config.issuer_key_path(), config.jwks_path());
  if (!signer) {
    return Status(signer.status().code(),
                  "issuer key " + config.issuer_key_path() + ": " + signer.status().message());
  }
  auto accounts = store::AccountStore::open(config.accounts_path());
  if (!accounts) {
    return Status(accounts.status().code(), "account database " + config.accounts_path() + ": " +
                                                accounts.status().message());
  }
  return DataDir{std::move(signer).value(), std::move(accounts).value()};
}

Result<std::unique_ptr<store::ArchiveReader>> open_archive_reader(
    const Config& config, std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  bool logged = false;
  for (;;) {
    auto reader =
        store::ArchiveReader::open(config.archive_path(), config.archive_secondary_path());
    if (reader) return reader;
    if (std::chrono::steady_clock::now() >= deadline) {
      return unavailable(
          "cannot open the broker's archive at " + config.archive_path() +
          " (is the broker running on this CHAT_DATA_DIR?): " + reader.status().message());
    }
    if (!logged) {
      logger().info("archive.waiting: path={}", log_value(config.archive_path()));
      logged = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int run(int argc, char** argv) {
  bool init_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--init") {
      init_only = true;
    } else {
      std::fprintf(stderr,
                   "usage: chat-api [--init]\n"
                   "  --init  create CHAT_DATA_DIR's keys and account database, then exit\n"
                   "Configuration comes from CHAT_* environment variables (see api/README.md).\n");
      return 2;
    }
  }

  logger();  // "api", from here on spdlog's default logger too
  auto config_or = Config::from_env();
  if (!config_or) {
    std::fprintf(stderr, "chat-api: %s\n", config_or.status().message().c_str());
    return 2;
  }
  const Config config = std::move(config_or).value();
  // TLS files: a bad one is a settings error like any other (one line, exit 2).
  if (config.tls()) {
    for (auto [name, path] :
         {std::pair{"CHAT_TLS_CERT", &config.tls_cert}, std::pair{"CHAT_TLS_KEY", &config.tls_key},
          std::pair{"CHAT_TLS_CA", &config.tls_ca}}) {
      if (path->empty() || ::access(path->c_str(), R_OK) == 0) continue;
      std::fprintf(stderr, "chat-api: %s: cannot read '%s': %s%s\n", name, path->c_str(),
                   std::strerror(errno),
                   fs::path(config.tls_cert) == fs::path(config.data_dir) / "tls" / "server.pem"
                       ? " (CHAT_TLS=dev: scripts/tls-dev creates it)"
                       : "");
      return 2;
    }
    HttpOptions tls_files;
    tls_files.tls_cert = config.tls_cert;
    tls_files.tls_key = config.tls_key;
    tls_files.tls_ca = config.tls_ca;
    if (Status s = check_tls(tls_files); !s.is_ok()) {
      std::fprintf(stderr, "chat-api: %s\n", s.message().c_str());
      return 2;
    }
  }
  std::optional<jwt::KeySet> oidc_keys;
  if (config.oidc.enabled()) {
    auto keys = oidc::load_jwks_file(config.oidc_jwks);
    if (!keys) {
      std::fprintf(stderr, "chat-api: CHAT_OIDC_JWKS: %s\n", keys.status().message().c_str());
      return 2;
    }
    oidc_keys = std::move(keys).value();
  }
  const Clock& clock = SystemClock::instance();

  // When serving, SIGINT/SIGTERM are taken by one thread with sigtimedwait.
  // Block them before any other thread exists (RocksDB starts its own in
  // init_data_dir) so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reloads CHAT_OIDC_JWKS
  if (!init_only) pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Push providers from CHAT_FCM_* / CHAT_APNS_*: their key files are checked
  // now, so a bad setting fails at once (exit 2), before the archive wait.
  auto providers = make_push_providers(config);
  if (!providers) {
    std::fprintf(stderr, "chat-api: %s\n", providers.status().message().c_str());
    return 2;
  }

  auto data = init_data_dir(config);
  if (!data) return fail(data.status().message());
  PasswordHasher hasher;
  if (Status s = ensure_admin_accounts(config, *data->accounts, hasher, clock); !s.is_ok()) {
    return fail("creating CHAT_ADMINS accounts: " + s.to_string());
  }
  if (init_only) {
    std::printf("chat-api: initialised %s\n", config.data_dir.c_str());
    return 0;
  }

  TokenOptions token_options{config.jwt_issuer, config.jwt_audience, config.jwt_leeway_s};
  auto tokens = TokenIssuer::create(data->signer, token_options, clock);
  if (!tokens) return fail(tokens.status().message());
  if (oidc_keys) {
    (*tokens)->set_external(config.oidc, std::move(*oidc_keys), config.admins);
    logger().info("oidc.trusted: issuer={} audience={} keys={}", log_value(config.oidc.issuer),
                  log_value(config.oidc.audience), log_value(config.oidc_jwks));
  }

  auto archive = open_archive_reader(config, kArchivePatience);
  if (!archive) return fail(archive.status().message());

  // Push (docs/push.md): targets, queue and feed cursor in api/push.
  const std::string push_path = (fs::path(config.api_dir()) / "push").string();
  auto push_store = store::PushStore::open(push_path);
  if (!push_store) {
    return fail("push database " + push_path + ": " + push_store.status().message());
  }

  Service* service_ptr = nullptr;         // set below, before the control client starts
  DeviceRegistry* devices_ptr = nullptr;  // idem
  PushWorker* push_ptr = nullptr;         // idem
  ControlClientOptions control_options;
  control_options.port = config.mqtt_port;
  control_options.username = std::string(kServiceUser);
  control_options.mint_password = [&service_ptr] { return service_ptr->mint_service_token(); };
  control_options.on_connected = [&service_ptr, &devices_ptr] {
    service_ptr->announce_admins().ignore_error();
    // A broker restored from a backup may hold an older device list.
    devices_ptr->request_resync();
  };
  control_options.on_push = [&push_ptr] { push_ptr->wake(); };
  ControlClient control(control_options);

  Service service(config, *data->accounts, **archive, control, **tokens, hasher, clock);
  service_ptr = &service;
  const std::string bridge_host = config.bind == "0.0.0.0" ? "127.0.0.1"
                                  : config.bind == "::"    ? "::1"
                                                           : config.bind;
  service.set_bridge_probe(
      [bridge_host, port = config.ws_port] { return accepts_connections(bridge_host, port, 500); });

  // Media (docs/media.md): metadata in api/media, blobs under media/.
  auto media_store = store::MediaStore::open(config.media_db_path());
  if (!media_store) {
    return fail("media database " + config.media_db_path() + ": " + media_store.status().message());
  }
  MediaOptions media_options;
  media_options.dir = config.media_dir();
  media_options.key_path = config.media_key_path();
  media_options.max_bytes = config.media_max_bytes;
  media_options.url_ttl_s = config.media_url_ttl_s;
  media_options.min_free_bytes = static_cast<uint64_t>(config.media_min_free_mb) << 20;
  auto media = MediaLibrary::open(media_options, **media_store, **archive, clock);
  if (!media) return fail(media.status().message());
  service.set_media(media->get());

  // The key directory of end-to-end encryption (docs/e2e.md): api/e2e-keys.
  auto key_store = store::KeyStore::open(config.keys_db_path());
  if (!key_store) {
    return fail("key database " + config.keys_db_path() + ": " + key_store.status().message());
  }
  KeyDirectoryOptions key_options;
  key_options.claim_rate_per_min = static_cast<double>(config.key_claim_rate);
  key_options.claim_burst = static_cast<double>(config.key_claim_burst);
  key_options.device_changes_per_hour = static_cast<double>(config.key_device_changes);
  // Burst = the hourly number (at least 1: the bucket's floor).
  key_options.device_changes_burst =
      config.key_device_changes > 0 ? static_cast<double>(config.key_device_changes) : 1.0;
  KeyDirectory keys(**key_store, **archive, control, clock, key_options);
  service.set_keys(&keys);

  PushMetrics push_metrics;
  DeviceRegistry devices(**push_store, control, clock, config.push.max_devices);
  devices_ptr = &devices;
  devices.request_resync();  // compared with the broker's copy once connected
  PushWorkerOptions push_options;
  push_options.workers = config.push.workers;
  push_options.preview = config.push.preview;
  push_options.max_attempts = config.push.max_attempts;
  push_options.max_age_ms = config.push.max_age_s * 1000;
  PushWorker push(**push_store, **archive, devices, control, std::move(providers).value(),
                  push_metrics, clock, push_options);
  push_ptr = &push;

  HttpOptions http_options;
  http_options.threads = config.http_threads;
  http_options.max_body_bytes = config.max_body_bytes;
  http_options.web = WebOptions::from_config(config);
  http_options.tls_cert = config.tls_cert;
  http_options.tls_key = config.tls_key;
  http_options.tls_ca = config.tls_ca;
  http_options.rate_limits = config.rate_limits;
  http_options.devices = &devices;
  http_options.push_metrics = &push_metrics;
  // POST /v1/admin/backups (docs/operations.md, "Backup and restore").
  BackupOptions backup_options;
  backup_options.data_dir = config.data_dir;
  backup_options.root = config.backup_dir;
  BackupRunner backups(backup_options,
                       BackupSources{&control, data->accounts.get(), media_store->get(),
                                     push_store->get(), &service, &clock, key_store->get()});
  http_options.backups = &backups;
  if (std::error_code ec; fs::is_regular_file(fs::path(http_options.web.dir) / "index.html", ec)) {
    logger().info("web.served: dir={} path=/", log_value(http_options.web.dir));
  } else {
    logger().warn(
        "web.missing: dir={} effect=\"/ answers 404\" hint=\"build the chat-web target or set "
        "CHAT_WEB_DIR\"",
        log_value(http_options.web.dir));
  }
  HttpServer http(service, http_options);
  auto port = http.bind(config.bind, config.http_port);
  if (!port && port.status().code() == StatusCode::kInvalidArgument) {
    fail(port.status().message());  // the TLS files
    return 2;
  }
  if (!port) return fail(port.status().message() + " (CHAT_BIND / CHAT_HTTP_PORT)");

  control.start();
  push.start();
  logger().info("listening: scheme={} bind={} port={} broker_control=127.0.0.1:{}",
                config.tls() ? "https" : "http", log_value(config.bind), *port, config.mqtt_port);

  std::atomic<bool> done{false};
  std::thread signal_thread([&] {
    const timespec tick{0, 200 * 1000 * 1000};
    while (!done.load()) {
      int sig = sigtimedwait(&signals, nullptr, &tick);
      if (sig == SIGHUP) {
        if (config.oidc.enabled()) reload_oidc_jwks(config, **tokens);
        continue;
      }
      if (sig == SIGINT || sig == SIGTERM) {
        logger().info("shutdown: signal={}", sig == SIGINT ? "SIGINT" : "SIGTERM");
        // stop() is a no-op until listen() runs; wait for it (or its failure).
        while (!http.is_running() && !done.load()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        http.stop();
        return;
      }
    }
  });

  Status served = http.listen();
  done.store(true);
  signal_thread.join();
  push.stop();  // sends in flight finish; queued ones wait for the next start
  control.stop();
  if (!served.is_ok()) return fail(served.message());
  logger().info("stopped: status=ok");
  return 0;
}

}  // namespace chat::api
