#include "chat/api/service.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "chat/api/log.h"
#include "chat/api/secrets.h"
#include "chat/common/ids.h"
#include "chat/common/topics.h"

namespace chat::api {
namespace {

constexpr size_t kRefreshTokenBytes = 32;
// Longer inputs cannot be ours; refuse them before hashing anything.
constexpr size_t kMaxPasswordBytes = 4 * kMaxPasswordChars;
constexpr size_t kMaxRefreshTokenBytes = 256;

bool is_reserved_prefix(std::string_view user) { return user.substr(0, 4) == "svc."; }

// The "id" of an archived envelope.
Result<std::string> envelope_id(const std::string& envelope) {
  auto j = nlohmann::json::parse(envelope, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto it = j.find("id");
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return internal_error("archived envelope without an id");
}

Status check_cursor(const char* name, const std::string& id) {
  if (id.empty() || is_valid_message_id(id)) return Status::ok();
  return invalid_argument(std::string(name) + " is not a message id");
}

}  // namespace

const char* grant_error_name(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return "invalid_request";
    case StatusCode::kUnauthenticated:
      return "invalid_grant";
    default:
      return nullptr;
  }
}

Service::Service(const Config& config, store::AccountStore& accounts, store::ArchiveReader& archive,
                 ControlChannel& control, const TokenIssuer& tokens, const PasswordHasher& hasher,
                 const Clock& clock)
    : config_(config),
      accounts_(accounts),
      archive_(archive),
      control_(control),
      tokens_(tokens),
      hasher_(hasher),
      clock_(clock) {}

std::vector<std::string> Service::roles_for(std::string_view user) const {
  if (config_.is_admin(user)) return {"admin"};
  return {"user"};
}

std::string Service::mint_service_token() const {
  return tokens_.mint(kServiceUser, {"service"}, kServiceTokenTtlS);
}

Result<Principal> Service::authenticate(std::string_view access_token) const {
  return tokens_.verify(access_token);
}

Status Service::tell_broker_user_added(const std::string& user) {
  auto answer = control_.call({{"op", "user.add"}, {"user", user}}, kControlTimeout);
  // Already known to the broker (an earlier attempt whose answer we missed) is fine.
  if (answer || answer.status().code() == StatusCode::kAlreadyExists) return Status::ok();
  return answer.status();
}

Result<std::string> Service::create_user(const std::optional<Principal>& caller,
                                         std::string_view user, std::string_view password) {
  if (config_.signup == SignupPolicy::kClosed && !(caller && caller->has_role("admin"))) {
    return permission_denied("signup is closed: only an admin can create accounts");
  }
  if (!is_valid_user_id(user)) {
    return invalid_argument("user must match ^[a-z0-9][a-z0-9_.-]{0,31}$");
  }
  if (Status s = check_password_rules(password); !s.is_ok()) return s;
  if (config_.is_admin(user) || is_reserved_prefix(user)) {
    return permission_denied("this user id is reserved");
  }

  auto hash = hasher_.hash(password);
  if (!hash) return hash.status();
  store::Account account;
  account.user = std::string(user);
  account.password_hash = std::move(hash).value();
  account.roles = roles_for(user);
  account.created_ms = clock_.now_ms();
  if (Status s = accounts_.create_account(account); !s.is_ok()) {
    if (s.code() == StatusCode::kAlreadyExists) return already_exists("user id is taken");
    return s;
  }

  // The broker must know the user before anyone may message them; answer
  // 201 only once it does.
  if (Status s = tell_broker_user_added(account.user); !s.is_ok()) {
    logger().warn("signup of {} rolled back: broker did not confirm user.add: {}", account.user,
                  s.to_string());
    if (Status d = accounts_.delete_account(account.user); !d.is_ok()) {
      logger().error("rollback of account {} failed: {}", account.user, d.to_string());
    }
    return unavailable("the broker did not confirm the new account; try again");
  }
  logger().info("account {} created", account.user);
  return account.user;
}

Result<TokenGrant> Service::issue(const std::string& user, const std::string& device) {
  TokenGrant grant;
  grant.access_token = tokens_.mint(user, roles_for(user), config_.token_ttl_s);
  grant.expires_in = config_.token_ttl_s;
  grant.refresh_token = random_token(kRefreshTokenBytes);
  store::RefreshToken stored;
  stored.user = user;
  stored.device = device;
  stored.expires_ms = clock_.now_ms() + config_.refresh_ttl_s * 1000;
  if (Status s = accounts_.put_refresh(sha256_hex(grant.refresh_token), stored); !s.is_ok()) {
    return s;
  }
  return grant;
}

Result<TokenGrant> Service::password_grant(std::string_view user, std::string_view password,
                                           std::string_view device) {
  if (user.empty() || password.empty()) return invalid_argument("username and password required");
  if (!device.empty() && !is_valid_device_id(device)) {
    return invalid_argument("device must match ^[A-Za-z0-9_-]{1,64}$");
  }
  const auto refused = [] { return unauthenticated("wrong username or password"); };
  if (!is_valid_user_id(user) || is_reserved_prefix(user) || password.size() > kMaxPasswordBytes) {
    return refused();
  }
  auto account = accounts_.get_account(std::string(user));
  if (!account) {
    if (account.status().code() != StatusCode::kNotFound) return account.status();
    hasher_.verify_dummy(password);
    return refused();
  }
  if (!hasher_.verify(account->password_hash, password)) return refused();
  return issue(account->user, std::string(device));
}

Result<TokenGrant> Service::refresh_grant(std::string_view refresh_token) {
  if (refresh_token.empty()) return invalid_argument("refresh_token required");
  const auto refused = [] {
    return unauthenticated("refresh token is unknown, expired, revoked or already used");
  };
  if (refresh_token.size() > kMaxRefreshTokenBytes) return refused();
  // Taking it is the rotation: this token never works again.
  auto stored = accounts_.take_refresh(sha256_hex(refresh_token));
  if (!stored) {
    if (stored.status().code() == StatusCode::kNotFound) return refused();
    return stored.status();
  }
  if (stored->expires_ms <= clock_.now_ms()) return refused();
  auto account = accounts_.get_account(stored->user);
  if (!account) {
    if (account.status().code() == StatusCode::kNotFound) return refused();
    return account.status();
  }
  return issue(stored->user, stored->device);
}

Status Service::revoke(std::string_view refresh_token) {
  if (refresh_token.empty()) return invalid_argument("token required");
  if (refresh_token.size() > kMaxRefreshTokenBytes) return Status::ok();
  Status s = accounts_.revoke_refresh(sha256_hex(refresh_token));
  if (s.code() == StatusCode::kNotFound) return Status::ok();
  return s;
}

Status Service::change_password(const Principal& caller, std::string_view old_password,
                                std::string_view new_password) {
  if (Status s = check_password_rules(new_password); !s.is_ok()) return s;
  auto account = accounts_.get_account(caller.user);
  if (!account) {
    if (account.status().code() == StatusCode::kNotFound) {
      return unauthenticated("the account no longer exists");
    }
    return account.status();
  }
  if (old_password.size() > kMaxPasswordBytes ||
      !hasher_.verify(account->password_hash, old_password)) {
    return permission_denied("old_password is wrong");
  }
  auto hash = hasher_.hash(new_password);
  if (!hash) return hash.status();
  account->password_hash = std::move(hash).value();
  if (Status s = accounts_.put_account(*account); !s.is_ok()) return s;
  if (Status s = accounts_.revoke_all_refresh(caller.user); !s.is_ok()) return s;
  logger().info("password of {} changed; refresh tokens revoked", caller.user);
  return Status::ok();
}

Result<std::vector<store::ConversationSummary>> Service::conversations(const Principal& caller,
                                                                       size_t limit) {
  if (Status s = archive_.catch_up(); !s.is_ok()) return unavailable("archive: " + s.message());
  return archive_.conversations(caller.user, limit);
}

Result<MessagePage> Service::messages(const Principal& caller, std::string_view conv,
                                      const HistoryQuery& query) {
  topics::Conversation parsed = topics::parse_conversation(conv);
  if (parsed.kind == topics::ConvKind::kInvalid) {
    return invalid_argument("not a conversation id (dm:<a>:<b> with a < b, or g:<gid>)");
  }
  if (Status s = check_cursor("before", query.before); !s.is_ok()) return s;
  if (Status s = check_cursor("after", query.after); !s.is_ok()) return s;
  if (!query.before.empty() && !query.after.empty()) {
    return invalid_argument("pass before or after, not both");
  }
  if (parsed.kind == topics::ConvKind::kDirect && caller.user != parsed.a &&
      caller.user != parsed.b) {
    return permission_denied("not a participant of this conversation");
  }
  if (Status s = archive_.catch_up(); !s.is_ok()) return unavailable("archive: " + s.message());
  const std::string conv_id(conv);
  if (parsed.kind == topics::ConvKind::kGroup) {
    // Until group membership is served here, a group's history is open to
    // those whose conversation list holds it.
    auto has = archive_.has_conversation(caller.user, conv_id);
    if (!has) return has.status();
    if (!*has) return permission_denied("not a participant of this conversation");
  }

  size_t limit = std::max<size_t>(1, std::min(query.limit, kMaxPageLimit));
  store::PageQuery pq;
  pq.limit = limit + 1;  // one more tells whether another page exists
  pq.before = query.before;
  pq.after = query.after;
  auto page = archive_.conversation_page(conv_id, pq);
  if (!page) return page.status();

  const bool forward = !query.after.empty();
  MessagePage out;
  out.envelopes = std::move(page->envelopes);
  if (out.envelopes.size() > limit) {
    out.has_more = true;
    // Keep the `limit` messages nearest the cursor.
    if (forward)
      out.envelopes.pop_back();
    else
      out.envelopes.erase(out.envelopes.begin());
  }
  if (out.has_more) {
    auto id = envelope_id(forward ? out.envelopes.back() : out.envelopes.front());
    if (!id) return id.status();
    out.next = std::move(id).value();
  }
  return out;
}

Result<MessagePage> Service::sync(const Principal& caller, std::string_view since, size_t limit) {
  const std::string since_id(since);
  if (Status s = check_cursor("since", since_id); !s.is_ok()) return s;
  limit = std::max<size_t>(1, std::min(limit, kMaxPageLimit));
  if (Status s = archive_.catch_up(); !s.is_ok()) return unavailable("archive: " + s.message());
  auto page = archive_.sync(caller.user, since_id, limit + 1);
  if (!page) return page.status();
  MessagePage out;
  out.envelopes = std::move(page->envelopes);
  if (out.envelopes.size() > limit) {
    out.has_more = true;
    out.envelopes.pop_back();
  }
  if (!out.envelopes.empty()) {
    auto id = envelope_id(out.envelopes.back());
    if (!id) return id.status();
    out.next = std::move(id).value();
  }
  return out;
}

Health Service::health() {
  Health h;
  Status s = archive_.catch_up();
  h.archive_ok = s.is_ok();
  if (!s.is_ok()) h.archive_error = s.to_string();
  h.broker_ok = control_.connected();
  return h;
}

Status ensure_admin_accounts(const Config& config, store::AccountStore& accounts,
                             const PasswordHasher& hasher, const Clock& clock) {
  for (const std::string& admin : config.admins) {
    auto existing = accounts.get_account(admin);
    if (existing) continue;
    if (existing.status().code() != StatusCode::kNotFound) return existing.status();
    const bool random = config.admin_password.empty();
    std::string password = random ? random_token(18) : config.admin_password;
    auto hash = hasher.hash(password);
    if (!hash) return hash.status();
    store::Account account;
    account.user = admin;
    account.password_hash = std::move(hash).value();
    account.roles = {"admin"};
    account.created_ms = clock.now_ms();
    Status s = accounts.create_account(account);
    if (s.code() == StatusCode::kAlreadyExists) continue;
    if (!s.is_ok()) return s;
    logger().info("admin account {} created", admin);
    if (random) {
      // Printed once, to stdout only; never logged.
      std::printf("chat-api: admin account '%s' created with password: %s\n", admin.c_str(),
                  password.c_str());
      std::fflush(stdout);
    }
  }
  return Status::ok();
}

Status Service::announce_admins() {
  Status first;
  for (const std::string& admin : config_.admins) {
    Status s = tell_broker_user_added(admin);
    if (!s.is_ok()) {
      logger().warn("broker did not confirm admin {}: {}", admin, s.to_string());
      if (first.is_ok()) first = s;
    }
  }
  return first;
}

}  // namespace chat::api
