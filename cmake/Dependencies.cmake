# Every dependency is a Debian 12 package installed by scripts/setup.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(RocksDB REQUIRED)
find_package(spdlog REQUIRED)
find_package(PahoMqttCpp REQUIRED)
find_package(eclipse-paho-mqtt-c REQUIRED)
find_package(GTest REQUIRED)

pkg_check_modules(MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
pkg_check_modules(ARGON2 REQUIRED IMPORTED_TARGET libargon2)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(VIPS REQUIRED IMPORTED_TARGET vips)  # media thumbnails (libvips-dev)
# Outbound HTTP/2 for the push providers (libcurl4-openssl-dev, built with nghttp2),
# and the HTTP/2 server of the fake APNs used by tests (libnghttp2-dev).
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET libnghttp2)
# The Signal protocol (libsignal-protocol-c-dev): end-to-end encryption in
# chatctl, and chat-api's check of signed-prekey signatures (docs/e2e.md).
pkg_check_modules(SIGNAL REQUIRED IMPORTED_TARGET libsignal-protocol-c)

# The broker plugin headers (mosquitto-dev) have no pkg-config file.
find_path(MOSQUITTO_BROKER_INCLUDE_DIR mosquitto_broker.h REQUIRED)
find_program(MOSQUITTO_EXECUTABLE mosquitto PATHS /usr/sbin REQUIRED)
# Link RocksDB::rocksdb-shared, never RocksDB::rocksdb: the static archive is
# not position-independent and cannot go into the broker plugin.
