#include "fake_support.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace chat::fakes {

void Script::load(const std::string& path) {
  if (path.empty()) return;
  json doc = json::parse(read_file(path), nullptr, false);
  if (!doc.is_object()) throw std::runtime_error("script " + path + ": not a JSON object");
  for (const auto& [key, list] : doc.items()) {
    if (!list.is_array()) throw std::runtime_error("script " + path + ": " + key + ": not a list");
    std::vector<ScriptedAnswer> answers;
    for (const auto& item : list) {
      if (!item.is_object() || !item.contains("status") || !item["status"].is_number_integer()) {
        throw std::runtime_error("script " + path + ": " + key + ": entries need a status");
      }
      ScriptedAnswer a;
      a.status = item["status"].get<int>();
      if (a.status < 100 || a.status > 599) throw std::runtime_error("script: bad status");
      if (auto h = item.find("headers"); h != item.end() && h->is_object()) {
        for (const auto& [name, value] : h->items()) {
          if (value.is_string()) a.headers[name] = value.get<std::string>();
        }
      }
      if (auto b = item.find("body"); b != item.end()) {
        a.has_body = true;
        a.body = b->is_string() ? b->get<std::string>() : b->dump();
      }
      if (auto d = item.find("delay_ms"); d != item.end() && d->is_number_integer()) {
        a.delay_ms = std::clamp(d->get<int>(), 0, 60000);
      }
      answers.push_back(std::move(a));
    }
    answers_[key] = std::move(answers);
  }
}

std::optional<ScriptedAnswer> Script::next(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = answers_.find(key);
  if (it == answers_.end()) return std::nullopt;
  size_t& used = used_[key];
  if (used >= it->second.size()) return std::nullopt;
  return it->second[used++];
}

void Recorder::open(const std::string& path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) throw std::runtime_error("cannot open record file " + path);
}

Recorder::~Recorder() {
  if (file_ != nullptr) std::fclose(file_);
}

void Recorder::record(const json& entry) {
  std::lock_guard<std::mutex> lock(mu_);
  if (file_ == nullptr) return;
  const std::string line = entry.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument: " + arg);
    std::string name = arg.substr(2);
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      out[name] = argv[++i];
    } else {
      out[name] = "1";
    }
  }
  return out;
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace chat::fakes
