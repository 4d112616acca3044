// The Signal protocol operations chatctl needs, over libsignal-protocol-c and
// one device's E2eState (signal_store.h). No I/O: callers run them inside
// E2eStore::transact and do the network around them (e2e_client.h).
//
// Addresses follow docs/e2e.md: name "<user>:<device>", device id 1; a
// group's sender-key name is "g:<gid>" with the sender's address. The
// contract's message types are 3 (PreKeySignalMessage, libsignal's
// CIPHERTEXT_PREKEY_TYPE) and 1 (SignalMessage, libsignal's
// CIPHERTEXT_SIGNAL_TYPE = 2): mapped here, nowhere else.
#pragma once

#include <signal_protocol.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "chat/common/status.h"
#include "chatctl/signal_store.h"

namespace chat::tools {

// The contract's `type` of a `to` entry.
inline constexpr int kE2ePreKeyMessage = 3;
inline constexpr int kE2eSignalMessage = 1;

// Prekeys: one-time prekeys per batch (keys init, refill), and the level
// under which chatctl tops up.
inline constexpr int kPrekeyBatch = 100;
inline constexpr int kPrekeyLowWater = 20;
// Safety numbers: libsignal's fingerprint with this many iterations.
inline constexpr int kFingerprintIterations = 5200;

// The process-wide libsignal context with the OpenSSL provider.
signal_context* signal_global();

// A claimed bundle (docs/e2e.md, GET /v1/keys/{user}), keys decoded.
struct PreKeyBundle {
  std::string user;
  std::string device;
  uint32_t registration_id = 0;
  std::string identity_key;  // serialized public key
  uint32_t signed_prekey_id = 0;
  std::string signed_prekey;
  std::string signed_prekey_signature;
  std::optional<uint32_t> prekey_id;  // none: X3DH on the signed prekey alone
  std::string prekey;
  std::vector<std::string> capabilities;
};
// One element of the claim answer's "devices"; kInvalidArgument naming the
// problem when it does not have that shape.
Result<PreKeyBundle> parse_bundle(const std::string& user, const nlohmann::json& device);

struct Ciphertext {
  int type = 0;      // kE2ePreKeyMessage or kE2eSignalMessage
  std::string body;  // the serialized message (bytes)
};

// "<user>:<device>"
std::string signal_name(const std::string& user, const std::string& device);

// A new identity key pair, registration id (1-16380) and signed prekey
// (id 1) in `state`, replacing whatever was there; no one-time prekeys.
Status generate_identity(E2eState& state, int64_t now_ms);
// `count` new one-time prekeys; returns their ids.
Result<std::vector<uint32_t>> generate_prekeys(E2eState& state, int count);
// The PUT /v1/keys body for `device`: the identity and signed prekey when
// `with_identity`, the public halves of `prekey_ids`, capabilities
// ["sender_keys"].
Result<nlohmann::json> key_upload_body(const E2eState& state, const std::string& device,
                                       bool with_identity, const std::vector<uint32_t>& prekey_ids);

bool has_session(const E2eState& state, const std::string& name);
// Starts a session with the bundle's device (X3DH), replacing any.
Status process_bundle(E2eState& state, const PreKeyBundle& bundle);
// Encrypts to `name` (a session must exist).
Result<Ciphertext> encrypt_to(E2eState& state, const std::string& name,
                              const std::string& plaintext);
// Decrypts an entry from `name`. Errors: kAlreadyExists for a message
// already decrypted (SG_ERR_DUPLICATE_MESSAGE), kNotFound without a session,
// kInvalidArgument for anything else that does not decrypt.
Result<std::string> decrypt_from(E2eState& state, const std::string& name, int type,
                                 const std::string& body);

// Sender keys. `group` is "g:<gid>", `name` the sender's address name.
// This device's SenderKeyDistributionMessage for `group` (creating the key
// when there is none), serialized.
Result<std::string> sender_key_distribution(E2eState& state, const std::string& group,
                                            const std::string& my_name);
// Drops this device's sender key for `group` (a new one is made next time).
void forget_sender_key(E2eState& state, const std::string& group, const std::string& my_name);
Status process_sender_key_distribution(E2eState& state, const std::string& group,
                                       const std::string& sender_name, const std::string& skdm);
Result<std::string> group_encrypt(E2eState& state, const std::string& group,
                                  const std::string& my_name, const std::string& plaintext);
// Errors as decrypt_from.
Result<std::string> group_decrypt(E2eState& state, const std::string& group,
                                  const std::string& sender_name, const std::string& body);

// The safety number of two users: libsignal's
// fingerprint_generator_create_for_list (kFingerprintIterations, scannable
// version 1) over every device identity key of each user; 60 digits, shown
// as 12 groups of 5.
Result<std::string> safety_number(const std::string& local_user,
                                  const std::vector<std::string>& local_keys,
                                  const std::string& remote_user,
                                  const std::vector<std::string>& remote_keys);
std::string group_digits(const std::string& digits);  // "12345 67890 ..."

// A short printable fingerprint of one identity key (hex of its 32 key
// bytes in groups of 4).
std::string key_fingerprint(const std::string& public_key);

}  // namespace chat::tools
