#include "chat/api/service.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "chat/api/key_directory.h"
#include "chat/api/log.h"
#include "chat/api/media.h"
#include "chat/api/secrets.h"
#include "chat/common/ids.h"
#include "chat/common/log_fields.h"
#include "chat/common/oidc.h"
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

// A client-supplied value quoted in an error message, cut short when long.
std::string quote_value(std::string_view value) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  out += value.substr(0, kMax);
  if (value.size() > kMax) out += "...";
  out += '"';
  return out;
}

Status check_user_id(const char* what, std::string_view user) {
  if (is_valid_user_id(user)) return Status::ok();
  return invalid_argument(std::string(what) + " " + quote_value(user) +
                          " is not a user id (^[a-z0-9][a-z0-9_.-]{0,31}$)");
}

Status check_group_id(std::string_view gid) {
  if (is_valid_group_id(gid)) return Status::ok();
  return invalid_argument("not a group id (^[A-Za-z0-9_-]{1,64}$)");
}

// C0 controls and DEL (UTF-8 multi-byte sequences never contain these bytes).
bool has_control_chars(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// A group as the broker's reply carries it: {"id","name","members","admins","created_ms"}.
Result<Group> group_from_json(const nlohmann::json& j) {
  const auto malformed = [] { return internal_error("the broker's reply carries no valid group"); };
  if (!j.is_object()) return malformed();
  Group g;
  auto id = j.find("id");
  auto name = j.find("name");
  if (id == j.end() || !id->is_string() || name == j.end() || !name->is_string()) {
    return malformed();
  }
  g.id = id->get<std::string>();
  g.name = name->get<std::string>();
  if (!is_valid_group_id(g.id)) return malformed();
  for (auto [field, out] : {std::pair{"members", &g.members}, std::pair{"admins", &g.admins}}) {
    auto it = j.find(field);
    if (it == j.end()) continue;
    if (!it->is_array()) return malformed();
    for (const auto& v : *it) {
      if (!v.is_string()) return malformed();
      out->push_back(v.get<std::string>());
    }
    std::sort(out->begin(), out->end());
  }
  auto creator = j.find("creator");
  if (creator != j.end() && creator->is_string()) g.creator = creator->get<std::string>();
  auto created = j.find("created_ms");
  if (created != j.end() && created->is_number_integer()) g.created_ms = created->get<int64_t>();
  return g;
}

// Report ids: 12 hex digits of milliseconds, then 8 random hex digits, so
// they sort by creation time (to the millisecond) and never collide in practice.
std::string make_report_id(int64_t now_ms) {
  char ms[24];
  std::snprintf(ms, sizeof ms, "%012" PRIx64, static_cast<uint64_t>(std::max<int64_t>(0, now_ms)));
  return std::string(ms) + random_hex(4);
}

}  // namespace

bool is_deleted_account(const store::Account& account) {
  return contains(account.roles, std::string(kDeletedRole));
}

bool is_banned_account(const store::Account& account) {
  return contains(account.roles, std::string(kBannedRole));
}

bool is_external_account(const store::Account& account) {
  return contains(account.roles, std::string(kExternalRole));
}

bool is_pending_account(const store::Account& account) {
  return contains(account.roles, std::string(kPendingRole));
}

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
  auto principal = tokens_.verify(access_token);
  if (!principal) return principal;
  // Revoked by an admin (POST /v1/admin/tokens/{jti}/revoke).
  if (!principal->jti.empty()) {
    auto revoked = accounts_.is_revoked(principal->jti);
    if (!revoked) return revoked.status();
    if (*revoked) return unauthenticated("the access token was revoked");
  }
  // Access tokens outlive nothing but a deleted account: its tombstone ends them.
  auto account = accounts_.get_account(principal->user);
  if (account) {
    if (is_deleted_account(*account)) return unauthenticated("the account was deleted");
    if (is_banned_account(*account)) return unauthenticated("the account is banned");
    // A user id belongs to one origin: neither issuer speaks for the other's users.
    if (is_external_account(*account) != principal->external) {
      return unauthenticated(principal->external
                                 ? "this user id is a local account, not the identity provider's"
                                 : "this is an external account: sign in with the identity "
                                   "provider");
    }
    // An external account is its provider subject's, whoever holds the user
    // claim's value now (OIDC Core §5.7). Not bound yet (a CHAT_ADMINS
    // account nobody signed in to): bound now. Not confirmed by the broker
    // yet (another request is provisioning it, or one was cut short): its
    // outcome is awaited, or the provisioning finished.
    if (principal->external &&
        (is_pending_account(*account) || account->external_sub != principal->external_sub)) {
      if (!is_pending_account(*account) && !account->external_sub.empty()) {
        return refuse_other_subject(principal->user, account->external_sub,
                                    principal->external_sub);
      }
      if (Status s = provision_external(principal->user, principal->external_sub); !s.is_ok()) {
        return s;
      }
    }
  } else if (account.status().code() != StatusCode::kNotFound) {
    return account.status();
  } else if (principal->external) {
    if (Status s = provision_external(principal->user, principal->external_sub); !s.is_ok()) {
      return s;
    }
  }
  return principal;
}

Status Service::provision_external(const std::string& user, const std::string& sub) const {
  // The whole check-create-tell-rollback sequence: a concurrent first request
  // for the same user waits here, and then sees this one's outcome.
  std::lock_guard lock(provision_mu_);
  std::shared_lock gate(account_gate_);  // not halfway through a backup
  const auto local = [] {
    return unauthenticated("this user id is a local account, not the identity provider's");
  };
  // kCreate: a new record (pending until the broker confirms); kConfirm: a
  // pending record of an attempt cut short; kBind: an unbound CHAT_ADMINS one.
  enum class Step { kCreate, kConfirm, kBind } step = Step::kCreate;
  store::Account account;
  auto existing = accounts_.get_account(user);
  if (existing) {
    // Decided by an earlier request (possibly one this call waited for).
    if (is_deleted_account(*existing)) return unauthenticated("the account was deleted");
    if (!is_external_account(*existing)) return local();
    const bool pending = is_pending_account(*existing);
    if (!existing->external_sub.empty() && existing->external_sub != sub) {
      return refuse_other_subject(user, existing->external_sub, sub);
    }
    if (!existing->external_sub.empty() && !pending) return Status::ok();
    step = pending ? Step::kConfirm : Step::kBind;
    account = std::move(existing).value();
  } else if (existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  } else {
    account.user = user;  // no password_hash: the password grant never works for it
    account.roles = {std::string(kExternalRole), std::string(kPendingRole)};
    account.created_ms = clock_.now_ms();
    account.external_sub = sub;
    if (Status s = accounts_.create_account(account); !s.is_ok()) {
      // Created meanwhile by a sign-up (which takes no provisioning lock).
      return s.code() == StatusCode::kAlreadyExists ? local() : s;
    }
  }

  Status told = tell_broker_user_added(user, /*external=*/true, sub);
  if (!told.is_ok()) {
    logger().warn("account.rolled_back: user={} origin=external reason=broker_refused error={}",
                  log_value(user), log_value(told.to_string()));
    if (step != Step::kBind) {
      if (Status d = accounts_.delete_account(user); !d.is_ok()) {
        logger().error("account.rollback_failed: user={} origin=external error={}", log_value(user),
                       log_value(d.to_string()));
      }
    }
    if (told.code() == StatusCode::kPermissionDenied) {
      return unauthenticated(step == Step::kBind
                                 ? "the broker has this account bound to another subject of the "
                                   "identity provider"
                                 : "this user id is a local account, not the identity provider's");
    }
    return unavailable("the broker did not confirm the new account; try again");
  }
  // Confirmed: the record is final. Should this write fail, the next request
  // tries again and the broker answers the same.
  std::erase(account.roles, std::string(kPendingRole));
  account.external_sub = sub;
  if (Status s = accounts_.put_account(account); !s.is_ok()) return s;
  logger().info("{}: user={} origin=external sub={}",
                step == Step::kBind ? "account.bound" : "account.provisioned", log_value(user),
                log_value(sub));
  return Status::ok();
}

Status Service::refuse_other_subject(const std::string& user, const std::string& bound_sub,
                                     const std::string& token_sub) const {
  logger().warn(
      "account.refused: user={} origin=external reason=sub_mismatch bound_sub={} token_sub={}",
      log_value(user), log_value(bound_sub), log_value(token_sub));
  return unauthenticated(
      "this user id belongs to another subject of the identity provider (sub differs)");
}

bool Service::account_exists(std::string_view user) const {
  if (!is_valid_user_id(user)) return false;
  return accounts_.get_account(std::string(user)).is_ok();
}

Status Service::catch_up() {
  if (Status s = archive_.catch_up(); !s.is_ok()) return unavailable("archive: " + s.message());
  return Status::ok();
}

Status Service::tell_broker_user_added(const std::string& user, bool external,
                                       const std::string& sub) const {
  nlohmann::json request = {{"op", "user.add"}, {"user", user}};
  if (external) request["origin"] = std::string(oidc::kExternalOrigin);
  if (external && !sub.empty()) request["sub"] = sub;
  auto answer = control_.call(request, kControlTimeout);
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

  std::shared_lock gate(account_gate_);  // both steps below, not halfway through a backup
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
  if (Status s = tell_broker_user_added(account.user, /*external=*/false); !s.is_ok()) {
    logger().warn("account.rolled_back: user={} reason=broker_unconfirmed error={}",
                  log_value(account.user), log_value(s.to_string()));
    if (Status d = accounts_.delete_account(account.user); !d.is_ok()) {
      logger().error("account.rollback_failed: user={} origin=local error={}",
                     log_value(account.user), log_value(d.to_string()));
    }
    // The broker already knows the id as an external provider's user.
    if (s.code() == StatusCode::kPermissionDenied) return already_exists("user id is taken");
    return unavailable("the broker did not confirm the new account; try again");
  }
  logger().info("account.created: user={}", log_value(account.user));
  return account.user;
}

Result<TokenGrant> Service::issue(const std::string& user, const std::string& device) {
  TokenGrant grant;
  store::RefreshToken stored;
  grant.access_token = tokens_.mint(user, roles_for(user), config_.token_ttl_s, &stored.access_jti);
  grant.expires_in = config_.token_ttl_s;
  grant.refresh_token = random_token(kRefreshTokenBytes);
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
  if (is_deleted_account(*account) || is_external_account(*account)) {
    hasher_.verify_dummy(password);  // an external account has no password here
    return refused();
  }
  if (!hasher_.verify(account->password_hash, password)) return refused();
  if (is_banned_account(*account)) return unauthenticated("the account is banned");
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
  // Issued together with an access token an admin revoked: revoked too
  // (admin_revoke_token also deletes it; this closes the window before that).
  if (!stored->access_jti.empty()) {
    auto revoked = accounts_.is_revoked(stored->access_jti);
    if (!revoked) return revoked.status();
    if (*revoked) return refused();
  }
  auto account = accounts_.get_account(stored->user);
  if (!account) {
    if (account.status().code() == StatusCode::kNotFound) return refused();
    return account.status();
  }
  if (is_deleted_account(*account)) return refused();
  if (is_banned_account(*account)) {
    // Refused, not spent: the token works again once the user is unbanned.
    if (Status s = accounts_.put_refresh(sha256_hex(refresh_token), *stored); !s.is_ok()) {
      logger().warn("refresh.keep_failed: user={} banned=true error={}", log_value(stored->user),
                    log_value(s.to_string()));
    }
    return unauthenticated("the account is banned");
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
  if (is_deleted_account(*account)) return unauthenticated("the account was deleted");
  if (is_external_account(*account)) {
    return permission_denied(
        "an external account has no password here: the identity provider "
        "keeps it");
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
  logger().info("password.changed: user={} refresh_tokens=revoked", log_value(caller.user));
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
  if (Status s = catch_up(); !s.is_ok()) return s;
  const std::string conv_id(conv);
  store::PageQuery pq;
  if (parsed.kind == topics::ConvKind::kGroup) {
    // Current and former members only, and only their membership periods.
    auto membership = archive_.membership(parsed.gid, caller.user);
    if (!membership) return membership.status();
    if (membership->periods.empty()) {
      return permission_denied("not a member of this group, now or before");
    }
    pq.visible = std::move(membership->periods);
  }

  size_t limit = std::max<size_t>(1, std::min(query.limit, kMaxPageLimit));
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

// ---- groups ------------------------------------------------------------------

Result<Group> Service::create_group(const Principal& caller, std::string_view name,
                                    const std::vector<std::string>& members) {
  const size_t chars = utf8_length(name);
  if (chars == 0 || chars > kMaxGroupNameChars) {
    return invalid_argument("name must have 1 to " + std::to_string(kMaxGroupNameChars) +
                            " characters");
  }
  if (has_control_chars(name)) return invalid_argument("name must not contain control characters");
  std::set<std::string> distinct;
  for (const std::string& member : members) {
    if (Status s = check_user_id("member", member); !s.is_ok()) return s;
    distinct.insert(member);
  }
  if (distinct.size() > kMaxGroupCreateMembers) {
    return invalid_argument("at most " + std::to_string(kMaxGroupCreateMembers) +
                            " distinct members");
  }
  // The broker makes `by` member and admin itself.
  distinct.erase(caller.user);
  const std::vector<std::string> listed(distinct.begin(), distinct.end());

  auto answer = control_.call({{"op", "group.create"},
                               {"name", std::string(name)},
                               {"members", listed},
                               {"by", caller.user}},
                              kControlTimeout);
  if (!answer) {
    if (answer.status().code() != StatusCode::kNotFound) return answer.status();
    // Name the user the broker does not know, when the archive tells.
    if (catch_up().is_ok()) {
      for (const std::string& member : listed) {
        auto exists = archive_.user_exists(member);
        if (exists && !*exists) return invalid_argument("no such user: " + member);
      }
    }
    return invalid_argument("unknown member: " + answer.status().message());
  }
  auto group = group_from_json(control_result(*answer));
  if (!group) {
    // Not the reply itself: it holds the group's name and members.
    logger().error("group.create.bad_reply: by={} error={}", log_value(caller.user),
                   log_value(group.status().message()));
    return group.status();
  }
  // The broker wrote the group before answering: answer what GET will show
  // (created_ms included), falling back to the reply.
  if (catch_up().is_ok()) {
    auto stored = archive_.group(group->id);
    if (stored && stored->has_value()) group = std::move(**stored);
  }
  logger().info("group.created: gid={} by={} members={}", log_value(group->id),
                log_value(caller.user), group->members.size());
  return group;
}

Result<std::vector<Group>> Service::groups(const Principal& caller) {
  if (Status s = catch_up(); !s.is_ok()) return s;
  auto ids = archive_.groups_of(caller.user);
  if (!ids) return ids.status();
  std::vector<Group> out;
  for (const std::string& gid : *ids) {
    auto group = archive_.group(gid);
    if (!group) return group.status();
    if (!group->has_value() || !contains((*group)->members, caller.user)) continue;
    out.push_back(std::move(**group));
  }
  return out;
}

Result<Group> Service::group(const Principal& caller, std::string_view gid) {
  if (Status s = check_group_id(gid); !s.is_ok()) return s;
  if (Status s = catch_up(); !s.is_ok()) return s;
  auto group = archive_.group(std::string(gid));
  if (!group) return group.status();
  if (!group->has_value()) return not_found("no such group");
  if (!contains((*group)->members, caller.user)) {
    return permission_denied("not a member of this group");
  }
  return std::move(**group);
}

Status Service::group_op(const char* op, const Principal& caller, std::string_view gid,
                         std::string_view user) {
  if (Status s = check_group_id(gid); !s.is_ok()) return s;
  if (Status s = check_user_id("user", user); !s.is_ok()) return s;
  auto answer = control_.call(
      {{"op", op}, {"gid", std::string(gid)}, {"user", std::string(user)}, {"by", caller.user}},
      kControlTimeout);
  if (!answer) return answer.status();
  logger().info("{}: gid={} user={} by={}", op, log_value(gid), log_value(user),
                log_value(caller.user));
  return Status::ok();
}

Status Service::add_member(const Principal& caller, std::string_view gid, std::string_view user) {
  return group_op("group.add", caller, gid, user);
}

Status Service::add_admin(const Principal& caller, std::string_view gid, std::string_view user) {
  return group_op("group.admin", caller, gid, user);
}

Status Service::remove_member(const Principal& caller, std::string_view gid,
                              std::string_view user) {
  return group_op("group.remove", caller, gid, user);
}

// ---- blocks, reports, account deletion ----------------------------------------

Status Service::set_block(const Principal& caller, std::string_view peer, bool blocked) {
  if (Status s = check_user_id("user", peer); !s.is_ok()) return s;
  if (peer == caller.user) return invalid_argument("you cannot block yourself");
  // The broker records blocks of any id; only existing users can be blocked
  // here, and a user who no longer exists can still be unblocked.
  if (Status s = catch_up(); !s.is_ok()) return s;
  const std::string peer_id(peer);
  auto exists = archive_.user_exists(peer_id);
  if (!exists) return exists.status();
  if (!*exists) {
    bool listed = false;
    if (!blocked) {
      auto is = archive_.is_blocked(caller.user, peer_id);
      if (!is) return is.status();
      listed = *is;
    }
    if (!listed) return not_found("no such user");
  }
  auto answer = control_.call({{"op", "block.set"},
                               {"user", caller.user},
                               {"peer", std::string(peer)},
                               {"blocked", blocked}},
                              kControlTimeout);
  if (!answer) {
    if (answer.status().code() == StatusCode::kNotFound) return not_found("no such user");
    return answer.status();
  }
  return Status::ok();
}

Result<std::vector<std::string>> Service::blocks(const Principal& caller) {
  if (Status s = catch_up(); !s.is_ok()) return s;
  auto blocked = archive_.blocked_by(caller.user);
  if (!blocked) return blocked.status();
  std::sort(blocked->begin(), blocked->end());
  return blocked;
}

Result<std::string> Service::report(const Principal& caller, const ReportInput& input) {
  if (Status s = check_user_id("user", input.user); !s.is_ok()) return s;
  if (input.user == caller.user) return invalid_argument("you cannot report yourself");
  if (input.ids.empty() || input.ids.size() > kMaxReportIds) {
    return invalid_argument("ids must list 1 to " + std::to_string(kMaxReportIds) + " message ids");
  }
  store::Report report;
  std::set<std::string> seen;
  for (const std::string& id : input.ids) {
    if (!is_valid_message_id(id)) {
      return invalid_argument("ids: " + quote_value(id) + " is not a message id");
    }
    if (seen.insert(id).second) report.ids.push_back(id);
  }
  const size_t chars = utf8_length(input.reason);
  if (chars == 0 || chars > kMaxReportReasonChars) {
    return invalid_argument("reason must have 1 to " + std::to_string(kMaxReportReasonChars) +
                            " characters");
  }
  report.reporter = caller.user;
  report.user = input.user;
  report.reason = input.reason;
  report.created_ms = clock_.now_ms();
  Status s;
  for (int attempt = 0; attempt < 3; ++attempt) {  // a taken id (same ms, same random) is retried
    report.id = make_report_id(report.created_ms);
    s = accounts_.put_report(report);
    if (s.code() != StatusCode::kAlreadyExists) break;
  }
  if (!s.is_ok()) return s;
  logger().info("report.created: id={} reporter={} user={} messages={}", log_value(report.id),
                log_value(report.reporter), log_value(report.user), report.ids.size());
  return report.id;
}

Status Service::delete_account(const Principal& caller) {
  if (config_.is_admin(caller.user)) {
    return permission_denied("a CHAT_ADMINS account cannot be deleted (it is recreated at start)");
  }
  auto account = accounts_.get_account(caller.user);
  if (!account) {
    if (account.status().code() == StatusCode::kNotFound) {
      return unauthenticated("the account no longer exists");
    }
    return account.status();
  }
  if (is_deleted_account(*account)) return unauthenticated("the account was deleted");

  // Every step below, not halfway through a backup (service.h: deletion gate first).
  std::shared_lock deletion_gate(deletion_gate_);
  std::shared_lock gate(account_gate_);
  // The broker first: once it forgets the user, nobody can message them and
  // their connections are closed. Not found: an earlier attempt got that far.
  auto answer = control_.call({{"op", "user.remove"}, {"user", caller.user}}, kControlTimeout);
  if (!answer && answer.status().code() != StatusCode::kNotFound) return answer.status();
  if (media_ != nullptr) {
    if (Status s = media_->delete_user_media(caller.user); !s.is_ok()) return s;
  }

  store::Account tombstone;
  tombstone.user = caller.user;
  tombstone.roles = {std::string(kDeletedRole)};
  tombstone.created_ms = account->created_ms;
  if (Status s = accounts_.put_account(tombstone); !s.is_ok()) return s;
  if (Status s = accounts_.revoke_all_refresh(caller.user); !s.is_ok()) return s;
  // The key directory last, once the account is gone (archive and
  // tombstone): an upload racing with it either finished first and is
  // removed here, or finds no user (KeyDirectory::upload). Should it fail,
  // the devices are left over but unreachable (claims and device lists of
  // a user who does not exist answer 404).
  if (keys_ != nullptr) {
    if (Status s = keys_->forget_user(caller.user); !s.is_ok()) {
      logger().error("account.keys_not_removed: user={} error={}", log_value(caller.user),
                     log_value(s.to_string()));
    }
  }
  logger().info("account.deleted: user={}", log_value(caller.user));
  return Status::ok();
}

Health Service::health() {
  Health h;
  Status s = archive_.catch_up();
  h.archive_ok = s.is_ok();
  if (!s.is_ok()) h.archive_error = s.to_string();
  h.broker_ok = control_.connected();
  if (h.broker_ok) {
    if (auto stats = control_.broker_stats()) {
      const auto archive = stats->stats.find("archive");
      if (archive != stats->stats.end() && archive->is_object()) {
        const auto writable = archive->find("writable");
        if (writable != archive->end() && writable->is_boolean()) {
          h.archive_writable = writable->get<bool>();
        }
      }
    }
  }
  if (bridge_probe_) h.bridge_ok = bridge_probe_();
  return h;
}

Status ensure_admin_accounts(const Config& config, store::AccountStore& accounts,
                             const PasswordHasher& hasher, const Clock& clock) {
  for (const std::string& admin : config.admins) {
    auto existing = accounts.get_account(admin);
    if (existing) continue;
    if (existing.status().code() != StatusCode::kNotFound) return existing.status();
    // With an external provider and no CHAT_ADMIN_PASSWORD, admins sign in at
    // the provider: their accounts are external ones (docs/oidc.md).
    if (config.oidc.enabled() && config.admin_password.empty()) {
      store::Account account;
      account.user = admin;
      account.roles = {std::string(kExternalRole)};
      account.created_ms = clock.now_ms();
      Status s = accounts.create_account(account);
      if (s.code() == StatusCode::kAlreadyExists) continue;
      if (!s.is_ok()) return s;
      logger().info("admin.created: user={} origin=external", log_value(admin));
      continue;
    }
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
    logger().info("admin.created: user={} origin=local", log_value(admin));
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
    auto account = accounts_.get_account(admin);
    const bool external = account && is_external_account(*account);
    Status s = tell_broker_user_added(admin, external, external ? account->external_sub : "");
    if (!s.is_ok()) {
      logger().warn("admin.unconfirmed: user={} error={}", log_value(admin),
                    log_value(s.to_string()));
      if (first.is_ok()) first = s;
    }
  }
  return first;
}

}  // namespace chat::api
