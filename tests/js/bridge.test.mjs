// chat-bridge end to end: MQTT.js (and raw `ws` clients) through the real
// bridge to a bare Mosquitto, or to a fake TCP "broker" where byte-exact
// relaying, ordering and back-pressure are checked without MQTT in the way.
//
// Every wait polls with a deadline (eventually); nothing sleeps to synchronise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import mqtt from 'mqtt';
import WebSocket from 'ws';

import {
  binDir, eventually, freePort, Proc, rssKiB, startBridge, startMosquitto, tmpdir,
} from './lib/harness.mjs';

const KiB = 1024;
const MiB = 1024 * 1024;
const BUFFER_BYTES = 256 * KiB;  // CHAT_WS_BUFFER_BYTES default

// ---- helpers -------------------------------------------------------------

const started = [];  // every bridge and broker, checked and stopped in after()

async function bridgeFor(upstreamPort, env = {}, port) {
  const b = await startBridge({ upstreamPort, env, port });
  started.push(b);
  return b;
}

function connectMqtt(url, opts = {}) {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
}

// Opens a raw WebSocket; resolves { status: 101, ws, closed } or, when the
// handshake is refused, { status: <HTTP status> }.
function openWs(url, { protocols = ['mqtt'], ...options } = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, { handshakeTimeout: 5000, ...options });
    ws.binaryType = 'nodebuffer';
    const closed = new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.once('open', () => resolve({ status: 101, ws, closed }));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
      req.on('error', () => {});
    });
    ws.once('error', (error) => resolve({ status: 0, error }));
  });
}

async function stats(bridge) {
  const res = await fetch(`http://127.0.0.1:${bridge.port}/stats`);
  assert.equal(res.status, 200);
  return res.json();
}

// MQTT 3.1.1 packets, built by hand for the raw clients.
function varint(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 128;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
function mqttString(s) {
  const b = Buffer.from(s);
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
}
function packet(firstByte, body) {
  return Buffer.concat([Buffer.from([firstByte]), varint(body.length), body]);
}
function connectPacket(clientId, keepalive = 60) {
  return packet(0x10, Buffer.concat([
    mqttString('MQTT'), Buffer.from([4, 0x02, keepalive >> 8, keepalive & 255]), mqttString(clientId),
  ]));
}
function subscribePacket(id, topic, qos = 0) {
  return packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 255]), mqttString(topic), Buffer.from([qos])]));
}
function publishPacket(topic, payload) {
  return packet(0x30, Buffer.concat([mqttString(topic), Buffer.from(payload)]));
}

// Splits a byte stream into MQTT packets ({ type, body }).
class MqttReader {
  constructor() { this.buf = Buffer.alloc(0); }
  push(data) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out = [];
    for (;;) {
      let len = 0;
      let mult = 1;
      let i = 1;
      let b;
      do {
        if (i >= this.buf.length) return out;
        b = this.buf[i++];
        len += (b & 127) * mult;
        mult *= 128;
      } while (b & 128);
      if (this.buf.length < i + len) return out;
      out.push({ type: this.buf[0] >> 4, body: this.buf.subarray(i, i + len) });
      this.buf = this.buf.subarray(i + len);
    }
  }
}

// A raw MQTT client over a raw WebSocket: remembers packet types seen and
// the topics of PUBLISHes (QoS 0).
async function rawMqtt(url, clientId, { keepalive = 60, ...wsOptions } = {}) {
  const opened = await openWs(url, wsOptions);
  assert.equal(opened.status, 101, 'raw client handshake');
  const { ws } = opened;
  const reader = new MqttReader();
  // notOnePacket: WebSocket messages that did not hold exactly one whole packet.
  const seen = { types: new Map(), topics: new Map(), bytes: 0, messages: 0, notOnePacket: 0 };
  ws.on('message', (data) => {
    seen.bytes += data.length;
    seen.messages += 1;
    const packets = reader.push(data);
    if (packets.length !== 1 || reader.buf.length !== 0) seen.notOnePacket += 1;
    for (const p of packets) {
      seen.types.set(p.type, (seen.types.get(p.type) ?? 0) + 1);
      if (p.type === 3) {
        const topic = p.body.subarray(2, 2 + p.body.readUInt16BE(0)).toString();
        seen.topics.set(topic, (seen.topics.get(topic) ?? 0) + 1);
      }
    }
  });
  ws.send(connectPacket(clientId, keepalive));
  await eventually(() => seen.types.get(2), 5000, `CONNACK for ${clientId}`);
  return { ...opened, seen };
}

const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// A TCP server standing in for the broker: records each connection's bytes.
async function fakeUpstream({ pause = false } = {}) {
  const conns = [];
  const server = net.createServer((sock) => {
    const c = { sock, chunks: [], bytes: 0, ended: false };
    if (pause) sock.pause();
    sock.on('data', (d) => { c.chunks.push(d); c.bytes += d.length; });
    sock.on('end', () => { c.ended = true; });
    sock.on('error', () => {});
    conns.push(c);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: server.address().port,
    conns,
    close: () => { for (const c of conns) c.sock.destroy(); return new Promise((r) => server.close(r)); },
  };
}

// Peak VmRSS (KiB) of `pid` while `work` runs, sampled every 5 ms.
async function peakRss(pid, work) {
  let peak = rssKiB(pid);
  const timer = setInterval(() => { peak = Math.max(peak, rssKiB(pid) ?? 0); }, 5);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rssKiB(pid) ?? 0);
}

// ---- the shared broker and bridge ------------------------------------------

let broker;
let bridge;

before(async () => {
  broker = await startMosquitto({ extra: ['persistence false'] });
  started.push(broker);
  bridge = await bridgeFor(broker.port, { CHAT_WS_ORIGINS: 'HTTPS://Chat.Example.com/, https://other.example:8443' });
});

after(async () => {
  const failures = [];
  for (const p of started.reverse()) {
    const { code, signal } = await p.proc.stop();
    const log = p.proc.log(20000);
    if (/AddressSanitizer|LeakSanitizer|runtime error:/.test(log)) failures.push(`sanitizer report:\n${log}`);
    if (p.url && !p.killed && (code !== 0 || signal)) failures.push(`chat-bridge exited ${code ?? signal}:\n${log}`);
  }
  if (!process.env.CHAT_KEEP_TEST_DATA) {
    for (const p of started) fs.rmSync(p.dir, { recursive: true, force: true });
  }
  assert.deepEqual(failures, []);
});

// ---- MQTT through the bridge ------------------------------------------------

describe('MQTT.js through the bridge', () => {
  for (const protocolVersion of [4, 5]) {
    test(`publish/receive at QoS 0, 1, 2 (MQTT ${protocolVersion === 4 ? '3.1.1' : '5'})`, { timeout: 15000 }, async () => {
      const sub = await connectMqtt(bridge.url, { protocolVersion });
      const pub = await connectMqtt(bridge.url, { protocolVersion });
      try {
        const got = [];
        sub.on('message', (topic, payload, pkt) => got.push({ topic, payload: payload.toString(), qos: pkt.qos }));
        await sub.subscribeAsync(`qos/${protocolVersion}/#`, { qos: 2 });
        for (const qos of [0, 1, 2]) await pub.publishAsync(`qos/${protocolVersion}/${qos}`, `m${qos}`, { qos });
        await eventually(() => got.length === 3, 5000, 'three messages');
        assert.deepEqual(got.sort((a, b) => a.qos - b.qos), [0, 1, 2].map((qos) => ({
          topic: `qos/${protocolVersion}/${qos}`, payload: `m${qos}`, qos,
        })));
      } finally {
        await Promise.all([sub.endAsync(), pub.endAsync()]);
      }
    });
  }

  test('MQTT 3.1 (subprotocol mqttv3.1) is relayed too', { timeout: 10000 }, async () => {
    const c = await connectMqtt(bridge.url, { protocolVersion: 3, protocolId: 'MQIsdp' });
    await c.endAsync();
  });

  test('a 1 MiB message both ways, byte-identical', { timeout: 15000 }, async () => {
    const a = await connectMqtt(bridge.url, { protocolVersion: 5 });
    const b = await connectMqtt(bridge.url, { protocolVersion: 4 });
    try {
      const big = crypto.randomBytes(MiB);
      const atA = [];
      const atB = [];
      a.on('message', (_t, p) => atA.push(p));
      b.on('message', (_t, p) => atB.push(p));
      await a.subscribeAsync('big/to-a', { qos: 1 });
      await b.subscribeAsync('big/to-b', { qos: 1 });
      await a.publishAsync('big/to-b', big, { qos: 1 });
      await b.publishAsync('big/to-a', big, { qos: 1 });
      await eventually(() => atA.length === 1 && atB.length === 1, 10000, 'both 1 MiB messages');
      assert.equal(sha(atA[0]), sha(big));
      assert.equal(sha(atB[0]), sha(big));
    } finally {
      await Promise.all([a.endAsync(), b.endAsync()]);
    }
  });

  test('retained messages', { timeout: 10000 }, async () => {
    const pub = await connectMqtt(bridge.url);
    await pub.publishAsync('retained/last', 'kept', { qos: 1, retain: true });
    await pub.endAsync();
    const sub = await connectMqtt(bridge.url, { protocolVersion: 5 });
    try {
      const got = [];
      sub.on('message', (topic, payload, pkt) => got.push({ payload: payload.toString(), retain: pkt.retain }));
      await sub.subscribeAsync('retained/#', { qos: 1 });
      await eventually(() => got.length === 1, 5000, 'the retained message');
      assert.deepEqual(got[0], { payload: 'kept', retain: true });
    } finally {
      await sub.endAsync();
    }
  });

  test('a will is delivered when the WebSocket is killed abruptly', { timeout: 10000 }, async () => {
    const watcher = await connectMqtt(bridge.url);
    let victimWs;
    const victim = await connectMqtt(bridge.url, {
      clientId: 'will-victim',
      will: { topic: 'will/victim', payload: Buffer.from('gone'), qos: 1 },
      createWebsocket: (url, protocols, opts) => { victimWs = new WebSocket(url, protocols, opts.wsOptions); return victimWs; },
    });
    try {
      const got = [];
      watcher.on('message', (topic, payload) => got.push(`${topic}=${payload}`));
      await watcher.subscribeAsync('will/#', { qos: 1 });
      victimWs._socket.destroy();  // no close frame, no DISCONNECT
      await eventually(() => got.length === 1, 5000, 'the will');
      assert.deepEqual(got, ['will/victim=gone']);
    } finally {
      victim.end(true);
      await watcher.endAsync();
    }
  });

  test('session takeover: the first connection with a client id is closed', { timeout: 10000 }, async () => {
    const first = await connectMqtt(bridge.url, { clientId: 'takeover', protocolVersion: 5 });
    let firstClosed = false;
    first.on('close', () => { firstClosed = true; });
    const second = await connectMqtt(bridge.url, { clientId: 'takeover', protocolVersion: 5 });
    try {
      // Mosquitto 2.0.11 closes the old connection without a DISCONNECT.
      await eventually(() => firstClosed, 5000, 'the first connection to close');
      assert.ok(second.connected);
      await second.publishAsync('takeover/ok', 'x', { qos: 1 });
    } finally {
      first.end(true);
      await second.endAsync();
    }
  });

  for (const [name, opts] of [
    ['MQTT 3.1.1 clean=false', { protocolVersion: 4, clean: false }],
    ['MQTT 5 clean start=false + session expiry', { protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } }],
  ]) {
    test(`a persistent session is resumed with its queued QoS 1 messages (${name})`, { timeout: 15000 }, async () => {
      const clientId = `persistent-${opts.protocolVersion}`;
      const topic = `persist/${opts.protocolVersion}`;
      const first = await connectMqtt(bridge.url, { clientId, ...opts });
      await first.subscribeAsync(topic, { qos: 1 });
      await first.endAsync();
      const pub = await connectMqtt(bridge.url);
      for (let i = 0; i < 3; i++) await pub.publishAsync(topic, `queued-${i}`, { qos: 1 });
      await pub.endAsync();
      const got = [];
      const again = mqtt.connect(bridge.url, { clientId, reconnectPeriod: 0, ...opts });
      again.on('message', (_t, p) => got.push(p.toString()));
      let sessionPresent;
      again.on('connect', (connack) => { sessionPresent = connack.sessionPresent; });
      try {
        await eventually(() => got.length === 3, 5000, 'the queued messages');
        assert.equal(sessionPresent, true);
        assert.deepEqual(got, ['queued-0', 'queued-1', 'queued-2']);
      } finally {
        await again.endAsync();
      }
    });
  }

  test('keepalive: a client that stops sending pings is disconnected by the broker', { timeout: 15000 }, async () => {
    // MQTT.js with its pinger stopped (an internal of MQTT.js 5), and a raw
    // client that never pings; both with keepalive 1 s.
    const quiet = await connectMqtt(bridge.url, { keepalive: 1 });
    let quietClosed = false;
    quiet.on('close', () => { quietClosed = true; });
    assert.ok(quiet.keepaliveManager, 'MQTT.js keepalive manager');
    quiet.keepaliveManager.destroy();
    const silent = await rawMqtt(bridge.url, 'silent', { keepalive: 1 });
    const t0 = Date.now();
    // Mosquitto drops them after 1.5 keepalives (its check runs every few seconds).
    const { code } = await silent.closed;
    assert.equal(code, 1000, 'the broker closed: close 1000 from the bridge');
    await eventually(() => quietClosed, 10000, 'MQTT.js to be disconnected');
    assert.ok(Date.now() - t0 < 10000, `closed after ${Date.now() - t0} ms`);
    quiet.end(true);
  });
});

// ---- byte relaying, order, back-pressure (fake broker) ----------------------

describe('relaying bytes', () => {
  test('one MQTT packet across several frames, several packets in one frame', { timeout: 10000 }, async () => {
    const opened = await openWs(bridge.url);
    assert.equal(opened.status, 101);
    const { ws } = opened;
    const reader = new MqttReader();
    const types = [];
    ws.on('message', (d) => { for (const p of reader.push(d)) types.push(p.type); });
    const connect = connectPacket('frames', 60);
    for (let i = 0; i < connect.length; i += 5) ws.send(connect.subarray(i, i + 5));
    ws.send(Buffer.concat([subscribePacket(1, 'frames/#'), publishPacket('frames/x', 'both')]));
    await eventually(() => types.includes(3), 5000, 'the PUBLISH back');
    assert.deepEqual(types, [2, 9, 3]);  // CONNACK, SUBACK, PUBLISH
    ws.close();
    await opened.closed;
  });

  test('browser closes: every byte it sent reaches the broker before EOF', { timeout: 15000 }, async () => {
    const up = await fakeUpstream();
    const b = await bridgeFor(up.port);
    try {
      const opened = await openWs(b.url);
      const data = crypto.randomBytes(5 * MiB + 123);
      for (let off = 0; off < data.length;) {
        const n = Math.min(data.length - off, 1 + crypto.randomInt(300 * KiB));
        opened.ws.send(data.subarray(off, off + n));
        off += n;
      }
      opened.ws.close(1000);
      await eventually(() => up.conns[0]?.ended, 10000, 'EOF at the broker');
      assert.equal(up.conns[0].bytes, data.length);
      assert.equal(sha(Buffer.concat(up.conns[0].chunks)), sha(data));
    } finally {
      await up.close();
    }
  });

  test('broker closes: every byte it sent reaches the browser before close 1000', { timeout: 15000 }, async () => {
    const up = await fakeUpstream();
    const b = await bridgeFor(up.port);
    try {
      const opened = await openWs(b.url);
      const chunks = [];
      opened.ws.on('message', (d) => chunks.push(d));
      await eventually(() => up.conns.length === 1, 5000, 'the broker connection');
      const data = crypto.randomBytes(5 * MiB + 321);
      up.conns[0].sock.end(data);
      const { code } = await opened.closed;
      assert.equal(code, 1000);
      assert.equal(sha(Buffer.concat(chunks)), sha(data));
    } finally {
      await up.close();
    }
  });

  test('back-pressure toward the broker: a broker that stops reading stops the bridge reading', { timeout: 30000 }, async () => {
    const up = await fakeUpstream({ pause: true });
    const b = await bridgeFor(up.port);
    try {
      const opened = await openWs(b.url);
      const { ws } = opened;
      await eventually(() => up.conns.length === 1, 5000, 'the broker connection');
      const start = rssKiB(b.proc.pid);
      const data = crypto.randomBytes(64 * MiB);
      const peak = await peakRss(b.proc.pid, async () => {
        for (let off = 0; off < data.length; off += MiB) ws.send(data.subarray(off, off + MiB));
        // The bridge stops reading: our send buffer stops draining.
        let last = -1;
        await eventually(() => {
          const stuck = ws.bufferedAmount > 0 && ws.bufferedAmount === last;
          last = ws.bufferedAmount;
          return stuck;
        }, 20000, 'the WebSocket to stall', 200);
      });
      // One connection, one direction buffered: the configured buffer plus margin.
      const bound = start + (BUFFER_BYTES + 31 * MiB) / KiB;
      assert.ok(peak < bound, `bridge RSS ${peak} KiB, bound ${bound} KiB (start ${start} KiB)`);
      console.log(`# back-pressure to broker: RSS start ${start} KiB, peak ${peak} KiB, bound ${bound} KiB, stalled with ${ws.bufferedAmount} bytes unsent`);
      up.conns[0].sock.resume();
      await eventually(() => up.conns[0].bytes === data.length, 20000, 'all 64 MiB at the broker');
      assert.equal(sha(Buffer.concat(up.conns[0].chunks)), sha(data));
      ws.close();
    } finally {
      await up.close();
    }
  });

  test('one MQTT packet per WebSocket message (what Paho C and Mosquitto\'s own listener expect)', { timeout: 20000 }, async () => {
    const reader = await rawMqtt(bridge.url, 'framing-reader');
    reader.ws.send(subscribePacket(1, 'framing/#', 0));
    await eventually(() => reader.seen.types.get(9), 5000, 'SUBACK');
    const pub = await connectMqtt(bridge.url, { clientId: 'framing-publisher' });
    try {
      // Many small packets in a burst (the broker writes them together) and
      // a few bigger than one frame (sent as fragmented messages).
      const big = crypto.randomBytes(100 * KiB);
      for (let i = 0; i < 500; i++) pub.publish('framing/small', `m${i}`, { qos: 0 });
      for (let i = 0; i < 3; i++) pub.publish('framing/big', big, { qos: 0 });
      await pub.publishAsync('framing/end', 'x', { qos: 1 });
      await eventually(() => reader.seen.topics.get('framing/end'), 10000, 'the last message');
      assert.equal(reader.seen.topics.get('framing/small'), 500);
      assert.equal(reader.seen.topics.get('framing/big'), 3);
      assert.equal(reader.seen.notOnePacket, 0, `${reader.seen.notOnePacket} of ${reader.seen.messages} messages held other than one packet`);
    } finally {
      await pub.endAsync();
      reader.ws.terminate();
    }
  });

  test('slow reader: bounded memory while 64 MiB are published, data flows again on resume', { timeout: 45000 }, async () => {
    // Its own bridge, for a clean RSS baseline. Under AddressSanitizer freed
    // memory is quarantined (256 MiB by default), which would count as RSS.
    const b = await bridgeFor(broker.port, { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ?? ''}:quarantine_size_mb=1` });
    const reader = await rawMqtt(b.url, 'slow-reader');
    reader.ws.send(subscribePacket(1, 'slow/#', 0));
    await eventually(() => reader.seen.types.get(9), 5000, 'SUBACK');
    reader.ws._socket.pause();
    const pub = await connectMqtt(b.url, { clientId: 'slow-publisher' });
    try {
      const start = rssKiB(b.proc.pid);
      const payload = crypto.randomBytes(32 * KiB);
      const peak = await peakRss(b.proc.pid, async () => {
        for (let i = 0; i < 2048; i++) await pub.publishAsync('slow/data', payload, { qos: 0 });  // 64 MiB
        await pub.publishAsync('slow/sync', 'x', { qos: 1 });  // the broker has read it all
      });
      // Two connections (reader, publisher) x two directions x CHAT_WS_BUFFER_BYTES, plus margin.
      const bound = start + (2 * 2 * BUFFER_BYTES + 31 * MiB) / KiB;
      console.log(`# slow reader: RSS start ${start} KiB, peak ${peak} KiB, bound ${bound} KiB, reader got ${reader.seen.bytes} bytes while paused`);
      assert.ok(peak < bound, `bridge RSS ${peak} KiB, bound ${bound} KiB (start ${start} KiB)`);
      assert.ok(reader.seen.bytes < 16 * MiB, 'the paused reader did not get the 64 MiB');
      reader.ws._socket.resume();
      await eventually(() => {
        pub.publish('slow/marker', 'end', { qos: 0 });
        return reader.seen.topics.get('slow/marker');
      }, 30000, 'the reader to get a message published after resume', 100);
      assert.ok(reader.seen.topics.get('slow/data') > 0);
    } finally {
      await pub.endAsync();
      reader.ws.terminate();
    }
  });
});

// ---- refusals, limits, closes -----------------------------------------------

describe('refusals and limits', () => {
  test('handshakes refused with an HTTP status: origin, subprotocol, path', { timeout: 10000 }, async () => {
    const before = await stats(bridge);
    assert.equal((await openWs(bridge.url, { origin: 'https://evil.example' })).status, 403);
    assert.equal((await openWs(bridge.url, { origin: 'null' })).status, 403);
    assert.equal((await openWs(bridge.url, { origin: 'file://' })).status, 403);
    assert.equal((await openWs(bridge.url, { protocols: ['xmpp'] })).status, 400);
    assert.equal((await openWs(bridge.url, { protocols: [] })).status, 400);
    assert.equal((await openWs(bridge.url.replace('/mqtt', '/other'))).status, 404);
    for (const origin of ['https://chat.example.com', 'https://other.example:8443', 'http://localhost:5173', 'http://127.0.0.1']) {
      const ok = await openWs(bridge.url, { origin });
      assert.equal(ok.status, 101, `origin ${origin}`);
      ok.ws.close();
      await ok.closed;
    }
    const after = await stats(bridge);
    assert.equal(after.refused.origin - before.refused.origin, 3);
    assert.equal(after.refused.subprotocol - before.refused.subprotocol, 2);
    assert.equal(after.refused.path - before.refused.path, 1);
    assert.ok(after.connections.total - before.connections.total >= 4);
    const health = await fetch(`http://127.0.0.1:${bridge.port}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
  });

  test('refusal log lines: key=value, client text quoted on one line, no query string', { timeout: 10000 }, async () => {
    const b = await bridgeFor(broker.port);
    const base = b.url.replace('/mqtt', '');
    assert.equal((await openWs(`${base}/other%0Afake:%20ip=6.6.6.6?token=sekrit-query`)).status, 404);
    assert.equal((await openWs(b.url, { origin: 'https://evil.example" ip="6.6.6.6' })).status, 403);
    const ok = await openWs(`${b.url}?token=sekrit-admitted`);
    assert.equal(ok.status, 101);
    ok.ws.close();
    await ok.closed;
    const log = await eventually(() => {
      const text = b.proc.log(20000);
      return text.includes('reason=origin') ? text : false;
    }, 5000, 'the refusals logged');
    assert.match(log, /ws\.refused: ip=127\.0\.0\.1 reason=path status=404 path="?\/other[^ ]*/);
    assert.ok(log.includes('origin="https://evil.example\\" ip=\\"6.6.6.6"'), log);
    assert.ok(!log.includes('sekrit'), log);
    for (const line of log.split('\n')) assert.ok(!line.startsWith('fake'), line);
  });

  test('CHAT_WS_MAX_PER_IP=3: the fourth is refused (503), a freed slot is reusable; /stats follows', { timeout: 15000 }, async () => {
    const b = await bridgeFor(broker.port, { CHAT_WS_MAX_PER_IP: '3' });
    const open = [];
    for (let i = 0; i < 3; i++) {
      const o = await openWs(b.url);
      assert.equal(o.status, 101);
      open.push(o);
    }
    assert.equal((await openWs(b.url)).status, 503);
    let s = await stats(b);
    assert.equal(s.connections.current, 3);
    assert.equal(s.refused.max_per_ip, 1);
    open[0].ws.close();
    await open[0].closed;
    await eventually(async () => (await stats(b)).connections.current === 2, 5000, 'the WebSocket to be gone');
    // The slot itself is freed once the broker side has closed too (the
    // bridge half-closes it after flushing); then a new one is admitted.
    const again = await eventually(async () => {
      const o = await openWs(b.url);
      return o.status === 101 ? o : false;
    }, 5000, 'the freed slot to admit a new WebSocket');
    assert.equal(again.status, 101);
    s = await stats(b);
    assert.equal(s.connections.current, 3);
    assert.equal(s.connections.total, 4);
    for (const o of [...open.slice(1), again]) o.ws.close();
  });

  test('CHAT_WS_CONN_RATE=1, BURST=2: the third new WebSocket in a second is refused (429), logged once', { timeout: 15000 }, async () => {
    const b = await bridgeFor(broker.port, { CHAT_WS_CONN_RATE: '1', CHAT_WS_CONN_BURST: '2' });
    for (let i = 0; i < 2; i++) {
      const o = await openWs(b.url);
      assert.equal(o.status, 101);
      o.ws.close();
      await o.closed;
    }
    const refused = await openWs(b.url);
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.body, 'rate_limited\n');
    assert.equal((await openWs(b.url)).status, 429);
    let s = await stats(b);
    assert.equal(s.refused.rate_limited, 2);
    // Tokens come back at 1/s: a new WebSocket is admitted again.
    const again = await eventually(async () => {
      const o = await openWs(b.url);
      return o.status === 101 ? o : false;
    }, 5000, 'a token to come back');
    again.ws.close();
    await again.closed;
    s = await stats(b);
    // One log line for this address, however many refusals.
    const lines = b.proc.log().split('\n').filter((l) => l.includes('ws.refused: ') && l.includes('reason=rate_limited'));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.ok(s.refused.rate_limited >= 2);
  });

  test('CHAT_WS_MAX_CONNECTIONS=1: a second WebSocket is refused (503)', { timeout: 10000 }, async () => {
    const b = await bridgeFor(broker.port, { CHAT_WS_MAX_CONNECTIONS: '1' });
    const first = await openWs(b.url);
    assert.equal(first.status, 101);
    assert.equal((await openWs(b.url)).status, 503);
    assert.equal((await stats(b)).refused.max_connections, 1);
    first.ws.close();
  });

  test('text frame closes 1003, a frame over CHAT_WS_MAX_FRAME closes 1009, idle closes 1001', { timeout: 15000 }, async () => {
    const b = await bridgeFor(broker.port, { CHAT_WS_MAX_FRAME: '1024', CHAT_WS_IDLE_TIMEOUT: '1' });
    const text = await openWs(b.url);
    text.ws.send('not binary');
    assert.equal((await text.closed).code, 1003);
    const big = await openWs(b.url);
    big.ws.send(Buffer.alloc(2048));
    assert.equal((await big.closed).code, 1009);
    const idle = await openWs(b.url);
    const t0 = Date.now();
    assert.equal((await idle.closed).code, 1001);
    assert.ok(Date.now() - t0 < 4000);
    const s = await stats(b);
    assert.deepEqual([s.closed.text_frame, s.closed.frame_too_big, s.closed.idle_timeout], [1, 1, 1]);
  });

  test('broker unreachable: close 1013, counted and logged', { timeout: 10000 }, async () => {
    const b = await bridgeFor(await freePort());
    const o = await openWs(b.url);
    assert.equal(o.status, 101);
    assert.equal((await o.closed).code, 1013);
    assert.equal((await stats(b)).upstream_connect_failures, 1);
    assert.match(b.proc.log(), /upstream\.connect_failed: id=\d+ ip=127\.0\.0\.1 broker=127\.0\.0\.1:\d+ error=/);
  });
});

// ---- process life ----------------------------------------------------------

describe('process', () => {
  test('SIGKILL, restart on the same port: a clean=false client reconnects and resumes', { timeout: 20000 }, async () => {
    const b = await bridgeFor(broker.port);
    const got = [];
    let connects = 0;
    const client = mqtt.connect(b.url, { clientId: 'restart', clean: false, reconnectPeriod: 100, connectTimeout: 2000 });
    client.on('message', (_t, p) => got.push(p.toString()));
    client.on('connect', () => { connects++; });
    try {
      await eventually(() => connects === 1, 5000, 'the first connect');
      await client.subscribeAsync('restart/#', { qos: 1 });
      b.killed = true;
      b.proc.kill('SIGKILL');
      await b.proc.exited;
      await eventually(() => !client.connected, 5000, 'the client to notice');
      const direct = await connectMqtt(`mqtt://127.0.0.1:${broker.port}`);
      for (let i = 0; i < 3; i++) await direct.publishAsync('restart/x', `while-away-${i}`, { qos: 1 });
      await direct.endAsync();
      await bridgeFor(broker.port, {}, b.port);
      await eventually(() => got.length === 3, 10000, 'the messages published while away');
      assert.deepEqual(got, ['while-away-0', 'while-away-1', 'while-away-2']);
      assert.ok(connects >= 2);
    } finally {
      await client.endAsync(true);
    }
  });

  test('SIGTERM: close 1001 to every client, exit 0 within about 2 s even if a peer never answers', { timeout: 15000 }, async () => {
    const b = await bridgeFor(broker.port);
    const polite = await rawMqtt(b.url, 'term-polite');
    // A peer that stopped reading with data on its way: the bridge cannot
    // even write the close frame to it.
    const deaf = await rawMqtt(b.url, 'term-deaf');
    deaf.ws.send(subscribePacket(1, 'term/#', 0));
    await eventually(() => deaf.seen.types.get(9), 5000, 'SUBACK');
    deaf.ws._socket.pause();
    const client = await connectMqtt(b.url);
    const payload = Buffer.alloc(32 * KiB);
    for (let i = 0; i < 128; i++) await client.publishAsync('term/x', payload, { qos: 0 });
    await client.publishAsync('term/sync', 'x', { qos: 1 });
    let clientClosed = false;
    client.on('close', () => { clientClosed = true; });
    const t0 = Date.now();
    b.proc.kill('SIGTERM');
    const { code } = await b.proc.exited;
    const elapsed = Date.now() - t0;
    assert.equal(code, 0);
    assert.ok(elapsed < 3000, `exited after ${elapsed} ms`);
    assert.equal((await polite.closed).code, 1001);
    await eventually(() => clientClosed, 5000, 'the MQTT.js client to see the close');
    client.end(true);
    deaf.ws.terminate();
  });

  test('bad configuration exits 2 naming the variable; a port in use exits 1', { timeout: 10000 }, async () => {
    const dir = tmpdir('chat-bridge-cfg-');
    const run = async (env) => {
      const p = new Proc([path.join(binDir, 'chat-bridge')], { env, logPath: path.join(dir, 'out.log') });
      const { code } = await p.exited;
      return { code, log: p.log() };
    };
    for (const [key, value] of [['CHAT_WS_PORT', 'http'], ['CHAT_WS_MAX_PER_IP', '0'], ['CHAT_WS_BUFFER_BYTES', '12k'],
      ['CHAT_WS_ORIGINS', 'chat.example.com'], ['CHAT_BRIDGE_UPSTREAM', 'nohostport'], ['CHAT_BIND', 'not-an-ip']]) {
      const r = await run({ CHAT_WS_PORT: '0', [key]: value });
      assert.equal(r.code, 2, `${key}=${value}`);
      assert.match(r.log, new RegExp(`chat-bridge: ${key}: `));
    }
    const r = await run({ CHAT_WS_PORT: '0', CHAT_TLS_CERT: '/etc/hostname' });
    assert.equal(r.code, 2);
    assert.match(r.log, /CHAT_TLS_KEY/);
    const inUse = await run({ CHAT_BIND: '127.0.0.1', CHAT_WS_PORT: String(bridge.port) });
    assert.equal(inUse.code, 1);
    assert.match(inUse.log, /cannot listen on 127\.0\.0\.1:\d+: Address already in use/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('wss with CHAT_TLS_CERT / CHAT_TLS_KEY', { timeout: 15000 }, async () => {
    const dir = tmpdir('chat-bridge-tls-');
    const cert = path.join(dir, 'cert.pem');
    const key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    const b = await bridgeFor(broker.port, { CHAT_TLS_CERT: cert, CHAT_TLS_KEY: key });
    const url = `wss://127.0.0.1:${b.port}/mqtt`;
    const c = await connectMqtt(url, { rejectUnauthorized: false, wsOptions: { rejectUnauthorized: false } });
    const got = [];
    c.on('message', (_t, p) => got.push(p.toString()));
    await c.subscribeAsync('tls/x', { qos: 1 });
    await c.publishAsync('tls/x', 'secure', { qos: 1 });
    await eventually(() => got.length === 1, 5000, 'the message over wss');
    await c.endAsync();
    assert.match(b.proc.log(), /listening: url=wss:\/\/\S+ .* tls=on /);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
