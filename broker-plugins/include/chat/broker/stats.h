// BrokerStats: the plugin's counters, kept as plain integers on the broker's
// one thread (no atomics, no allocation, no I/O when counting), and published
// as a JSON snapshot on `$CONTROL/chat/v1/stats` every kStatsIntervalS seconds
// from the TICK handler (docs/protocol.md, "Broker stats"). chat-api turns the
// latest snapshot into Prometheus metrics.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "chat/common/envelope.h"
#include "chat/common/status.h"

namespace chat::broker {

// How often the plugin publishes a snapshot.
inline constexpr int64_t kStatsIntervalS = 5;

// A histogram with fixed upper bounds (`le`, ascending). counts[i] is the
// number of observations in (bounds[i-1], bounds[i]]; counts[N] is above the
// last bound (+Inf). Not cumulative: the exposition side sums them up.
template <size_t N>
struct FixedHistogram {
  std::array<double, N> bounds;
  std::array<uint64_t, N + 1> counts{};
  double sum = 0;
  uint64_t count = 0;

  void observe(double v) {
    size_t i = 0;
    while (i < N && v > bounds[i]) ++i;
    ++counts[i];
    sum += v;
    ++count;
  }
};

// What a routed (accepted and delivered) publish was.
enum class RoutedKind { kDirect, kGroup, kReceipt, kTyping };
inline constexpr size_t kRoutedKindCount = 4;
const char* routed_kind_name(RoutedKind kind);

// Why a connection was refused: a bad, expired or unverifiable token or
// credentials (StatusCode::kUnauthenticated), a client id or role that does not
// fit the token (kPermissionDenied), or anything else.
enum class ConnectRefusal { kUnauthenticated, kPermissionDenied, kOther };
inline constexpr size_t kConnectRefusalCount = 3;
const char* connect_refusal_name(ConnectRefusal reason);
ConnectRefusal connect_refusal_of(StatusCode code);

inline constexpr size_t kRefusalCodeCount = 5;  // RefusalCode's values

struct BrokerStats {
  uint64_t connections_accepted = 0;
  std::array<uint64_t, kConnectRefusalCount> connections_refused{};
  std::array<uint64_t, kRoutedKindCount> routed{};
  std::array<uint64_t, kRefusalCodeCount> refused{};  // by RefusalCode
  uint64_t duplicates = 0;                            // retries of an archived cid
  uint64_t archive_failures = 0;                      // appends that failed (no PUBACK)
  // The archive's write health as of the last TICK (store::ArchiveHealth):
  // false after a failed write until a resume succeeded (disk full).
  bool archive_writable = true;
  // Why not writable: "low_space", "write_error", "recovery_stuck" ("" when writable).
  std::string archive_reason;
  uint64_t archive_recoveries = 0;  // resumes that made it writable again
  // Seconds per Archive::append (steady clock): 50 µs .. 1 s.
  FixedHistogram<13> append_seconds{
      {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}};
  // Recipients (members that get a copy, the sender included) per group message.
  FixedHistogram<10> group_fanout{{1, 2, 5, 10, 20, 50, 100, 250, 500, 1024}};

  void connection_accepted() { ++connections_accepted; }
  void connection_refused(StatusCode code) {
    ++connections_refused[static_cast<size_t>(connect_refusal_of(code))];
  }
  void message_routed(RoutedKind kind) { ++routed[static_cast<size_t>(kind)]; }
  void message_refused(RefusalCode code) { ++refused[static_cast<size_t>(code)]; }

  // The snapshot published on topics::kControlStats (docs/protocol.md):
  // {"v":1,"ts":<ms>,"started_ms":<ms>,"interval_s":5,
  //  "clients":{"connected":N},
  //  "connections":{"accepted":N,"refused":{"unauthenticated":N,...}},
  //  "messages":{"routed":{"direct":N,...},"refused":{"not_authorized":N,...},
  //              "duplicates":N},
  //  "archive":{"append_failures":N,"writable":true|false,"recoveries":N,
  //             "append_seconds":{"le":[...],"counts":[... one more than le],"sum":S,"count":N}},
  //  "group_fanout":{"le":[...],"counts":[...],"sum":S,"count":N}}
  std::string to_json(int64_t now_ms, int64_t started_ms, size_t connected_devices) const;
};

}  // namespace chat::broker
