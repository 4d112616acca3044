#include "chat/common/settings.h"

#include <charconv>
#include <cstdlib>

namespace chat::settings {

Lookup environment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Lookup from_map(std::map<std::string, std::string> values) {
  return [values = std::move(values)](const char* name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

std::vector<std::string_view> split_list(std::string_view list) {
  std::vector<std::string_view> items;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

Lookup empty_as_unset(Lookup raw) {
  return [raw = std::move(raw)](const char* name) -> std::optional<std::string> {
    auto v = raw(name);
    if (v && v->empty()) return std::nullopt;
    return v;
  };
}

Status bad(const char* name, std::string_view value, std::string_view expected) {
  return invalid_argument(std::string(name) + ": expected " + std::string(expected) + ", got '" +
                          std::string(value) + "'");
}

Status read_int(const Lookup& lookup, const char* name, int64_t min, int64_t max, int64_t* out) {
  auto v = lookup(name);
  if (!v) return Status::ok();
  int64_t parsed = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), parsed);
  if (ec != std::errc() || end != v->data() + v->size() || parsed < min || parsed > max) {
    return bad(name, *v, "an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  *out = parsed;
  return Status::ok();
}

}  // namespace chat::settings
