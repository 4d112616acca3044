#include "chat/bridge/packet_framer.h"

#include <algorithm>

namespace chat::bridge {

void PacketFramer::feed(const uint8_t* data, size_t len) {
  size_t i = 0;
  while (i < len && !broken_) {
    switch (state_) {
      case State::kType:
        ++i;
        length_ = 0;
        multiplier_ = 1;
        length_bytes_ = 0;
        state_ = State::kLength;
        break;
      case State::kLength: {
        const uint8_t b = data[i++];
        length_ += static_cast<uint32_t>(b & 0x7f) * multiplier_;
        multiplier_ *= 128;
        ++length_bytes_;
        if (b & 0x80) {
          if (length_bytes_ == 4) broken_ = true;  // not MQTT: stop aligning
          break;
        }
        body_left_ = length_;
        if (body_left_ == 0) {
          ends_.push_back(fed_ + i);
          state_ = State::kType;
        } else {
          state_ = State::kBody;
        }
        break;
      }
      case State::kBody: {
        const uint64_t take = std::min<uint64_t>(len - i, body_left_);
        i += static_cast<size_t>(take);
        body_left_ -= take;
        if (body_left_ == 0) {
          ends_.push_back(fed_ + i);
          state_ = State::kType;
        }
        break;
      }
    }
  }
  fed_ += len;
  if (broken_) ends_.clear();
}

PacketFramer::Frame PacketFramer::next(size_t available, size_t max, bool must_progress,
                                       bool stream_ended) const {
  Frame f;
  f.continuation = in_message_;
  if (available == 0 || max == 0) return f;
  const size_t most = std::min(available, max);
  if (broken_) {
    f.len = most;  // as a plain relay; an open fragmented message ends here
    return f;
  }
  // The next packet, whole, when it fits (or the rest of a fragmented one).
  if (!ends_.empty() && ends_.front() - sent_ <= most) {
    f.len = static_cast<size_t>(ends_.front() - sent_);
    return f;
  }
  // The next packet does not fit (or is not complete yet): a fragment when
  // there is a whole frame's worth, or when waiting could stall.
  if (available >= max || must_progress || stream_ended) {
    f.len = most;
    f.fin = stream_ended && available <= max;  // else the packet goes on next frame
  }
  return f;
}

void PacketFramer::sent(const Frame& frame) {
  if (frame.len == 0) return;
  sent_ += frame.len;
  while (!ends_.empty() && ends_.front() <= sent_) ends_.pop_front();
  in_message_ = !frame.fin;
}

}  // namespace chat::bridge
