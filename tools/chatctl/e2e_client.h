// chatctl's end-to-end encryption client (docs/e2e.md): the device's keys in
// the directory, sealing a text for every device of a conversation, and
// opening what arrives (listen, history), with the session reset of
// docs/e2e.md when an entry does not decrypt.
//
// The Signal device of a chatctl profile is the device it sends from,
// "<device>-tx" (send_command.cpp), so that the envelope's `dev` names the
// sender's Signal address "<from>:<dev>" for every recipient. Its state is
// an E2eStore under <home>/e2e/<user>/<device>-tx/.
//
// `listen` publishes its control messages (reset requests, resends) with the
// same client id "<device>-tx": a different one would change the envelope's
// `dev`, and recipients would look for the wrong session. A `chatctl send`
// running at that moment is taken over by the broker; it reconnects and
// publishes again with the same cid, which the broker acknowledges without
// delivering twice (docs/protocol.md), so nothing is lost or duplicated.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chat/common/status.h"
#include "chatctl/context.h"
#include "chatctl/signal_store.h"

namespace chat::tools {

// "<device>-tx" for this run's device (--device, else the profile's).
Result<std::string> e2e_device(Context& ctx, Credentials& credentials);

struct PrekeyCount {
  int64_t count = 0;
  int64_t signed_prekey_id = 0;
};

class E2eClient {
 public:
  E2eClient(Context& ctx, Credentials& credentials, std::string device);

  const std::string& device() const { return device_; }
  std::string my_name() const;  // "<user>:<device>"
  bool has_keys() const { return store_.exists(); }
  const E2eStore& store() const { return store_; }

  // keys init: a new identity, signed prekey and kPrekeyBatch one-time
  // prekeys, uploaded with PUT /v1/keys. kAlreadyExists when this device
  // has keys, unless `force`: then DELETE /v1/keys/<device> first and a new
  // identity (the directory tells everyone: device_removed, device_added).
  // Nothing is kept locally unless the upload succeeds.
  Status init_keys(bool force);
  Result<PrekeyCount> server_count();
  // Tops the server's one-time prekeys up to kPrekeyBatch; returns how many
  // were uploaded.
  Result<int> refill();
  // refill() when fewer than kPrekeyLowWater remain; problems are warnings.
  void top_up_if_low();

  // The e2e body of `text` for `peer` (a user id or g:<gid>): lists the
  // devices of the recipients and of this user, claims bundles for devices
  // without a session, and encrypts per device; in a group whose devices all
  // have the sender_keys capability, one sender-key ciphertext plus the
  // distribution messages still owed. Caches the plaintext under `cid`.
  Result<nlohmann::json> seal_text(const std::string& peer, const std::string& text,
                                   const std::string& cid, const std::string& resend_of = {});
  // The envelope of a sent message: the cached plaintext moves to its id.
  void sent(const std::string& cid, const nlohmann::json& envelope);

  // An e2e envelope for people (`line`) and for --json (`json`: the envelope
  // plus an "e2e" object). Decrypts at most once per message (the plaintext
  // is cached by id) and runs a session reset when the entry for this device
  // does not decrypt. `live` (listen, not history): a reset request not yet
  // answered is answered once, by sending the message again, and only when
  // this device sent that message to the requesting device in the same
  // conversation. A text with `resend_of` replaces the original's entry only
  // when that one failed here, came from the same device and conversation.
  // `counts`: false for protocol messages (reset requests).
  struct Shown {
    std::string line;
    nlohmann::json json;
    bool counts = true;
  };
  Shown show(const nlohmann::json& envelope, bool with_date = false, bool live = false);

  // A "keys" event (device_added / device_removed): drops what belongs to a
  // removed device or a changed identity (its session, and this device's
  // sender key of every group it held it for: the next group message has a
  // new one), clears verified marks of a user with a new device; returns the
  // line to print.
  std::string on_keys_event(const nlohmann::json& event, int64_t now_ms);
  // A "group" event: when a member was removed or left, this device's sender
  // key of that group is dropped (the next message makes a new one).
  void on_group_event(const nlohmann::json& event);

  // How control messages (reset requests, resends) are published: by
  // default send_one_message as device(); tests put a fake in. Returns the
  // envelope.
  using Publisher = std::function<Result<nlohmann::json>(
      const std::string& topic, const nlohmann::json& body, const std::string& cid)>;
  void set_publisher(Publisher publisher) { publisher_ = std::move(publisher); }

 private:
  struct Target {
    std::string user;
    std::string device;
    std::string identity_key;  // from the directory (bytes)
    bool sender_keys = false;
    std::string name() const { return user + ":" + device; }
  };
  Result<std::vector<Target>> devices_of(const std::string& user);
  Result<std::vector<std::string>> group_members(const std::string& gid);
  Result<nlohmann::json> claim(const std::string& user, const std::string& device);
  Status request_reset(const std::string& user, const std::string& device, const std::string& conv,
                       const std::string& failed_id);
  // Answers the reset request `reset_id` (arrived in `conv`) once.
  Status answer_reset(const std::string& reset_id, const std::string& requester,
                      const std::string& failed_id, const std::string& conv);
  Status publish(const std::string& conv, const nlohmann::json& body, const std::string& cid);
  void print_warnings(std::vector<std::string>& warnings);

  Context& ctx_;
  Credentials& credentials_;
  std::string device_;
  E2eStore store_;
  std::set<std::string> reset_requested_;  // devices asked for a new session in this run
  Publisher publisher_;
};

// The REST path prefix of a user's directory entries, url-encoded.
std::string devices_path(const std::string& user);

}  // namespace chat::tools
