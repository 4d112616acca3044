// Entry point: boots the login screen or the chat, and wires the REST API,
// the MQTT session, the store and the views together (the ChatApp below).
import { Api, ApiError, loadConfig } from './api.js';
import { E2e } from './e2e.js';
import { MqttSession } from './mqtt-session.js';
import { Store } from './store.js';
import { ChatView, renderLogin } from './ui.js';
import { dmConv, DEVICE_ID, newCid, parseConv, publishTopic, randomToken, USER_ID } from './util.js';

const root = document.getElementById('app');

// This browser's device id: made once, kept in localStorage (CONTRACT §2:
// ^[A-Za-z0-9_-]{1,64}$). Every account used in this browser shares it.
function deviceId() {
  let id = localStorage.getItem('chat.device');
  if (!id || !DEVICE_ID.test(id)) {
    id = `web-${randomToken(20)}`;
    localStorage.setItem('chat.device', id);
  }
  return id;
}

// Readable messages for the REST errors a person can run into.
function explain(err) {
  if (!(err instanceof ApiError)) return `Cannot reach the server (${err.message}).`;
  if (err.code === 'invalid_grant') return 'Wrong user id or password.';
  return err.message || `Request failed (${err.status}).`;
}

const ERROR_TEXT = {
  unknown_peer: 'no such user',
  not_authorized: 'not allowed',
  too_large: 'message too large',
  rate_limited: 'too many messages, slow down',
  invalid_payload: 'invalid message',
};

class ChatApp {
  constructor(api, config) {
    this.api = api;
    const { user, device } = api.session;
    this.store = new Store(user, device);
    this.cursorKey = `chat.cursor.${user}.${device}`;
    this.receipted = new Map(); // conv -> newest id a read receipt covered
    this.typingSent = 0;
    this.typingTimer = null;
    this.lockKey = `chat.lock.${user}.${device}`;
    this.lockChoices = this.loadLockChoices(); // conv -> true/false the user chose
    this.encryptedKey = `chat.encrypted.${user}.${device}`;
    this.encryptedConvs = this.loadEncryptedConvs(); // convs with e2e messages: the lock stays on
    this.encrypting = new Set(); // cids being encrypted
    this.e2e = new E2e({
      api,
      user,
      device,
      publish: (conv, body, cid) => this.mqtt.publish(publishTopic(conv, user), { cid, type: 'e2e', body }),
      onResult: (conv, id, result) => this.store.setPlain(conv, id, result),
      onDevices: () => this.devicesChanged(),
      onNotice: (n) => this.identityNotice(n),
    });
    this.store.onE2E = (env, opts) => {
      this.markEncrypted(env.conv);
      this.e2e.process(env, opts);
    };
    this.view = new ChatView(root, this.store, {
      open: (conv) => this.navigate(conv),
      close: () => this.navigate(null),
      send: (text) => this.send(text),
      loadOlder: () => this.loadOlder(),
      startChat: (peer) => this.startChat(peer),
      createGroup: (name, members) => this.createGroup(name, members),
      logout: () => this.logout(),
      reconnect: () => this.mqtt.reconnectNow(),
      typing: () => this.typing(),
      dismiss: (cid) => this.dismiss(cid),
      toggleEncryption: () => this.toggleEncryption(),
    });
    this.mqtt = new MqttSession({
      url: config.mqtt_ws_url,
      api,
      user,
      device,
      handlers: {
        onState: (state, detail) => this.view.setConnection(state, detail),
        onConnected: () => this.afterConnect(),
        onInbox: (kind, data) => this.onInbox(kind, data),
        onPresence: (who, p) => this.store.setPresence(who, p),
      },
    });
  }

  async start() {
    window.addEventListener('hashchange', this.onHash);
    document.addEventListener('visibilitychange', this.onVisibility);
    this.restoreOutboxTexts();
    await Promise.allSettled([this.loadGroups(), this.loadConversations()]);
    this.onHash();
    this.mqtt.start();
  }

  async stop() {
    window.removeEventListener('hashchange', this.onHash);
    document.removeEventListener('visibilitychange', this.onVisibility);
    await this.mqtt.stop();
    this.e2e.close();
  }

  fail(what, err) {
    if (!this.api.session) return; // logged out meanwhile; the login screen says why
    this.view.showError(`${what}: ${explain(err)}`);
  }

  // ---- conversations, history, sync ----

  async loadConversations() {
    try {
      const { conversations } = await this.api.conversations();
      this.store.setConversations(conversations);
      for (const c of conversations) if (c.last?.type === 'e2e') this.e2e.lookup(c.last);
    } catch (err) {
      this.fail('Could not load conversations', err);
    }
  }

  async loadGroups() {
    try {
      const { groups } = await this.api.groups();
      this.store.setGroups(groups);
    } catch (err) {
      this.fail('Could not load groups', err);
    }
  }

  // On every (re)connect, once subscribed: the server's conversation list,
  // then GET /v1/sync from this device's cursor until has_more is false,
  // then the outbox and any read receipt owed.
  // One run at a time (a quick reconnect waits for the previous run), so the
  // cursor only moves forward.
  afterConnect() {
    this.connectWork = (this.connectWork ?? Promise.resolve()).then(async () => {
      await this.loadConversations();
      await this.sync();
      this.flushOutbox();
      this.sendReadReceipt();
      this.watchPresence();
      await this.e2e.topUp();
    }).catch((err) => console.warn('after-connect work failed', err));
    return this.connectWork;
  }

  async sync() {
    let since = localStorage.getItem(this.cursorKey);
    if (since === null) {
      // A new device starts at the newest message the conversation list
      // shows: older ones come from history pages when a conversation opens,
      // so signing in on a new browser does not download the whole archive.
      since = this.store.list().reduce((max, c) => (c.last && c.last.id > max ? c.last.id : max), '');
      localStorage.setItem(this.cursorKey, since);
    }
    try {
      for (let page = 0; page < 10_000; page++) {
        const res = await this.api.sync(since);
        this.store.addEnvelopes(res.messages);
        if (res.next) {
          since = res.next;
          localStorage.setItem(this.cursorKey, since);
        }
        if (!res.has_more || res.messages.length === 0) break;
      }
    } catch (err) {
      this.fail('Could not sync', err);
    }
    this.sendReadReceipt();
  }

  onHash = () => {
    let conv = null;
    try {
      conv = decodeURIComponent(location.hash.slice(1)) || null;
    } catch {
      conv = null;
    }
    if (conv && !this.isConv(conv)) conv = null;
    this.open(conv);
  };

  isConv(conv) {
    const me = this.store.me;
    if (/^g:[A-Za-z0-9_-]{1,64}$/.test(conv)) return true;
    const m = /^dm:([^:]+):([^:]+)$/.exec(conv);
    return Boolean(m && USER_ID.test(m[1]) && USER_ID.test(m[2]) && m[1] < m[2] && (m[1] === me || m[2] === me));
  }

  // The open conversation lives in the URL's fragment: reload keeps it, and
  // the browser's back button returns to the list on a phone.
  navigate(conv) {
    const hash = conv ? `#${encodeURIComponent(conv)}` : '';
    if (location.hash === hash) {
      this.open(conv);
    } else if (conv) {
      location.hash = hash; // hashchange -> onHash -> open
    } else {
      history.pushState(null, '', location.pathname + location.search);
      this.open(null);
    }
  }

  async open(conv) {
    this.view.show(conv);
    this.updateReading();
    this.watchPresence();
    if (!conv) return;
    this.decideEncryption(conv);
    const t = this.store.thread(conv);
    if (!t.loaded && !t.loading) {
      t.loading = true;
      try {
        const page = await this.api.messages(conv);
        this.store.addHistory(conv, page, { older: false });
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 403)) this.fail('Could not load messages', err);
      } finally {
        t.loading = false;
      }
    }
    this.sendReadReceipt();
  }

  async loadOlder() {
    const conv = this.view.openConv;
    const t = conv && this.store.thread(conv);
    if (!t || !t.hasOlder || t.loadingOlder) return;
    t.loadingOlder = true;
    try {
      const page = await this.api.messages(conv, { before: t.before });
      t.loadingOlder = false;
      this.store.addHistory(conv, page, { older: true });
    } catch (err) {
      t.loadingOlder = false;
      this.fail('Could not load older messages', err);
    }
  }

  startChat(peer) {
    const conv = dmConv(this.store.me, peer);
    this.store.touch(conv);
    this.navigate(conv);
  }

  async createGroup(name, members) {
    try {
      const group = await this.api.createGroup(name, members);
      this.store.setGroups([group]);
      this.navigate(`g:${group.id}`);
      return true;
    } catch (err) {
      this.fail('Could not create the group', err);
      return false;
    }
  }

  async logout() {
    const { user, device } = this.api.session ?? {};
    await this.mqtt.stop({ endSession: true });
    localStorage.removeItem(`chat.outbox.${user}.${device}`);
    await this.e2e.pruneSent([]); // the texts of messages not sent go with the outbox
    this.e2e.close(); // this device's keys stay (IndexedDB), as does its directory entry
    await this.api.logout();
    this.api.onLoggedOut('');
  }

  // ---- live traffic ----

  onInbox(kind, data) {
    if (kind === 'msg') {
      if (this.store.addEnvelopes([data], data.conv) && data.conv === this.store.reading) {
        this.sendReadReceipt();
      }
      const parsed = parseConv(data.conv, this.store.me);
      if (parsed.kind === 'dm' && !this.store.presence.has(parsed.peer)) this.mqtt.retryPresence(parsed.peer);
    } else if (kind === 'receipt') {
      this.store.applyReceipt(data);
    } else if (kind === 'typing') {
      this.store.setTyping(data);
      clearTimeout(this.typingExpiry);
      this.typingExpiry = setTimeout(() => this.store.changed(), 6500);
    } else if (kind === 'event') {
      if (data.type === 'error' && data.cid) {
        this.store.failPending(data.cid, ERROR_TEXT[data.code] ?? data.reason ?? data.code);
      } else if (data.type === 'group') {
        this.store.groupEvent(data);
        if (data.action === 'created' || data.user === this.store.me) this.loadGroups();
        this.watchPresence();
        this.devicesChanged();
      } else if (data.type === 'keys') {
        this.e2e.keysEvent(data);
      }
    }
  }

  // ---- sending ----

  // Sent encrypted unless the lock is off: a lock that could not be decided
  // (the key directory did not answer) counts as on, so a failed check makes
  // the message fail visibly (or go encrypted), never go in the clear.
  async send(text) {
    const conv = this.view.openConv;
    if (!conv) return;
    const cid = newCid();
    this.stopTyping();
    let enc = this.store.encryptionOf(conv);
    if (enc.pending || enc.stale) enc = await this.decideEncryption(conv);
    const encrypted = enc.on;
    this.store.addPending(conv, cid, encrypted ? 'e2e' : 'text', encrypted ? null : text, encrypted ? text : undefined);
    const entry = this.store.outbox.get(cid);
    if (encrypted) this.sendEncrypted(entry);
    else if (this.mqtt.online) this.publish(entry);
  }

  dismiss(cid) {
    const entry = this.store.outbox.get(cid);
    if (entry?.type === 'e2e' && entry.state === 'failed') this.e2e.forgetSent(cid);
    this.store.dismissFailed(cid);
  }

  // After a reload, encrypted outbox entries come back without their text
  // (the outbox in localStorage never holds it): it is in IndexedDB, by cid.
  // Texts of messages no longer in the outbox go from there.
  restoreOutboxTexts() {
    const pending = this.store.pendingToSend().filter((e) => e.type === 'e2e');
    this.e2e.pruneSent(pending.map((e) => e.cid));
    for (const entry of pending) {
      if (typeof entry.text === 'string') continue;
      this.e2e.sentText(entry.cid).then((text) => {
        if (text !== null && this.store.outbox.get(entry.cid) === entry) {
          entry.text = text;
          this.store.changed(entry.conv);
        }
      }).catch(() => {});
    }
  }

  // ---- end-to-end encryption (docs/e2e.md, e2e.js) ----

  // Who gets a message in `conv` besides our own devices, or null if unknown.
  recipients(conv) {
    const parsed = parseConv(conv, this.store.me);
    if (parsed.kind === 'dm') return [parsed.peer];
    const members = this.store.convs.get(conv)?.members;
    return members ? members.filter((m) => m !== this.store.me) : null;
  }

  loadLockChoices() {
    try {
      const saved = JSON.parse(localStorage.getItem(this.lockKey) ?? '{}');
      return saved && typeof saved === 'object' ? saved : {};
    } catch {
      return {};
    }
  }

  loadEncryptedConvs() {
    try {
      const saved = JSON.parse(localStorage.getItem(this.encryptedKey) ?? '[]');
      return new Set(Array.isArray(saved) ? saved.filter((c) => typeof c === 'string') : []);
    } catch {
      return new Set();
    }
  }

  // `conv` has been encrypted (an e2e message sent or seen there): from now
  // on its lock is on unless the user turns it off.
  markEncrypted(conv) {
    if (this.encryptedConvs.has(conv)) return;
    this.encryptedConvs.add(conv);
    localStorage.setItem(this.encryptedKey, JSON.stringify([...this.encryptedConvs]));
    const state = this.store.encryption.get(conv);
    if (state && !state.explicit && !state.on) this.store.setEncryption(conv, { on: true, pending: false, explicit: false });
  }

  // The lock of `conv` ({ on, pending, explicit, unknown }), in this order:
  // what the user chose there (a click); on once the conversation has been
  // encrypted (only a click turns it off); on when every recipient has a
  // device in the key directory, off when one has none. When that cannot be
  // told (network error, 429, 5xx, our keys not uploaded) the last decided
  // state stays, and without one the lock is on ("unknown"): a failed check
  // never makes a message go in the clear.
  async decideEncryption(conv) {
    const decided = (state) => {
      this.store.setEncryption(conv, state);
      return state;
    };
    const choice = this.lockChoices[conv];
    if (typeof choice === 'boolean') return decided({ on: choice, pending: false, explicit: true });
    if (this.encryptedConvs.has(conv)) return decided({ on: true, pending: false, explicit: false });
    const users = this.recipients(conv);
    const can = users ? await this.e2e.canEncryptTo(users) : null;
    if (typeof this.lockChoices[conv] === 'boolean' || this.encryptedConvs.has(conv)) {
      return this.decideEncryption(conv); // chosen, or encrypted, meanwhile
    }
    if (can !== null) return decided({ on: can, pending: false, explicit: false });
    const last = this.store.encryption.get(conv);
    if (last && !last.pending) return decided({ ...last, stale: false });
    return decided({ on: true, pending: false, explicit: false, unknown: true });
  }

  toggleEncryption() {
    const conv = this.view.openConv;
    if (!conv) return;
    const on = !this.store.encryptionOf(conv).on;
    this.lockChoices[conv] = on;
    localStorage.setItem(this.lockKey, JSON.stringify(this.lockChoices));
    this.store.setEncryption(conv, { on, pending: false, explicit: true });
  }

  // Devices came or went (a keys event, group changes): defaults may change
  // (decided again before the next send; the last decision stays meanwhile).
  devicesChanged() {
    for (const [conv, state] of this.store.encryption) {
      if (!state.explicit) this.store.encryption.set(conv, { ...state, stale: true });
    }
    if (this.view.openConv) this.decideEncryption(this.view.openConv);
  }

  // A device's identity key changed, or a user we talk to has a new device
  // (e2e.js): said in the conversation where it was seen, or for a keys
  // event in every conversation with that user.
  identityNotice({ conv, user, device, kind }) {
    const who = user === this.store.me ? 'Your' : `${user}’s`;
    const text = kind === 'changed'
      ? `${who} device ${device} has a new security key`
      : `${user === this.store.me ? 'You have' : `${user} has`} a new device ${device} with its own security key`;
    let convs = conv ? [conv] : [];
    if (!conv) {
      for (const c of this.store.convs.values()) {
        const parsed = parseConv(c.conv, this.store.me);
        if (parsed.kind === 'dm' ? parsed.peer === user : !c.left && c.members?.includes(user)) convs.push(c.conv);
      }
      if (user === this.store.me) convs = this.view.openConv ? [this.view.openConv] : [];
    }
    for (const c of convs) this.store.addNotice(c, text);
  }

  // Encrypts an outbox entry once (its ciphertext is what every resend
  // publishes; the server de-duplicates by cid), then publishes it. The
  // plaintext is kept by cid in IndexedDB (not in the outbox), so this device
  // shows it after a reload; with it, the devices it was encrypted for.
  async sendEncrypted(entry) {
    if (!entry.body) {
      if (this.encrypting.has(entry.cid)) return;
      this.encrypting.add(entry.cid);
      try {
        if (typeof entry.text !== 'string') {
          entry.text = await this.e2e.sentText(entry.cid);
          if (entry.text === null) throw new Error('its text is no longer here');
        }
        await this.e2e.rememberSent(entry.conv, entry.cid, { state: 'ok', text: entry.text });
        if (!this.store.convs.get(entry.conv)?.members && parseConv(entry.conv, this.store.me).kind === 'g') {
          await this.loadGroups();
        }
        const users = this.recipients(entry.conv);
        if (!users) throw new Error('the members of this group are not known');
        entry.body = await this.e2e.encrypt(users, { t: 'text', text: entry.text }, { conv: entry.conv, cid: entry.cid });
        this.markEncrypted(entry.conv);
        this.store.saveOutbox();
      } catch (err) {
        this.store.failPending(entry.cid, `cannot encrypt (${err.message})`);
        return;
      } finally {
        this.encrypting.delete(entry.cid);
      }
    }
    if (this.mqtt.online && this.store.outbox.get(entry.cid) === entry) this.publish(entry);
  }

  // QoS 1 to dm/<peer> or g/<gid> (CONTRACT §3). The entry stays pending
  // until our own copy comes back on u/<me>/msg with its server id; a
  // refusal (PUBACK >= 0x80, or an error event for the cid) marks it failed.
  // Re-sending after a reconnect is safe: the server de-duplicates by cid.
  publish(entry) {
    const topic = publishTopic(entry.conv, this.store.me);
    this.mqtt
      .publish(topic, { cid: entry.cid, type: entry.type, body: entry.body })
      .catch((err) => {
        if (typeof err.code === 'number' && err.code >= 0x80) {
          // The error event usually says why first; this is the fallback.
          setTimeout(() => this.store.failPending(entry.cid, 'refused by the server'), 1500);
        }
        // Otherwise the connection dropped: the outbox is sent again on reconnect.
      });
  }

  flushOutbox() {
    for (const entry of this.store.pendingToSend()) {
      if (entry.type === 'e2e') this.sendEncrypted(entry);
      else this.publish(entry);
    }
  }

  // ---- read receipts, typing, presence ----

  updateReading() {
    const conv = document.visibilityState === 'visible' ? this.view.openConv : null;
    this.store.setReading(conv);
  }

  onVisibility = () => {
    this.updateReading();
    this.sendReadReceipt();
  };

  // While a conversation is on screen, a "read" receipt for the newest
  // message of each other sender moves our read marker (docs/protocol.md
  // "Receipts and read markers") and tells the senders.
  sendReadReceipt() {
    const conv = this.store.reading;
    if (!conv || !this.mqtt.online) return;
    const t = this.store.threads.get(conv);
    if (!t?.loaded) return;
    const c = this.store.conv(conv);
    if (c.owed) {
      this.receipted.delete(conv); // the server counts unread ones: cover the newest
      c.owed = false;
    } else if (!this.receipted.has(conv)) {
      // Nothing was unread: only what arrives from now on needs a receipt.
      this.receipted.set(conv, this.store.newestFromOthers(conv));
    }
    const ids = this.store.receiptIds(conv, this.receipted.get(conv));
    if (ids.length === 0) return;
    this.receipted.set(conv, ids.at(-1));
    this.mqtt
      .publish(`${publishTopic(conv, this.store.me)}/receipt`, { ids, status: 'read' })
      .catch(() => {
      c.owed = true; // offline: send it after the next connect
    });
  }

  // Typing (QoS 0): "composing" at most every 3 s while typing, "paused"
  // after 4 s without a keystroke or when the message is sent.
  typing() {
    const conv = this.view.openConv;
    if (!conv || !this.mqtt.online) return;
    const now = Date.now();
    if (now - this.typingSent > 3000) {
      this.typingSent = now;
      this.typingConv = conv;
      this.mqtt.publish(`${publishTopic(conv, this.store.me)}/typing`, { state: 'composing' }, 0).catch(() => {});
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), 4000);
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    if (!this.typingSent || !this.typingConv) return;
    const conv = this.typingConv;
    this.typingSent = 0;
    this.typingConv = null;
    if (this.mqtt.online) {
      this.mqtt.publish(`${publishTopic(conv, this.store.me)}/typing`, { state: 'paused' }, 0).catch(() => {});
    }
  }

  // Presence of the peer of the open direct chat (allowed once we share a
  // conversation; a refused subscription just shows nothing).
  watchPresence() {
    const conv = this.view.openConv;
    const parsed = conv ? parseConv(conv, this.store.me) : null;
    this.mqtt.watchPresence(parsed?.kind === 'dm' ? [parsed.peer] : []);
  }
}

// ---- boot ----

let config = null;
let chat = null;
const api = new Api({ onLoggedOut: (reason) => showLogin(reason) });

async function showLogin(notice = '') {
  if (chat) {
    const old = chat;
    chat = null;
    await old.stop();
  }
  history.replaceState(null, '', location.pathname + location.search);
  renderLogin(root, {
    login: async (user, password) => {
      try {
        await api.login(user, password, deviceId());
      } catch (err) {
        throw new Error(explain(err));
      }
      startChat();
    },
    signup: async (user, password) => {
      try {
        await api.signup(user, password);
        await api.login(user, password, deviceId());
      } catch (err) {
        throw new Error(err instanceof ApiError && err.status === 409 ? 'That user id is taken.' : explain(err));
      }
      startChat();
    },
  }, notice);
}

function startChat() {
  chat = new ChatApp(api, config);
  chat.start();
}

async function boot() {
  try {
    config = await loadConfig();
  } catch (err) {
    root.replaceChildren();
    const p = document.createElement('p');
    p.className = 'boot';
    p.textContent = `Cannot load the client configuration: ${explain(err)} Reload to try again.`;
    root.append(p);
    return;
  }
  if (api.session) startChat();
  else showLogin();
}

boot();
