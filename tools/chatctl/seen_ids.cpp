#include "chatctl/seen_ids.h"

namespace chat::tools {

bool SeenIds::insert(std::string_view id) {
  auto [it, inserted] = ids_.emplace(id);
  if (!inserted) return false;
  order_.push_back(*it);
  while (order_.size() > capacity_) {
    ids_.erase(order_.front());
    order_.pop_front();
  }
  return true;
}

}  // namespace chat::tools
