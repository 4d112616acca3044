#include "chat/common/oidc.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "chat/common/ids.h"

namespace chat::oidc {
namespace {

using nlohmann::json;

constexpr size_t kMaxSegments = 8;
constexpr size_t kMaxSegmentChars = 64;
// Nobody's JWT payload is this large; a bigger one is not decoded just to route it.
constexpr size_t kMaxPeekChars = 16 * 1024;

bool is_segment_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == ':' || c == '/';
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    out.push_back(path.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
}

// The value at a dotted path, nullptr when some segment is absent.
// kUnauthenticated when an intermediate value is not an object.
Result<const json*> at_path(const json& root, std::string_view path) {
  const json* node = &root;
  for (std::string_view segment : split_path(path)) {
    if (!node->is_object()) return unauthenticated("claim " + std::string(path) + " is malformed");
    auto it = node->find(segment);
    if (it == node->end()) return static_cast<const json*>(nullptr);
    node = &*it;
  }
  return node;
}

}  // namespace

bool is_valid_subject(std::string_view sub) {
  return !sub.empty() && sub.size() <= kMaxSubjectBytes && sub.find('\0') == std::string_view::npos;
}

bool is_valid_claim_path(std::string_view path) {
  auto segments = split_path(path);
  if (segments.size() > kMaxSegments) return false;
  return std::all_of(segments.begin(), segments.end(), [](std::string_view s) {
    return !s.empty() && s.size() <= kMaxSegmentChars &&
           std::all_of(s.begin(), s.end(), is_segment_char);
  });
}

std::optional<std::string> unverified_issuer(std::string_view token) {
  const size_t first = token.find('.');
  if (first == std::string_view::npos) return std::nullopt;
  const size_t second = token.find('.', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  std::string_view payload = token.substr(first + 1, second - first - 1);
  if (payload.size() > kMaxPeekChars) return std::nullopt;
  auto bytes = jwt::base64url_decode(payload);
  if (!bytes) return std::nullopt;
  json body = json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) return std::nullopt;
  auto iss = body.find("iss");
  if (iss == body.end() || !iss->is_string()) return std::nullopt;
  return iss->get<std::string>();
}

Result<ExternalIdentity> verify(std::string_view token, const jwt::KeySet& keys,
                                const Provider& provider, int64_t leeway_s, int64_t now_s) {
  jwt::VerifyOptions vo;
  vo.issuer = provider.issuer;
  vo.audience = provider.audience;
  vo.leeway_s = leeway_s;
  // verify_jwt reads a top-level roles claim only; the dotted path is read
  // below. A path without dots is read by both, with the same rules.
  vo.roles_claim = provider.roles_claim;
  auto claims = jwt::verify_jwt(token, keys, vo, now_s);
  if (!claims) return claims.status();

  // verify_jwt requires a non-empty string `sub`; the account is bound to it.
  if (!is_valid_subject(claims->sub)) {
    return unauthenticated("sub is not a subject identifier (1 to 255 bytes, no NUL)");
  }
  ExternalIdentity id;
  id.subject = claims->sub;
  try {
    auto user = at_path(claims->raw, provider.user_claim);
    if (!user) return user.status();
    if (*user == nullptr || !(*user)->is_string()) {
      return unauthenticated("token has no " + provider.user_claim + " claim");
    }
    id.user = (*user)->get<std::string>();
    if (!is_valid_user_id(id.user)) {
      return unauthenticated(provider.user_claim +
                             " is not a user id (^[a-z0-9][a-z0-9_.-]{0,31}$)");
    }
    if (id.user.compare(0, 4, "svc.") == 0) {
      return unauthenticated("svc. user ids are reserved for services");
    }
    auto roles = at_path(claims->raw, provider.roles_claim);
    if (!roles) return roles.status();
    if (*roles != nullptr) {
      if (!(*roles)->is_array()) return unauthenticated(provider.roles_claim + " is not an array");
      for (const json& role : **roles) {
        if (!role.is_string()) {
          return unauthenticated(provider.roles_claim + " is not an array of strings");
        }
        id.provider_roles.push_back(role.get<std::string>());
      }
    }
  } catch (const std::exception&) {
    return unauthenticated("malformed claims");
  }
  id.claims = std::move(claims).value();
  return id;
}

std::vector<std::string> granted_roles(const std::vector<std::string>& provider_roles,
                                       bool listed_admin) {
  const bool says_admin =
      std::find(provider_roles.begin(), provider_roles.end(), "admin") != provider_roles.end();
  if (says_admin && listed_admin) return {"admin"};
  return {"user"};
}

Result<jwt::KeySet> parse_jwks(std::string_view json_text) {
  auto keys = jwt::KeySet::from_jwks(json_text);  // HS256 refused: allow_hs256 defaults to false
  if (!keys) return invalid_argument(keys.status().message());
  return keys;
}

Result<jwt::KeySet> load_jwks_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid_argument("cannot read '" + path + "': " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  auto keys = parse_jwks(text.str());
  if (!keys) return invalid_argument("'" + path + "': " + keys.status().message());
  return keys;
}

FileWatch::Stamp FileWatch::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return {};
  return {true, static_cast<uint64_t>(st.st_ino), static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

void FileWatch::mark_read() { read_ = stamp(); }

bool FileWatch::changed() const { return !(stamp() == read_); }

}  // namespace chat::oidc
