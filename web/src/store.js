// The client's state: conversations with unread counts, the messages seen
// so far (de-duplicated by server id, whether they came live, from sync or
// from a history page), the outbox of messages not yet confirmed, receipts,
// typing and presence. Views subscribe and re-render on change.
import { bodyText, parseConv } from './util.js';

// A message id is 16 lowercase hex digits that sort in archive order.
const newer = (a, b) => (a ?? '') > (b ?? '');

export class Store {
  constructor(user, device) {
    this.me = user;
    this.device = device;
    this.convs = new Map(); // conv -> { conv, last, unread, owed, name, members, left, touched }
    this.threads = new Map(); // conv -> { byId: Map, ids: [] sorted, loaded, before, hasOlder }
    this.outbox = new Map(); // cid -> { cid, conv, type, body, ts, state, error }
    this.upTo = new Map(); // dm conv -> { read, delivered }: the peer's newest receipted ids
    this.readers = new Map(); // id of my group message -> Set of members who read it
    this.typing = new Map(); // conv -> { from, until }
    this.presence = new Map(); // user -> { status, ts }
    this.reading = null; // the conversation on screen while the page is visible
    this.plain = new Map(); // "<conv>/<id>" of an e2e message -> what e2e.js made of it
    this.encryption = new Map(); // conv -> { on, pending, explicit, unknown, stale }: the lock toggle
    this.notices = new Map(); // conv -> [{ key, ts, text }]: security notices (not kept across reloads)
    this.onE2E = null; // (env, { history }) => void: a new e2e envelope to decrypt (main.js)
    this.listeners = new Set();
    this.outboxKey = `chat.outbox.${user}.${device}`;
    this.loadOutbox();
  }

  // ---- change notification ----

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed(conv = null) {
    for (const fn of this.listeners) fn(conv);
  }

  // ---- conversations ----

  conv(conv) {
    let c = this.convs.get(conv);
    if (!c) {
      c = { conv, last: null, unread: 0, owed: false, name: null, members: null, left: false, touched: 0 };
      this.convs.set(conv, c);
    }
    return c;
  }

  thread(conv) {
    let t = this.threads.get(conv);
    if (!t) {
      t = { byId: new Map(), ids: [], loaded: false, before: null, hasOlder: false };
      this.threads.set(conv, t);
    }
    return t;
  }

  title(conv) {
    const c = this.convs.get(conv);
    const parsed = parseConv(conv, this.me);
    if (parsed.kind === 'g') return c?.name || `Group ${parsed.gid}`;
    return parsed.peer;
  }

  // Most recent first; a conversation just started (no message yet) by when.
  list() {
    const key = (c) => Math.max(c.last?.ts ?? 0, c.touched);
    return [...this.convs.values()].sort((a, b) => key(b) - key(a));
  }

  // The server's view (GET /v1/conversations). Messages we hold that are
  // newer than the server's `last` were not in its unread count yet.
  setConversations(list) {
    for (const item of list) {
      const c = this.conv(item.conv);
      let unread = item.unread;
      const t = this.threads.get(item.conv);
      if (t && item.last) {
        for (const id of t.ids) {
          const m = t.byId.get(id);
          if (newer(id, item.last.id) && m.from !== this.me) unread++;
        }
      }
      if (item.last && newer(item.last.id, c.last?.id)) c.last = item.last;
      if (this.reading === item.conv) {
        if (unread > 0) c.owed = true; // on screen: read, but the server must hear it
        c.unread = 0;
      } else {
        c.unread = unread;
      }
    }
    this.changed();
  }

  setGroups(groups) {
    for (const g of groups) {
      const c = this.conv(`g:${g.id}`);
      c.name = g.name;
      c.members = g.members;
      c.left = false;
      if (!c.touched) c.touched = g.created_ms ?? 0;
    }
    this.changed();
  }

  // A group event on u/<me>/event (docs/protocol.md "Group events").
  groupEvent(e) {
    const c = this.conv(`g:${e.group}`);
    if (e.name) c.name = e.name;
    if (!c.touched) c.touched = e.ts ?? Date.now();
    const members = new Set(c.members ?? []);
    if (e.action === 'created' || e.action === 'member_added') {
      members.add(e.user);
      if (e.user === this.me) c.left = false;
    } else if (e.action === 'member_removed') {
      members.delete(e.user);
      if (e.user === this.me) c.left = true;
    }
    if (c.members) c.members = [...members].sort();
    this.changed(c.conv);
  }

  // A conversation opened from the UI before any message exists.
  touch(conv) {
    const c = this.conv(conv);
    if (!c.touched) c.touched = Date.now();
    this.changed();
  }

  // ---- messages ----

  // Any envelope; returns false when already known. `count`: one that is
  // newer than the conversation's last message is unread (live and sync;
  // history pages are old news).
  addEnvelope(env, { count = true } = {}) {
    if (!env || typeof env.id !== 'string' || typeof env.conv !== 'string') return false;
    const t = this.thread(env.conv);
    if (t.byId.has(env.id)) return false;
    t.byId.set(env.id, env);
    if (t.ids.length === 0 || newer(env.id, t.ids[t.ids.length - 1])) {
      t.ids.push(env.id);
    } else {
      t.ids.push(env.id);
      t.ids.sort();
    }
    // Our own copy confirms the outbox entry with the same cid.
    if (env.from === this.me && env.dev === this.device && this.outbox.has(env.cid)) {
      const sent = this.outbox.get(env.cid);
      if (env.type === 'e2e' && typeof sent.text === 'string') {
        this.plain.set(`${env.conv}/${env.id}`, { state: 'ok', text: sent.text, from: this.me, dev: this.device });
      }
      this.outbox.delete(env.cid);
      this.saveOutbox();
    }
    const c = this.conv(env.conv);
    if (newer(env.id, c.last?.id)) {
      // Newer than anything the server counted for us: unread unless on screen.
      if (count && env.from !== this.me && this.reading !== env.conv) c.unread++;
      c.last = env;
    }
    if (env.type === 'e2e') this.onE2E?.(env, { history: !count });
    return true;
  }

  addEnvelopes(envs, conv = null) {
    let any = false;
    for (const env of envs) any = this.addEnvelope(env) || any;
    if (any) this.changed(conv);
    return any;
  }

  // A page of history (docs/api.md "Paging history").
  addHistory(conv, page, { older }) {
    const t = this.thread(conv);
    for (const env of page.messages) this.addEnvelope(env, { count: false });
    if (older || !t.loaded) {
      t.before = page.next;
      t.hasOlder = Boolean(page.has_more ?? page.next);
    }
    t.loaded = true;
    this.changed(conv);
  }

  markRead(conv) {
    const c = this.convs.get(conv);
    if (c && c.unread !== 0) {
      c.unread = 0;
      this.changed();
    }
  }

  // The conversation on screen; what was unread in it is now read, and a
  // read receipt is owed (main.js sends it).
  setReading(conv) {
    this.reading = conv;
    const c = conv && this.convs.get(conv);
    if (c?.unread > 0) c.owed = true;
    if (conv) this.markRead(conv);
  }

  // What the conversation view shows: messages in id order with edits,
  // deletions and reactions applied to their targets, then the outbox.
  timeline(conv) {
    const t = this.threads.get(conv);
    const items = [];
    const byTarget = new Map();
    if (t) {
      for (const id of t.ids) {
        const env = t.byId.get(id);
        if (env.type === 'edit' || env.type === 'delete' || env.type === 'reaction') {
          const target = typeof env.body === 'string' ? env.body : env.body?.id;
          const item = byTarget.get(target);
          if (!item) continue;
          if (env.type === 'delete' && env.from === item.env.from) item.deleted = true;
          if (env.type === 'edit' && env.from === item.env.from && typeof env.body?.text === 'string') {
            item.text = env.body.text;
            item.edited = true;
          }
          if (env.type === 'reaction' && typeof env.body?.emoji === 'string') {
            item.reactions.set(env.from, env.body.emoji);
          }
          continue;
        }
        let text = null;
        let lock = false;
        if (env.type === 'e2e') {
          const r = this.e2eResult(env);
          if (r?.state === 'hidden') continue;
          text = e2eText(r);
          lock = r?.state === 'ok';
        }
        const item = {
          key: env.id,
          notice: false,
          env,
          mine: env.from === this.me,
          text,
          lock,
          edited: false,
          deleted: false,
          reactions: new Map(),
          status: env.from === this.me ? this.statusOf(env) : null,
        };
        byTarget.set(env.id, item);
        items.push(item);
      }
    }
    for (const p of this.outbox.values()) {
      if (p.conv !== conv) continue;
      items.push({
        key: `cid:${p.cid}`,
        notice: false,
        env: { id: null, ts: p.ts, conv, from: this.me, type: p.type, body: p.body, cid: p.cid },
        mine: true,
        text: p.type === 'e2e' ? p.text : null,
        lock: p.type === 'e2e',
        edited: false,
        deleted: false,
        reactions: new Map(),
        status: p.state, // 'pending' | 'failed'
        error: p.error,
      });
    }
    // Security notices, by time among the messages.
    for (const n of this.notices.get(conv) ?? []) {
      let at = items.length;
      while (at > 0 && items[at - 1].env.ts > n.ts) at--;
      items.splice(at, 0, { key: n.key, notice: true, text: n.text, env: { id: null, ts: n.ts, conv } });
    }
    return items;
  }

  // A security notice in `conv` ("bob's device … has a new security key");
  // the same text twice in a row shows once.
  addNotice(conv, text) {
    const list = this.notices.get(conv) ?? [];
    if (list.at(-1)?.text === text) return;
    const ts = Date.now();
    list.push({ key: `notice:${ts}:${list.length}`, ts, text });
    this.notices.set(conv, list);
    this.changed(conv);
  }

  // ---- end-to-end encrypted messages ----

  setPlain(conv, id, result) {
    this.plain.set(`${conv}/${id}`, result);
    this.changed(conv);
  }

  // What e2e.js made of an e2e envelope (undefined while it works on it). A
  // resent text counts only from the original message's sender device.
  e2eResult(env) {
    const r = this.plain.get(`${env.conv}/${env.id}`);
    if (r?.resent && (r.from !== env.from || r.dev !== env.dev)) return { state: 'failed' };
    return r;
  }

  // The conversation list's preview of a message.
  previewText(env) {
    if (env.type !== 'e2e') return bodyText(env);
    const r = this.e2eResult(env);
    return r?.state === 'ok' ? r.text : bodyText(env);
  }

  // The lock toggle of a conversation: { on, pending, explicit, unknown, stale }.
  encryptionOf(conv) {
    return this.encryption.get(conv) ?? { on: false, pending: true, explicit: false };
  }

  setEncryption(conv, state) {
    this.encryption.set(conv, state);
    this.changed(conv);
  }

  // ---- the outbox: sent, not yet seen back from the server ----

  loadOutbox() {
    try {
      for (const p of JSON.parse(localStorage.getItem(this.outboxKey) ?? '[]')) {
        if (p && typeof p.cid === 'string') this.outbox.set(p.cid, p);
      }
    } catch {
      localStorage.removeItem(this.outboxKey);
    }
  }

  // Only pending entries, and an encrypted one without its text: that stays
  // in IndexedDB with the other plaintext (e2e.js rememberSent), so no
  // plaintext of an encrypted message is ever in localStorage.
  saveOutbox() {
    const pending = [...this.outbox.values()]
      .filter((p) => p.state === 'pending')
      .map((p) => (p.type === 'e2e' ? { ...p, text: undefined } : p));
    if (pending.length) localStorage.setItem(this.outboxKey, JSON.stringify(pending));
    else localStorage.removeItem(this.outboxKey);
  }

  // An e2e entry also holds its `text` in memory (shown while pending); its
  // `body` is null until encrypted, then the ciphertext every resend
  // publishes.
  addPending(conv, cid, type, body, text = undefined) {
    this.outbox.set(cid, { cid, conv, type, body, text, ts: Date.now(), state: 'pending', error: null });
    this.saveOutbox();
    this.touch(conv);
    this.changed(conv);
  }

  pendingToSend() {
    return [...this.outbox.values()].filter((p) => p.state === 'pending');
  }

  failPending(cid, reason) {
    const p = this.outbox.get(cid);
    if (!p || p.state === 'failed') return;
    p.state = 'failed';
    p.error = reason;
    this.saveOutbox();
    this.changed(p.conv);
  }

  dismissFailed(cid) {
    const p = this.outbox.get(cid);
    if (p?.state === 'failed') {
      this.outbox.delete(cid);
      this.changed(p.conv);
    }
  }

  // ---- receipts, typing, presence ----

  // u/<me>/receipt: others reading my messages, or my other devices reading.
  // A direct chat's receipt for id X covers all my messages up to X (this
  // client sends one for the newest message only); in a group, a message
  // counts as read once every other member read it.
  applyReceipt(r) {
    if (!Array.isArray(r.ids) || r.ids.length === 0 || typeof r.conv !== 'string') return;
    if (r.from === this.me) {
      if (r.status === 'read') this.markRead(r.conv);
      return;
    }
    if (parseConv(r.conv, this.me).kind === 'dm') {
      const max = r.ids.reduce((a, b) => (newer(b, a) ? b : a));
      const up = this.upTo.get(r.conv) ?? { read: '', delivered: '' };
      if (r.status === 'read' && newer(max, up.read)) up.read = max;
      if (newer(max, up.delivered)) up.delivered = max;
      this.upTo.set(r.conv, up);
    } else if (r.status === 'read') {
      for (const id of r.ids) {
        if (!this.readers.has(id)) this.readers.set(id, new Set());
        this.readers.get(id).add(r.from);
      }
    }
    this.changed(r.conv);
  }

  statusOf(env) {
    if (parseConv(env.conv, this.me).kind === 'dm') {
      const up = this.upTo.get(env.conv);
      if (up && env.id <= up.read) return 'read';
      if (up && env.id <= up.delivered) return 'delivered';
      return 'sent';
    }
    const readers = this.readers.get(env.id);
    if (!readers) return 'sent';
    const others = (this.convs.get(env.conv)?.members?.length ?? 0) - 1;
    return others > 0 && readers.size >= others ? 'read' : 'delivered';
  }

  // The ids a read receipt for `conv` names: the newest message of each
  // other sender above `afterId` (a receipt goes to each message's sender).
  receiptIds(conv, afterId) {
    const t = this.threads.get(conv);
    if (!t) return [];
    const bySender = new Map();
    for (let i = t.ids.length - 1; i >= 0 && bySender.size < 1000; i--) {
      const id = t.ids[i];
      if (afterId && id <= afterId) break;
      const from = t.byId.get(id).from;
      if (from !== this.me && !bySender.has(from)) bySender.set(from, id);
    }
    return [...bySender.values()].sort();
  }

  // The newest message from someone else in `conv` (the read baseline).
  newestFromOthers(conv) {
    return this.receiptIds(conv, null).at(-1) ?? null;
  }

  setTyping(t) {
    if (t.from === this.me) return;
    if (t.state === 'composing') this.typing.set(t.conv, { from: t.from, until: Date.now() + 6000 });
    else this.typing.delete(t.conv);
    this.changed(t.conv);
  }

  typingIn(conv) {
    const t = this.typing.get(conv);
    if (!t) return null;
    if (t.until < Date.now()) {
      this.typing.delete(conv);
      return null;
    }
    return t.from;
  }

  setPresence(user, p) {
    this.presence.set(user, p);
    this.changed();
  }
}

// What an e2e message shows (docs/e2e.md; e2e.js decides the state).
export function e2eText(r) {
  switch (r?.state) {
    case 'ok': return r.text;
    case 'not_for_device': return 'Encrypted message (not for this device)';
    case 'sender_keys': return 'Encrypted group message that this device cannot read (it does not support sender keys)';
    case 'failed': return '⚠ Cannot decrypt this message. The secure session was reset; the sender’s device will send it again if it can.';
    case 'unavailable': return 'Encrypted message (this browser cannot decrypt: it needs https or localhost)';
    default: return 'Decrypting…';
  }
}
