#include "chatctl/json_access.h"

#include <cmath>

namespace chat::tools {

nlohmann::json parse_json(std::string_view text) {
  return nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

const nlohmann::json& json_field(const nlohmann::json& j, std::string_view key) {
  static const nlohmann::json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string json_string(const nlohmann::json& j, std::string_view key) {
  const auto& v = json_field(j, key);
  return v.is_string() ? v.get<std::string>() : std::string();
}

int64_t json_int(const nlohmann::json& j, std::string_view key, int64_t fallback) {
  const auto& v = json_field(j, key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? fallback : static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e18)
      return static_cast<int64_t>(d);
  }
  return fallback;
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace chat::tools
