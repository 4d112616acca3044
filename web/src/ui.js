// The views: the login screen and the chat screen (conversation list on the
// left, the open conversation on the right; one at a time on a narrow
// screen). They read the Store and call the actions main.js hands them.
import { avatar, h, replaceChildren } from './dom.js';
import { bodyText, formatDay, formatLastSeen, formatTime, formatWhen, parseConv, USER_ID } from './util.js';

// ---- login ----

// actions: login(user, password), signup(user, password); both may throw
// an Error whose message is shown.
export function renderLogin(root, actions, notice = '') {
  const error = h('p', { class: 'form-error', role: 'alert' }, notice);
  const user = h('input', {
    id: 'login-user',
    name: 'user',
    autocomplete: 'username',
    autocapitalize: 'none',
    spellcheck: 'false',
    required: true,
    maxlength: '32',
    pattern: '[a-z0-9][a-z0-9_.\\-]{0,31}',
    title: 'Lowercase letters, digits, and . _ - (up to 32)',
  });
  const password = h('input', {
    id: 'login-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    minlength: '8',
  });
  const form = h(
    'form',
    { class: 'login-form', novalidate: false },
    h('label', { for: 'login-user' }, 'User id'),
    user,
    h('label', { for: 'login-password' }, 'Password'),
    password,
    error,
    h(
      'div',
      { class: 'row' },
      h('button', { type: 'submit', value: 'login', class: 'primary' }, 'Log in'),
      h('button', { type: 'submit', value: 'signup' }, 'Create account'),
    ),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const signup = event.submitter?.value === 'signup';
    const buttons = form.querySelectorAll('button');
    buttons.forEach((b) => (b.disabled = true));
    error.textContent = signup ? 'Creating your account…' : 'Logging in…';
    try {
      if (signup) await actions.signup(user.value.trim(), password.value);
      else await actions.login(user.value.trim(), password.value);
    } catch (err) {
      error.textContent = err.message;
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  replaceChildren(
    root,
    h(
      'main',
      { class: 'login' },
      h(
        'div',
        { class: 'login-card' },
        h('h1', {}, 'Chat'),
        h('p', { class: 'muted' }, 'Log in, or create an account with a new user id.'),
        form,
      ),
    ),
  );
  user.focus();
}

// ---- the chat screen ----

const CONNECTION_TEXT = {
  connecting: 'Connecting…',
  online: 'Online',
  offline: 'Offline',
  elsewhere: 'Open elsewhere',
};

const STATUS_MARK = {
  pending: ['◷', 'Sending'],
  sent: ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
  failed: ['!', 'Not sent'],
};

export class ChatView {
  // actions: open(conv), close(), send(text), loadOlder(), startChat(user),
  // createGroup(name, members), logout(), reconnect(), typing(), dismiss(cid),
  // toggleEncryption()
  constructor(root, store, actions) {
    this.store = store;
    this.actions = actions;
    this.openConv = null;
    this.nodes = new Map(); // timeline key -> { sig, el }
    this.scheduled = false;
    this.keepScroll = null; // distance from the bottom to keep (older page)
    this.build(root);
    store.subscribe(() => this.schedule());
    this.schedule();
  }

  build(root) {
    const me = this.store.me;
    this.conn = h('span', { class: 'conn conn-connecting', role: 'status' }, CONNECTION_TEXT.connecting);
    this.connAction = h('button', { class: 'link', type: 'button', hidden: true }, 'Reconnect');
    this.connAction.addEventListener('click', () => this.actions.reconnect());
    this.toast = h('div', { class: 'toast', role: 'alert', hidden: true });
    this.list = h('ul', { class: 'conv-list' });

    // New chat / new group: small forms that fold out under the header.
    const chatUser = h('input', {
      id: 'new-chat-user',
      autocapitalize: 'none',
      spellcheck: 'false',
      required: true,
      maxlength: '32',
      placeholder: 'e.g. bob',
    });
    this.newChatForm = h(
      'form',
      { class: 'panel', hidden: true, 'aria-label': 'New chat' },
      h('label', { for: 'new-chat-user' }, 'Chat with (user id)'),
      h('div', { class: 'row' }, chatUser, h('button', { type: 'submit', class: 'primary' }, 'Start chat')),
    );
    this.newChatForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const user = chatUser.value.trim().toLowerCase();
      if (!USER_ID.test(user) || user === me) {
        this.showError(user === me ? 'That is you.' : 'Not a valid user id.');
        return;
      }
      chatUser.value = '';
      this.newChatForm.hidden = true;
      this.actions.startChat(user);
    });

    const groupName = h('input', { id: 'new-group-name', required: true, maxlength: '100' });
    const groupMembers = h('input', {
      id: 'new-group-members',
      autocapitalize: 'none',
      spellcheck: 'false',
      placeholder: 'bob, carol',
    });
    this.newGroupForm = h(
      'form',
      { class: 'panel', hidden: true, 'aria-label': 'New group' },
      h('label', { for: 'new-group-name' }, 'Group name'),
      groupName,
      h('label', { for: 'new-group-members' }, 'Members (comma-separated)'),
      groupMembers,
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'primary' }, 'Create group')),
    );
    this.newGroupForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const members = groupMembers.value.split(/[\s,]+/).map((m) => m.trim().toLowerCase()).filter(Boolean);
      const bad = members.find((m) => !USER_ID.test(m));
      if (bad) return this.showError(`Not a valid user id: ${bad}`);
      const ok = await this.actions.createGroup(groupName.value.trim(), members);
      if (ok) {
        groupName.value = '';
        groupMembers.value = '';
        this.newGroupForm.hidden = true;
      }
    });

    for (const form of [this.newChatForm, this.newGroupForm]) {
      form.addEventListener('keydown', (e) => {
        if (e.key === 'Escape') form.hidden = true;
      });
    }
    const toggle = (form, other, input) => () => {
      other.hidden = true;
      form.hidden = !form.hidden;
      if (!form.hidden) input.focus();
    };
    const sidebar = h(
      'aside',
      { class: 'sidebar', 'aria-label': 'Conversations' },
      h(
        'header',
        { class: 'bar' },
        avatar(me),
        h('div', { class: 'bar-title' }, h('strong', { class: 'me' }, me), h('div', { class: 'conn-line' }, this.conn, this.connAction)),
        h('button', { type: 'button', class: 'link', onclick: () => this.actions.logout() }, 'Log out'),
      ),
      h(
        'div',
        { class: 'tools' },
        h('button', { type: 'button', onclick: toggle(this.newChatForm, this.newGroupForm, chatUser) }, '+ New chat'),
        h('button', { type: 'button', onclick: toggle(this.newGroupForm, this.newChatForm, groupName) }, '+ New group'),
      ),
      this.newChatForm,
      this.newGroupForm,
      h('nav', { class: 'conv-scroll', 'aria-label': 'Conversation list' }, this.list),
    );

    // The conversation pane.
    this.paneAvatar = h('span');
    this.paneTitle = h('h2', { class: 'pane-title', id: 'pane-title' });
    this.paneSub = h('div', { class: 'pane-sub', 'aria-live': 'polite' });
    this.olderButton = h('button', { type: 'button', class: 'older', hidden: true }, 'Load older messages');
    this.olderButton.addEventListener('click', () => {
      this.keepScroll = this.scroller.scrollHeight - this.scroller.scrollTop;
      this.actions.loadOlder();
    });
    this.timeline = h('ol', { class: 'timeline' });
    this.scroller = h(
      'div',
      { class: 'messages', role: 'log', 'aria-labelledby': 'pane-title', tabindex: '0' },
      this.olderButton,
      this.timeline,
    );
    this.input = h('textarea', {
      id: 'composer-input',
      rows: '1',
      placeholder: 'Type a message',
      maxlength: '16000',
      autocomplete: 'off',
    });
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.composer.requestSubmit();
      }
    });
    this.input.addEventListener('input', () => {
      this.autosize();
      if (this.input.value) this.actions.typing();
    });
    // The lock: whether what is sent here is end-to-end encrypted (docs/e2e.md).
    this.lockButton = h('button', { type: 'button', class: 'lock-toggle pending', 'aria-pressed': 'false' },
      h('span', { class: 'lock-icon', 'aria-hidden': 'true' }));
    this.lockButton.addEventListener('click', () => this.actions.toggleEncryption());
    this.composer = h(
      'form',
      { class: 'composer' },
      this.lockButton,
      h('label', { for: 'composer-input', class: 'sr-only' }, 'Message'),
      this.input,
      h('button', { type: 'submit', class: 'send', 'aria-label': 'Send' }, 'Send'),
    );
    this.composer.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.value = '';
      this.autosize();
      this.stickToBottom = true;
      this.actions.send(text);
    });
    this.leftNote = h('p', { class: 'left-note', hidden: true }, 'You are no longer a member of this group.');
    this.convPane = h(
      'section',
      { class: 'conversation', hidden: true, 'aria-labelledby': 'pane-title' },
      h(
        'header',
        { class: 'bar' },
        h('button', { type: 'button', class: 'back', 'aria-label': 'Back to conversations', onclick: () => this.actions.close() }, '←'),
        this.paneAvatar,
        h('div', { class: 'bar-title' }, this.paneTitle, this.paneSub),
      ),
      this.scroller,
      this.leftNote,
      this.composer,
    );
    this.emptyPane = h(
      'section',
      { class: 'empty-pane' },
      h('p', {}, 'Select a conversation, or start a new chat.'),
    );
    this.pane = h('main', { class: 'pane' }, this.convPane, this.emptyPane);
    this.app = h('div', { class: 'app' }, sidebar, this.pane, this.toast);
    replaceChildren(root, this.app);
  }

  autosize() {
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
  }

  showError(message) {
    this.toast.textContent = message;
    this.toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => {
      this.toast.hidden = true;
    }, 6000);
  }

  setConnection(state, detail) {
    this.conn.className = `conn conn-${state}`;
    this.conn.textContent = CONNECTION_TEXT[state] ?? state;
    this.conn.title = detail || '';
    this.connAction.hidden = state === 'online' || state === 'connecting';
    this.connAction.textContent = state === 'elsewhere' ? 'Use here' : 'Reconnect';
  }

  // The conversation on screen (null: the list alone on a narrow screen).
  show(conv) {
    if (conv !== this.openConv) {
      this.openConv = conv;
      this.nodes.clear();
      this.timeline.replaceChildren();
      this.stickToBottom = true;
      this.input.value = '';
    }
    this.app.classList.toggle('show-pane', Boolean(conv));
    this.convPane.hidden = !conv;
    this.emptyPane.hidden = Boolean(conv);
    this.schedule();
    if (conv) this.input.focus({ preventScroll: true });
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.renderList();
      this.renderPane();
    });
  }

  // ---- the conversation list ----

  renderList() {
    const store = this.store;
    const items = store.list().map((c) => {
      const title = store.title(c.conv);
      const typing = store.typingIn(c.conv);
      let preview = '';
      if (typing) preview = parseConv(c.conv, store.me).kind === 'g' ? `${typing} is typing…` : 'typing…';
      else if (c.last) {
        const who = c.last.from === store.me ? 'You: ' : parseConv(c.conv, store.me).kind === 'g' ? `${c.last.from}: ` : '';
        preview = who + store.previewText(c.last);
      } else if (c.left) preview = 'You left this group';
      else preview = 'No messages yet';
      const unread = c.unread > 0
        ? h('span', { class: 'badge' }, String(c.unread), h('span', { class: 'sr-only' }, ' unread'))
        : null;
      const current = c.conv === this.openConv;
      return h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: `conv${current ? ' current' : ''}${c.unread > 0 ? ' has-unread' : ''}`,
            'aria-current': current ? 'true' : null,
            dataset: { conv: c.conv },
            onclick: () => this.actions.open(c.conv),
          },
          avatar(title, parseConv(c.conv, store.me).kind === 'g' ? 'group' : ''),
          h(
            'span',
            { class: 'conv-main' },
            h('span', { class: 'conv-title' }, title),
            h('span', { class: `conv-preview${typing ? ' typing' : ''}` }, preview),
          ),
          h(
            'span',
            { class: 'conv-side' },
            c.last ? h('time', { datetime: new Date(c.last.ts).toISOString() }, formatWhen(c.last.ts)) : null,
            unread,
          ),
        ),
      );
    });
    const total = store.list().reduce((n, c) => n + c.unread, 0);
    document.title = total > 0 ? `(${total}) Chat` : 'Chat';
    if (items.length === 0) {
      items.push(h('li', { class: 'muted list-empty' }, 'No conversations yet. Start one with “New chat”.'));
    }
    // Keep keyboard focus on the same conversation across re-renders.
    const focused = document.activeElement?.dataset?.conv;
    replaceChildren(this.list, items);
    if (focused) this.list.querySelector(`[data-conv="${CSS.escape(focused)}"]`)?.focus();
  }

  // ---- the open conversation ----

  renderPane() {
    const conv = this.openConv;
    if (!conv) return;
    const store = this.store;
    const c = store.convs.get(conv);
    const parsed = parseConv(conv, store.me);
    const title = store.title(conv);
    this.paneTitle.textContent = title;
    this.paneAvatar.replaceChildren(avatar(title, parsed.kind === 'g' ? 'group' : ''));
    const typing = store.typingIn(conv);
    let sub = '';
    if (typing) sub = parsed.kind === 'g' ? `${typing} is typing…` : 'typing…';
    else if (parsed.kind === 'g') {
      sub = (c?.members ?? []).map((m) => (m === store.me ? 'you' : m)).join(', ');
    } else {
      const p = store.presence.get(parsed.peer);
      if (p?.status === 'online') sub = 'online';
      else if (p?.status === 'offline' && p.ts) sub = formatLastSeen(p.ts);
    }
    this.paneSub.textContent = sub;
    this.leftNote.hidden = !c?.left;
    this.composer.hidden = Boolean(c?.left);
    const enc = store.encryptionOf(conv);
    this.lockButton.setAttribute('aria-pressed', String(enc.on));
    this.lockButton.classList.toggle('on', enc.on);
    this.lockButton.classList.toggle('pending', enc.pending);
    this.lockButton.setAttribute('aria-label', 'Encrypted');
    this.lockButton.title = enc.pending
      ? 'Checking whether everyone here can receive encrypted messages…'
      : enc.unknown
        ? 'Could not check whether everyone here can receive encrypted messages: what you send is encrypted, or not sent. Click to send unencrypted.'
        : enc.on
        ? 'End-to-end encrypted: only the devices of the people here can read what you send. Click to send unencrypted.'
        : 'Not encrypted: the server can read what you send. Click to encrypt.';
    this.input.placeholder = enc.on ? 'Type an encrypted message' : 'Type a message';

    const t = store.threads.get(conv);
    this.olderButton.hidden = !t?.hasOlder;

    const scroller = this.scroller;
    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;

    // Keyed update: a node is rebuilt only when what it shows changed.
    const wanted = [];
    let day = '';
    for (const item of store.timeline(conv)) {
      const d = new Date(item.env.ts).toDateString();
      if (d !== day) {
        day = d;
        wanted.push(this.node(`day:${d}`, d, () =>
          h('li', { class: 'day' }, h('span', {}, formatDay(item.env.ts)))));
      }
      if (item.notice) {
        wanted.push(this.node(item.key, item.text, () =>
          h('li', { class: 'notice', role: 'status' }, h('span', {}, item.text))));
        continue;
      }
      const sig = JSON.stringify([item.text, item.lock, item.status, item.deleted, item.edited, [...item.reactions], item.error, item.env.id]);
      wanted.push(this.node(item.key, sig, () => this.messageNode(item, parsed.kind === 'g')));
    }
    const keep = new Set(wanted);
    for (const [key, entry] of this.nodes) {
      if (!keep.has(entry.el)) {
        entry.el.remove();
        this.nodes.delete(key);
      }
    }
    let prev = null;
    for (const el of wanted) {
      const expected = prev ? prev.nextSibling : this.timeline.firstChild;
      if (expected !== el) this.timeline.insertBefore(el, expected);
      prev = el;
    }

    if (this.keepScroll !== null) {
      scroller.scrollTop = scroller.scrollHeight - this.keepScroll;
      if (!t?.loadingOlder) this.keepScroll = null;
    } else if (atBottom || this.stickToBottom) {
      scroller.scrollTop = scroller.scrollHeight;
      this.stickToBottom = false;
    }
  }

  node(key, sig, make) {
    const entry = this.nodes.get(key);
    if (entry && entry.sig === sig) return entry.el;
    const el = make();
    if (entry) entry.el.replaceWith(el);
    this.nodes.set(key, { sig, el });
    return el;
  }

  messageNode(item, isGroup) {
    const { env } = item;
    const text = item.deleted ? 'This message was deleted' : (item.text ?? bodyText(env));
    const [mark, label] = STATUS_MARK[item.status] ?? ['', ''];
    const bubble = h(
      'div',
      { class: 'bubble' },
      isGroup && !item.mine ? h('div', { class: 'sender' }, env.from) : null,
      h('div', { class: `text${item.deleted ? ' deleted' : ''}` }, text),
      item.reactions.size
        ? h('div', { class: 'reactions' }, [...item.reactions].map(([who, emoji]) => h('span', { title: who }, emoji)))
        : null,
      h(
        'div',
        { class: 'meta' },
        item.lock ? h('span', { class: 'lock lock-icon', title: 'End-to-end encrypted', 'aria-hidden': 'true' }) : null,
        item.lock ? h('span', { class: 'sr-only' }, 'Encrypted') : null,
        item.edited ? h('span', {}, 'edited') : null,
        h('time', { datetime: new Date(env.ts).toISOString() }, formatTime(env.ts)),
        item.mine ? h('span', { class: `tick tick-${item.status}`, title: label, 'aria-hidden': 'true' }, mark) : null,
        item.mine ? h('span', { class: 'sr-only' }, label) : null,
      ),
    );
    if (item.status === 'failed') {
      bubble.append(
        h(
          'div',
          { class: 'send-error' },
          `Not sent: ${item.error || 'refused'} `,
          h('button', { type: 'button', class: 'link', onclick: () => this.actions.dismiss(env.cid) }, 'Dismiss'),
        ),
      );
    }
    return h(
      'li',
      {
        class: `msg ${item.mine ? 'mine' : 'theirs'} ${item.status ?? ''}`.trim(),
        dataset: { id: env.id ?? '', cid: env.cid ?? '' },
      },
      bubble,
    );
  }
}
