// End-to-end encryption (docs/e2e.md) with the Signal protocol (X3DH +
// Double Ratchet) from @privacyresearch/libsignal-protocol-typescript.
// That library has no sender keys, so this client advertises no capabilities
// and sends group messages as pairwise ciphertexts to every member device.
//
// - keys: on sign-in, a device without keys makes them (identity, registration
//   id, a signed prekey, 100 one-time prekeys) and uploads the public halves
//   (PUT /v1/keys); on every connect it tops up when fewer than 20 remain.
// - sending: one ciphertext per device of the recipients and of our other
//   devices, in body.to, keyed "<user>:<device>" (Signal address name, device
//   id 1); bundles are claimed only for devices without a session.
// - receiving: our own entry is decrypted once; the plaintext is kept in
//   IndexedDB by message id, since a ratchet cannot decrypt twice.
// - a message we cannot decrypt resets the session ({"t":"reset"}), and a
//   reset we receive makes us send its message again (resend_of), only to a
//   device it was encrypted for, with the same identity key, once.
// - a device whose identity key changed, or a new device of someone we have
//   talked to, is trusted as the directory lists it and announced (onNotice).
// Every operation runs in one queue: sessions change with each message.
import { KeyHelper, SessionBuilder, SessionCipher, SignalProtocolAddress } from '@privacyresearch/libsignal-protocol-typescript';
import { ApiError } from './api.js';
import { openE2eDb, sameBytes, SignalStore } from './e2e-store.js';

const PREKEY_BATCH = 100;
const PREKEY_LOW = 20;
const MAX_PREKEY_ID = 16777215;
const DEVICE_LIST_TTL_MS = 30_000; // for the lock toggle's default; a send lists afresh
const RESET_INTERVAL_MS = 60_000; // at most one session reset per device and minute
const MESSAGE_ID = /^[0-9a-f]{16}$/;

export class E2eError extends Error {}

// ---- bytes ----

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// ArrayBuffer, Uint8Array or a binary string -> standard base64 with padding.
export function toBase64(data) {
  if (typeof data === 'string') return btoa(data);
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(text) {
  if (typeof text !== 'string' || text.length === 0 || !BASE64.test(text)) throw new E2eError('not base64');
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes.buffer;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

const addressOf = (name) => new SignalProtocolAddress(name, 1);

export class E2e {
  // api: Api; publish(conv, body, cid) -> Promise: sends an e2e message;
  // onResult(conv, id, result): a message's plaintext (or why there is none);
  // onDevices(): device lists changed (the lock toggle's default may too);
  // onNotice({ conv, user, device, kind }): a device of `user` has a new
  // identity key (kind 'changed') or is new ('new_device'); conv is where it
  // was seen, null for a keys event.
  constructor({ api, user, device, publish, onResult, onDevices, onNotice }) {
    this.api = api;
    this.me = user;
    this.device = device;
    this.self = `${user}:${device}`;
    this.publish = publish;
    this.onResult = onResult ?? (() => {});
    this.onDevices = onDevices ?? (() => {});
    this.onNotice = onNotice ?? (() => {});
    this.db = null;
    this.store = null;
    this.uploaded = false; // the directory has our keys
    this.tail = Promise.resolve();
    this.results = new Map(); // "<conv>/<id>" -> result
    this.deviceLists = new Map(); // user -> { at, devices }
    this.lastReset = new Map(); // "<user>:<device>" -> ms
    this.ready = this.run(() => this.init(), false);
  }

  // One operation at a time, after init (which itself runs first).
  run(fn, afterInit = true) {
    const p = this.tail.then(async () => {
      if (afterInit && !this.store) throw new E2eError('encryption is not available in this browser');
      return fn();
    });
    this.tail = p.catch(() => {});
    return p;
  }

  async init() {
    // WebCrypto's subtle API exists only in secure contexts (https, or
    // http://localhost and 127.0.0.1): elsewhere this client cannot encrypt.
    if (!globalThis.crypto?.subtle) {
      console.warn('e2e: no WebCrypto here (not a secure context): encryption is off');
      return false;
    }
    try {
      this.db = await openE2eDb(this.me, this.device);
    } catch (err) {
      console.warn('e2e: IndexedDB unavailable', err);
      return false;
    }
    this.store = new SignalStore(this.db);
    if (!(await this.db.get('meta', 'identity'))) await this.createKeys();
    try {
      await this.syncKeys();
    } catch (err) {
      console.warn('e2e: key upload failed', err);
    }
    return true;
  }

  close() {
    this.tail.finally(() => this.db?.close());
  }

  // ---- our keys ----

  async createKeys() {
    const identity = await KeyHelper.generateIdentityKeyPair();
    const registrationId = 1 + (crypto.getRandomValues(new Uint32Array(1))[0] % 16380);
    const signed = await KeyHelper.generateSignedPreKey(identity, 1);
    await this.store.storeSignedPreKey(1, signed.keyPair);
    await this.db.putMany('meta', [
      ['identity', identity],
      ['registration_id', registrationId],
      ['signed_prekey', { id: 1, signature: signed.signature }],
      ['next_prekey_id', 1],
      ['uploaded', false],
    ]);
  }

  async newPrekeys(count) {
    let next = (await this.db.get('meta', 'next_prekey_id')) ?? 1;
    const made = [];
    for (let i = 0; i < count; i++) {
      made.push(await KeyHelper.generatePreKey(next));
      next = next >= MAX_PREKEY_ID ? 1 : next + 1;
    }
    await this.db.putMany('prekeys', made.map((p) => [p.keyId, p.keyPair]));
    await this.db.put('meta', 'next_prekey_id', next);
    return made.map((p) => ({ id: p.keyId, key: toBase64(p.keyPair.pubKey) }));
  }

  async keyUpload(prekeys) {
    const identity = await this.db.get('meta', 'identity');
    const signed = await this.db.get('meta', 'signed_prekey');
    const signedPair = await this.store.loadSignedPreKey(signed.id);
    return {
      device: this.device,
      registration_id: await this.db.get('meta', 'registration_id'),
      identity_key: toBase64(identity.pubKey),
      signed_prekey: { id: signed.id, key: toBase64(signedPair.pubKey), signature: toBase64(signed.signature) },
      prekeys,
      capabilities: [], // no sender keys in this library
    };
  }

  // First upload, or a top-up when fewer than PREKEY_LOW one-time prekeys are left.
  async syncKeys() {
    this.uploaded = Boolean(await this.db.get('meta', 'uploaded'));
    if (this.uploaded) {
      let count = null;
      try {
        count = await this.api.keyCount(this.device);
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
        this.uploaded = false; // the directory lost (or removed) this device
      }
      if (count && count.count >= PREKEY_LOW) return;
      if (count) {
        await this.api.putKeys(await this.keyUpload(await this.newPrekeys(PREKEY_BATCH)));
        return;
      }
    }
    const body = await this.keyUpload(await this.newPrekeys(PREKEY_BATCH));
    try {
      await this.api.putKeys(body);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 409)) throw err;
      // The directory holds another identity for this device id (this
      // browser lost its keys): a new identity is a new device.
      await this.api.deleteKeys(this.device);
      await this.api.putKeys(body);
    }
    await this.db.put('meta', 'uploaded', true);
    this.uploaded = true;
  }

  // After every connect: top up (a type 3 message we decrypted used one).
  topUp() {
    return this.run(() => this.syncKeys()).catch((err) => console.warn('e2e: key top-up failed', err));
  }

  // ---- device lists ----

  async devices(user, maxAgeMs = 0) {
    const known = this.deviceLists.get(user);
    if (known && Date.now() - known.at <= maxAgeMs) return known.devices;
    const { devices } = await this.api.userDevices(user);
    const list = Array.isArray(devices) ? devices.filter((d) => typeof d?.device === 'string') : [];
    this.deviceLists.set(user, { at: Date.now(), devices: list });
    return list;
  }

  // Whether every user has a device in the directory (the lock's default):
  // true, false (a user has none, or this browser cannot encrypt), or null
  // when that is unknown (network error, 429, 5xx, our keys not uploaded):
  // main.js must then not fall back to clear text.
  async canEncryptTo(users) {
    await this.ready;
    if (!this.store) return false;
    try {
      if (!this.uploaded) await this.run(() => this.syncKeys());
      for (const u of users) {
        try {
          if ((await this.devices(u, DEVICE_LIST_TTL_MS)).length === 0) return false;
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) return false; // no such user
          throw err;
        }
      }
      return true;
    } catch (err) {
      console.warn('e2e: cannot tell whether everyone here has keys', err);
      return null;
    }
  }

  // A keys event (u/<me>/event): a device of `user` came or went.
  keysEvent(e) {
    if (typeof e.user !== 'string' || typeof e.device !== 'string') return Promise.resolve();
    return this.run(async () => {
      this.deviceLists.delete(e.user);
      const name = `${e.user}:${e.device}`;
      if (e.action === 'device_removed') {
        await this.store.forgetSessions(name);
      } else if (e.action === 'device_added' && typeof e.identity_key === 'string') {
        await this.checkIdentity(e.user, e.device, e.identity_key, null);
      }
    }).catch((err) => console.warn('e2e: keys event', err)).finally(() => this.onDevices(e.user));
  }

  // The directory's identity key for user:device against the one trusted
  // here. The directory's wins (it never changes a device's identity
  // silently, docs/e2e.md), but not silently here either: a changed key, or a
  // new device of a user we already trust a device of, is announced in `conv`
  // (onNotice). The first device of a user is trusted on first use. This
  // client has no safety-number verification yet (web/README.md).
  async checkIdentity(user, device, identityKey, conv) {
    const name = `${user}:${device}`;
    if (name === this.self) return;
    const key = fromBase64(identityKey);
    const known = await this.store.loadIdentity(name);
    if (known && sameBytes(known, key)) return;
    if (known) {
      await this.store.forgetSessions(name);
      await this.store.storeIdentity(name, key);
      this.onNotice({ conv, user, device, kind: 'changed' });
      return;
    }
    const seen = await this.knowsUser(user, name);
    await this.store.storeIdentity(name, key);
    if (seen) this.onNotice({ conv, user, device, kind: 'new_device' });
  }

  // Whether we trust the identity of a device of `user` other than `except`.
  async knowsUser(user, except) {
    return (await this.store.identityNames()).some((n) => n !== except && n.startsWith(`${user}:`));
  }

  // A session with user:device, claiming its bundle when there is none.
  async session(user, device, identityKey, conv) {
    const name = `${user}:${device}`;
    if (identityKey) await this.checkIdentity(user, device, identityKey, conv);
    const cipher = new SessionCipher(this.store, addressOf(name));
    if (await cipher.hasOpenSession()) return cipher;
    await this.claim(user, device, conv);
    return cipher;
  }

  async claim(user, device, conv) {
    const name = `${user}:${device}`;
    const { devices } = await this.api.claimKeys(user, device);
    const b = Array.isArray(devices) ? devices.find((d) => d?.device === device) : null;
    if (!b) throw new E2eError(`no keys for ${name}`);
    await this.checkIdentity(user, device, b.identity_key, conv);
    await new SessionBuilder(this.store, addressOf(name)).processPreKey({
      registrationId: b.registration_id,
      identityKey: fromBase64(b.identity_key),
      signedPreKey: {
        keyId: b.signed_prekey.id,
        publicKey: fromBase64(b.signed_prekey.key),
        signature: fromBase64(b.signed_prekey.signature),
      },
      preKey: b.prekey ? { keyId: b.prekey.id, publicKey: fromBase64(b.prekey.key) } : undefined,
    });
  }

  static async seal(cipher, payload) {
    const m = await cipher.encrypt(utf8.encode(JSON.stringify(payload)).buffer);
    return { type: m.type, body: toBase64(m.body) };
  }

  // ---- sending ----

  // The e2e body for `payload` (a plaintext object, docs/e2e.md) to every
  // device of `recipients` and our own other devices, in conversation `conv`.
  // Throws when a recipient cannot get it (no device in the directory, no
  // session, or the directory cannot be asked): never a reason to send in
  // clear. With `cid` (a message rememberSent kept), the devices it was
  // encrypted for and their identity keys are recorded with it: only those
  // may ask for it again (answerReset).
  encrypt(recipients, payload, { conv = null, cid = null } = {}) {
    return this.run(async () => {
      const to = {};
      const users = [...new Set([...recipients, this.me])];
      for (const user of users) {
        let list;
        try {
          list = await this.devices(user);
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) throw new E2eError(`no such user: ${user}`);
          throw err;
        }
        if (user !== this.me && list.length === 0) {
          throw new E2eError(`${user} has no device with encryption keys`);
        }
        await this.dropStale(user, list);
        let sealed = 0;
        for (const d of list) {
          const name = `${user}:${d.device}`;
          if (name === this.self) continue;
          try {
            to[name] = await E2e.seal(await this.session(user, d.device, d.identity_key, conv), payload);
            sealed++;
          } catch (err) {
            console.warn(`e2e: cannot encrypt for ${name}`, err);
          }
        }
        if (user !== this.me && sealed === 0) throw new E2eError(`cannot encrypt for ${user}`);
      }
      if (Object.keys(to).length === 0) throw new E2eError('no other device to encrypt for');
      if (cid) {
        const record = await this.db.get('plain', `cid:${cid}`);
        if (!record) throw new E2eError('the message to encrypt is not kept');
        const keys = {};
        for (const name of Object.keys(to)) {
          const identity = await this.store.loadIdentity(name);
          if (identity) keys[name] = toBase64(identity);
        }
        await this.db.put('plain', `cid:${cid}`, { ...record, to: keys });
      }
      return { to };
    });
  }

  // Sessions with devices of `user` that the directory no longer lists.
  async dropStale(user, list) {
    const listed = new Set(list.map((d) => `${user}:${d.device}`));
    for (const name of await this.store.sessionNames()) {
      if (name.startsWith(`${user}:`) && !listed.has(name)) await this.store.forgetSessions(name);
    }
  }

  // What we send, by cid until the server's id is known (history shows it).
  // The text of a pending message lives here, not in the outbox
  // (localStorage): see sentText and forgetSent.
  rememberSent(conv, cid, entry) {
    return this.run(() => this.db.put('plain', `cid:${cid}`, { conv, from: this.me, dev: this.device, ts: Date.now(), ...entry }));
  }

  // The text of a message this device is sending (an outbox entry after a
  // reload), or null.
  sentText(cid) {
    return this.run(async () => {
      const record = await this.db.get('plain', `cid:${cid}`);
      return typeof record?.text === 'string' ? record.text : null;
    });
  }

  // An outbox entry that will not be sent (dismissed): its text goes.
  forgetSent(cid) {
    return this.run(() => this.db.del('plain', `cid:${cid}`)).catch(() => {});
  }

  // At start: the texts of messages that are no longer in the outbox and
  // never came back from the server (failed, dismissed, logged out) go.
  pruneSent(pendingCids) {
    const keep = new Set(pendingCids);
    return this.run(async () => {
      for (const key of await this.db.keys('plain')) {
        if (typeof key !== 'string' || !key.startsWith('cid:') || keep.has(key.slice(4))) continue;
        const record = await this.db.get('plain', key);
        if (typeof record?.text === 'string') await this.db.del('plain', key);
      }
    }).catch(() => {});
  }

  // ---- receiving ----

  // Decrypts (once) this device's entry of an e2e envelope and reports the
  // result through onResult: { state: 'ok', text } | 'hidden' (a control
  // message) | 'not_for_device' | 'sender_keys' | 'failed'. `history`: the
  // envelope comes from a history page (old news, not live or sync).
  process(env, { history = false } = {}) {
    const key = `${env.conv}/${env.id}`;
    const known = this.results.get(key);
    if (known) return Promise.resolve(known);
    return this.run(async () => {
      let result = this.results.get(key) ?? (await this.db.get('plain', key));
      if (!result && env.from === this.me && env.dev === this.device && typeof env.cid === 'string') {
        result = await this.db.get('plain', `cid:${env.cid}`);
        if (result) {
          await this.db.put('plain', key, result);
          await this.db.del('plain', `cid:${env.cid}`);
        }
      }
      if (!result) result = await this.decrypt(env, history);
      this.results.set(key, result);
      this.onResult(env.conv, env.id, result);
      return result;
    }).catch((err) => {
      if (this.store) console.warn('e2e: processing failed', err);
      const result = { state: this.store ? 'failed' : 'unavailable' };
      this.onResult(env.conv, env.id, result);
      return result;
    });
  }

  // What we already know of an envelope (the conversation list's last
  // message), without decrypting: that happens in order, with sync.
  lookup(env) {
    const key = `${env.conv}/${env.id}`;
    if (this.results.has(key)) return;
    this.run(async () => {
      const result = this.results.get(key) ?? (await this.db.get('plain', key));
      if (result) this.onResult(env.conv, env.id, result);
    }).catch(() => {});
  }

  async decrypt(env, history) {
    const key = `${env.conv}/${env.id}`;
    const body = env.body && typeof env.body === 'object' ? env.body : {};
    const entry = body.to && typeof body.to === 'object' ? body.to[this.self] : undefined;
    if (!entry) {
      // Not addressed to us: sent before this device existed, or a sender-key
      // group message (which this library cannot read).
      return { state: typeof body.group === 'string' ? 'sender_keys' : 'not_for_device' };
    }
    const name = `${env.from}:${env.dev}`;
    const cipher = new SessionCipher(this.store, addressOf(name));
    // A session-starting message from a device we trust no key for yet,
    // while we trust another device of that user: a new device (announced).
    const newDevice = entry.type === 3 && name !== this.self && !(await this.store.loadIdentity(name)) &&
      (await this.knowsUser(env.from, name));
    let msg;
    try {
      const bytes = fromBase64(entry.body);
      let plain;
      if (entry.type === 3) plain = await cipher.decryptPreKeyWhisperMessage(bytes);
      else if (entry.type === 1) plain = await cipher.decryptWhisperMessage(bytes);
      else throw new E2eError(`unknown ciphertext type ${entry.type}`);
      msg = JSON.parse(utf8Strict.decode(plain));
      if (!msg || typeof msg !== 'object') throw new E2eError('plaintext is not an object');
    } catch (err) {
      console.warn(`e2e: cannot decrypt ${key} from ${name}: ${err.message}`);
      const failed = { state: 'failed', from: env.from, dev: env.dev };
      await this.db.put('plain', key, failed);
      await this.resetSession(env, name);
      return failed;
    }
    if (newDevice) this.onNotice({ conv: env.conv, user: env.from, device: env.dev, kind: 'new_device' });
    if (msg.t === 'text' && typeof msg.text === 'string') {
      const ok = { state: 'ok', text: msg.text, from: env.from, dev: env.dev };
      const target = `${env.conv}/${msg.resend_of}`;
      const original = typeof msg.resend_of === 'string' && MESSAGE_ID.test(msg.resend_of) && msg.resend_of < env.id
        ? (this.results.get(target) ?? (await this.db.get('plain', target)))
        : null;
      if (original?.state === 'failed' && original.from === env.from && original.dev === env.dev) {
        // The sender's answer to our reset: the text of a message of this
        // conversation that we could not decrypt, from the device that sent
        // it. It shows in that message's place (store.js checks the sender
        // too), and the resend itself is hidden. Any other resend_of (a
        // message we could read, or someone else's) is an ordinary message.
        const resent = { ...ok, resent: true };
        await this.db.put('plain', target, resent);
        this.results.set(target, resent);
        this.onResult(env.conv, msg.resend_of, resent);
        const hidden = { state: 'hidden' };
        await this.db.put('plain', key, hidden);
        return hidden;
      }
      await this.db.put('plain', key, ok);
      return ok;
    }
    const hidden = { state: 'hidden' };
    await this.db.put('plain', key, hidden);
    if (msg.t === 'reset') await this.answerReset(env, name, cipher, msg.failed, history);
    // "skdm" (a sender key for a group) means nothing to this client.
    return hidden;
  }

  // We could not decrypt `env`: start a new session with its sender's device
  // and ask it to send the message again. At most once a minute per device.
  async resetSession(env, name) {
    const last = this.lastReset.get(name) ?? 0;
    if (Date.now() - last < RESET_INTERVAL_MS) return;
    this.lastReset.set(name, Date.now());
    try {
      await this.store.forgetSessions(name);
      await this.claim(env.from, env.dev, env.conv);
      const cipher = new SessionCipher(this.store, addressOf(name));
      const body = { to: { [name]: await E2e.seal(cipher, { t: 'reset', failed: env.id }) } };
      await this.sendControl(env.conv, body);
    } catch (err) {
      console.warn(`e2e: session reset with ${name} failed`, err);
    }
  }

  // The other side reset our session (decrypting its message replaced it):
  // send the message it could not read again, only if this device sent it in
  // this conversation, encrypted for the asking device with the identity key
  // it has now, and only once per message and device. A reset first seen in
  // a history page (not live or by sync) is old news and not answered.
  async answerReset(env, name, cipher, failed, history) {
    if (history || typeof failed !== 'string' || !MESSAGE_ID.test(failed)) return;
    const key = `${env.conv}/${failed}`;
    const sent = await this.db.get('plain', key);
    if (sent?.state !== 'ok' || sent.from !== this.me || sent.dev !== this.device || sent.conv !== env.conv) return;
    const to = sent.to && typeof sent.to === 'object' ? sent.to : {};
    const identity = await this.store.loadIdentity(name);
    if (!Object.hasOwn(to, name) || !identity || toBase64(identity) !== to[name]) {
      console.warn(`e2e: reset for ${key} from ${name}, which it was not encrypted for: not answered`);
      return;
    }
    const answered = Array.isArray(sent.answered) ? sent.answered : [];
    if (answered.includes(name)) return;
    const record = { ...sent, answered: [...answered, name] };
    await this.db.put('plain', key, record);
    if (this.results.has(key)) this.results.set(key, record);
    try {
      const body = { to: { [name]: await E2e.seal(cipher, { t: 'text', text: sent.text, resend_of: failed }) } };
      await this.sendControl(env.conv, body);
    } catch (err) {
      console.warn(`e2e: resend to ${name} failed`, err);
    }
  }

  async sendControl(conv, body) {
    const cid = `${Date.now().toString(36)}-e2e-${crypto.getRandomValues(new Uint32Array(2)).join('')}`.slice(0, 64);
    await this.db.put('plain', `cid:${cid}`, { conv, from: this.me, dev: this.device, state: 'hidden' });
    // Not awaited: the queue must not wait for a PUBACK across a reconnect.
    this.publish(conv, body, cid).catch((err) => console.warn('e2e: control message not sent', err));
  }
}
