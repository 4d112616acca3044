// End-to-end encryption in the web client (docs/e2e.md, web/src/e2e.js) on
// the real platform (scripts/run) in headless Chromium:
// - two browser users exchange encrypted messages both ways, also while one
//   of them has no page open; the archive (history over REST) holds only
//   ciphertext, and no file under CHAT_DATA_DIR contains the text;
// - a group message goes pairwise to every member device;
// - the cross-client case: chatctl (libsignal-protocol-c, the built binary)
//   and the web client (libsignal-protocol-typescript), both ways, offline
//   included.
// Every wait is bounded.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { artifactDir, binDir, eventually, login, startPlatform, tmpdir } from './lib/harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WAIT = 10_000;
const PASSWORD = 'correct horse';

let platform;
let browser;
const problems = []; // console errors and page errors
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
    if (msg.type() === 'error') problems.push(`${p.name}: console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${p.name}: page error: ${err.message}`));
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

test('chatctl and the web client talk encrypted both ways', { timeout: 120_000 }, async (t) => {
  const home = tmpdir('chat-e2e-chatctl-'); // carol's keys: outside CHAT_DATA_DIR
  t.after(() => fs.rmSync(home, { recursive: true, force: true }));
  const help = await chatctl(home, ['--help']);
  if (!/\bkeys init\b/.test(help.out) || !/send --e2e/.test(help.out)) {
    t.skip('this chatctl has no `keys init` / `send --e2e` yet');
    return;
  }
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
