#include "chat/bridge/byte_queue.h"

#include <algorithm>
#include <cstring>

namespace chat::bridge {

namespace {
// Small appends (MQTT PINGREQ, PUBACK...) are merged into the last block up
// to this size, so a queue of tiny packets does not cost one allocation each.
constexpr size_t kMergeBelow = 4096;
}  // namespace

void ByteQueue::append(const uint8_t* data, size_t len) {
  if (len == 0) return;
  if (!blocks_.empty() && blocks_.back().size() + len <= kMergeBelow) {
    auto& last = blocks_.back();
    last.insert(last.end(), data, data + len);
  } else {
    blocks_.emplace_back(data, data + len);
  }
  size_ += len;
}

size_t ByteQueue::peek(uint8_t* out, size_t max) const {
  size_t copied = 0;
  size_t offset = head_offset_;
  for (const auto& block : blocks_) {
    if (copied == max) break;
    size_t n = std::min(block.size() - offset, max - copied);
    std::memcpy(out + copied, block.data() + offset, n);
    copied += n;
    offset = 0;
  }
  return copied;
}

void ByteQueue::consume(size_t n) {
  n = std::min(n, size_);
  size_ -= n;
  while (n > 0) {
    auto& front = blocks_.front();
    size_t available = front.size() - head_offset_;
    if (n < available) {
      head_offset_ += n;
      return;
    }
    n -= available;
    blocks_.pop_front();
    head_offset_ = 0;
  }
  if (blocks_.empty()) head_offset_ = 0;
}

void ByteQueue::clear() {
  blocks_.clear();
  head_offset_ = 0;
  size_ = 0;
}

}  // namespace chat::bridge
