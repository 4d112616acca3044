// Reading a process's CHAT_* settings: the one shape every component's
// Config::from_lookup uses, so each bad value stops start-up with the same
// one line naming the variable ("CHAT_X: expected ..., got '...'").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/common/status.h"

namespace chat::settings {

// A variable's value, or nullopt when unset. Tests pass a map instead of the
// environment.
using Lookup = std::function<std::optional<std::string>(const char* name)>;

// The process environment.
Lookup environment();
// A fixed set of variables (tests).
Lookup from_map(std::map<std::string, std::string> values);
// `raw`, with an empty value counted as unset (`CHAT_X= make run` = default).
Lookup empty_as_unset(Lookup raw);

// The items of a comma-separated list, trimmed of spaces and tabs, empty
// ones skipped ("a, b,,c" -> a, b, c). The views point into `list`.
std::vector<std::string_view> split_list(std::string_view list);

// kInvalidArgument "<name>: expected <expected>, got '<value>'".
Status bad(const char* name, std::string_view value, std::string_view expected);

// Reads an integer in [min, max] into *out; unset leaves *out (the default).
Status read_int(const Lookup& lookup, const char* name, int64_t min, int64_t max, int64_t* out);

template <typename T>
Status read_int(const Lookup& lookup, const char* name, int64_t min, int64_t max, T* out) {
  int64_t v = static_cast<int64_t>(*out);
  Status s = read_int(lookup, name, min, max, &v);
  if (s.is_ok()) *out = static_cast<T>(v);
  return s;
}

}  // namespace chat::settings
