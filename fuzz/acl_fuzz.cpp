// Fuzzes topic parsing (common/topics.h, common/ids.h) and the broker's ACL
// decision (broker-plugins Gatekeeper: authenticate + allowed), the pure
// logic behind the plugin's BASIC_AUTH and ACL_CHECK callbacks.
//
// Sessions, with fixed keys and a fixed clock: alice:phone (a device), and
// svc.api:main (the service role). bob shares a conversation with alice.
//
// Invariants: no exception escapes; what alice may subscribe to, read or
// write is exactly her own inbox, presence of a single valid user id, or a
// send topic of the contract, never a wildcard and never another user's
// inbox; the service role is confined to the control topics; a connection
// without a session reads only its own client id's inbox; a CONNECT with
// alice's token only ever opens an alice:<device> session; every topic and
// conversation id that parses is rebuilt byte for byte by its builder.
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "chat/broker/gatekeeper.h"
#include "chat/common/ids.h"
#include "chat/common/topics.h"
#include "fuzz_check.h"

using nlohmann::json;
namespace jwt = chat::jwt;
namespace topics = chat::topics;
using chat::broker::Access;
using chat::broker::Gatekeeper;

namespace {

const std::string kSecret = "fuzz-secret-fuzz-secret-fuzz-sec";
const int kAlice = 1, kService = 2, kNobody = 3, kScratch = 4;  // connection handles

std::string mint(const std::string& sub, const json& roles) {
  json claims{{"sub", sub},           {"iss", "chat-platform"}, {"aud", "chat"},
              {"iat", 1'700'000'000}, {"exp", 1'700'003'600},   {"jti", "j-" + sub},
              {"roles", roles}};
  std::string input = jwt::base64url_encode(R"({"alg":"HS256","typ":"JWT","kid":"fuzz"})") + "." +
                      jwt::base64url_encode(claims.dump());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + jwt::base64url_encode(std::string(reinterpret_cast<char*>(mac), len));
}

struct State {
  chat::FakeClock clock{1'700'000'000'000};
  std::string alice_token = mint("alice", json::array());
  std::unique_ptr<Gatekeeper> gate;
};

State& state() {
  static State* s = [] {
    auto* st = new State;
    jwt::KeySetOptions hs;
    hs.allow_hs256 = true;
    json jwk{
        {"kty", "oct"}, {"kid", "fuzz"}, {"alg", "HS256"}, {"k", jwt::base64url_encode(kSecret)}};
    auto keys = jwt::KeySet::from_jwks(jwk.dump(), hs);
    FUZZ_CHECK(keys.is_ok());
    jwt::VerifyOptions verify;
    verify.issuer = "chat-platform";
    verify.audience = "chat";
    st->gate = std::make_unique<Gatekeeper>(
        st->clock, std::move(keys).value(), verify, [](const std::string& a, const std::string& b) {
          return (a == "alice" && b == "bob") || (a == "bob" && b == "alice");
        });
    FUZZ_CHECK(
        st->gate->authenticate(&kAlice, "alice:phone", "alice", st->alice_token.c_str()).is_ok());
    std::string svc = mint("svc.api", json::array({"service"}));
    FUZZ_CHECK(st->gate->authenticate(&kService, "svc.api:main", "svc.api", svc.c_str()).is_ok());
    return st;
  }();
  return *s;
}

bool has_wildcard(std::string_view t) {
  return t.find('+') != std::string_view::npos || t.find('#') != std::string_view::npos;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_own_inbox_topic(std::string_view t, std::string_view user) {
  return starts_with(t, "u/") && t.substr(2, user.size()) == user &&
         t.substr(2 + user.size(), 1) == "/";
}

bool is_control(std::string_view t) {
  return t == topics::kControlResponse || t == topics::kControlStats || t == topics::kControlPush;
}

void check_round_trips(std::string_view topic) {
  auto send = topics::parse_send_topic(topic);
  if (send.kind != topics::SendKind::kInvalid) {
    FUZZ_CHECK(!has_wildcard(topic));
    using K = topics::SendKind;
    std::string_view leaf =
        send.kind == K::kDirectReceipt || send.kind == K::kGroupReceipt ? topics::kReceipt
        : send.kind == K::kDirectTyping || send.kind == K::kGroupTyping ? topics::kTyping
                                                                        : std::string_view();
    const bool group =
        send.kind == K::kGroup || send.kind == K::kGroupReceipt || send.kind == K::kGroupTyping;
    FUZZ_CHECK((group ? topics::group(send.target, leaf) : topics::direct(send.target, leaf)) ==
               topic);
  }
  std::string user;
  if (topics::parse_presence(topic, &user)) {
    FUZZ_CHECK(chat::is_valid_user_id(user) && topics::presence(user) == topic);
  }
  auto conv = topics::parse_conversation(topic);
  if (conv.kind == topics::ConvKind::kDirect) {
    FUZZ_CHECK(conv.a < conv.b && topics::dm_conversation(conv.b, conv.a) == topic);
  } else if (conv.kind == topics::ConvKind::kGroup) {
    FUZZ_CHECK(topics::group_conversation(conv.gid) == topic);
  }
  std::string u, d;
  if (chat::split_client_id(topic, &u, &d)) {
    FUZZ_CHECK(chat::is_valid_user_id(u) && chat::is_valid_device_id(d));
    FUZZ_CHECK(u + ":" + d == topic);
  }
  uint64_t v = 0;
  if (chat::IdGenerator::parse(topic, &v)) {
    FUZZ_CHECK(chat::is_valid_message_id(topic) && chat::IdGenerator::format(v) == topic);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  state();
  return 0;
}

// Input: [who][access][qos] then "<client id>\n<topic>" (no newline: the
// topic alone, client id "bob:tablet").
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  State& s = state();
  const int* who = (data[0] % 3 == 0) ? &kAlice : (data[0] % 3 == 1) ? &kService : &kNobody;
  const Access access = static_cast<Access>(data[1] % 4);
  const int qos = data[2] % 4;
  std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
  auto nl = rest.find('\n');
  std::string_view client_id = nl == std::string_view::npos ? "bob:tablet" : rest.substr(0, nl);
  std::string_view topic = nl == std::string_view::npos ? rest : rest.substr(nl + 1);

  check_round_trips(topic);

  const bool ok = s.gate->allowed(who, client_id, access, topic, qos);
  if (ok && access != Access::kUnsubscribe) {
    if (who == &kAlice) {
      switch (access) {
        case Access::kSubscribe: {
          std::string peer;
          FUZZ_CHECK(topics::is_own_inbox_filter(topic, "alice") ||
                     (topics::parse_presence(topic, &peer) && (peer == "alice" || peer == "bob")));
          FUZZ_CHECK(!starts_with(topic, "u/") || starts_with(topic, "u/alice/"));
          FUZZ_CHECK(topic.find('+') == std::string_view::npos);
          break;
        }
        case Access::kRead:
          FUZZ_CHECK(is_own_inbox_topic(topic, "alice") || topics::parse_presence(topic, nullptr));
          break;
        case Access::kWrite: {
          FUZZ_CHECK(!has_wildcard(topic));
          auto t = topics::parse_send_topic(topic);
          FUZZ_CHECK(t.kind != topics::SendKind::kInvalid);
          const bool typing =
              t.kind == topics::SendKind::kDirectTyping || t.kind == topics::SendKind::kGroupTyping;
          FUZZ_CHECK(typing ? qos == 0 : (qos == 1 || qos == 2));
          break;
        }
        default:
          break;
      }
    } else if (who == &kService) {
      // Writes: the control topic only. Reads: control replies, and exactly
      // one $SYS topic (Mosquitto's drop counter, docs/operations.md "Slow
      // consumers").
      FUZZ_CHECK(access == Access::kWrite
                     ? topic == topics::kControl
                     : is_control(topic) || topic == topics::kSysMessagesDropped);
    } else {  // no session: only reads of the client id's own inbox or presence
      FUZZ_CHECK(access == Access::kRead);
      std::string user, device;
      FUZZ_CHECK(chat::split_client_id(client_id, &user, &device));
      FUZZ_CHECK(is_own_inbox_topic(topic, user) || topics::parse_presence(topic, nullptr));
    }
  }

  // CONNECT with alice's token and fuzzed client id / username.
  if (data[0] & 0x80) {
    // Mosquitto hands the plugin NUL-terminated C strings.
    std::string cid(client_id.substr(0, client_id.find('\0')));
    std::string username(topic.substr(0, std::min<size_t>(64, topic.find('\0'))));
    auto st = s.gate->authenticate(&kScratch, cid, username.c_str(), s.alice_token.c_str());
    if (st.is_ok()) {
      const auto* sess = s.gate->session(&kScratch);
      FUZZ_CHECK(sess != nullptr && sess->user == "alice" && !sess->service);
      FUZZ_CHECK(username == "alice" && starts_with(cid, "alice:"));
      FUZZ_CHECK(chat::is_valid_device_id(sess->device));
      s.gate->disconnected(&kScratch);
      // Taking over alice:phone ends her original session: restore it.
      if (s.gate->session(&kAlice) == nullptr) {
        FUZZ_CHECK(
            s.gate->authenticate(&kAlice, "alice:phone", "alice", s.alice_token.c_str()).is_ok());
      }
    }
  }
  return 0;
}
