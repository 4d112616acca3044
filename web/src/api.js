// The REST side (docs/api.md): sign-up, OAuth 2.0 tokens with refresh and
// rotation, and the JSON routes the client uses.
//
// Tokens live in sessionStorage (see README: "Where things are kept"): they
// survive a reload of the tab but not closing it, and each tab rotates its
// own refresh token, so two tabs never race on one.

const SESSION_KEY = 'chat.session';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

async function readError(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {
    // not JSON
  }
  const code = body?.error ?? `http_${res.status}`;
  const message = body?.error_description ?? body?.message ?? res.statusText;
  return new ApiError(res.status, code, message);
}

export class Api {
  // onLoggedOut(reason): the session ended (refresh refused, or logout).
  constructor({ onLoggedOut } = {}) {
    this.onLoggedOut = onLoggedOut ?? (() => {});
    this.session = null; // { user, device, access_token, refresh_token, expires_at }
    this.refreshing = null; // the refresh in flight, shared by every caller
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null');
      if (saved?.user && saved.refresh_token) this.session = saved;
    } catch {
      sessionStorage.removeItem(SESSION_KEY);
    }
  }

  get user() {
    return this.session?.user ?? null;
  }

  saveSession(session) {
    this.session = session;
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(SESSION_KEY);
  }

  // ---- accounts and tokens ----

  async signup(user, password) {
    const res = await fetch('/v1/users', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user, password }),
    });
    if (!res.ok) throw await readError(res);
  }

  async tokenRequest(form) {
    const res = await fetch('/v1/oauth/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
      cache: 'no-store',
    });
    if (!res.ok) throw await readError(res);
    return res.json();
  }

  grantToSession(user, device, grant) {
    return {
      user,
      device,
      access_token: grant.access_token,
      refresh_token: grant.refresh_token,
      expires_at: Date.now() + grant.expires_in * 1000,
    };
  }

  // OAuth 2.0 password grant, for this browser's device id.
  async login(user, password, device) {
    const grant = await this.tokenRequest({ grant_type: 'password', username: user, password, device });
    this.saveSession(this.grantToSession(user, device, grant));
  }

  // A new access token from the refresh token (which rotates: the old one
  // stops working). A refusal ends the session; a network failure does not.
  refresh() {
    if (!this.refreshing) {
      const session = this.session;
      this.refreshing = (async () => {
        if (!session) throw new ApiError(401, 'unauthenticated', 'not logged in');
        try {
          const grant = await this.tokenRequest({
            grant_type: 'refresh_token',
            refresh_token: session.refresh_token,
          });
          if (this.session === session) {
            this.saveSession(this.grantToSession(session.user, session.device, grant));
          }
        } catch (err) {
          if (err instanceof ApiError && err.status === 400 && this.session === session) {
            this.endSession('Your session has expired. Please log in again.');
          }
          throw err;
        }
      })().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  // The access token, refreshed first when it expires within `marginMs`.
  async freshToken(marginMs = 60_000) {
    if (!this.session) throw new ApiError(401, 'unauthenticated', 'not logged in');
    if (this.session.expires_at - Date.now() < marginMs) await this.refresh();
    return this.session.access_token;
  }

  endSession(reason) {
    if (!this.session) return;
    this.saveSession(null);
    this.onLoggedOut(reason);
  }

  // Revokes this device's refresh token (RFC 7009), then forgets the session.
  async logout() {
    const token = this.session?.refresh_token;
    this.saveSession(null);
    if (token) {
      await fetch('/v1/oauth/revoke', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      }).catch(() => {});
    }
  }

  // ---- authenticated JSON calls ----

  // One call with the bearer token; on 401 it refreshes once and retries.
  async request(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      const token = await this.freshToken();
      const headers = { Authorization: `Bearer ${token}` };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
      if (res.status === 401 && attempt === 0) {
        await this.refresh();
        continue;
      }
      if (!res.ok) {
        const err = await readError(res);
        if (res.status === 401) this.endSession('Your session has ended. Please log in again.');
        throw err;
      }
      return res.status === 204 ? null : res.json();
    }
  }

  conversations() {
    return this.request('GET', '/v1/conversations');
  }

  // A page of history, oldest first; without `before` the latest page.
  messages(conv, { before, limit = 50 } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set('before', before);
    return this.request('GET', `/v1/conversations/${encodeURIComponent(conv)}/messages?${q}`);
  }

  sync(since, limit = 500) {
    const q = new URLSearchParams({ since: since ?? '', limit: String(limit) });
    return this.request('GET', `/v1/sync?${q}`);
  }

  groups() {
    return this.request('GET', '/v1/groups');
  }

  createGroup(name, members) {
    return this.request('POST', '/v1/groups', { name, members });
  }

  // ---- the key directory (docs/e2e.md) ----

  putKeys(body) {
    return this.request('PUT', '/v1/keys', body);
  }

  keyCount(device) {
    return this.request('GET', `/v1/keys/count?${new URLSearchParams({ device })}`);
  }

  // Claims one bundle of user's device (consumes a one-time prekey).
  claimKeys(user, device) {
    return this.request('GET', `/v1/keys/${encodeURIComponent(user)}?${new URLSearchParams({ device })}`);
  }

  userDevices(user) {
    return this.request('GET', `/v1/users/${encodeURIComponent(user)}/devices`);
  }

  deleteKeys(device) {
    return this.request('DELETE', `/v1/keys/${encodeURIComponent(device)}`);
  }
}

// Where the bridge is (GET /config.json, served by chat-api).
export async function loadConfig() {
  const res = await fetch('/config.json', { cache: 'no-store' });
  if (!res.ok) throw await readError(res);
  return res.json();
}
