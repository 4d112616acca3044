// Small helpers shared by the modules: random ids, validation, time formats.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

// `length` random characters of [A-Za-z0-9_-]. crypto.getRandomValues works
// in insecure contexts too (plain http on a LAN), unlike crypto.randomUUID.
export function randomToken(length) {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = '';
  for (const b of bytes) out += ALPHABET[b & 63];
  return out;
}

// A message cid (1-64 chars, unique per device): time first, so they sort.
export function newCid() {
  return Date.now().toString(36) + '-' + randomToken(16);
}

export const USER_ID = /^[a-z0-9][a-z0-9_.-]{0,31}$/;
export const DEVICE_ID = /^[A-Za-z0-9_-]{1,64}$/;

// Conversation ids (CONTRACT §3): dm:<a>:<b> with a < b (byte order), g:<gid>.
export function dmConv(a, b) {
  return a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
}

// { kind: 'dm', peer } or { kind: 'g', gid } for a conversation id, seen by `me`.
export function parseConv(conv, me) {
  if (conv.startsWith('g:')) return { kind: 'g', gid: conv.slice(2) };
  const [, a, b] = conv.split(':');
  return { kind: 'dm', peer: a === me ? b : a };
}

// The topic a message to this conversation is published on, and its
// receipt/typing sub-topics (CONTRACT §3 "What a device may publish").
export function publishTopic(conv, me) {
  const c = parseConv(conv, me);
  return c.kind === 'g' ? `g/${c.gid}` : `dm/${c.peer}`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });

export function formatTime(ms) {
  return timeFormat.format(new Date(ms));
}

// Time for today, date otherwise (the conversation list).
export function formatWhen(ms) {
  const d = new Date(ms);
  const now = new Date();
  return d.toDateString() === now.toDateString() ? timeFormat.format(d) : dateFormat.format(d);
}

export function formatLastSeen(ms) {
  const d = new Date(ms);
  const today = d.toDateString() === new Date().toDateString();
  return `last seen ${today ? 'today' : dateFormat.format(d)} at ${timeFormat.format(d)}`;
}

export function formatDay(ms) {
  return new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' })
    .format(new Date(ms));
}

// Text of a message body for display: strings as they are, other JSON compact.
export function bodyText(envelope) {
  const { type, body } = envelope;
  if (type === 'text') return typeof body === 'string' ? body : JSON.stringify(body);
  if (type === 'media') return '📎 Media';
  if (type === 'e2e') return 'Encrypted message';
  if (type === 'system') return typeof body === 'string' ? body : 'System message';
  return `Unsupported message (${type})`;
}
