// How chatctl shows what the platform sends: one line per message, receipt,
// typing signal, event or conversation. Pure functions of their input (local
// time zone aside), so tests pin the format.
//
// Everything shown comes from other users or the network: control characters
// are escaped (\n, \t, \x1b...) so a message cannot move the cursor, clear the
// screen or fake another line.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace chat::tools {

// "HH:MM:SS", or "YYYY-MM-DD HH:MM:SS" with_date, in the local time zone.
std::string format_clock(int64_t ts_ms, bool with_date);

// Escapes C0/C1 control characters and DEL; keeps the rest of valid UTF-8.
std::string sanitize_for_terminal(std::string_view text);

// The readable part of a message body: a text body as is; other types
// prefixed with the type in brackets ("[media] ...", "[edit] ...").
std::string format_body(std::string_view type, const nlohmann::json& body);

// An envelope: "[HH:MM:SS] alice -> bob: hello"; for a group conversation the
// conversation id follows the time: "[HH:MM:SS] [g:team] alice -> g:team: hi".
std::string format_message_line(const nlohmann::json& envelope, bool with_date = false);

// u/<me>/receipt: "[HH:MM:SS] bob read 2 messages in dm:alice:bob" ("received"
// for delivered). The time is the receipt's ts (now_ms without one).
std::string format_receipt_line(const nlohmann::json& receipt, int64_t now_ms);
// u/<me>/typing: "[HH:MM:SS] bob is typing…" (plus " in g:<gid>" for a
// group); "" for any other state (paused is not shown).
std::string format_typing_line(const nlohmann::json& typing, int64_t now_ms);
// u/<me>/event. Group events: "[HH:MM:SS] alice added carol to Climbing
// (g:Gx7)", "... alice created Climbing (g:Gx7)", "... alice removed carol
// from Climbing (g:Gx7)", "... carol left Climbing (g:Gx7)", "... alice made
// carol an admin of Climbing (g:Gx7)". Errors: "[HH:MM:SS] ! error
// rate_limited: slow down (cid ...)". Others: "[HH:MM:SS] event <type>: {...}".
std::string format_event_line(const nlohmann::json& event, int64_t now_ms);
// presence/<user>: "[HH:MM:SS] bob is online" or "[HH:MM:SS] bob was last
// seen HH:MM" (the offline status's ts; with the date when not today).
std::string format_presence_line(std::string_view user, const nlohmann::json& presence,
                                 int64_t now_ms);

// A group of GET /v1/groups: "g:Gx7  Climbing  (3 members, admin)" ("admin"
// when `me` is one of its admins).
std::string format_group_line(const nlohmann::json& group, std::string_view me);
// GET /v1/groups/{gid}: the group line, then one line per member:
// "  alice (admin)".
std::string format_group_details(const nlohmann::json& group, std::string_view me);

// One entry of GET /v1/conversations:
// "dm:alice:bob  2 unread  [YYYY-MM-DD HH:MM:SS] alice -> bob: hi".
std::string format_conversation_line(const nlohmann::json& conversation);

// An HTTP error answer for people: the server's {"error","message"} when
// present, e.g. "the user id is taken (user_exists, HTTP 409)"; otherwise the
// status and a short, sanitized piece of the body.
std::string format_http_error(int status, std::string_view body);

}  // namespace chat::tools
