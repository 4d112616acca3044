#include "chat/common/envelope.h"

#include <gtest/gtest.h>

namespace chat {
namespace {

struct Case {
  std::string payload;
  bool ok;
  RefusalCode code;
};

TEST(Envelope, ValidatesClientMessages) {
  const Case cases[] = {
      {R"({"cid":"c1","type":"text","body":"hi"})", true, {}},
      {R"({"cid":"c1","type":"x-poll","body":{"q":1}})", true, {}},
      {R"({"cid":"c1","type":"e2e","body":{"to":{"bob:web1":{"type":3,"body":"AA=="}}}})",
       true,
       {}},
      {R"({"cid":"c1","type":"e2e","body":null})", true, {}},  // opaque (CONTRACT §3)
      {R"({"cid":"c1","type":"e2e","body":{"to":{}}})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"text"})", false, RefusalCode::kInvalidPayload},
      {R"({"type":"text","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"","type":"text","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":7,"type":"text","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":")" + std::string(65, 'a') + R"(","type":"text","body":"hi"})", false,
       RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"html","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"x-","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"({"cid":"c1","type":"x-A","body":"hi"})", false, RefusalCode::kInvalidPayload},
      {R"(["cid"])", false, RefusalCode::kInvalidPayload},
      {"not json", false, RefusalCode::kInvalidPayload},
      {"", false, RefusalCode::kInvalidPayload},
      {std::string(R"({"cid":"c1","type":"text","body":")") + "\xff\xfe" + "\"}", false,
       RefusalCode::kInvalidPayload},
  };
  for (const auto& c : cases) {
    ClientMessage m;
    Refusal r{};
    EXPECT_EQ(parse_client_message(c.payload, kDefaultMaxPayload, &m, &r), c.ok) << c.payload;
    if (!c.ok) {
      EXPECT_EQ(r.code, c.code) << c.payload;
    }
  }
}

TEST(Envelope, RefusesDeepNestingAndControlCharactersInCid) {
  std::string deep =
      R"({"cid":"c","type":"text","body":)" + std::string(65, '[') + std::string(65, ']') + "}";
  std::string ok =
      R"({"cid":"c","type":"text","body":)" + std::string(60, '[') + std::string(60, ']') + "}";
  ClientMessage m;
  Refusal r{};
  EXPECT_FALSE(parse_client_message(deep, kDefaultMaxPayload, &m, &r));
  EXPECT_EQ(r.code, RefusalCode::kInvalidPayload);
  EXPECT_TRUE(parse_client_message(ok, kDefaultMaxPayload, &m, &r));
  // A 64 KiB payload of brackets must be refused, not crash.
  std::string bomb = R"({"cid":"c","type":"text","body":)" + std::string(32000, '[') +
                     std::string(32000, ']') + "}";
  EXPECT_FALSE(parse_client_message(bomb, kDefaultMaxPayload, &m, &r));
  // Brackets inside strings do not count.
  std::string quoted = R"({"cid":"c","type":"text","body":")" + std::string(100, '[') + R"(\"]"})";
  EXPECT_TRUE(parse_client_message(quoted, kDefaultMaxPayload, &m, &r));
  EXPECT_FALSE(parse_client_message(R"({"cid":"a\u0000b","type":"text","body":1})",
                                    kDefaultMaxPayload, &m, &r));
  EXPECT_FALSE(
      parse_client_message(R"({"cid":"a\nb","type":"text","body":1})", kDefaultMaxPayload, &m, &r));
  // 64 characters of 2-byte UTF-8 are fine (the limit counts characters).
  std::string accents;
  for (int i = 0; i < 64; ++i) accents += "\u00e9";
  EXPECT_TRUE(parse_client_message(R"({"cid":")" + accents + R"(","type":"text","body":1})",
                                   kDefaultMaxPayload, &m, &r));
}

TEST(Envelope, SizeLimit) {
  std::string body(100, 'a');
  std::string p = R"({"cid":"c","type":"text","body":")" + body + "\"}";
  ClientMessage m;
  Refusal r{};
  EXPECT_TRUE(parse_client_message(p, p.size(), &m, &r));
  EXPECT_FALSE(parse_client_message(p, p.size() - 1, &m, &r));
  EXPECT_EQ(r.code, RefusalCode::kTooLarge);
}

TEST(Envelope, BuildsEnvelopeWithContractFields) {
  EnvelopeFields f{"0000000000000001", 1700, "dm:alice:bob", "alice", "phone", "bob", "c1", "text"};
  auto env = nlohmann::json::parse(make_envelope(f, nlohmann::json("hi")));
  EXPECT_EQ(env["v"], 1);
  EXPECT_EQ(env["id"], "0000000000000001");
  EXPECT_EQ(env["ts"], 1700);
  EXPECT_EQ(env["conv"], "dm:alice:bob");
  EXPECT_EQ(env["from"], "alice");
  EXPECT_EQ(env["dev"], "phone");
  EXPECT_EQ(env["to"], "bob");
  EXPECT_EQ(env["cid"], "c1");
  EXPECT_EQ(env["type"], "text");
  EXPECT_EQ(env["body"], "hi");
}

// make_envelope writes the JSON itself; its bytes must be what nlohmann would
// print (field order, escapes), whatever the strings hold.
TEST(Envelope, EnvelopeBytesMatchNlohmannForAnyString) {
  const std::string tricky[] = {"",
                                "plain",
                                "quote\" backslash\\ slash/",
                                "\b\f\n\r\t",
                                std::string("nul\0ctl\x01\x1f\x7f", 10),
                                "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                                "\"\"\\\\"};
  for (const auto& s : tricky) {
    EnvelopeFields f{"0000000000000001", -5, s, s, s, s, s, s};
    nlohmann::json body = {{"text", s}, {"n", {1, 2.5, nullptr, true}}};
    nlohmann::ordered_json expected;
    expected["v"] = 1;
    expected["id"] = f.id;
    expected["ts"] = f.ts;
    expected["conv"] = f.conv;
    expected["from"] = f.from;
    expected["dev"] = f.dev;
    expected["to"] = f.to;
    expected["cid"] = f.cid;
    expected["type"] = f.type;
    expected["body"] = body;
    EXPECT_EQ(make_envelope(f, body), expected.dump()) << nlohmann::json(s).dump();
  }
}

TEST(Envelope, ErrorEventAndCidExtraction) {
  auto ev =
      nlohmann::json::parse(make_error_event("c9", RefusalCode::kUnknownPeer, "no such user"));
  EXPECT_EQ(ev["type"], "error");
  EXPECT_EQ(ev["code"], "unknown_peer");
  EXPECT_EQ(ev["cid"], "c9");
  EXPECT_EQ(extract_cid(R"({"cid":"abc","type":"nope"})"), "abc");
  EXPECT_EQ(extract_cid("garbage"), "");
  auto no_cid = nlohmann::json::parse(make_error_event("", RefusalCode::kInvalidPayload, "x"));
  EXPECT_FALSE(no_cid.contains("cid"));
}

TEST(Envelope, MediaMessagesNeedAMediaIdBody) {
  auto parse = [](const std::string& body) {
    ClientMessage m;
    Refusal why;
    const bool ok = parse_client_message(R"({"cid":"c1","type":"media","body":)" + body + "}",
                                         kDefaultMaxPayload, &m, &why);
    return std::make_pair(ok, ok ? media_reference(m) : why.reason);
  };
  EXPECT_EQ(parse(R"({"media":"AbC_-123"})"), std::make_pair(true, std::string("AbC_-123")));
  auto full = parse(
      R"({"media":"x1","content_type":"image/png","size":12,"sha256":"ab","url":"/v1/media/x1",)"
      R"("thumbnail":true,"caption":"hi","extra":[1]})");
  EXPECT_TRUE(full.first) << full.second;
  EXPECT_TRUE(parse(R"({"media":"x1","thumbnail":"/v1/media/x1/thumbnail"})").first);
  for (const char* bad :
       {R"("x1")", R"({"url":"/v1/media/x1"})", R"({"media":7})", R"({"media":""})",
        R"({"media":"../x"})", R"({"media":"x1","size":-1})", R"({"media":"x1","size":"12"})",
        R"({"media":"x1","caption":5})", R"({"media":"x1","thumbnail":1})",
        R"({"media":"x1","content_type":null})"}) {
    EXPECT_FALSE(parse(bad).first) << bad;
  }
  // Other types reference nothing, whatever their body says.
  ClientMessage text;
  Refusal why;
  ASSERT_TRUE(parse_client_message(R"({"cid":"c","type":"text","body":{"media":"x"}})",
                                   kDefaultMaxPayload, &text, &why));
  EXPECT_EQ(media_reference(text), "");
}

// docs/e2e.md, "e2e messages": the structure the broker checks, nothing more.
TEST(Envelope, E2eBodiesHaveExactlyTheDocumentedStructure) {
  struct E2eCase {
    std::string body;
    bool dm_ok;     // on dm/<peer>
    bool group_ok;  // on g/<gid>
  };
  const std::string big_to = [] {
    nlohmann::json to = nlohmann::json::object();
    for (int i = 0; i < 1001; ++i) to["u:d" + std::to_string(i)] = {{"type", 1}, {"body", "AA=="}};
    return nlohmann::json{{"to", to}}.dump();
  }();
  const std::string max_to = [] {
    nlohmann::json to = nlohmann::json::object();
    for (int i = 0; i < 1000; ++i) to["u:d" + std::to_string(i)] = {{"type", 1}, {"body", "AA=="}};
    return nlohmann::json{{"to", to}}.dump();
  }();
  const E2eCase cases[] = {
      {R"({"to":{"bob:web1":{"type":3,"body":"AAEC"}}})", true, true},
      {R"({"to":{"bob:web1":{"type":1,"body":"AA=="},"alice:laptop":{"type":3,"body":"AAE="}}})",
       true, true},
      {R"({"to":{"a.b-c_9:D_e-F":{"type":1,"body":"+/+/"}}})", true, true},
      // Shape only: non-canonical trailing bits pass (is_standard_base64, not
      // the key directory's strict decoder; base64.h says why).
      {R"({"to":{"bob:web1":{"type":3,"body":"AB=="}}})", true, true},
      {R"({"group":"AAEC"})", false, true},
      {R"({"group":"AAEC","to":{}})", false, true},
      {R"({"group":"AAEC","to":{"bob:web1":{"type":3,"body":"AAEC"}}})", false, true},
      {max_to, true, true},
      // Not an object / nothing to deliver / other members.
      {R"(null)", false, false},
      {R"("AAEC")", false, false},
      {R"([])", false, false},
      {R"({})", false, false},
      {R"({"to":{}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AAEC"}},"x":1})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AAEC"}},"group":null})", false, false},
      {big_to, false, false},
      {R"({"to":[]})", false, false},
      {R"({"to":"bob:web1"})", false, false},
      // Keys: <user>:<device> with the contract's syntax.
      {R"({"to":{"bob":{"type":3,"body":"AAEC"}}})", false, false},
      {R"({"to":{"Bob:web1":{"type":3,"body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:":{"type":3,"body":"AAEC"}}})", false, false},
      {R"({"to":{":web1":{"type":3,"body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:web:1":{"type":3,"body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:web.1":{"type":3,"body":"AAEC"}}})", false, false},
      // Entries: exactly {"type":1|3,"body":<non-empty standard base64>}.
      {R"({"to":{"bob:web1":{"type":2,"body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":"3","body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3.0,"body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3}}})", false, false},
      {R"({"to":{"bob:web1":{"body":"AAEC"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AAEC","x":0}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":""}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AAE"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AA-_"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"A==="}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AA=A"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":"AAEC\n"}}})", false, false},
      {R"({"to":{"bob:web1":{"type":3,"body":7}}})", false, false},
      {R"({"to":{"bob:web1":"AAEC"}})", false, false},
      {R"({"group":""})", false, false},
      {R"({"group":"AAE"})", false, false},
      {R"({"group":{"body":"AAEC"}})", false, false},
  };
  for (const auto& c : cases) {
    const auto body = nlohmann::json::parse(c.body);
    const std::string dm = check_e2e_body(body, false);
    const std::string group = check_e2e_body(body, true);
    EXPECT_EQ(dm.empty(), c.dm_ok) << c.body.substr(0, 100) << ": " << dm;
    EXPECT_EQ(group.empty(), c.group_ok) << c.body.substr(0, 100) << ": " << group;
    // The payload check knows no topic: it allows "group" (the router refuses
    // it on dm/). It checks the Signal form only: other bodies are opaque.
    ClientMessage m;
    Refusal why;
    const bool ok = parse_client_message(R"({"cid":"c1","type":"e2e","body":)" + c.body + "}",
                                         kDefaultMaxPayload, &m, &why);
    EXPECT_EQ(ok, c.group_ok || !is_signal_e2e_body(body)) << c.body.substr(0, 100);
    if (!ok) {
      EXPECT_EQ(why.code, RefusalCode::kInvalidPayload);
      EXPECT_FALSE(why.reason.empty());
    }
  }
  // A reason names the offending key (cut short: it is untrusted text).
  EXPECT_NE(check_e2e_body(nlohmann::json::parse(R"({"to":{"bob:web1":{"type":2,"body":"AA=="}}})"),
                           false)
                .find("'bob:web1'"),
            std::string::npos);
  EXPECT_LT(check_e2e_body(nlohmann::json{{"to", {{std::string(5000, 'k'), 1}}}}, false).size(),
            200u);
  EXPECT_NE(check_e2e_body(nlohmann::json::parse(R"({"group":"AAEC"})"), false).find("group"),
            std::string::npos);
}

// CONTRACT §3: e2e bodies are opaque to the server. Only an object with "to"
// or "group" is the Signal form of docs/e2e.md and checked; every other body
// is accepted exactly as before the Signal form existed.
TEST(Envelope, OpaqueE2eBodiesStayAcceptedTheSignalFormIsChecked) {
  for (const char* opaque :
       {R"(null)", R"("ciphertext")", R"([1,"a"])", R"(42)", R"(true)", R"({})",
        R"({"ct":"opaque"})", R"({"ciphertext":"AAEC","iv":"x","To":1})"}) {
    const auto body = nlohmann::json::parse(opaque);
    EXPECT_FALSE(is_signal_e2e_body(body)) << opaque;
    ClientMessage m;
    Refusal why;
    ASSERT_TRUE(
        parse_client_message(std::string(R"({"cid":"c1","type":"e2e","body":)") + opaque + "}",
                             kDefaultMaxPayload, &m, &why))
        << opaque << ": " << why.reason;
    EXPECT_EQ(m.type, "e2e");
    EXPECT_EQ(m.body, body) << opaque;
  }
  // "to" or "group" makes it the Signal form, checked strictly.
  for (const char* signal :
       {R"({"to":"bob"})", R"({"group":null})", R"({"to":{},"ct":"x"})",
        R"({"ct":"x","to":{"bob:web1":{"type":3,"body":"AAEC"}}})", R"({"to":{}})"}) {
    const auto body = nlohmann::json::parse(signal);
    EXPECT_TRUE(is_signal_e2e_body(body)) << signal;
    Refusal why;
    EXPECT_FALSE(
        parse_client_message(std::string(R"({"cid":"c1","type":"e2e","body":)") + signal + "}",
                             kDefaultMaxPayload, nullptr, &why))
        << signal;
    EXPECT_EQ(why.code, RefusalCode::kInvalidPayload);
  }
  ClientMessage m;
  Refusal why;
  EXPECT_TRUE(parse_client_message(
      R"({"cid":"c1","type":"e2e","body":{"to":{"bob:web1":{"type":3,"body":"AAEC"}}}})",
      kDefaultMaxPayload, &m, &why))
      << why.reason;
  EXPECT_TRUE(is_signal_e2e_body(m.body));
  // An archived opaque e2e envelope is re-sent unchanged (no per-user cut).
  EnvelopeFields f{"0000000000000001", 1700, "dm:alice:bob", "alice", "phone", "bob", "c1", "e2e"};
  EXPECT_FALSE(
      E2eEnvelopes::from_envelope(make_envelope(f, nlohmann::json{{"ct", "opaque"}})).has_value());
  EXPECT_FALSE(E2eEnvelopes::from_envelope(make_envelope(f, nlohmann::json())).has_value());
}

// Per-user delivery: each user's envelope is exactly make_envelope of the
// body cut to that user's entries; the union of the cuts is the whole "to".
TEST(Envelope, E2eEnvelopesCutTheBodyPerUser) {
  const auto body = nlohmann::json::parse(
      R"({"group":"R1JPVVA=","to":{"bob:web1":{"type":3,"body":"Qk9CMQ=="},
          "bob:phone":{"type":1,"body":"Qk9CMg=="},"alice:laptop":{"type":1,"body":"QUxJQ0U="},
          "bob.x:d":{"type":1,"body":"Qk9CWA=="}}})");
  ASSERT_EQ(check_e2e_body(body, true), "");
  EnvelopeFields f{"0000000000000001", 1700, "g:G1", "alice", "phone", "g:G1", "c\"1", "e2e"};
  E2eEnvelopes split(f, body);
  auto cut = [&](const std::string& user) {
    nlohmann::json b = body;
    nlohmann::json to = nlohmann::json::object();
    for (const auto& [k, v] : body["to"].items()) {
      if (k.rfind(user + ":", 0) == 0) to[k] = v;
    }
    b["to"] = to;
    return b;
  };
  for (const std::string user : {"bob", "alice", "bob.x", "carol"}) {
    const std::string got = split.for_user(user);
    EXPECT_EQ(got, make_envelope(f, cut(user))) << user;
  }
  auto bob = nlohmann::json::parse(split.for_user("bob"));
  EXPECT_EQ(bob["body"]["to"].size(), 2u);
  EXPECT_EQ(bob["body"]["group"], "R1JPVVA=");
  EXPECT_EQ(nlohmann::json::parse(split.for_user("carol"))["body"]["to"], nlohmann::json::object());

  // Without "to" or without "group": the same bytes as make_envelope.
  for (const char* text :
       {R"({"group":"R1JPVVA="})", R"({"to":{"bob:web1":{"type":3,"body":"AA=="}}})"}) {
    const auto b = nlohmann::json::parse(text);
    E2eEnvelopes only(f, b);
    EXPECT_EQ(
        only.for_user("alice"),
        make_envelope(f, b.contains("to") ? nlohmann::json{{"to", nlohmann::json::object()}} : b));
    EXPECT_EQ(only.for_user("bob"), make_envelope(f, b));
  }

  // Users without entries share one prebuilt envelope (no copy per member);
  // users with entries get theirs built into the scratch string.
  std::string s1, s2;
  const std::string& carol = split.for_user("carol", &s1);
  const std::string& dave = split.for_user("dave", &s2);
  EXPECT_EQ(&carol, &dave);
  EXPECT_NE(&carol, &s1);
  EXPECT_EQ(carol, make_envelope(f, cut("carol")));
  const std::string& bob_ref = split.for_user("bob", &s1);
  EXPECT_EQ(&bob_ref, &s1);
  EXPECT_EQ(bob_ref, split.for_user("bob"));
  {
    E2eEnvelopes group_only(f, nlohmann::json{{"group", "R1JPVVA="}});
    std::string a, b;
    EXPECT_EQ(&group_only.for_user("bob", &a), &group_only.for_user("alice", &b));
    EXPECT_EQ(group_only.for_user("bob", &a),
              make_envelope(f, nlohmann::json{{"group", "R1JPVVA="}}));
  }

  // From the archived whole envelope: the same per-user bytes; anything that
  // is not a well-formed e2e envelope is left alone.
  auto again = E2eEnvelopes::from_envelope(make_envelope(f, body));
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->for_user("bob"), split.for_user("bob"));
  EXPECT_EQ(again->for_user("alice"), split.for_user("alice"));
  f.type = "text";
  EXPECT_FALSE(E2eEnvelopes::from_envelope(make_envelope(f, body)).has_value());
  f.type = "e2e";
  EXPECT_FALSE(E2eEnvelopes::from_envelope(make_envelope(f, nlohmann::json("x"))).has_value());
  EXPECT_FALSE(E2eEnvelopes::from_envelope("{").has_value());
}

}  // namespace
}  // namespace chat
