// The few REST calls chat-bench needs: accounts, tokens, a group.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace chat::bench {

struct RestError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Creates each user (an existing one, 409, is reused with the same password)
// and returns an access token per user, in order. `threads` requests run at
// once. Throws RestError.
std::vector<std::string> mint_tokens(const std::string& base_url,
                                     const std::vector<std::string>& users,
                                     const std::string& password, int threads);

// POST /v1/groups as the creator. The group id, or nullopt when the API has no
// groups (404/405). Throws RestError on any other failure.
std::optional<std::string> create_group(const std::string& base_url, const std::string& token,
                                        const std::string& name,
                                        const std::vector<std::string>& members);

}  // namespace chat::bench
