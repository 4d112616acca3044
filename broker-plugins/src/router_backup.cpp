// The control op archive.checkpoint (docs/protocol.md, "Service control
// topic"; docs/operations.md, "Backup and restore"): chat-api asks the broker,
// the archive's only writer, for a consistent copy of it.
#include <chrono>
#include <filesystem>
#include <system_error>

#include "chat/broker/router.h"
#include "chat/common/log_fields.h"

namespace chat::broker {

using json = nlohmann::json;

// Runs on the broker's one thread, like every append: the copy holds exactly
// the messages acknowledged before it, and none is appended while it is
// taken (a checkpoint flushes the memtables and hard-links table files:
// milliseconds to a few hundred, see docs/operations.md).
Status Router::control_checkpoint(const json& doc, json* result) {
  const auto dir = doc.find("dir");
  if (dir == doc.end() || !dir->is_string()) {
    return invalid_argument("dir must be an absolute path that does not exist yet");
  }
  const std::string& path = dir->get_ref<const std::string&>();
  if (path.empty() || path.size() > 4096 || path.find('\0') != std::string::npos ||
      !std::filesystem::path(path).is_absolute()) {
    return invalid_argument("dir must be an absolute path that does not exist yet");
  }
  const auto start = std::chrono::steady_clock::now();
  auto info = archive_.checkpoint(path);
  if (!info) {
    port_.log(LogLevel::kError, "archive.checkpoint_failed: dir=" + log_value(path) +
                                    " error=" + log_value(info.status().to_string()));
    return info.status();
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  port_.log(LogLevel::kNotice,
            "archive.checkpoint: dir=" + log_value(path) + " max_id=" + log_value(info->max_id) +
                " sequence=" + std::to_string(info->sequence) + " ms=" + std::to_string(ms));
  *result = json{{"dir", path}, {"max_id", info->max_id}, {"sequence", info->sequence}, {"ms", ms}};
  return Status::ok();
}

}  // namespace chat::broker
