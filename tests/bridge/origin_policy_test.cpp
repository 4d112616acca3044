#include "chat/bridge/origin_policy.h"

#include <gtest/gtest.h>

namespace chat::bridge {
namespace {

struct Case {
  const char* origin;  // nullptr: no Origin header
  bool allowed;
};

void expect_table(const OriginPolicy& policy, std::initializer_list<Case> cases) {
  for (const auto& c : cases) {
    std::optional<std::string_view> origin;
    if (c.origin != nullptr) origin = c.origin;
    EXPECT_EQ(policy.allows(origin), c.allowed) << (c.origin ? c.origin : "(no Origin)");
  }
}

TEST(OriginPolicyTest, DefaultPolicy) {
  OriginPolicy policy("127.0.0.1", {});
  expect_table(policy, {
                           {nullptr, true},
                           {"http://localhost", true},
                           {"http://localhost:8080", true},
                           {"https://localhost:443", true},
                           {"http://127.0.0.1", true},
                           {"http://127.0.0.1:5173", true},
                           {"HTTP://LOCALHOST:8080", true},
                           {"http://localhost:8080/", true},
                           {"https://evil.example", false},
                           {"http://localhost.evil.example", false},
                           {"http://evil.example#localhost", false},
                           {"http://127.0.0.2", false},
                           {"http://[::1]:8080", false},  // not in the contract's list
                           {"null", false},
                           {"NULL", false},
                           {"", false},
                           {"file://", false},
                           {"file:///etc/passwd", false},
                           {"ws://localhost", false},
                           {"chrome-extension://abcdef", false},
                           {"localhost", false},
                           {"localhost:8080", false},
                           {"//localhost", false},
                           {"http://", false},
                           {"http://:8080", false},
                           {"http://localhost:", false},
                           {"http://localhost:port", false},
                           {"http://localhost:99999", false},
                           {"http://localhost/path", false},
                           {"http://user@localhost", false},
                           {"http://localhost:80:80", false},
                       });
}

TEST(OriginPolicyTest, BindAddressIsAllowedOnAnyPort) {
  OriginPolicy policy("192.0.2.10", {});
  expect_table(policy, {
                           {"http://192.0.2.10", true},
                           {"https://192.0.2.10:8443", true},
                           {"http://192.0.2.10:8080/", true},
                           {"http://192.0.2.11", false},
                           {"http://localhost:3000", true},
                       });
}

TEST(OriginPolicyTest, IPv6BindAddress) {
  OriginPolicy policy("::1", {});
  expect_table(policy, {
                           {"http://[::1]:8080", true},
                           {"http://[::1]", true},
                           {"http://[::2]:8080", false},
                           {"http://::1:8080", false},
                           {"http://[::1", false},
                       });
}

TEST(OriginPolicyTest, ExtraOriginsAreExactCaseInsensitiveIgnoringTrailingSlash) {
  OriginPolicy policy("127.0.0.1", {"https://Chat.Example.com/", "https://b.example:8443"});
  expect_table(policy, {
                           {"https://chat.example.com", true},
                           {"HTTPS://CHAT.EXAMPLE.COM", true},
                           {"https://chat.example.com/", true},
                           {"http://chat.example.com", false},       // scheme differs
                           {"https://chat.example.com:443", false},  // exact, not equivalent
                           {"https://sub.chat.example.com", false},
                           {"https://b.example:8443", true},
                           {"https://b.example", false},
                           {"http://localhost", true},  // built-ins stay
                           {"null", false},
                       });
}

TEST(OriginPolicyTest, Normalize) {
  EXPECT_EQ(OriginPolicy::normalize(" HTTPS://A.Example/ "), "https://a.example");
  EXPECT_EQ(OriginPolicy::normalize("https://a.example"), "https://a.example");
  EXPECT_EQ(OriginPolicy::normalize(""), "");
}

}  // namespace
}  // namespace chat::bridge
