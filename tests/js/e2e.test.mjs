// End-to-end encryption in the web client (docs/e2e.md, web/src/e2e.js) on
// the real platform (scripts/run) in headless Chromium:
// - two browser users exchange encrypted messages both ways, also while one
//   of them has no page open; the archive (history over REST) holds only
//   ciphertext, and no file under CHAT_DATA_DIR contains the text;
// - a group message goes pairwise to every member device;
// - an encrypted message waiting in the outbox has no plaintext in
//   localStorage, and is sent after a reload;
// - the key directory failing (503) never makes a message go in the clear;
// - a scripted Signal client (mallory, in Node with the web client's library)
//   cannot get a message resent that was not encrypted for its device, nor
//   overwrite a message with a forged resend_of; identity changes and new
//   devices show a notice;
// - the cross-client case: chatctl (libsignal-protocol-c, the built binary)
//   and the web client (libsignal-protocol-typescript), both ways, offline
//   included.
// Every wait is bounded. E2E_DEBUG=1 prints every browser console message.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';
import { artifactDir, binDir, eventually, login, registerUser, sourceDir, startPlatform, tmpdir } from './lib/harness.mjs';

// The web client's Signal library (web/node_modules, installed by chat-web),
// for a scripted client in Node (WebCrypto is global in Node >= 19).
const signal = createRequire(import.meta.url)(
  path.join(sourceDir, 'web/node_modules/@privacyresearch/libsignal-protocol-typescript'));

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WAIT = 10_000;
const PASSWORD = 'correct horse';

let platform;
let browser;
const problems = []; // console errors and page errors
let allowedConsole = null; // a console error expected for now (a request the test makes fail)
const secrets = []; // every text sent encrypted: none may reach the server's disk

before(async () => {
  platform = await startPlatform();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
});

after(async () => {
  await browser?.close();
  await platform?.stop();
});

// ---- the browser side ----

async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, locale: 'en-GB', timezoneId: 'UTC' });
  context.setDefaultTimeout(WAIT);
  const p = { name, context, page: null };
  await openPage(p);
  return p;
}

async function openPage(p) {
  const page = await p.context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !allowedConsole?.test(`${msg.text()} ${msg.location()?.url ?? ''}`)) {
      problems.push(`${p.name}: console: ${msg.text()}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`${p.name}: page error: ${err.message}`));
  if (process.env.E2E_DEBUG) page.on('console', (msg) => console.error(`[${p.name}] ${msg.type()}: ${msg.text()}`));
  await page.goto(`${platform.api}/`);
  p.page = page;
  return page;
}

async function enter(page, user, button) {
  await page.getByLabel('User id').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: button }).click();
  await page.locator('.conn-online').waitFor();
}

const signUp = (p) => enter(p.page, p.name, 'Create account');
const logIn = (p) => enter(p.page, p.name, 'Log in');

async function startChat(page, peer) {
  await page.getByRole('button', { name: '+ New chat' }).click();
  await page.getByLabel('Chat with (user id)').fill(peer);
  await page.getByRole('button', { name: 'Start chat' }).click();
}

const lock = (page) => page.getByRole('button', { name: 'Encrypted' });

async function send(page, text, { encrypted = true } = {}) {
  await page.getByRole('button', { name: 'Encrypted', pressed: encrypted }).waitFor();
  if (encrypted) secrets.push(text);
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
  // Confirmed: the server's copy came back with an id.
  await page.locator('.msg.mine[data-id]:not([data-id=""])', { hasText: text }).waitFor();
}

// A message with this text in the open conversation, with the lock mark.
async function seeEncrypted(page, text) {
  const msg = page.locator('.msg', { has: page.locator('.text', { hasText: text }) });
  await msg.locator('.lock').waitFor();
  return msg;
}

const convItem = (page, conv) => page.locator(`.conv[data-conv="${conv}"]`);

async function shot(page, file) {
  fs.mkdirSync(artifactDir, { recursive: true });
  await page.screenshot({ path: path.join(artifactDir, file) });
}

// ---- the server side ----

async function rest(token, urlPath) {
  const res = await fetch(`${platform.api}${urlPath}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, `${urlPath}: ${res.status}`);
  return res.json();
}

// Polls until `user` has a device with keys in the directory.
async function hasKeys(token, user) {
  await eventually(async () => (await rest(token, `/v1/users/${user}/devices`)).devices.length > 0,
    WAIT, `${user}'s keys in the directory`, 50);
}

// The conversation's archive over REST: e2e bodies only, none of the texts.
async function assertArchiveIsCiphertext(token, conv, texts, devices) {
  const page = await rest(token, `/v1/conversations/${encodeURIComponent(conv)}/messages?limit=100`);
  assert.ok(page.messages.length >= texts.length, JSON.stringify(page));
  const raw = JSON.stringify(page);
  for (const text of texts) assert.ok(!raw.includes(text), `"${text}" in the history of ${conv}`);
  for (const m of page.messages) {
    assert.equal(m.type, 'e2e', JSON.stringify(m));
    for (const [key, entry] of Object.entries(m.body.to)) {
      assert.match(key, /^[a-z0-9][a-z0-9_.-]*:[A-Za-z0-9_-]+$/);
      assert.ok(entry.type === 1 || entry.type === 3, JSON.stringify(entry));
      assert.match(entry.body, /^[A-Za-z0-9+/]+={0,2}$/);
      assert.equal(entry.body.length % 4, 0);
    }
  }
  // Each device got its own entry (the archive keeps the body whole).
  const keys = new Set(page.messages.flatMap((m) => Object.keys(m.body.to)));
  for (const d of devices) assert.ok(keys.has(d), `no entry for ${d} in ${[...keys]}`);
}

// Reads every file under CHAT_DATA_DIR (RocksDB tables and WALs of the
// archive and the key directory, logs, ...): none holds an encrypted text;
// `control`, sent in the clear, must be found, so the scan sees text at all.
function assertNoPlaintextOnDisk(control) {
  let files = 0;
  let controlSeen = false;
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) {
        files++;
        const bytes = fs.readFileSync(p);
        if (bytes.includes(control)) controlSeen = true;
        for (const s of secrets) if (bytes.includes(s)) found.push(`"${s}" in ${p}`);
      }
    }
  };
  walk(platform.dir);
  assert.ok(files > 5, `only ${files} files under ${platform.dir}`);
  assert.deepEqual(found, []);
  assert.ok(controlSeen, `the clear-text control message is nowhere under ${platform.dir}`);
}

// ---- chatctl ----

function chatctl(home, args, { timeoutMs = 30_000 } = {}) {
  const argv = ['--home', home, '--api', platform.api, '--mqtt', `127.0.0.1:${platform.mqttPort}`, ...args];
  return new Promise((resolve) => {
    execFile(path.join(binDir, 'chatctl'), argv, { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, out: `${stdout}${stderr}` });
    });
  });
}

// The e2e messages of chatctl --json output (one JSON object per line).
function e2eLines(stdout) {
  return stdout.split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => { try { return JSON.parse(l); } catch { return null; } })
    .filter((j) => j?.type === 'e2e');
}

// ---- a scripted Signal device (mallory) ----

// (the library's ciphertexts are binary strings, its keys ArrayBuffers)
const b64 = (data) => (typeof data === 'string' ? Buffer.from(data, 'latin1') : Buffer.from(data)).toString('base64');
const unb64 = (s) => {
  const b = Buffer.from(s, 'base64');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
};

// The library's StorageType in memory, trusting every identity.
class MemoryStore {
  constructor(identity, registrationId) {
    this.identity = identity;
    this.registrationId = registrationId;
    this.m = new Map();
  }
  async getIdentityKeyPair() { return this.identity; }
  async getLocalRegistrationId() { return this.registrationId; }
  async isTrustedIdentity() { return true; }
  async saveIdentity(id, key) { this.m.set(`id:${id}`, key); return false; }
  async loadPreKey(id) { return this.m.get(`pk:${id}`); }
  async storePreKey(id, k) { this.m.set(`pk:${id}`, k); }
  async removePreKey(id) { this.m.delete(`pk:${id}`); }
  async loadSignedPreKey(id) { return this.m.get(`spk:${id}`); }
  async storeSignedPreKey(id, k) { this.m.set(`spk:${id}`, k); }
  async removeSignedPreKey(id) { this.m.delete(`spk:${id}`); }
  async loadSession(a) { return this.m.get(`s:${a}`); }
  async storeSession(a, r) { this.m.set(`s:${a}`, r); }
}

// A new identity for user:device, uploaded to the directory (PUT /v1/keys).
async function signalDevice(user, device, token) {
  const { KeyHelper } = signal;
  const identity = await KeyHelper.generateIdentityKeyPair();
  const store = new MemoryStore(identity, 1 + Math.floor(Math.random() * 16000));
  const signed = await KeyHelper.generateSignedPreKey(identity, 1);
  await store.storeSignedPreKey(1, signed.keyPair);
  const prekeys = [];
  for (let id = 1; id <= 5; id++) {
    const p = await KeyHelper.generatePreKey(id);
    await store.storePreKey(id, p.keyPair);
    prekeys.push({ id, key: b64(p.keyPair.pubKey) });
  }
  const res = await fetch(`${platform.api}/v1/keys`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({
      device,
      registration_id: store.registrationId,
      identity_key: b64(identity.pubKey),
      signed_prekey: { id: 1, key: b64(signed.keyPair.pubKey), signature: b64(signed.signature) },
      prekeys,
      capabilities: [],
    }),
  });
  assert.equal(res.status, 201, await res.text());
  const cipherFor = (name) => new signal.SessionCipher(store, new signal.SignalProtocolAddress(name, 1));
  return {
    // The `to` entry of `payload` for peer:peerDevice (claiming its bundle
    // the first time).
    async seal(peer, peerDevice, payload) {
      const name = `${peer}:${peerDevice}`;
      const cipher = cipherFor(name);
      if (!(await cipher.hasOpenSession())) {
        const claimed = await rest(token, `/v1/keys/${peer}?device=${peerDevice}`);
        const b = claimed.devices[0];
        await new signal.SessionBuilder(store, new signal.SignalProtocolAddress(name, 1)).processPreKey({
          registrationId: b.registration_id,
          identityKey: unb64(b.identity_key),
          signedPreKey: { keyId: b.signed_prekey.id, publicKey: unb64(b.signed_prekey.key), signature: unb64(b.signed_prekey.signature) },
          preKey: b.prekey ? { keyId: b.prekey.id, publicKey: unb64(b.prekey.key) } : undefined,
        });
      }
      const m = await cipher.encrypt(new TextEncoder().encode(JSON.stringify(payload)).buffer);
      return { [name]: { type: m.type, body: b64(m.body) } };
    },
    // The plaintext of a type 1 entry from `name`.
    async open(name, entry) {
      assert.equal(entry.type, 1, JSON.stringify(entry));
      return JSON.parse(new TextDecoder().decode(await cipherFor(name).decryptWhisperMessage(unb64(entry.body))));
    },
  };
}

// ---- the tests ----

test('two web users exchange encrypted messages, also while one is offline', { timeout: 120_000 }, async () => {
  const alice = await person('alice');
  const bob = await person('bob');
  await signUp(alice);
  await signUp(bob);
  const { access_token: token } = await login(platform.api, 'alice', 'probe', PASSWORD);
  await hasKeys(token, 'alice');
  await hasKeys(token, 'bob');
  const aliceDev = await alice.page.evaluate(() => localStorage.getItem('chat.device'));
  const bobDev = await bob.page.evaluate(() => localStorage.getItem('chat.device'));
  // The directory lists the web device without sender keys.
  const listed = (await rest(token, '/v1/users/bob/devices')).devices;
  assert.deepEqual(listed.map((d) => [d.device, d.capabilities]), [[bobDev, []]]);

  // alice writes first: the lock is on by default (bob has keys).
  const dm = 'dm:alice:bob';
  await startChat(alice.page, 'bob');
  await send(alice.page, 'the owl flies at midnight');
  await seeEncrypted(alice.page, 'the owl flies at midnight');

  // bob reads it live, with the lock mark, and the preview is the text.
  await convItem(bob.page, dm).locator('.conv-preview', { hasText: 'the owl flies at midnight' }).waitFor();
  await convItem(bob.page, dm).click();
  await seeEncrypted(bob.page, 'the owl flies at midnight');

  // And back.
  await send(bob.page, 'the bear sleeps at dawn');
  await seeEncrypted(alice.page, 'the bear sleeps at dawn');

  // bob closes his page; alice writes twice meanwhile.
  await bob.page.close();
  await send(alice.page, 'first while you were out');
  await send(alice.page, 'second while you were out');

  // He comes back (a new tab: he logs in again; same browser, same device
  // and keys): the new ones are decrypted, the old ones come from this
  // device's plaintext cache (a ratchet cannot decrypt twice).
  const page = await openPage(bob);
  await logIn(bob);
  await convItem(page, dm).click();
  await seeEncrypted(page, 'second while you were out');
  await seeEncrypted(page, 'first while you were out');
  await seeEncrypted(page, 'the owl flies at midnight');
  await seeEncrypted(page, 'the bear sleeps at dawn');
  await send(page, 'back again');
  await seeEncrypted(alice.page, 'back again');
  await shot(page, 'e2e-bob.png');
  await shot(alice.page, 'e2e-alice.png');

  // bob's browser loses its session with alice's (its record is deleted):
  // her next message cannot be decrypted, so bob's browser resets the
  // session ({"t":"reset"}) and hers sends the text again (resend_of), which
  // shows in the place of the one that failed.
  await page.evaluate(async ({ user, device }) => {
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open(`chat-e2e.${user}.${device}`);
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const tx = db.transaction('sessions', 'readwrite');
    tx.objectStore('sessions').clear();
    await new Promise((resolve) => { tx.oncomplete = resolve; });
    db.close();
  }, { user: 'bob', device: bobDev });
  await send(alice.page, 'after the session was lost');
  const resent = await seeEncrypted(page, 'after the session was lost');
  const resentId = await resent.getAttribute('data-id');
  assert.equal(await alice.page.locator(`.msg[data-id="${resentId}"]`).count(), 1); // the same message
  await send(page, 'and the new session works');
  await seeEncrypted(alice.page, 'and the new session works');

  // A group: pairwise ciphertexts to every member device.
  await alice.page.getByRole('button', { name: '+ New group' }).click();
  await alice.page.getByLabel('Group name').fill('Secret club');
  await alice.page.getByLabel('Members (comma-separated)').fill('bob');
  await alice.page.getByRole('button', { name: 'Create group' }).click();
  await alice.page.locator('.pane-title', { hasText: 'Secret club' }).waitFor();
  const group = await alice.page.locator('.conv.current').getAttribute('data-conv');
  await send(alice.page, 'the club meets on thursday');
  await convItem(page, group).click();
  const msg = await seeEncrypted(page, 'the club meets on thursday');
  assert.equal(await msg.locator('.sender').textContent(), 'alice');

  // The server has ciphertext only: history over REST, and its files.
  await assertArchiveIsCiphertext(token, dm, secrets.slice(0, 7), [`bob:${bobDev}`, `alice:${aliceDev}`]);
  await assertArchiveIsCiphertext(token, group, ['the club meets on thursday'], [`bob:${bobDev}`]);

  // An encrypted message waiting in the outbox: alice's tab loses the
  // connection to another tab ("Open elsewhere"), she writes, the message is
  // encrypted and pending; localStorage never holds its text (IndexedDB
  // does). A reload takes the connection back and sends it.
  await convItem(alice.page, dm).click();
  const other = await alice.context.newPage();
  await other.goto(`${platform.api}/`);
  await enter(other, 'alice', 'Log in');
  await alice.page.locator('.conn-elsewhere').waitFor();
  await other.close();
  secrets.push('written while elsewhere');
  const box = alice.page.getByLabel('Message', { exact: true });
  await box.fill('written while elsewhere');
  await box.press('Enter');
  await alice.page.locator('.msg.mine.pending', { hasText: 'written while elsewhere' }).waitFor();
  await eventually(() => alice.page.evaluate(() =>
    JSON.parse(localStorage.getItem(Object.keys(localStorage).find((k) => k.startsWith('chat.outbox.')) ?? '[]'))
      .some((e) => e.type === 'e2e' && e.body?.to)), WAIT, 'the encrypted outbox entry', 50);
  const stored = await alice.page.evaluate(() => JSON.stringify({ ...localStorage }));
  assert.ok(!stored.includes('written while elsewhere'), stored);
  await alice.page.reload();
  await alice.page.locator('.conn-online').waitFor();
  await convItem(alice.page, dm).click();
  await alice.page.locator('.msg.mine[data-id]:not([data-id=""])', { hasText: 'written while elsewhere' }).waitFor();
  await convItem(page, dm).click();
  await seeEncrypted(page, 'written while elsewhere');

  // The key directory fails (503 for the device lists) in this encrypted
  // conversation, after a reload (nothing cached): the lock stays on and the
  // message is refused visibly ("Not sent"), never sent in the clear.
  allowedConsole = /status of 503|\/v1\/users\/[^/]+\/devices/;
  const refuse = (route) => route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"unavailable","message":"try later"}' });
  await alice.context.route('**/v1/users/*/devices', refuse);
  await alice.page.reload();
  await alice.page.locator('.conn-online').waitFor();
  await convItem(alice.page, dm).click();
  await alice.page.getByRole('button', { name: 'Encrypted', pressed: true }).waitFor();
  secrets.push('never in the clear');
  await box.fill('never in the clear');
  await box.press('Enter');
  const refused = alice.page.locator('.msg.mine.failed', { hasText: 'never in the clear' });
  await refused.locator('.send-error', { hasText: 'Not sent' }).waitFor();
  assert.ok((await refused.locator('.lock').count()) > 0);
  const history = await rest(token, `/v1/conversations/${encodeURIComponent(dm)}/messages?limit=100`);
  assert.ok(!JSON.stringify(history).includes('never in the clear'), JSON.stringify(history));
  assert.deepEqual(history.messages.filter((m) => m.type !== 'e2e'), []);
  assert.ok(!(await alice.page.evaluate(() => JSON.stringify({ ...localStorage }))).includes('never in the clear'));
  await alice.context.unroute('**/v1/users/*/devices', refuse);
  allowedConsole = null;
  await refused.getByRole('button', { name: 'Dismiss' }).click();
  await refused.waitFor({ state: 'detached' });

  // Unlocked, a message goes in the clear (and shows no lock).
  await convItem(alice.page, dm).click();
  await lock(alice.page).click();
  await send(alice.page, 'plain control words', { encrypted: false });
  const plain = page.locator('.msg', { has: page.locator('.text', { hasText: 'plain control words' }) });
  await convItem(page, dm).click();
  await plain.waitFor();
  assert.equal(await plain.locator('.lock').count(), 0);

  await alice.context.close();
  await bob.context.close();
});

test('resets and resends only for the devices a message was for; identity changes are shown', { timeout: 120_000 }, async () => {
  await registerUser(platform.api, 'mallory', PASSWORD);
  const t1 = (await login(platform.api, 'mallory', 'm1', PASSWORD)).access_token;
  const t2 = (await login(platform.api, 'mallory', 'm2', PASSWORD)).access_token;
  const m1 = await signalDevice('mallory', 'm1', t1);
  const seen = []; // what mallory's devices receive (u/mallory/msg: all of them)
  const conn1 = await mqtt.connectAsync(`mqtt://127.0.0.1:${platform.mqttPort}`, {
    clientId: 'mallory:m1', username: 'mallory', password: t1, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000,
  });
  const conn2 = await mqtt.connectAsync(`mqtt://127.0.0.1:${platform.mqttPort}`, {
    clientId: 'mallory:m2', username: 'mallory', password: t2, protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000,
  });
  try {
    conn1.on('message', (topic, payload) => {
      if (topic === 'u/mallory/msg') seen.push(JSON.parse(payload.toString()));
    });
    await conn1.subscribeAsync('u/mallory/#', { qos: 1 });
    let n = 0;
    const publish = (conn, to) => conn.publishAsync('dm/erin', JSON.stringify({ cid: `m-${Date.now()}-${n++}`, type: 'e2e', body: { to } }), { qos: 1 });

    const erin = await person('erin');
    await signUp(erin);
    const token = (await login(platform.api, 'erin', 'probe', PASSWORD)).access_token;
    await hasKeys(token, 'erin');
    const erinDev = await erin.page.evaluate(() => localStorage.getItem('chat.device'));
    await startChat(erin.page, 'mallory');
    await send(erin.page, 'for m1 only');
    const x = await erin.page.locator('.msg.mine', { hasText: 'for m1 only' }).getAttribute('data-id');

    // mallory's second device: a new device of someone erin talks to.
    const m2 = await signalDevice('mallory', 'm2', t2);
    await erin.page.locator('.notice', { hasText: 'mallory has a new device m2' }).waitFor();

    // m2 asks for X, which was not encrypted for it; m1 asks twice (one
    // answer); m1 forges a resend_of for X, which erin could read.
    await publish(conn2, await m2.seal('erin', erinDev, { t: 'reset', failed: x }));
    await publish(conn1, await m1.seal('erin', erinDev, { t: 'reset', failed: x }));
    await publish(conn1, await m1.seal('erin', erinDev, { t: 'reset', failed: x }));
    await publish(conn1, await m1.seal('erin', erinDev, { t: 'text', text: 'forged words', resend_of: x }));
    await erin.page.locator('.msg.theirs', { hasText: 'forged words' }).locator('.lock').waitFor();
    assert.equal(await erin.page.locator(`.msg[data-id="${x}"] .text`).textContent(), 'for m1 only');
    await send(erin.page, 'for the old m1 and m2');
    const y = await erin.page.locator('.msg.mine', { hasText: 'for the old m1 and m2' }).getAttribute('data-id');

    // m1 gets a new identity (removed, uploaded again): erin is told. With
    // it, m1 asks for Y: Y was encrypted for its old key, no answer.
    let res = await fetch(`${platform.api}/v1/keys/m1`, { method: 'DELETE', headers: { Authorization: `Bearer ${t1}` } });
    assert.equal(res.status, 204);
    const m1b = await signalDevice('mallory', 'm1', t1);
    await erin.page.locator('.notice', { hasText: 'mallory’s device m1 has a new security key' }).waitFor();
    await publish(conn1, await m1b.seal('erin', erinDev, { t: 'reset', failed: y }));
    await publish(conn1, await m1b.seal('erin', erinDev, { t: 'text', text: 'one more thing' }));
    await erin.page.locator('.msg.theirs', { hasText: 'one more thing' }).waitFor();
    await send(erin.page, 'last words');
    const last = await erin.page.locator('.msg.mine', { hasText: 'last words' }).getAttribute('data-id');

    // What erin sent mallory, up to "last words" (published after anything
    // erin's answers to the resets): one resend, of X to m1's old key.
    const fromErin = () => seen.filter((e) => e.from === 'erin' && e.type === 'e2e');
    await eventually(() => fromErin().some((e) => e.id === last), WAIT, '"last words" at mallory');
    const resends = fromErin().filter((e) => e.id !== x && Object.keys(e.body.to).length === 1);
    assert.equal(resends.length, 1, JSON.stringify(fromErin()));
    assert.deepEqual(Object.keys(resends[0].body.to), ['mallory:m1']);
    const resent = await m1.open(`erin:${erinDev}`, resends[0].body.to['mallory:m1']);
    assert.deepEqual(resent, { t: 'text', text: 'for m1 only', resend_of: x });
    await shot(erin.page, 'e2e-erin-notices.png');
    await erin.context.close();
  } finally {
    await conn1.endAsync();
    await conn2.endAsync();
  }
});

test('chatctl and the web client talk encrypted both ways', { timeout: 120_000 }, async (t) => {
  const home = tmpdir('chat-e2e-chatctl-'); // carol's keys: outside CHAT_DATA_DIR
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  // chatctl has these commands: a missing one is a regression, not a skip.
  const help = await chatctl(home, ['--help']);
  assert.match(help.out, /\bkeys init\b/, help.out);
  assert.match(help.out, /send --e2e/, help.out);
  const before = secrets.length;
  // carol: chatctl (her Signal device is <device>-tx, docs/e2e.md "chatctl").
  let r = await chatctl(home, ['register', 'carol', '--password', PASSWORD]);
  assert.equal(r.code, 0, r.out);
  r = await chatctl(home, ['login', 'carol', '--password', PASSWORD, '--device', 'c1']);
  assert.equal(r.code, 0, r.out);
  r = await chatctl(home, ['--as', 'carol', 'keys', 'init']);
  assert.equal(r.code, 0, r.out);

  // dave: the web client.
  const dave = await person('dave');
  await signUp(dave);
  const { access_token: token } = await login(platform.api, 'carol', 'probe', PASSWORD);
  await hasKeys(token, 'dave');
  const daveDev = await dave.page.evaluate(() => localStorage.getItem('chat.device'));

  // chatctl -> web, live.
  secrets.push('hello from the terminal');
  r = await chatctl(home, ['--as', 'carol', 'send', '--e2e', 'dave', 'hello from the terminal']);
  assert.equal(r.code, 0, r.out);
  const dm = 'dm:carol:dave';
  // In the archive: one type 3 (session-starting) ciphertext for dave's browser.
  const first = (await rest(token, `/v1/conversations/${dm}/messages`)).messages[0];
  assert.equal(first.type, 'e2e');
  assert.equal(first.body.to[`dave:${daveDev}`]?.type, 3, JSON.stringify(first));
  await convItem(dave.page, dm).click();
  await seeEncrypted(dave.page, 'hello from the terminal');

  // web -> chatctl (the lock is on: carol's device is in the directory).
  await send(dave.page, 'hello from the browser');
  // (history reads the archive, which chat-api follows as a secondary: poll)
  let texts = [];
  await eventually(async () => {
    r = await chatctl(home, ['--as', 'carol', '--json', 'history', 'dave']);
    assert.equal(r.code, 0, r.out);
    texts = e2eLines(r.stdout).map((m) => m.e2e?.text);
    return texts.includes('hello from the browser');
  }, WAIT, 'chatctl history to show the browser\'s message', 200).catch((err) => {
    throw new Error(`${err.message}\n${r.out}`);
  });
  assert.ok(texts.includes('hello from the terminal'), r.out);

  // dave offline: his page is closed while chatctl sends twice.
  await dave.page.close();
  for (const text of ['while the browser was closed 1', 'while the browser was closed 2']) {
    secrets.push(text);
    r = await chatctl(home, ['--as', 'carol', 'send', '--e2e', 'dave', text]);
    assert.equal(r.code, 0, r.out);
  }
  const page = await openPage(dave);
  await logIn(dave);
  await convItem(page, dm).click();
  await seeEncrypted(page, 'while the browser was closed 1');
  await seeEncrypted(page, 'while the browser was closed 2');
  await seeEncrypted(page, 'hello from the terminal');

  // carol offline (chatctl is not listening): dave writes, she reads later.
  await send(page, 'read this when you are back');
  // listen catches up with /v1/sync first, one message per run here, from
  // where this chatctl device's cursor is.
  const heard = [];
  for (let i = 0; i < 8 && !heard.includes('read this when you are back'); i++) {
    r = await chatctl(home, ['--as', 'carol', '--json', 'listen', '--count', '1', '--timeout', '10']);
    assert.equal(r.code, 0, r.out);
    heard.push(...e2eLines(r.stdout).map((m) => m.e2e?.text));
  }
  assert.ok(heard.includes('read this when you are back'), JSON.stringify(heard));
  await shot(page, 'e2e-dave-chatctl.png');

  await assertArchiveIsCiphertext(token, dm, secrets.slice(before), [`dave:${daveDev}`, 'carol:c1-tx']);
  await dave.context.close();
});

test('no encrypted text anywhere under CHAT_DATA_DIR', () => {
  assertNoPlaintextOnDisk('plain control words');
});

test('no console errors or page errors', () => {
  assert.deepEqual(problems, []);
});
