#include "info_log.h"

#include <sys/time.h>

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace chat::store {
namespace {

class StdioLogger final : public rocksdb::Logger {
 public:
  StdioLogger(std::string path, size_t max_bytes)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
        path_(std::move(path)),
        max_bytes_(max_bytes) {}
  ~StdioLogger() override {
    if (file_ != nullptr) std::fclose(file_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_ == nullptr && !open_locked()) return;
    struct timeval now {};
    ::gettimeofday(&now, nullptr);
    struct tm t {};
    ::localtime_r(&now.tv_sec, &t);
    int n =
        std::fprintf(file_, "%04d/%02d/%02d-%02d:%02d:%02d.%06ld ", t.tm_year + 1900, t.tm_mon + 1,
                     t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long>(now.tv_usec));
    va_list copy;
    va_copy(copy, ap);
    int m = std::vfprintf(file_, format, copy);
    va_end(copy);
    std::fputc('\n', file_);
    // Errors (a full disk) are dropped: the next line tries again.
    if (std::fflush(file_) != 0 || std::ferror(file_)) std::clearerr(file_);
    written_ += static_cast<size_t>(n > 0 ? n : 0) + static_cast<size_t>(m > 0 ? m : 0) + 1;
    if (written_ > max_bytes_) roll_locked();
  }

  size_t GetLogFileSize() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return written_;
  }

  void Flush() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_ != nullptr && std::fflush(file_) != 0) std::clearerr(file_);
  }

 private:
  bool open_locked() {
    file_ = std::fopen(path_.c_str(), "ae");
    if (file_ == nullptr) return false;
    std::fseek(file_, 0, SEEK_END);
    long size = std::ftell(file_);
    written_ = size > 0 ? static_cast<size_t>(size) : 0;
    return true;
  }

  void roll_locked() {
    std::fclose(file_);
    file_ = nullptr;
    std::rename(path_.c_str(), (path_ + ".old").c_str());  // fails harmlessly
    written_ = 0;
  }

  const std::string path_;
  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::FILE* file_ = nullptr;  // guarded by mu_
  size_t written_ = 0;         // guarded by mu_
};

}  // namespace

std::shared_ptr<rocksdb::Logger> make_info_log(const std::string& path, size_t max_bytes) {
  return std::make_shared<StdioLogger>(path, max_bytes);
}

}  // namespace chat::store
