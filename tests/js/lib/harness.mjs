// Test harness for the Node tests: real processes on free ports in a temp dir.
//
// Paths come from the environment ctest sets (tests/js/CMakeLists.txt):
//   CHAT_BIN_DIR          build/bin (chat-api, chat-bridge, chatctl)
//   CHAT_SOURCE_DIR       the checkout (scripts/run, mosquitto.conf)
//   MOSQUITTO_EXECUTABLE  /usr/sbin/mosquitto
//   CHAT_ARTIFACT_DIR     where tests leave screenshots and logs worth keeping
// Every wait is a poll with a deadline; nothing sleeps to synchronise.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const sourceDir = process.env.CHAT_SOURCE_DIR ?? path.resolve(here, '../../..');
export const binDir = process.env.CHAT_BIN_DIR ?? path.join(sourceDir, 'build/bin');
export const mosquittoExe = process.env.MOSQUITTO_EXECUTABLE ?? '/usr/sbin/mosquitto';
export const artifactDir =
  process.env.CHAT_ARTIFACT_DIR ?? path.join(path.dirname(binDir), 'test-artifacts');

const tick = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Polls `pred` (sync or async) every `interval` ms until it returns a truthy
// value, which is returned; throws `what` once `timeoutMs` has passed.
export async function eventually(pred, timeoutMs = 10000, what = 'condition', interval = 25) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` +
                      (lastError ? ` (last error: ${lastError.message})` : ''));
    }
    await tick(interval);
  }
}

// A port for a process under test, reserved against parallel test processes
// the same way as free_port() in tests/integration/stack.cpp: from
// 20000-32767 (below the kernel's ephemeral range, so no outgoing connection
// takes it), claimed by creating <tmp>/chat-test-ports/<port> exclusively
// with our pid in it (files of dead pids are taken over), and released when
// this process exits.
const PORT_LOW = 20000;
const PORT_HIGH = 32767;
const portDir = path.join(process.env.TMPDIR || '/tmp', 'chat-test-ports');
const reservedPorts = [];
let nextPort = PORT_LOW + ((process.pid * 7919) % (PORT_HIGH - PORT_LOW));
process.on('exit', () => {
  for (const f of reservedPorts) {
    try { fs.unlinkSync(f); } catch { /* already gone */ }
  }
});

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code !== 'ESRCH';
  }
}

function claimPort(file) {
  const me = String(process.pid);
  try {
    fs.writeFileSync(file, me, { flag: 'wx' });
  } catch (e) {
    if (e.code !== 'EEXIST') return false;
    let owner = 0;
    try { owner = Number.parseInt(fs.readFileSync(file, 'utf8'), 10); } catch { return false; }
    if (!(owner > 0) || alive(owner)) return false;
    const tmp = `${file}.${me}`;
    fs.writeFileSync(tmp, me);
    try { fs.renameSync(tmp, file); } catch { fs.rmSync(tmp, { force: true }); return false; }
  }
  try { return fs.readFileSync(file, 'utf8') === me; } catch { return false; }
}

function bindable(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
  });
}

export async function freePort() {
  fs.mkdirSync(portDir, { recursive: true, mode: 0o1777 });
  for (let tries = 0; tries < PORT_HIGH - PORT_LOW; tries++) {
    const port = PORT_LOW + ((nextPort++ - PORT_LOW) % (PORT_HIGH - PORT_LOW));
    const file = path.join(portDir, String(port));
    if (!claimPort(file)) continue;
    if (!(await bindable(port))) {
      fs.rmSync(file, { force: true });
      continue;
    }
    reservedPorts.push(file);
    return port;
  }
  throw new Error(`no free port in ${PORT_LOW}-${PORT_HIGH}`);
}

// Whether 127.0.0.1:port accepts a TCP connection.
export function portOpen(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

export async function waitPort(port, timeoutMs = 20000) {
  await eventually(() => portOpen(port), timeoutMs, `port ${port} to accept connections`, 50);
}

export function tmpdir(prefix = 'chat-js-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// A child process whose output goes to `logPath`.
export class Proc {
  constructor(argv, { env = {}, logPath, cwd } = {}) {
    this.argv = argv;
    this.logPath = logPath;
    const out = fs.openSync(logPath, 'a');
    this.child = spawn(argv[0], argv.slice(1), {
      env: { ...process.env, ...env },
      stdio: ['ignore', out, out],
      cwd,
      detached: true,  // own process group: stop() reaches scripts/run's children too
    });
    fs.closeSync(out);
    this.exitCode = null;
    this.signal = null;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.signal = signal;
        resolve({ code, signal });
      });
    });
  }

  get pid() { return this.child.pid; }
  get running() { return this.exitCode === null && this.signal === null; }

  kill(sig = 'SIGTERM') {
    if (this.running) {
      try { process.kill(this.pid, sig); } catch { /* already gone */ }
    }
  }

  // Sends `sig`, waits up to `timeoutMs`, then SIGKILLs the whole group.
  async stop(sig = 'SIGTERM', timeoutMs = 10000) {
    if (!this.running) return this.exited;
    this.kill(sig);
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, 'timeout'); });
    const first = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (first === 'timeout') {
      try { process.kill(-this.pid, 'SIGKILL'); } catch { /* gone */ }
      await this.exited;
    }
    return this.exited;
  }

  log(bytes = 4000) {
    try {
      const text = fs.readFileSync(this.logPath, 'utf8');
      return text.slice(-bytes);
    } catch {
      return '';
    }
  }
}

// Resident set size of a process in KiB (Linux /proc), or null.
export function rssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// A bare Mosquitto (no plugins) on a free port; `extra` lines go into its conf.
export async function startMosquitto({ dir = tmpdir('chat-mosq-'), extra = [] } = {}) {
  const port = await freePort();
  const conf = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'log_dest stdout',
    'log_type error',
    'log_type warning',
    'log_type notice',
    ...extra,
    '',
  ].join('\n'));
  const proc = new Proc([mosquittoExe, '-c', conf], { logPath: path.join(dir, 'mosquitto.log') });
  await waitPort(port);
  return { port, dir, proc, stop: () => proc.stop() };
}

// chat-bridge in front of 127.0.0.1:upstreamPort. `env` adds CHAT_* settings;
// pass `port` to reuse one (restart tests). The per-IP connection rate is off
// unless `env` sets it: every test connects from 127.0.0.1, fast.
export async function startBridge({ upstreamPort, port, env = {}, dir = tmpdir('chat-bridge-') }) {
  const wsPort = port ?? await freePort();
  const proc = new Proc([path.join(binDir, 'chat-bridge')], {
    env: {
      CHAT_BIND: '127.0.0.1',
      CHAT_WS_PORT: String(wsPort),
      CHAT_BRIDGE_UPSTREAM: `127.0.0.1:${upstreamPort}`,
      CHAT_WS_CONN_RATE: '0',
      ...env,
    },
    logPath: path.join(dir, 'chat-bridge.log'),
  });
  await Promise.race([
    waitPort(wsPort),
    proc.exited.then(({ code }) => {
      throw new Error(`chat-bridge exited with ${code}:\n${proc.log()}`);
    }),
  ]);
  return { port: wsPort, url: `ws://127.0.0.1:${wsPort}/mqtt`, dir, proc, stop: (s) => proc.stop(s) };
}

// The whole platform as `make run` starts it (scripts/run): mosquitto with our
// plugin, chat-api and chat-bridge, on free ports with data in a temp dir.
// Rate limits (messages, typing, receipts, logins, REST writes, new
// WebSockets) are off unless `env` sets them.
export async function startPlatform({ env = {}, dir = tmpdir('chat-platform-') } = {}) {
  const [mqttPort, httpPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const fullEnv = {
    CHAT_DATA_DIR: dir,
    CHAT_BUILD_DIR: path.dirname(binDir),
    CHAT_BIND: '127.0.0.1',
    CHAT_MQTT_PORT: String(mqttPort),
    CHAT_HTTP_PORT: String(httpPort),
    CHAT_WS_PORT: String(wsPort),
    CHAT_RATE_LIMIT_MSGS: '0',
    CHAT_RATE_LIMIT_TYPING: '0',
    CHAT_RATE_LIMIT_RECEIPTS: '0',
    CHAT_WS_CONN_RATE: '0',
    CHAT_LOGIN_RATE: '0',
    CHAT_LOGIN_LOCKOUT_AFTER: '0',
    CHAT_RATE_LIMIT_REST: '0',
    ...env,
  };
  const proc = new Proc([path.join(sourceDir, 'scripts/run')], {
    env: fullEnv,
    logPath: path.join(dir, 'run.log'),
  });
  const api = `http://127.0.0.1:${httpPort}`;
  const ready = eventually(async () => {
    if (!proc.running) throw new Error(`scripts/run exited:\n${proc.log()}`);
    if (!(await portOpen(wsPort)) || !(await portOpen(mqttPort))) return false;
    const res = await fetch(`${api}/healthz`).catch(() => null);
    return res?.status === 200;
  }, 30000, 'the platform to be healthy', 100);
  try {
    await ready;
  } catch (e) {
    await proc.stop();
    throw new Error(`${e.message}\n--- run.log ---\n${proc.log()}`);
  }
  return {
    dir, mqttPort, httpPort, wsPort, api, proc,
    wsUrl: `ws://127.0.0.1:${wsPort}/mqtt`,
    // Stops everything; a sanitizer report in any process's log fails the test.
    stop: async () => {
      await proc.stop('SIGTERM', 15000);
      const reports = [];
      for (const name of ['mosquitto', 'chat-api', 'chat-bridge']) {
        let log = '';
        try { log = fs.readFileSync(path.join(dir, 'logs', `${name}.log`), 'utf8'); } catch { /* none */ }
        if (/ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.test(log)) {
          reports.push(`${name}:\n${log.slice(-8000)}`);
        }
      }
      if (!process.env.CHAT_KEEP_TEST_DATA && reports.length === 0) {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      if (reports.length > 0) throw new Error(`sanitizer report (data kept in ${dir}):\n${reports.join('\n')}`);
    },
  };
}

// REST helpers against a started platform.
export async function registerUser(api, user, password = 'correct horse') {
  const res = await fetch(`${api}/v1/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, password }),
  });
  if (res.status !== 201) throw new Error(`register ${user}: ${res.status} ${await res.text()}`);
}

export async function login(api, user, device = 'node', password = 'correct horse') {
  const res = await fetch(`${api}/v1/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'password', username: user, password, device }),
  });
  if (res.status !== 200) throw new Error(`login ${user}: ${res.status} ${await res.text()}`);
  return res.json();
}
