// Reading JSON that came from the network without trusting its shape.
//
// Server answers and MQTT payloads are untrusted input: a missing field or one
// of the wrong type reads as empty / zero, never as an exception.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace chat::tools {

// Parses without exceptions; a discarded value (is_discarded()) on bad input.
nlohmann::json parse_json(std::string_view text);

// j[key] when j is an object and the value is a string; "" otherwise.
std::string json_string(const nlohmann::json& j, std::string_view key);
// j[key] when it is an integer (or an integral number); `fallback` otherwise.
int64_t json_int(const nlohmann::json& j, std::string_view key, int64_t fallback = 0);
// j[key] when present; a null value otherwise.
const nlohmann::json& json_field(const nlohmann::json& j, std::string_view key);

// Compact one-line JSON; invalid UTF-8 in strings is replaced, never thrown.
std::string dump_json(const nlohmann::json& j);

}  // namespace chat::tools
