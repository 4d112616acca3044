// ByteQueue: the bytes waiting to go one way through one connection.
//
// A FIFO of byte blocks. It does not limit itself: the relay stops reading
// the sending side once size() passes CHAT_WS_BUFFER_BYTES, so a queue holds
// at most that plus one read. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace chat::bridge {

class ByteQueue {
 public:
  // Appends a copy of `len` bytes.
  void append(const uint8_t* data, size_t len);
  // Copies up to `max` bytes from the front into `out` (without consuming
  // them); returns how many.
  size_t peek(uint8_t* out, size_t max) const;
  // Drops the first `n` bytes (n <= size()).
  void consume(size_t n);
  void clear();

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  std::deque<std::vector<uint8_t>> blocks_;
  size_t head_offset_ = 0;  // bytes of blocks_.front() already consumed
  size_t size_ = 0;
};

}  // namespace chat::bridge
