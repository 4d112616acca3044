#include "chatctl/e2e.h"

#include <curve.h>
#include <fingerprint.h>
#include <group_cipher.h>
#include <group_session_builder.h>
#include <key_helper.h>
#include <protocol.h>
#include <ratchet.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <session_pre_key.h>

#include <cstdio>
#include <mutex>

#include "chat/common/base64.h"
#include "chatctl/json_access.h"
#include "chatctl/signal_crypto.h"

namespace chat::tools {
namespace {

// Owns one reference of a libsignal object.
template <typename T>
class Ref {
 public:
  Ref() = default;
  ~Ref() { reset(); }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  T** out() {
    reset();
    return &p_;
  }
  T* get() const { return p_; }
  void reset() {
    if (p_ != nullptr) SIGNAL_UNREF(p_);
    p_ = nullptr;
  }

 private:
  T* p_ = nullptr;
};

class Buffer {
 public:
  Buffer() = default;
  ~Buffer() {
    if (b_ != nullptr) signal_buffer_bzero_free(b_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  signal_buffer** out() { return &b_; }
  std::string str() const {
    if (b_ == nullptr) return {};
    return std::string(reinterpret_cast<const char*>(signal_buffer_data(b_)),
                       signal_buffer_len(b_));
  }

 private:
  signal_buffer* b_ = nullptr;
};

class StoreContext {
 public:
  explicit StoreContext(E2eState& state) {
    auto ctx = make_store_context(signal_global(), &state);
    if (ctx) {
      ctx_ = *ctx;
    } else {
      status_ = ctx.status();
    }
  }
  ~StoreContext() {
    if (ctx_ != nullptr) signal_protocol_store_context_destroy(ctx_);
  }
  StoreContext(const StoreContext&) = delete;
  StoreContext& operator=(const StoreContext&) = delete;
  signal_protocol_store_context* get() const { return ctx_; }
  const Status& status() const { return status_; }

 private:
  signal_protocol_store_context* ctx_ = nullptr;
  Status status_;
};

const uint8_t* u8(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

Status lib_error(const std::string& what, int rc) {
  return internal_error("libsignal: " + what + " failed (" + std::to_string(rc) + ")");
}

// Decrypt errors as the header documents them.
Status decrypt_error(int rc) {
  switch (rc) {
    case SG_ERR_DUPLICATE_MESSAGE:
      return already_exists("the message was already decrypted on this device");
    case SG_ERR_NO_SESSION:
      return not_found("no session with the sender");
    case SG_ERR_INVALID_KEY_ID:
      return invalid_argument("the message names a prekey this device no longer has");
    case SG_ERR_INVALID_MAC:
      return invalid_argument("the message does not authenticate (bad MAC)");
    case SG_ERR_INVALID_MESSAGE:
    case SG_ERR_INVALID_PROTO_BUF:
      return invalid_argument("the message is not a valid ciphertext");
    case SG_ERR_LEGACY_MESSAGE:
    case SG_ERR_INVALID_VERSION:
      return invalid_argument("unsupported message version");
    default:
      return invalid_argument("decryption failed (libsignal error " + std::to_string(rc) + ")");
  }
}

Result<std::string> serialize_public(ec_public_key* key) {
  Buffer buf;
  int rc = ec_public_key_serialize(buf.out(), key);
  if (rc != 0) return lib_error("ec_public_key_serialize", rc);
  return buf.str();
}

Status decode_public(const std::string& bytes, Ref<ec_public_key>* key, const char* what) {
  int rc = curve_decode_point(key->out(), u8(bytes), bytes.size(), signal_global());
  if (rc != 0) return invalid_argument(std::string(what) + " is not a Curve25519 public key");
  return Status::ok();
}

signal_protocol_address address_of(const std::string& name) {
  return signal_protocol_address{name.c_str(), name.size(), 1};
}

Result<std::string> b64_bytes(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto& v = json_field(j, key);
  if (!v.is_string()) return invalid_argument(where + ": \"" + key + "\" is missing");
  auto decoded = base64_decode_strict(v.get<std::string>());
  if (!decoded) return invalid_argument(where + ": \"" + key + "\" is not base64");
  return std::move(*decoded);
}

Result<uint32_t> key_id(const nlohmann::json& j, const std::string& where) {
  const auto& v = json_field(j, "id");
  if (!v.is_number_unsigned() || v.get<uint64_t>() == 0 || v.get<uint64_t>() > 0xFFFFFF) {
    return invalid_argument(where + ": bad \"id\"");
  }
  return static_cast<uint32_t>(v.get<uint64_t>());
}

}  // namespace

signal_context* signal_global() {
  static signal_context* context = [] {
    signal_context* ctx = nullptr;
    if (signal_context_create(&ctx, nullptr) != 0) std::abort();
    if (signal_context_set_crypto_provider(ctx, &openssl_signal_crypto_provider()) != 0) {
      std::abort();
    }
    return ctx;
  }();
  return context;
}

std::string signal_name(const std::string& user, const std::string& device) {
  return user + ":" + device;
}

Result<PreKeyBundle> parse_bundle(const std::string& user, const nlohmann::json& device) {
  PreKeyBundle b;
  b.user = user;
  b.device = json_string(device, "device");
  const std::string where = "bundle of " + user + ":" + b.device;
  if (b.device.empty()) return invalid_argument("a bundle of " + user + " names no device");
  const auto& reg = json_field(device, "registration_id");
  if (!reg.is_number_unsigned() || reg.get<uint64_t>() == 0 || reg.get<uint64_t>() > 0xFFFFFFFF) {
    return invalid_argument(where + ": bad \"registration_id\"");
  }
  b.registration_id = static_cast<uint32_t>(reg.get<uint64_t>());
  auto identity = b64_bytes(device, "identity_key", where);
  if (!identity) return identity.status();
  b.identity_key = std::move(*identity);
  const auto& spk = json_field(device, "signed_prekey");
  if (!spk.is_object()) return invalid_argument(where + ": no \"signed_prekey\"");
  auto spk_id = key_id(spk, where + " signed_prekey");
  if (!spk_id) return spk_id.status();
  b.signed_prekey_id = *spk_id;
  auto spk_key = b64_bytes(spk, "key", where + " signed_prekey");
  if (!spk_key) return spk_key.status();
  b.signed_prekey = std::move(*spk_key);
  auto signature = b64_bytes(spk, "signature", where + " signed_prekey");
  if (!signature) return signature.status();
  b.signed_prekey_signature = std::move(*signature);
  const auto& pk = json_field(device, "prekey");
  if (pk.is_object()) {
    auto id = key_id(pk, where + " prekey");
    if (!id) return id.status();
    auto key = b64_bytes(pk, "key", where + " prekey");
    if (!key) return key.status();
    b.prekey_id = *id;
    b.prekey = std::move(*key);
  } else if (!pk.is_null()) {
    return invalid_argument(where + ": \"prekey\" is neither an object nor null");
  }
  const auto& caps = json_field(device, "capabilities");
  if (caps.is_array()) {
    for (const auto& c : caps) {
      if (c.is_string()) b.capabilities.push_back(c.get<std::string>());
    }
  }
  return b;
}

Status generate_identity(E2eState& state, int64_t now_ms) {
  signal_context* g = signal_global();
  Ref<ratchet_identity_key_pair> pair;
  int rc = signal_protocol_key_helper_generate_identity_key_pair(pair.out(), g);
  if (rc != 0) return lib_error("generate_identity_key_pair", rc);
  uint32_t registration_id = 0;
  rc = signal_protocol_key_helper_generate_registration_id(&registration_id, 0, g);
  if (rc != 0) return lib_error("generate_registration_id", rc);
  Ref<session_signed_pre_key> signed_prekey;
  rc = signal_protocol_key_helper_generate_signed_pre_key(signed_prekey.out(), pair.get(), 1,
                                                          static_cast<uint64_t>(now_ms), g);
  if (rc != 0) return lib_error("generate_signed_pre_key", rc);
  Buffer pub, priv, spk;
  if ((rc = ec_public_key_serialize(pub.out(), ratchet_identity_key_pair_get_public(pair.get()))) ||
      (rc = ec_private_key_serialize(priv.out(),
                                     ratchet_identity_key_pair_get_private(pair.get()))) ||
      (rc = session_signed_pre_key_serialize(spk.out(), signed_prekey.get()))) {
    return lib_error("serialize", rc);
  }
  state = E2eState{};
  state.initialized = true;
  state.registration_id = registration_id;
  state.identity_public = pub.str();
  state.identity_private = priv.str();
  state.signed_prekeys[1] = spk.str();
  state.signed_prekey_id = 1;
  state.next_prekey_id = 1;
  state.keys_dirty = true;
  state.identities_dirty = true;
  state.sender_keys_dirty = true;
  state.messages_dirty = true;
  return Status::ok();
}

Result<std::vector<uint32_t>> generate_prekeys(E2eState& state, int count) {
  std::vector<uint32_t> ids;
  for (int i = 0; i < count; ++i) {
    uint32_t id = state.next_prekey_id;
    if (id == 0 || id > PRE_KEY_MEDIUM_MAX_VALUE) id = 1;
    state.next_prekey_id = id + 1;
    Ref<ec_key_pair> pair;
    int rc = curve_generate_key_pair(signal_global(), pair.out());
    if (rc != 0) return lib_error("curve_generate_key_pair", rc);
    Ref<session_pre_key> prekey;
    rc = session_pre_key_create(prekey.out(), id, pair.get());
    if (rc != 0) return lib_error("session_pre_key_create", rc);
    Buffer buf;
    rc = session_pre_key_serialize(buf.out(), prekey.get());
    if (rc != 0) return lib_error("session_pre_key_serialize", rc);
    state.prekeys[id] = buf.str();
    ids.push_back(id);
  }
  state.keys_dirty = true;
  return ids;
}

Result<nlohmann::json> key_upload_body(const E2eState& state, const std::string& device,
                                       bool with_identity,
                                       const std::vector<uint32_t>& prekey_ids) {
  if (!state.initialized) return invalid_argument("no keys on this device");
  signal_context* g = signal_global();
  nlohmann::json body = {{"device", device},
                         {"registration_id", state.registration_id},
                         {"capabilities", {"sender_keys"}}};
  if (with_identity) {
    body["identity_key"] = base64_encode(state.identity_public);
    auto it = state.signed_prekeys.find(state.signed_prekey_id);
    if (it == state.signed_prekeys.end()) return internal_error("the signed prekey is missing");
    Ref<session_signed_pre_key> spk;
    int rc = session_signed_pre_key_deserialize(spk.out(), u8(it->second), it->second.size(), g);
    if (rc != 0) return lib_error("session_signed_pre_key_deserialize", rc);
    auto key =
        serialize_public(ec_key_pair_get_public(session_signed_pre_key_get_key_pair(spk.get())));
    if (!key) return key.status();
    std::string signature(
        reinterpret_cast<const char*>(session_signed_pre_key_get_signature(spk.get())),
        session_signed_pre_key_get_signature_len(spk.get()));
    body["signed_prekey"] = {{"id", state.signed_prekey_id},
                             {"key", base64_encode(*key)},
                             {"signature", base64_encode(signature)}};
  }
  nlohmann::json prekeys = nlohmann::json::array();
  for (uint32_t id : prekey_ids) {
    auto it = state.prekeys.find(id);
    if (it == state.prekeys.end()) continue;
    Ref<session_pre_key> prekey;
    int rc = session_pre_key_deserialize(prekey.out(), u8(it->second), it->second.size(), g);
    if (rc != 0) return lib_error("session_pre_key_deserialize", rc);
    auto key = serialize_public(ec_key_pair_get_public(session_pre_key_get_key_pair(prekey.get())));
    if (!key) return key.status();
    prekeys.push_back({{"id", id}, {"key", base64_encode(*key)}});
  }
  body["prekeys"] = std::move(prekeys);
  return body;
}

bool has_session(const E2eState& state, const std::string& name) {
  return state.sessions.count(session_key(name, 1)) > 0;
}

Status process_bundle(E2eState& state, const PreKeyBundle& bundle) {
  signal_context* g = signal_global();
  Ref<ec_public_key> identity, signed_prekey, prekey;
  Status s = decode_public(bundle.identity_key, &identity, "identity_key");
  if (!s.is_ok()) return s;
  s = decode_public(bundle.signed_prekey, &signed_prekey, "signed_prekey");
  if (!s.is_ok()) return s;
  if (bundle.prekey_id) {
    s = decode_public(bundle.prekey, &prekey, "prekey");
    if (!s.is_ok()) return s;
  }
  Ref<session_pre_key_bundle> b;
  int rc = session_pre_key_bundle_create(
      b.out(), bundle.registration_id, 1, bundle.prekey_id.value_or(0), prekey.get(),
      bundle.signed_prekey_id, signed_prekey.get(), u8(bundle.signed_prekey_signature),
      bundle.signed_prekey_signature.size(), identity.get());
  if (rc != 0) return lib_error("session_pre_key_bundle_create", rc);
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  const std::string name = signal_name(bundle.user, bundle.device);
  signal_protocol_address address = address_of(name);
  session_builder* builder = nullptr;
  rc = session_builder_create(&builder, store.get(), &address, g);
  if (rc != 0) return lib_error("session_builder_create", rc);
  rc = session_builder_process_pre_key_bundle(builder, b.get());
  session_builder_free(builder);
  if (rc == SG_ERR_INVALID_KEY) {
    return invalid_argument("the bundle of " + name + " does not verify (bad signed prekey)");
  }
  if (rc != 0) return lib_error("session_builder_process_pre_key_bundle", rc);
  return Status::ok();
}

Result<Ciphertext> encrypt_to(E2eState& state, const std::string& name,
                              const std::string& plaintext) {
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  signal_protocol_address address = address_of(name);
  session_cipher* cipher = nullptr;
  int rc = session_cipher_create(&cipher, store.get(), &address, signal_global());
  if (rc != 0) return lib_error("session_cipher_create", rc);
  Ref<ciphertext_message> message;
  rc = session_cipher_encrypt(cipher, u8(plaintext), plaintext.size(), message.out());
  session_cipher_free(cipher);
  if (rc != 0) return lib_error("session_cipher_encrypt to " + name, rc);
  Ciphertext out;
  int type = ciphertext_message_get_type(message.get());
  if (type == CIPHERTEXT_PREKEY_TYPE) {
    out.type = kE2ePreKeyMessage;
  } else if (type == CIPHERTEXT_SIGNAL_TYPE) {
    out.type = kE2eSignalMessage;
  } else {
    return internal_error("libsignal: unexpected ciphertext type " + std::to_string(type));
  }
  signal_buffer* serialized = ciphertext_message_get_serialized(message.get());
  out.body.assign(reinterpret_cast<const char*>(signal_buffer_data(serialized)),
                  signal_buffer_len(serialized));
  return out;
}

Result<std::string> decrypt_from(E2eState& state, const std::string& name, int type,
                                 const std::string& body) {
  signal_context* g = signal_global();
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  signal_protocol_address address = address_of(name);
  session_cipher* cipher = nullptr;
  int rc = session_cipher_create(&cipher, store.get(), &address, g);
  if (rc != 0) return lib_error("session_cipher_create", rc);
  Buffer plaintext;
  if (type == kE2ePreKeyMessage) {
    Ref<pre_key_signal_message> message;
    rc = pre_key_signal_message_deserialize(message.out(), u8(body), body.size(), g);
    if (rc == 0) {
      rc = session_cipher_decrypt_pre_key_signal_message(cipher, message.get(), nullptr,
                                                         plaintext.out());
    }
  } else if (type == kE2eSignalMessage) {
    Ref<signal_message> message;
    rc = signal_message_deserialize(message.out(), u8(body), body.size(), g);
    if (rc == 0) {
      rc = session_cipher_decrypt_signal_message(cipher, message.get(), nullptr, plaintext.out());
    }
  } else {
    session_cipher_free(cipher);
    return invalid_argument("unknown e2e message type " + std::to_string(type));
  }
  session_cipher_free(cipher);
  if (rc != 0) return decrypt_error(rc);
  return plaintext.str();
}

namespace {

signal_protocol_sender_key_name sender_key_name_of(const std::string& group,
                                                   const std::string& name) {
  return signal_protocol_sender_key_name{group.c_str(), group.size(), address_of(name)};
}

}  // namespace

Result<std::string> sender_key_distribution(E2eState& state, const std::string& group,
                                            const std::string& my_name) {
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  group_session_builder* builder = nullptr;
  int rc = group_session_builder_create(&builder, store.get(), signal_global());
  if (rc != 0) return lib_error("group_session_builder_create", rc);
  auto key_name = sender_key_name_of(group, my_name);
  Ref<sender_key_distribution_message> skdm;
  rc = group_session_builder_create_session(builder, skdm.out(), &key_name);
  group_session_builder_free(builder);
  if (rc != 0) return lib_error("group_session_builder_create_session", rc);
  signal_buffer* serialized =
      ciphertext_message_get_serialized(reinterpret_cast<ciphertext_message*>(skdm.get()));
  return std::string(reinterpret_cast<const char*>(signal_buffer_data(serialized)),
                     signal_buffer_len(serialized));
}

void forget_sender_key(E2eState& state, const std::string& group, const std::string& my_name) {
  state.sender_keys.erase(group + "|" + session_key(my_name, 1));
  state.sender_key_holders.erase(group);
  state.sender_keys_dirty = true;
}

Status process_sender_key_distribution(E2eState& state, const std::string& group,
                                       const std::string& sender_name, const std::string& skdm) {
  signal_context* g = signal_global();
  Ref<sender_key_distribution_message> message;
  int rc = sender_key_distribution_message_deserialize(message.out(), u8(skdm), skdm.size(), g);
  if (rc != 0) return invalid_argument("not a sender key distribution message");
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  group_session_builder* builder = nullptr;
  rc = group_session_builder_create(&builder, store.get(), g);
  if (rc != 0) return lib_error("group_session_builder_create", rc);
  auto key_name = sender_key_name_of(group, sender_name);
  rc = group_session_builder_process_session(builder, &key_name, message.get());
  group_session_builder_free(builder);
  if (rc != 0) return invalid_argument("the sender key of " + sender_name + " was refused");
  return Status::ok();
}

Result<std::string> group_encrypt(E2eState& state, const std::string& group,
                                  const std::string& my_name, const std::string& plaintext) {
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  auto key_name = sender_key_name_of(group, my_name);
  group_cipher* cipher = nullptr;
  int rc = group_cipher_create(&cipher, store.get(), &key_name, signal_global());
  if (rc != 0) return lib_error("group_cipher_create", rc);
  Ref<ciphertext_message> message;
  rc = group_cipher_encrypt(cipher, u8(plaintext), plaintext.size(), message.out());
  group_cipher_free(cipher);
  if (rc != 0) return lib_error("group_cipher_encrypt", rc);
  signal_buffer* serialized = ciphertext_message_get_serialized(message.get());
  return std::string(reinterpret_cast<const char*>(signal_buffer_data(serialized)),
                     signal_buffer_len(serialized));
}

Result<std::string> group_decrypt(E2eState& state, const std::string& group,
                                  const std::string& sender_name, const std::string& body) {
  signal_context* g = signal_global();
  Ref<sender_key_message> message;
  int rc = sender_key_message_deserialize(message.out(), u8(body), body.size(), g);
  if (rc != 0) return invalid_argument("not a sender key message");
  StoreContext store(state);
  if (!store.status().is_ok()) return store.status();
  auto key_name = sender_key_name_of(group, sender_name);
  group_cipher* cipher = nullptr;
  rc = group_cipher_create(&cipher, store.get(), &key_name, g);
  if (rc != 0) return lib_error("group_cipher_create", rc);
  Buffer plaintext;
  rc = group_cipher_decrypt(cipher, message.get(), nullptr, plaintext.out());
  group_cipher_free(cipher);
  if (rc != 0) return decrypt_error(rc);
  return plaintext.str();
}

Result<std::string> safety_number(const std::string& local_user,
                                  const std::vector<std::string>& local_keys,
                                  const std::string& remote_user,
                                  const std::vector<std::string>& remote_keys) {
  if (local_keys.empty() || remote_keys.empty()) {
    return invalid_argument("both users need at least one device with keys");
  }
  signal_context* g = signal_global();
  auto make_list = [&](const std::vector<std::string>& keys, ec_public_key_list** out) -> Status {
    ec_public_key_list* list = ec_public_key_list_alloc();
    if (list == nullptr) return internal_error("out of memory");
    for (const auto& k : keys) {
      Ref<ec_public_key> key;
      Status s = decode_public(k, &key, "identity_key");
      if (!s.is_ok()) {
        ec_public_key_list_free(list);
        return s;
      }
      ec_public_key_list_push_back(list, key.get());  // takes its own reference
    }
    *out = list;
    return Status::ok();
  };
  ec_public_key_list* local = nullptr;
  ec_public_key_list* remote = nullptr;
  Status s = make_list(local_keys, &local);
  if (!s.is_ok()) return s;
  s = make_list(remote_keys, &remote);
  if (!s.is_ok()) {
    ec_public_key_list_free(local);
    return s;
  }
  fingerprint_generator* generator = nullptr;
  int rc = fingerprint_generator_create(&generator, kFingerprintIterations, 1, g);
  Ref<fingerprint> fp;
  if (rc == 0) {
    rc = fingerprint_generator_create_for_list(generator, local_user.c_str(), local,
                                               remote_user.c_str(), remote, fp.out());
    fingerprint_generator_free(generator);
  }
  ec_public_key_list_free(local);
  ec_public_key_list_free(remote);
  if (rc != 0) return lib_error("fingerprint_generator_create_for_list", rc);
  const char* text = displayable_fingerprint_text(fingerprint_get_displayable(fp.get()));
  return std::string(text == nullptr ? "" : text);
}

std::string group_digits(const std::string& digits) {
  std::string out;
  for (size_t i = 0; i < digits.size(); i += 5) {
    if (!out.empty()) out += ' ';
    out += digits.substr(i, 5);
  }
  return out;
}

std::string key_fingerprint(const std::string& public_key) {
  std::string out;
  size_t start = public_key.size() == 33 ? 1 : 0;
  for (size_t i = start; i < public_key.size(); ++i) {
    if (i > start && (i - start) % 4 == 0) out += ' ';
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(public_key[i]));
    out += hex;
  }
  return out;
}

}  // namespace chat::tools
