#include "chat/common/topics.h"

#include "chat/common/ids.h"

namespace chat::topics {
namespace {

bool consume(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

}  // namespace

SendTopic parse_send_topic(std::string_view topic) {
  SendTopic out;
  bool group;
  if (consume(topic, "dm/"))
    group = false;
  else if (consume(topic, "g/"))
    group = true;
  else
    return out;

  auto slash = topic.find('/');
  std::string_view target = topic.substr(0, slash);
  std::string_view rest =
      slash == std::string_view::npos ? std::string_view() : topic.substr(slash);
  if (group ? !is_valid_group_id(target) : !is_valid_user_id(target)) return out;

  if (rest.empty())
    out.kind = group ? SendKind::kGroup : SendKind::kDirect;
  else if (rest == "/receipt")
    out.kind = group ? SendKind::kGroupReceipt : SendKind::kDirectReceipt;
  else if (rest == "/typing")
    out.kind = group ? SendKind::kGroupTyping : SendKind::kDirectTyping;
  else
    return out;
  out.target.assign(target);
  return out;
}

namespace {
std::string send_topic(std::string_view prefix, std::string_view target, std::string_view leaf) {
  std::string t;
  t.append(prefix).append(target);
  if (!leaf.empty()) t.append("/").append(leaf);
  return t;
}
}  // namespace

std::string direct(std::string_view peer, std::string_view leaf) {
  return send_topic("dm/", peer, leaf);
}
std::string group(std::string_view gid, std::string_view leaf) {
  return send_topic("g/", gid, leaf);
}

std::string inbox(std::string_view user, std::string_view leaf) {
  std::string t;
  t.reserve(3 + user.size() + leaf.size());
  t.append("u/").append(user).append("/").append(leaf);
  return t;
}

std::string presence(std::string_view user) { return "presence/" + std::string(user); }

bool parse_presence(std::string_view topic, std::string* user) {
  if (!consume(topic, "presence/") || !is_valid_user_id(topic)) return false;
  if (user) user->assign(topic);
  return true;
}

bool is_own_inbox_filter(std::string_view filter, std::string_view user) {
  if (!consume(filter, "u/") || !consume(filter, user) || !consume(filter, "/")) return false;
  return filter == "#" || filter == kInboxMsg || filter == kInboxReceipt ||
         filter == kInboxTyping || filter == kInboxEvent;
}

std::string dm_conversation(std::string_view a, std::string_view b) {
  if (b < a) std::swap(a, b);
  std::string c;
  c.reserve(4 + a.size() + b.size());
  c.append("dm:").append(a).append(":").append(b);
  return c;
}

std::string group_conversation(std::string_view gid) { return "g:" + std::string(gid); }

Conversation parse_conversation(std::string_view conv) {
  Conversation out;
  if (consume(conv, "dm:")) {
    auto colon = conv.find(':');
    if (colon == std::string_view::npos) return out;
    auto a = conv.substr(0, colon), b = conv.substr(colon + 1);
    if (!is_valid_user_id(a) || !is_valid_user_id(b) || !(a < b)) return out;
    out.kind = ConvKind::kDirect;
    out.a.assign(a);
    out.b.assign(b);
  } else if (consume(conv, "g:")) {
    if (!is_valid_group_id(conv)) return out;
    out.kind = ConvKind::kGroup;
    out.gid.assign(conv);
  }
  return out;
}

}  // namespace chat::topics
