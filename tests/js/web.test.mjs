// The web client end to end: the whole platform (scripts/run: mosquitto with
// our plugin, chat-api serving the built client at /, chat-bridge), driven in
// headless Chromium by two people in two browser contexts. Screenshots of
// both windows go to $CHAT_ARTIFACT_DIR. Every wait is bounded.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { chromium } from 'playwright-core';
import { artifactDir, login, startPlatform } from './lib/harness.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const WAIT = 10_000; // one UI step (live delivery, a page load)

let platform;
let browser;
const problems = []; // console errors, page errors, CSP violations

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

async function person(name, viewport) {
  const context = await browser.newContext({ viewport, locale: 'en-GB', timezoneId: 'UTC' });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`${name}: console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`));
  await page.goto(`${platform.api}/`);
  return { name, context, page };
}

async function signUp({ page, name }) {
  await page.getByLabel('User id').fill(name);
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.locator('.conn-online').waitFor();
}

async function send(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

// A message bubble with this text, in the open conversation.
const bubble = (page, text, who = '') => page.locator(`.msg${who} .text`, { hasText: text });
const convItem = (page, conv) => page.locator(`.conv[data-conv="${conv}"]`);

async function shot(page, file) {
  fs.mkdirSync(artifactDir, { recursive: true });
  await page.screenshot({ path: path.join(artifactDir, file) });
}

test('two people chat in the web client', { timeout: 240_000 }, async () => {
  // The page and its security headers come from chat-api.
  const index = await fetch(`${platform.api}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-security-policy'), new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${platform.wsPort}/mqtt`));
  assert.deepEqual(await (await fetch(`${platform.api}/config.json`)).json(),
    { mqtt_ws_url: `ws://127.0.0.1:${platform.wsPort}/mqtt` });

  const alice = await person('alice', { width: 1200, height: 760 });
  const bob = await person('bob', { width: 1000, height: 700 });
  await signUp(alice);
  await signUp(bob);

  // The device id is made once and kept in localStorage.
  const device = await bob.page.evaluate(() => localStorage.getItem('chat.device'));
  assert.match(device, /^web-[A-Za-z0-9_-]{1,60}$/);

  // alice starts a chat with bob and sends; her copy comes back with a server id.
  const dm = 'dm:alice:bob';
  await alice.page.getByRole('button', { name: '+ New chat' }).click();
  await alice.page.getByLabel('Chat with (user id)').fill('bob');
  await alice.page.getByRole('button', { name: 'Start chat' }).click();
  const first = 'Hi bob <b>not bold</b> 👋';
  await send(alice.page, first);
  await alice.page.locator('.msg.mine[data-id]:not([data-id=""])', { hasText: 'Hi bob' }).waitFor();

  // bob sees it live, with an unread count in his list.
  // (Both have keys, so it is end-to-end encrypted: the preview shows the
  // text once bob's browser decrypted it.)
  await convItem(bob.page, dm).locator('.badge', { hasText: '1' }).waitFor();
  await convItem(bob.page, dm).locator('.conv-preview', { hasText: 'Hi bob' }).waitFor();
  await shot(bob.page, 'web-bob-unread.png');

  // He opens it: the text is text (no markup), and the badge goes.
  await convItem(bob.page, dm).click();
  await bubble(bob.page, 'Hi bob').waitFor();
  assert.equal(await bubble(bob.page, 'Hi bob').textContent(), first);
  assert.equal(await bob.page.locator('.msg .text b').count(), 0);
  await convItem(bob.page, dm).locator('.badge').waitFor({ state: 'detached' });
  // His read receipt turns alice's tick blue.
  await alice.page.locator('.msg.mine .tick-read').waitFor();

  // A reload keeps him logged in, in the conversation, with its history.
  await bob.page.reload();
  await bubble(bob.page, 'Hi bob').waitFor();
  assert.equal(await bob.page.getByRole('button', { name: 'Log in' }).count(), 0);

  // He answers; alice sees it live.
  await send(bob.page, 'Hello alice!');
  await bubble(alice.page, 'Hello alice!', '.theirs').waitFor();
  await bubble(bob.page, 'Hello alice!', '.mine').waitFor();

  // A group with both, and a message in it: bob's list shows it as soon as
  // it exists, then with the message unread.
  await alice.page.getByRole('button', { name: '+ New group' }).click();
  await alice.page.getByLabel('Group name').fill('Climbing');
  await alice.page.getByLabel('Members (comma-separated)').fill('bob');
  await alice.page.getByRole('button', { name: 'Create group' }).click();
  await alice.page.locator('.pane-title', { hasText: 'Climbing' }).waitFor();
  const groupConv = await alice.page.locator('.conv.current').getAttribute('data-conv');
  assert.match(groupConv, /^g:[A-Za-z0-9_-]+$/);
  await convItem(bob.page, groupConv).locator('.conv-title', { hasText: 'Climbing' }).waitFor();
  await send(alice.page, 'Saturday at 10?');
  await convItem(bob.page, groupConv).locator('.badge', { hasText: '1' }).waitFor();
  await convItem(bob.page, groupConv).click();
  await bubble(bob.page, 'Saturday at 10?').waitFor();
  assert.equal(await bob.page.locator('.msg.theirs .sender').last().textContent(), 'alice');
  await send(bob.page, 'Count me in');
  await bubble(alice.page, 'Count me in', '.theirs').waitFor();

  await shot(alice.page, 'web-alice.png');
  await shot(bob.page, 'web-bob.png');
});

test('history pages, and messages sent while a tab was closed', { timeout: 120_000 }, async () => {
  // alice's second device (MQTT.js in Node, through the bridge) sends 60
  // messages, so the conversation has more than one history page.
  const tokens = await login(platform.api, 'alice', 'node', 'correct horse');
  const client = await mqtt.connectAsync(platform.wsUrl, {
    protocolVersion: 5,
    clientId: 'alice:node',
    username: 'alice',
    password: tokens.access_token,
    reconnectPeriod: 0,
  });
  try {
    for (let i = 1; i <= 60; i++) {
      await client.publishAsync('dm/bob', JSON.stringify({ cid: `bulk-${i}`, type: 'text', body: `bulk ${i}` }), { qos: 1 });
    }
  } finally {
    await client.endAsync();
  }

  // bob, on a phone-sized screen, in a new tab: tokens live in the tab's
  // sessionStorage, so he logs in again; this browser's device id stays.
  const bob = await person('bob-phone', { width: 390, height: 760 });
  await bob.page.getByLabel('User id').fill('bob');
  await bob.page.getByLabel('Password').fill('correct horse');
  await bob.page.getByRole('button', { name: 'Log in' }).click();
  await bob.page.locator('.conn-online').waitFor();
  const dm = convItem(bob.page, 'dm:alice:bob');
  await dm.locator('.badge', { hasText: '60' }).waitFor();
  await dm.click();
  await bubble(bob.page, 'bulk 60').waitFor();
  // The newest page (50) first; "Load older" brings the rest.
  assert.equal(await bubble(bob.page, /^bulk 1$/).count(), 0);
  await bob.page.getByRole('button', { name: 'Load older messages' }).click();
  await bubble(bob.page, /^bulk 1$/).waitFor();
  // The first messages were end-to-end encrypted for bob's other browser
  // (another context here, so another device): this one cannot read them.
  await bubble(bob.page, 'Encrypted message (not for this device)').first().waitFor();
  assert.equal(await bubble(bob.page, 'Hi bob').count(), 0);
  await bob.page.getByRole('button', { name: 'Load older messages' }).waitFor({ state: 'hidden' });

  // Back to the list (phone layout), then the tab closes; a message sent
  // meanwhile is there when he comes back (persistent session + /v1/sync).
  await bob.page.getByRole('button', { name: 'Back to conversations' }).click();
  await dm.waitFor();
  await bob.page.close();
  const tokens2 = await login(platform.api, 'alice', 'node', 'correct horse');
  const again = await mqtt.connectAsync(platform.wsUrl, {
    protocolVersion: 5, clientId: 'alice:node', username: 'alice', password: tokens2.access_token, reconnectPeriod: 0,
  });
  await again.publishAsync('dm/bob', JSON.stringify({ cid: 'while-away', type: 'text', body: 'while you were away' }), { qos: 1 });
  await again.endAsync();

  const page = await bob.context.newPage();
  page.on('pageerror', (err) => problems.push(`bob-phone: page error: ${err.message}`));
  await page.goto(`${platform.api}/`);
  await page.getByLabel('User id').fill('bob');
  await page.getByLabel('Password').fill('correct horse');
  await page.getByRole('button', { name: 'Log in' }).click();
  await convItem(page, 'dm:alice:bob').locator('.conv-preview', { hasText: 'while you were away' }).waitFor();
  await convItem(page, 'dm:alice:bob').click();
  await bubble(page, 'while you were away').waitFor();
  assert.equal(await bubble(page, 'while you were away').count(), 1);
  await shot(page, 'web-bob-phone.png');
});

test('no console errors, page errors or CSP violations', () => {
  assert.deepEqual(problems, []);
});
