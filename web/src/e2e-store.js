// This device's Signal state in IndexedDB (docs/e2e.md), one database per
// user and device (`chat-e2e.<user>.<device>`):
//   meta        identity key pair, registration id, signed prekey id, next
//               one-time prekey id, whether the directory has our keys
//   prekeys     one-time prekey pairs by id
//   signed      signed prekey pairs by id
//   sessions    libsignal session records by address ("<user>:<device>.1")
//   identities  the identity key trusted for each address ("<user>:<device>")
//   plain       what this device decrypted or sent, by "<conv>/<id>" (and
//               "cid:<cid>" for its own messages until the server id is
//               known): a ratchet cannot decrypt a message twice, and history
//               must still show it
// SignalStore is the library's StorageType over it. Private keys never leave
// this database.

const VERSION = 1;
const STORES = ['meta', 'prekeys', 'signed', 'sessions', 'identities', 'plain'];

function promised(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export async function openE2eDb(user, device) {
  const request = indexedDB.open(`chat-e2e.${user}.${device}`, VERSION);
  request.onupgradeneeded = () => {
    const db = request.result;
    for (const name of STORES) {
      if (!db.objectStoreNames.contains(name)) db.createObjectStore(name);
    }
  };
  return new Db(await promised(request));
}

class Db {
  constructor(db) {
    this.db = db;
  }

  async get(store, key) {
    return promised(this.db.transaction(store).objectStore(store).get(key));
  }

  async put(store, key, value) {
    const tx = this.db.transaction(store, 'readwrite');
    tx.objectStore(store).put(value, key);
    return done(tx);
  }

  async del(store, key) {
    const tx = this.db.transaction(store, 'readwrite');
    tx.objectStore(store).delete(key);
    return done(tx);
  }

  async keys(store) {
    return promised(this.db.transaction(store).objectStore(store).getAllKeys());
  }

  // Several records of one store in one transaction.
  async putMany(store, entries) {
    const tx = this.db.transaction(store, 'readwrite');
    const os = tx.objectStore(store);
    for (const [key, value] of entries) os.put(value, key);
    return done(tx);
  }

  close() {
    this.db.close();
  }
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

function sameBytes(a, b) {
  if (!a || !b || a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

// "<user>:<device>.1" (SignalProtocolAddress.toString) -> "<user>:<device>".
const addressName = (encoded) => String(encoded).replace(/\.\d+$/, '');

// The library's StorageType (@privacyresearch/libsignal-protocol-typescript).
// Identities: trust on first use per device, and a different key for a known
// address is refused here. e2e.js replaces a trusted key only when the key
// directory lists another one for that device (the directory never changes
// one silently: a new identity is a device removed and added again), and
// says so in the conversation. Identities stay when a device's sessions are
// dropped (device removed, no longer listed), so a device that comes back
// with another key is noticed.
export class SignalStore {
  constructor(db) {
    this.db = db;
  }

  // ---- ours ----

  async getIdentityKeyPair() {
    return this.db.get('meta', 'identity');
  }

  async getLocalRegistrationId() {
    return this.db.get('meta', 'registration_id');
  }

  async loadPreKey(keyId) {
    return this.db.get('prekeys', Number(keyId));
  }

  async storePreKey(keyId, keyPair) {
    return this.db.put('prekeys', Number(keyId), keyPair);
  }

  async removePreKey(keyId) {
    return this.db.del('prekeys', Number(keyId));
  }

  async loadSignedPreKey(keyId) {
    return this.db.get('signed', Number(keyId));
  }

  async storeSignedPreKey(keyId, keyPair) {
    return this.db.put('signed', Number(keyId), keyPair);
  }

  async removeSignedPreKey(keyId) {
    return this.db.del('signed', Number(keyId));
  }

  // ---- theirs ----

  async isTrustedIdentity(identifier, identityKey) {
    const known = await this.db.get('identities', addressName(identifier));
    return !known || sameBytes(known, identityKey);
  }

  // Returns whether a different key was replaced (the library's contract).
  async saveIdentity(encodedAddress, publicKey) {
    const name = addressName(encodedAddress);
    const known = await this.db.get('identities', name);
    if (known && sameBytes(known, publicKey)) return false;
    await this.db.put('identities', name, publicKey);
    return Boolean(known);
  }

  async loadIdentity(name) {
    return this.db.get('identities', name);
  }

  async loadSession(encodedAddress) {
    return this.db.get('sessions', String(encodedAddress));
  }

  async storeSession(encodedAddress, record) {
    return this.db.put('sessions', String(encodedAddress), record);
  }

  // Drops the sessions with a device (its trusted identity stays).
  async forgetSessions(name) {
    for (const key of await this.db.keys('sessions')) {
      if (addressName(key) === name) await this.db.del('sessions', key);
    }
  }

  // Trusts `publicKey` for the device "<user>:<device>" from now on.
  async storeIdentity(name, publicKey) {
    return this.db.put('identities', name, publicKey);
  }

  // The "<user>:<device>" names this device trusts an identity key for.
  async identityNames() {
    return (await this.db.keys('identities')).map(String);
  }

  // The "<user>:<device>" names this device has a session with.
  async sessionNames() {
    return [...new Set((await this.db.keys('sessions')).map(addressName))];
  }
}

export { sameBytes };
