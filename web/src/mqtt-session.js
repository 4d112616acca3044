// The MQTT connection (docs/protocol.md) over the bridge, with MQTT.js:
// MQTT 5, client id <user>:<device>, password = a fresh access token on every
// (re)connect, a persistent session (clean_start=false + session expiry), the
// inbox subscription renewed on every connect, and reconnects with backoff.
//
// Reconnecting is ours, not MQTT.js's (reconnectPeriod 0): before each attempt
// the access token is refreshed when needed, which MQTT.js's own timer cannot
// wait for. After each CONNACK + SUBACK, onConnected() runs (main.js: sync).
import mqtt from 'mqtt';

const SESSION_EXPIRY_S = 7 * 24 * 3600; // the broker keeps our queue this long
const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const TOKEN_MARGIN_MS = 60_000; // reconnect with a new token this long before expiry
const RC_BAD_CREDENTIALS = new Set([0x86, 0x87, 4, 5]); // MQTT 5 and 3.1.1 codes

export class MqttSession {
  // handlers: onState(state, detail), onConnected(sessionPresent) -> Promise,
  // onInbox(kind, payload) for u/<me>/{msg,receipt,typing,event},
  // onPresence(user, payload).
  constructor({ url, api, user, device, handlers }) {
    this.url = url;
    this.api = api;
    this.user = user;
    this.device = device;
    this.h = handlers;
    this.client = null;
    this.state = 'offline';
    this.stopped = false;
    this.backoff = MIN_BACKOFF_MS;
    this.retryTimer = null;
    this.tokenTimer = null;
    this.channel = null;
    this.elsewhere = false; // another tab holds the session
    this.presence = new Set(); // presence/<uid> subscriptions wanted
  }

  setState(state, detail = '') {
    this.state = state;
    this.h.onState(state, detail);
  }

  get online() {
    return this.state === 'online';
  }

  async start() {
    if (this.stopped) return;
    // One connection per client id: other tabs of this browser logged in as
    // the same user (same device id) step aside, as in WhatsApp Web ("Use here").
    if (typeof BroadcastChannel === 'function') {
      this.channel = new BroadcastChannel(`chat-mqtt:${this.user}:${this.device}`);
      this.channel.onmessage = (e) => {
        if (e.data === 'take-over') this.yieldToOtherTab();
      };
      this.channel.postMessage('take-over');
    }
    window.addEventListener('online', this.onBrowserOnline);
    this.connect();
  }

  // Another tab took the session: stop, and do not reconnect until asked.
  yieldToOtherTab() {
    if (this.stopped) return;
    this.elsewhere = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    clearTimeout(this.tokenTimer);
    if (this.client && !this.client.disconnecting) this.client.end(true);
    this.setState('elsewhere', 'This chat is open in another tab or window.');
  }

  onBrowserOnline = () => {
    if (!this.online && !this.stopped && this.state !== 'elsewhere') this.reconnectNow();
  };

  async connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.stopped || this.elsewhere) return;
    let token;
    try {
      token = await this.api.freshToken(TOKEN_MARGIN_MS);
    } catch (err) {
      if (!this.api.session) return this.stop(); // logged out
      return this.scheduleReconnect(`token refresh failed: ${err.message}`);
    }
    if (this.stopped || this.elsewhere) return;
    this.setState('connecting');
    if (this.client) {
      this.client.options.password = token;
      this.client.reconnect();
      return;
    }
    this.client = mqtt.connect(this.url, {
      protocolVersion: 5,
      clientId: `${this.user}:${this.device}`,
      username: this.user,
      password: token,
      clean: false,
      properties: { sessionExpiryInterval: SESSION_EXPIRY_S },
      keepalive: 30,
      reconnectPeriod: 0, // ours: see scheduleReconnect
      connectTimeout: 15_000,
      resubscribe: false, // ours: every connect subscribes anew
    });
    this.client.on('connect', (connack) => this.onConnect(connack));
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.client.on('close', () => this.onClose());
    this.client.on('error', (err) => this.onError(err));
  }

  async onConnect(connack) {
    this.badCredentials = false;
    const client = this.client;
    try {
      // CONTRACT §3: subscribe on every connect, session present or not.
      const granted = await client.subscribeAsync({ [`u/${this.user}/#`]: { qos: 1 } });
      if (granted.some((g) => g.qos >= 0x80)) throw new Error('the inbox subscription was refused');
      if (this.presence.size > 0) {
        client.subscribe([...this.presence].map((u) => `presence/${u}`), { qos: 0 });
      }
    } catch (err) {
      if (client !== this.client || !client.connected) return;
      console.warn('subscribe failed', err);
      client.end(true);
      return;
    }
    this.backoff = MIN_BACKOFF_MS;
    this.armTokenTimer();
    this.setState('online');
    try {
      await this.h.onConnected(connack.sessionPresent);
    } catch (err) {
      console.warn('after-connect work failed', err);
    }
  }

  onMessage(topic, payload) {
    let data;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return; // not ours
    }
    const parts = topic.split('/');
    if (parts[0] === 'u' && parts[1] === this.user && parts.length === 3) {
      this.h.onInbox(parts[2], data);
    } else if (parts[0] === 'presence' && parts.length === 2) {
      this.h.onPresence?.(parts[1], data);
    }
  }

  onError(err) {
    if (RC_BAD_CREDENTIALS.has(err.code)) this.badCredentials = true;
    console.warn('mqtt:', err.message);
  }

  onClose() {
    clearTimeout(this.tokenTimer);
    if (this.stopped) return;
    if (this.elsewhere) return;
    if (this.badCredentials) {
      // The token was refused (expired, or revoked with the account): make
      // the next attempt use a new one.
      this.badCredentials = false;
      if (this.api.session) this.api.session.expires_at = 0;
    }
    if (this.immediate) {
      this.immediate = false;
      this.connect();
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect(detail = '') {
    if (this.stopped || this.retryTimer) return;
    const delay = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.setState('offline', detail || `Reconnecting in ${Math.round(delay / 1000)} s`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  // Used by the UI ("Reconnect now", "Use here") and the browser's online event.
  reconnectNow() {
    if (this.stopped) return;
    if (this.elsewhere) {
      this.elsewhere = false;
      this.channel?.postMessage('take-over');
    }
    this.backoff = MIN_BACKOFF_MS;
    if (this.client?.connected) {
      this.immediate = true;
      this.client.end(false);
    } else {
      this.connect();
    }
  }

  // The broker closes a connection whose token expired; close it ourselves a
  // little earlier and come back at once with a new token (the persistent
  // session keeps whatever arrives meanwhile).
  armTokenTimer() {
    clearTimeout(this.tokenTimer);
    const left = (this.api.session?.expires_at ?? 0) - Date.now() - TOKEN_MARGIN_MS / 2;
    this.tokenTimer = setTimeout(() => {
      if (!this.client?.connected) return;
      this.immediate = true;
      this.client.end(false);
    }, Math.max(left, 1000));
  }

  // QoS 1 publish of a JSON payload; resolves on PUBACK, rejects on a refusal
  // (MQTT 5 reason >= 0x80) or a lost connection.
  publish(topic, payload, qos = 1) {
    if (!this.client?.connected) return Promise.reject(new Error('offline'));
    return this.client.publishAsync(topic, JSON.stringify(payload), { qos });
  }

  watchPresence(users) {
    const wanted = new Set(users);
    const add = [...wanted].filter((u) => !this.presence.has(u));
    const drop = [...this.presence].filter((u) => !wanted.has(u));
    this.presence = wanted;
    if (!this.client?.connected) return;
    if (drop.length) this.client.unsubscribe(drop.map((u) => `presence/${u}`));
    if (add.length) this.client.subscribe(add.map((u) => `presence/${u}`), { qos: 0 });
  }

  // Subscribes again to presence not known yet: a subscription is refused
  // until we share a conversation, i.e. until the first message.
  retryPresence(user) {
    if (this.presence.has(user) && this.client?.connected) {
      this.client.subscribe(`presence/${user}`, { qos: 0 });
    }
  }

  // Stops for good. With `endSession`, the broker drops our persistent
  // session too (MQTT 5 DISCONNECT with session expiry 0): used on logout.
  async stop({ endSession = false } = {}) {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.tokenTimer);
    window.removeEventListener('online', this.onBrowserOnline);
    const client = this.client;
    if (client) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 2000);
        const opts = endSession && client.connected
          ? { properties: { sessionExpiryInterval: 0 } }
          : {};
        client.end(!client.connected, opts, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.channel?.close();
    this.setState('offline');
  }
}
