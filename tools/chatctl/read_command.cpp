// `chatctl read CONV` and `chatctl typing CONV`.
//
// read: the latest page of the conversation, then one "read" receipt for the
// unread messages from others in it (at least the newest one), published at
// QoS 1 on a short-lived connection: dm/<peer>/receipt, or g/<gid>/receipt
// (the server passes it on to each message's sender).
// typing: one {"state":"composing"} at QoS 0.
#include <chrono>
#include <string>

#include "chat/common/topics.h"
#include "chatctl/commands.h"
#include "chatctl/json_access.h"
#include "chatctl/output.h"
#include "chatctl/receipts.h"

namespace chat::tools {
namespace {

constexpr auto kPublishTimeout = std::chrono::seconds(10);

int usage_failure(Output& out, const std::string& message) {
  out.error("usage", message + " (see `chatctl help`)");
  return kExitUsage;
}

// CONV as typed: a user id, g:<gid>, or a conversation id dm:<a>:<b> I am in.
Result<std::string> conversation_argument(std::string_view me, std::string_view arg) {
  if (arg.rfind("dm:", 0) == 0) {
    auto parsed = topics::parse_conversation(arg);
    if (parsed.kind != topics::ConvKind::kDirect || (parsed.a != me && parsed.b != me)) {
      return invalid_argument("'" + std::string(arg) + "' is not a conversation of " +
                              std::string(me));
    }
    return std::string(arg);
  }
  if (arg == me) return invalid_argument("that is you: name the other person");
  return conversation_for(me, arg);
}

// The sending side of this profile: its own client id, so a running `listen`
// keeps its session.
Result<std::string> tx_device(Context& ctx, Credentials& credentials) {
  auto profile = credentials.fresh();
  if (!profile) return profile.status();
  auto device = active_device(ctx, *profile);
  if (!device) return device.status();
  return device->substr(0, 61) + "-tx";
}

// The unread count GET /v1/conversations gives for `conv` (0 when absent).
Result<int64_t> unread_count(Context& ctx, Credentials& credentials, const std::string& conv) {
  auto response = authed_get(ctx, credentials, "/v1/conversations?limit=500");
  if (!response) return response.status();
  if (!response->ok()) return status_from_response(*response);
  const auto& list = json_field(response->json, "conversations");
  if (list.is_array()) {
    for (const auto& c : list) {
      if (json_string(c, "conv") == conv) return json_int(c, "unread", 0);
    }
  }
  return int64_t{0};
}

}  // namespace

int run_read(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  auto conv = conversation_argument(*user, ctx.command_line.args.at(0));
  if (!conv) return usage_failure(ctx.out, conv.status().message());
  auto topic = receipt_topic_for(*user, *conv);
  if (!topic) return usage_failure(ctx.out, topic.status().message());

  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto unread = unread_count(ctx, credentials, *conv);
  if (!unread) return fail(ctx, unread.status());

  std::string path = "/v1/conversations/" + *conv + "/messages";
  if (ctx.command_line.limit) path += "?limit=" + std::to_string(*ctx.command_line.limit);
  auto response = authed_get(ctx, credentials, path);
  if (!response) return fail(ctx, response.status());
  if (response->status == 403) {
    ctx.out.error("permission_denied", *user + " is not a participant of " + *conv);
    return kExitFailure;
  }
  if (!response->ok()) return fail(ctx, status_from_response(*response));
  const auto& messages = json_field(response->json, "messages");
  if (!messages.is_array()) {
    return fail(ctx, internal_error("unexpected answer to GET " + path + ": no \"messages\" list"));
  }

  auto ids = ids_to_mark_read(messages, *user, *unread);
  if (ids.empty()) {
    if (ctx.out.json()) {
      ctx.out.json_line({{"conv", *conv}, {"ids", nlohmann::json::array()}, {"status", "read"}});
    } else {
      ctx.out.line("nothing to mark in " + *conv + ": no messages from others");
    }
    return kExitOk;
  }

  auto device = tx_device(ctx, credentials);
  if (!device) return fail(ctx, device.status());
  StopSignal stop;
  Status s = publish_once(ctx, credentials, *device, *topic, receipt_payload(ids, "read"), 1,
                          kPublishTimeout);
  if (!s.is_ok()) {
    ctx.out.error(status_code_name(s.code()),
                  "read receipt for " + *conv + " not sent: " + s.message());
    return kExitFailure;
  }
  if (ctx.out.json()) {
    ctx.out.json_line({{"conv", *conv}, {"ids", ids}, {"status", "read"}});
  } else {
    ctx.out.line("marked " + std::to_string(ids.size()) +
                 (ids.size() == 1 ? " message" : " messages") + " as read in " + *conv +
                 " (newest " + ids.back() + ")");
  }
  return kExitOk;
}

int run_typing(Context& ctx) {
  auto user = active_user(ctx);
  if (!user) return fail(ctx, user.status());
  const std::string& peer = ctx.command_line.args.at(0);
  if (peer == *user) return usage_failure(ctx.out, "that is you: name the other person");
  auto base = send_topic_for(peer);
  if (!base) return usage_failure(ctx.out, base.status().message());

  Credentials credentials(ctx.store, ctx.api, ctx.clock, *user);
  auto device = tx_device(ctx, credentials);
  if (!device) return fail(ctx, device.status());
  StopSignal stop;
  Status s = publish_once(ctx, credentials, *device, *base + "/typing",
                          dump_json({{"state", "composing"}}), 0, kPublishTimeout);
  if (!s.is_ok()) {
    ctx.out.error(status_code_name(s.code()), "typing to " + peer + " not sent: " + s.message());
    return kExitFailure;
  }
  if (ctx.out.json()) {
    ctx.out.json_line({{"to", peer}, {"state", "composing"}});
  } else {
    ctx.out.line("told " + peer + " you are typing");
  }
  return kExitOk;
}

}  // namespace chat::tools
