#include "bench/payload.h"

#include <charconv>
#include <cstring>

namespace chat::bench {
namespace {

void append_number(std::string* out, uint64_t v) {
  char buf[24];  // 20 digits at most
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

void append_stamp(std::string* out, const Stamp& s) {
  out->append("B|");
  append_number(out, s.pub);
  out->push_back('|');
  append_number(out, s.seq);
  out->push_back('|');
  append_number(out, s.sent_us);
  out->push_back('|');
}

bool parse_number(const char*& p, const char* end, uint64_t* out) {
  auto [next, ec] = std::from_chars(p, end, *out);
  if (ec != std::errc() || next == p || next >= end || *next != '|') return false;
  p = next + 1;
  return true;
}

}  // namespace

void build_bare_payload(std::string* out, const Stamp& stamp, size_t size) {
  out->clear();
  append_stamp(out, stamp);
  if (out->size() < size) out->append(size - out->size(), 'x');
}

void build_chat_payload(std::string* out, const Stamp& stamp, const std::string& cid_prefix,
                        size_t size) {
  out->clear();
  out->append(R"({"cid":")");
  out->append(cid_prefix);
  append_number(out, stamp.pub);
  out->push_back('-');
  append_number(out, stamp.seq);
  out->append(R"(","type":"text","body":")");
  append_stamp(out, stamp);
  constexpr size_t kTail = 2;  // "}
  if (out->size() + kTail < size) out->append(size - out->size() - kTail, 'x');
  out->append("\"}");
}

bool parse_stamp(const char* data, size_t len, Stamp* out) {
  const char* end = data + len;
  const void* hit = memmem(data, len, "B|", 2);
  if (hit == nullptr) return false;
  const char* p = static_cast<const char*>(hit) + 2;
  uint64_t pub = 0;
  if (!parse_number(p, end, &pub) || pub > UINT32_MAX) return false;
  if (!parse_number(p, end, &out->seq)) return false;
  if (!parse_number(p, end, &out->sent_us)) return false;
  out->pub = static_cast<uint32_t>(pub);
  return true;
}

}  // namespace chat::bench
