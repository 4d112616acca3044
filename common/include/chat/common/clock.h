// Clock: the one source of time, injectable so tests can fix or shift it.
#pragma once

#include <atomic>
#include <cstdint>

namespace chat {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock milliseconds since the Unix epoch.
  virtual int64_t now_ms() const = 0;
  int64_t now_s() const { return now_ms() / 1000; }
};

class SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
  // Process-wide instance; stateless, thread-safe.
  static const SystemClock& instance();
};

// A clock tests set by hand. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start_ms = 1'700'000'000'000) : ms_(start_ms) {}
  int64_t now_ms() const override { return ms_.load(); }
  void set_ms(int64_t ms) { ms_.store(ms); }
  void advance_ms(int64_t d) { ms_.fetch_add(d); }

 private:
  std::atomic<int64_t> ms_;
};

// A clock shifted by a fixed offset from another (tests of skew).
class OffsetClock final : public Clock {
 public:
  OffsetClock(const Clock& base, int64_t offset_ms) : base_(base), offset_ms_(offset_ms) {}
  int64_t now_ms() const override { return base_.now_ms() + offset_ms_; }

 private:
  const Clock& base_;
  int64_t offset_ms_;
};

}  // namespace chat
