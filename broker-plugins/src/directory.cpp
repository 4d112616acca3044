#include "chat/broker/directory.h"

#include <algorithm>

namespace chat::broker {

Status Directory::load() {
  auto all = archive_.groups();
  if (!all) return all.status();
  groups_.clear();
  groups_of_.clear();
  for (const auto& info : *all) {
    put_group(info);
    // join_order: by the start of each member's current period.
    std::vector<std::pair<std::string, std::string>> joined;
    for (const auto& m : info.members) {
      auto ms = archive_.membership(info.id, m);
      std::string from = ms.is_ok() && !ms->periods.empty() ? ms->periods.back().from : "";
      joined.emplace_back(from, m);
    }
    std::sort(joined.begin(), joined.end());
    auto& order = groups_[info.id].join_order;
    order.clear();
    for (auto& [from, m] : joined) order.push_back(m);
  }
  return Status::ok();
}

const Group* Directory::group(const std::string& gid) const {
  auto it = groups_.find(gid);
  return it == groups_.end() ? nullptr : &it->second;
}

bool Directory::is_member(const std::string& gid, const std::string& user) const {
  const Group* g = group(gid);
  return g != nullptr && g->members.count(user) > 0;
}

bool Directory::share_group(const std::string& a, const std::string& b) const {
  auto ia = groups_of_.find(a);
  auto ib = groups_of_.find(b);
  if (ia == groups_of_.end() || ib == groups_of_.end()) return false;
  const auto& small = ia->second.size() <= ib->second.size() ? ia->second : ib->second;
  const auto& large = ia->second.size() <= ib->second.size() ? ib->second : ia->second;
  return std::any_of(small.begin(), small.end(),
                     [&](const std::string& g) { return large.count(g) > 0; });
}

std::set<std::string> Directory::co_members(const std::string& user) const {
  std::set<std::string> out;
  const auto gids = groups_of_.find(user);
  if (gids == groups_of_.end()) return out;
  for (const auto& gid : gids->second) {
    const auto g = groups_.find(gid);
    if (g != groups_.end()) out.insert(g->second.members.begin(), g->second.members.end());
  }
  out.erase(user);
  return out;
}

bool Directory::is_blocked(const std::string& blocker, const std::string& blocked) {
  auto it = blocks_.find(blocker);
  if (it == blocks_.end()) {
    std::set<std::string> set;
    auto list = archive_.blocked_by(blocker);
    if (list.is_ok()) set.insert(list->begin(), list->end());
    // On a read error, treat as not blocked rather than dropping messages;
    // the entry is not cached so the next check reads again.
    if (!list.is_ok()) return false;
    it = blocks_.emplace(blocker, std::move(set)).first;
  }
  return it->second.count(blocked) > 0;
}

void Directory::put_group(const store::GroupInfo& info) {
  if (auto old = groups_.find(info.id); old != groups_.end()) {
    for (const auto& m : old->second.members) groups_of_[m].erase(info.id);
  }
  Group g;
  g.id = info.id;
  g.name = info.name;
  g.members.insert(info.members.begin(), info.members.end());
  g.admins.insert(info.admins.begin(), info.admins.end());
  g.join_order = info.members;
  for (const auto& m : info.members) groups_of_[m].insert(info.id);
  groups_[info.id] = std::move(g);
}

void Directory::add_member(const std::string& gid, const std::string& user) {
  auto it = groups_.find(gid);
  if (it == groups_.end() || !it->second.members.insert(user).second) return;
  it->second.join_order.push_back(user);
  groups_of_[user].insert(gid);
}

void Directory::remove_member(const std::string& gid, const std::string& user) {
  auto it = groups_.find(gid);
  if (it == groups_.end()) return;
  it->second.members.erase(user);
  it->second.admins.erase(user);
  auto& order = it->second.join_order;
  order.erase(std::remove(order.begin(), order.end(), user), order.end());
  groups_of_[user].erase(gid);
}

void Directory::set_admin(const std::string& gid, const std::string& user, bool admin) {
  auto it = groups_.find(gid);
  if (it == groups_.end()) return;
  if (admin)
    it->second.admins.insert(user);
  else
    it->second.admins.erase(user);
}

void Directory::set_block(const std::string& blocker, const std::string& blocked, bool on) {
  auto it = blocks_.find(blocker);
  if (it == blocks_.end()) return;  // not cached: the next check reads the archive
  if (on)
    it->second.insert(blocked);
  else
    it->second.erase(blocked);
}

void Directory::forget_user(const std::string& user) { blocks_.erase(user); }

}  // namespace chat::broker
