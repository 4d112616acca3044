#include "bench/payload.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <random>

#include "chat/common/base64.h"

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

E2ePayload::E2ePayload(const std::vector<std::string>& recipients, size_t size_per_entry,
                       const std::string& cid_prefix)
    : cid_prefix_(cid_prefix) {
  static constexpr char kHead[] = R"({"cid":")";
  static constexpr char kBodyOpen[] = R"(","type":"e2e","body":{"to":{)";
  static constexpr char kBodyClose[] = "}}}";
  static constexpr char kEntryOpen[] = R"(":{"type":1,"body":")";
  // Sizing assumes a typical cid (the stamp of a run's early messages).
  const size_t nominal = sizeof kHead - 1 + cid(Stamp{0, 0, 1000000000000ULL}).size() +
                         sizeof kBodyOpen - 1 + sizeof kBodyClose - 1;
  size_t fixed = nominal;
  for (const auto& r : recipients) fixed += 1 + r.size() + sizeof kEntryOpen - 1 + 2;  // "key...""}
  if (!recipients.empty()) fixed += recipients.size() - 1;                             // commas
  const size_t n = recipients.empty() ? 1 : recipients.size();
  const size_t target = size_per_entry * n;
  size_t chars = target > fixed ? (target - fixed) / n : 0;
  chars = std::max<size_t>(4, chars / 4 * 4);
  ciphertext_chars_ = chars;

  std::mt19937_64 rng(0x5eed2e2eULL);
  tail_.append(kBodyOpen);
  bool first = true;
  for (const auto& r : recipients) {
    if (!first) tail_.push_back(',');
    first = false;
    std::string bytes(chars / 4 * 3, '\0');
    for (auto& b : bytes) b = static_cast<char>(rng() & 0xff);
    tail_.push_back('"');
    tail_.append(r);
    tail_.append(kEntryOpen);
    tail_.append(base64_encode(bytes));
    tail_.append("\"}");
  }
  tail_.append(kBodyClose);
}

std::string E2ePayload::cid(const Stamp& stamp) const {
  std::string c = cid_prefix_;
  append_stamp(&c, stamp);
  return c;
}

bool E2ePayload::build(std::string* out, const Stamp& stamp) const {
  std::string& o = *out;
  o.clear();
  o.append(R"({"cid":")");
  const size_t cid_at = o.size();
  o.append(cid_prefix_);
  append_stamp(&o, stamp);
  if (o.size() - cid_at > kMaxCidChars) return false;  // ASCII: bytes are characters
  o.append(tail_);
  return true;
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
