// What fake-fcm and fake-apns share: the response script, the request
// recorder and command-line parsing. Test-only code, never installed.
//
// Script file (JSON): for each key (a device/registration token, or a
// fake-specific name like "@oauth"), the answers to give, in order; once a
// key's list is used up, or for a key not in the script, the fake answers
// normally (success).
//   {"tok-a": [{"status":500}, {"status":200}],
//    "tok-b": [{"status":410, "body":{"reason":"Unregistered"}}],
//    "tok-c": [{"status":429, "headers":{"retry-after":"7"}}],
//    "tok-d": [{"status":200, "delay_ms":3000}]}
// `body` is sent as is when a string, else as JSON. `delay_ms` (at most
// 60000) delays the answer.
//
// Record file: one JSON object per request, appended and flushed before the
// answer is sent, so a test that saw the answer can read the line.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace chat::fakes {

using json = nlohmann::json;

struct ScriptedAnswer {
  int status = 200;
  std::map<std::string, std::string> headers;
  std::string body;
  bool has_body = false;
  int delay_ms = 0;
};

class Script {
 public:
  // Loads the file; "" = empty script. Throws std::runtime_error on a bad file.
  void load(const std::string& path);
  // The next scripted answer for `key`, if any (consumes it). Thread-safe.
  std::optional<ScriptedAnswer> next(const std::string& key);

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<ScriptedAnswer>> answers_;
  std::map<std::string, size_t> used_;
};

class Recorder {
 public:
  // Opens (appends to) `path`; "" records nothing. Throws on failure.
  void open(const std::string& path);
  ~Recorder();
  // Appends one line and flushes. Thread-safe.
  void record(const json& entry);

 private:
  std::mutex mu_;
  FILE* file_ = nullptr;
};

// --name value pairs from argv; --flag alone is "1". Throws on a stray argument.
std::map<std::string, std::string> parse_args(int argc, char** argv);

// Milliseconds since the Unix epoch.
int64_t now_ms();

// Reads a whole small file; throws std::runtime_error naming it on failure.
std::string read_file(const std::string& path);

}  // namespace chat::fakes
