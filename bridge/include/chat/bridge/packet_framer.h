// PacketFramer: where MQTT control packets end in the broker's byte stream,
// so that each WebSocket message toward the browser carries exactly one
// packet.
//
// MQTT over WebSocket allows any split (MQTT 5 §6: a frame may hold several
// or partial packets, and receivers must not assume alignment), but clients
// do assume it: Paho C 1.3.12 loses and mixes up messages when one frame
// holds several packets (measured: 2,105 of 46,067 lost through a plain relay,
// none one packet per frame), and Mosquitto's own websockets listener sends
// one packet per frame. The bytes stay exactly as the broker sent them; only
// the frame boundaries are chosen. A packet bigger than one frame goes out as
// one fragmented message (continuation frames), so nothing is ever buffered
// beyond the relay's cap.
//
// Only the fixed header is read (type byte, remaining length). If the stream
// is not MQTT (a remaining length over 4 bytes), the framer stops aligning
// and frames are cut anywhere, as a plain relay would.
// Not thread-safe; one per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

namespace chat::bridge {

class PacketFramer {
 public:
  // Notes `len` more bytes appended to the stream.
  void feed(const uint8_t* data, size_t len);

  struct Frame {
    size_t len = 0;             // bytes to send now; 0 = wait for more
    bool continuation = false;  // a continuation of a fragmented message
    bool fin = true;            // the message's last frame
  };
  // The next frame from the `available` unsent bytes, at most `max` long:
  // the next whole packet, or a fragment of one longer than `max`.
  // `must_progress`: send what there is even if it ends inside a packet (the
  // broker is gone, or is no longer read because the queue is full).
  // `stream_ended`: nothing more will be fed (the broker closed), so the last
  // bytes end their message even inside a packet: a receiver drops an
  // unfinished message, and every byte the broker sent must arrive.
  Frame next(size_t available, size_t max, bool must_progress, bool stream_ended = false) const;
  // Records that `frame` was sent.
  void sent(const Frame& frame);

  bool aligned() const { return !broken_; }

 private:
  enum class State { kType, kLength, kBody };
  State state_ = State::kType;
  uint32_t length_ = 0;      // remaining length being decoded
  uint32_t multiplier_ = 1;  // of the next length byte
  int length_bytes_ = 0;
  uint64_t body_left_ = 0;
  uint64_t fed_ = 0;           // stream offset of the next byte fed
  uint64_t sent_ = 0;          // stream offset of the next byte to send
  std::deque<uint64_t> ends_;  // stream offsets where complete packets end, > sent_
  bool in_message_ = false;    // a fragmented message has started
  bool broken_ = false;
};

}  // namespace chat::bridge
