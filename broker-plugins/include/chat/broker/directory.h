// Directory: the broker's in-memory view of groups and blocks, so routing a
// group message or checking a block needs no disk read on the broker thread.
//
// Loaded from the archive at start; changed only through the control topic,
// which writes the archive first and this cache second. Not thread-safe (the
// broker's single plugin thread).
#pragma once

#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/common/status.h"
#include "chat/store/archive.h"

namespace chat::broker {

struct Group {
  std::string id;
  std::string name;
  std::set<std::string> members;
  std::set<std::string> admins;
  std::vector<std::string> join_order;  // current members, longest-standing first
};

class Directory {
 public:
  explicit Directory(store::Archive& archive) : archive_(archive) {}

  Status load();

  const Group* group(const std::string& gid) const;
  bool is_member(const std::string& gid, const std::string& user) const;
  // Whether a and b are both current members of some group.
  bool share_group(const std::string& a, const std::string& b) const;
  // Every user who is a current member of a group `user` is a current member
  // of (`user` excluded).
  std::set<std::string> co_members(const std::string& user) const;
  // Whether `blocker` blocked `blocked` (loaded from the archive on first use).
  bool is_blocked(const std::string& blocker, const std::string& blocked);

  // Mirrors of the archive's writes (call after the archive accepted them).
  void put_group(const store::GroupInfo& info);
  void add_member(const std::string& gid, const std::string& user);
  void remove_member(const std::string& gid, const std::string& user);
  void set_admin(const std::string& gid, const std::string& user, bool admin);
  void set_block(const std::string& blocker, const std::string& blocked, bool on);
  void forget_user(const std::string& user);

 private:
  store::Archive& archive_;
  std::unordered_map<std::string, Group> groups_;
  std::unordered_map<std::string, std::set<std::string>> groups_of_;  // user -> current gids
  std::unordered_map<std::string, std::set<std::string>> blocks_;     // blocker -> blocked
};

}  // namespace chat::broker
