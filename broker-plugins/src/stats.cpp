#include "chat/broker/stats.h"

#include <nlohmann/json.hpp>

namespace chat::broker {
namespace {

using ordered_json = nlohmann::ordered_json;

template <size_t N>
ordered_json histogram_json(const FixedHistogram<N>& h) {
  ordered_json j;
  j["le"] = h.bounds;
  j["counts"] = h.counts;
  j["sum"] = h.sum;
  j["count"] = h.count;
  return j;
}

}  // namespace

const char* routed_kind_name(RoutedKind kind) {
  switch (kind) {
    case RoutedKind::kDirect:
      return "direct";
    case RoutedKind::kGroup:
      return "group";
    case RoutedKind::kReceipt:
      return "receipt";
    case RoutedKind::kTyping:
      return "typing";
  }
  return "direct";
}

const char* connect_refusal_name(ConnectRefusal reason) {
  switch (reason) {
    case ConnectRefusal::kUnauthenticated:
      return "unauthenticated";
    case ConnectRefusal::kPermissionDenied:
      return "permission_denied";
    case ConnectRefusal::kOther:
      return "other";
  }
  return "other";
}

ConnectRefusal connect_refusal_of(StatusCode code) {
  switch (code) {
    case StatusCode::kUnauthenticated:
      return ConnectRefusal::kUnauthenticated;
    case StatusCode::kPermissionDenied:
      return ConnectRefusal::kPermissionDenied;
    default:
      return ConnectRefusal::kOther;
  }
}

std::string BrokerStats::to_json(int64_t now_ms, int64_t started_ms,
                                 size_t connected_devices) const {
  ordered_json j;
  j["v"] = 1;
  j["ts"] = now_ms;
  j["started_ms"] = started_ms;
  j["interval_s"] = kStatsIntervalS;
  j["clients"] = {{"connected", connected_devices}};

  ordered_json conn_refused = ordered_json::object();
  for (size_t i = 0; i < kConnectRefusalCount; ++i) {
    conn_refused[connect_refusal_name(static_cast<ConnectRefusal>(i))] = connections_refused[i];
  }
  j["connections"] = {{"accepted", connections_accepted}, {"refused", conn_refused}};

  ordered_json routed_json = ordered_json::object();
  for (size_t i = 0; i < kRoutedKindCount; ++i) {
    routed_json[routed_kind_name(static_cast<RoutedKind>(i))] = routed[i];
  }
  ordered_json refused_json = ordered_json::object();
  for (size_t i = 0; i < kRefusalCodeCount; ++i) {
    refused_json[refusal_code_name(static_cast<RefusalCode>(i))] = refused[i];
  }
  j["messages"] = {{"routed", routed_json}, {"refused", refused_json}, {"duplicates", duplicates}};
  j["archive"] = {{"append_failures", archive_failures},
                  {"writable", archive_writable},
                  {"reason", archive_reason},
                  {"recoveries", archive_recoveries},
                  {"append_seconds", histogram_json(append_seconds)}};
  j["group_fanout"] = histogram_json(group_fanout);
  return j.dump();
}

}  // namespace chat::broker
