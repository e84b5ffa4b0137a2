// End-to-end encryption of calls (docs/security.md): the keys live only in the
// browsers, the server relays what it cannot read.
//
// - The link secret (`#k=…` in the link, never sent to the server) authenticates
//   every participant's key exchange: a server that does not know it cannot insert
//   itself.
// - Each participant has a random sender key. It goes to every other participant
//   encrypted with a pairwise key (ECDH P-256 through WebCrypto).
// - Frames are sealed with AES-GCM in an SFrame-style format: the first bytes the
//   SFU needs stay clear, the rest is ciphertext, and a trailer names the key and
//   the frame's counter (the nonce).
// - Someone leaves: everyone switches to a fresh random key. Someone joins:
//   everyone ratchets its key one step (HKDF) and gives the newcomer only the new
//   one, so a newcomer cannot read what was sent before they arrived.
//
// This module runs both on the page and in the media worker (e2ee-worker.js).

const text = new TextEncoder();

/** A link secret: at least 128 bits as unpadded base64url. */
export const SECRET_PATTERN = /^[A-Za-z0-9_-]{22,128}$/;
/** Last byte of every sealed frame. */
export const FRAME_MAGIC = 0xcf;
/** First byte of every sealed message (plugin payloads). */
export const DATA_MAGIC = 0xcd;
/** kid (4) · counter (4) · clear bytes (1) · magic (1). */
export const TRAILER_BYTES = 10;
const TAG_BYTES = 16;
/** How far a receiver follows a sender's ratchet on its own. */
export const MAX_RATCHET_STEPS = 8;
/** From a new key being handed out to its first use, so that it arrives first. */
export const SWITCH_DELAY_MS = 1000;
/** From someone leaving to the fresh key (several leaving at once rotate once). */
export const ROTATE_DELAY_MS = 300;

export function toBase64(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    out += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(out);
}

export function fromBase64(value) {
  const raw = atob(value);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function toBase64Url(bytes) {
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function fromBase64Url(value) {
  const padded = value.replace(/-/g, "+").replace(/_/g, "/");
  return fromBase64(padded + "=".repeat((4 - (padded.length % 4)) % 4));
}

/** A fresh link secret: 16 random bytes. */
export function newSecret() {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
}

/** The link secret in a location hash (`#k=…`), or null. */
export function secretFromHash(hash) {
  const k = new URLSearchParams(String(hash).replace(/^#/, "")).get("k");
  return k && SECRET_PATTERN.test(k) ? k : null;
}

async function hkdf(raw, info, bits, salt = new Uint8Array(32)) {
  const base = await crypto.subtle.importKey("raw", raw, "HKDF", false, ["deriveBits"]);
  const out = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt, info: text.encode(info) },
    base,
    bits,
  );
  return new Uint8Array(out);
}

function aesKey(raw) {
  return crypto.subtle.importKey("raw", raw, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A sender key's id: its owner (24 bits) and generation (8 bits). */
export function kidOf(participant, generation) {
  return ((participant & 0xffffff) * 256 + (generation & 0xff)) >>> 0;
}

export function participantOfKid(kid) {
  return Math.floor(kid / 256);
}

export function generationOfKid(kid) {
  return kid & 0xff;
}

/** The next generation of a sender key (the step taken when someone joins). */
export function ratchet(raw) {
  return hkdf(raw, "confab e2ee ratchet", 256);
}

/** What one 32-byte sender key encrypts with: frames (key, nonce salt) and messages. */
export async function senderKey(raw, kid) {
  const [frame, salt, data] = await Promise.all([
    hkdf(raw, "confab e2ee frame key", 128),
    hkdf(raw, "confab e2ee frame salt", 96),
    hkdf(raw, "confab e2ee data key", 128),
  ]);
  return { kid, raw, salt, frame: await aesKey(frame), data: await aesKey(data) };
}

function nonce(salt, counter) {
  const iv = salt.slice();
  const view = new DataView(iv.buffer);
  view.setUint32(8, view.getUint32(8) ^ counter);
  return iv;
}

/**
 * How many leading bytes of a frame stay clear: the SFU reads them to forward and
 * to spot keyframes. VP8: the 10-byte keyframe header, 3 bytes of a delta frame;
 * Opus: the TOC byte.
 */
export function clearBytes(kind, keyframe, length) {
  const wanted = kind === "audio" ? 1 : keyframe ? 10 : 3;
  return Math.min(wanted, length);
}

/** `frame` (Uint8Array) sealed with `key` as frame number `counter`. */
export async function sealFrame(key, counter, frame, clear) {
  const trailer = new Uint8Array(TRAILER_BYTES);
  const view = new DataView(trailer.buffer);
  view.setUint32(0, key.kid);
  view.setUint32(4, counter >>> 0);
  trailer[8] = clear;
  trailer[9] = FRAME_MAGIC;
  const head = frame.subarray(0, clear);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce(key.salt, counter >>> 0), additionalData: concat(head, trailer) },
    key.frame,
    frame.subarray(clear),
  );
  return concat(head, new Uint8Array(sealed), trailer);
}

/** The key id, counter and clear length of a sealed frame, or null if it is not one. */
export function frameTrailer(data) {
  if (data.length < TRAILER_BYTES + TAG_BYTES || data[data.length - 1] !== FRAME_MAGIC) return null;
  const view = new DataView(data.buffer, data.byteOffset + data.length - TRAILER_BYTES, TRAILER_BYTES);
  const clear = view.getUint8(8);
  if (clear > data.length - TRAILER_BYTES - TAG_BYTES) return null;
  return { kid: view.getUint32(0), counter: view.getUint32(4), clear };
}

/** The plain frame, or null when `key` does not open it. */
export async function openFrame(key, data) {
  const trailer = frameTrailer(data);
  if (!trailer || trailer.kid !== key.kid) return null;
  const head = data.subarray(0, trailer.clear);
  const tail = data.subarray(data.length - TRAILER_BYTES);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce(key.salt, trailer.counter), additionalData: concat(head, tail) },
      key.frame,
      data.subarray(trailer.clear, data.length - TRAILER_BYTES),
    );
    return concat(head, new Uint8Array(plain));
  } catch {
    return null;
  }
}

/** A message (plugin payload) sealed with `key`: magic · kid · iv · ciphertext. */
export async function sealData(key, bytes) {
  const head = new Uint8Array(5);
  head[0] = DATA_MAGIC;
  new DataView(head.buffer).setUint32(1, key.kid);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: head }, key.data, bytes);
  return concat(head, iv, new Uint8Array(sealed));
}

/** The key id of a sealed message, or null if it is not one. */
export function dataKid(bytes) {
  if (bytes.length < 5 + 12 + TAG_BYTES || bytes[0] !== DATA_MAGIC) return null;
  return new DataView(bytes.buffer, bytes.byteOffset + 1, 4).getUint32(0);
}

export async function openData(key, bytes) {
  if (dataKid(bytes) !== key.kid) return null;
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.subarray(5, 17), additionalData: bytes.subarray(0, 5) },
      key.data,
      bytes.subarray(17),
    );
    return new Uint8Array(plain);
  } catch {
    return null;
  }
}

/**
 * The keys one participant received from the others: per sender, a few recent
 * generations. A frame under a newer generation than the latest known is tried
 * against the ratchet of the latest (someone joined); a fresh key (someone left)
 * arrives as a message before its first use.
 */
export class KeyRing {
  constructor(keep = 4) {
    this.keep = keep;
    this.senders = new Map();
  }

  async add(participant, generation, raw) {
    const key = await senderKey(raw, kidOf(participant, generation));
    const keys = this.senders.get(participant) ?? [];
    const others = keys.filter((k) => k.kid !== key.kid);
    others.push(key);
    this.senders.set(participant, others.slice(-this.keep));
    return key;
  }

  forget(participant) {
    this.senders.delete(participant);
  }

  has(participant) {
    return (this.senders.get(participant) ?? []).length > 0;
  }

  /** The key for `kid`, following the sender's ratchet when `opens` accepts the step. */
  async find(kid, opens) {
    const participant = participantOfKid(kid);
    const keys = this.senders.get(participant);
    if (!keys?.length) return null;
    const known = keys.find((k) => k.kid === kid);
    if (known) return known;
    const latest = keys[keys.length - 1];
    const steps = (generationOfKid(kid) - generationOfKid(latest.kid) + 256) % 256;
    if (steps === 0 || steps > MAX_RATCHET_STEPS) return null;
    let raw = latest.raw;
    for (let i = 0; i < steps; i += 1) raw = await ratchet(raw);
    const candidate = await senderKey(raw, kid);
    if (!(await opens(candidate))) return null;
    await this.add(participant, generationOfKid(kid), raw);
    return candidate;
  }
}

/**
 * What the link secret gives: the key that authenticates everyone's public key,
 * and the salt of the pairwise keys.
 */
export async function linkKeys(secret, linkId) {
  const raw = fromBase64Url(secret);
  const [auth, pairSalt] = await Promise.all([
    hkdf(raw, `confab e2ee auth ${linkId}`, 256),
    hkdf(raw, `confab e2ee pair salt ${linkId}`, 256),
  ]);
  return {
    linkId,
    auth: await crypto.subtle.importKey("raw", auth, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]),
    pairSalt,
  };
}

function helloText(link, participant, pub) {
  return text.encode(`confab e2ee hello|${link.linkId}|${participant}|${toBase64(pub)}`);
}

/** The MAC that proves `pub` was sent by someone who knows the link secret. */
export async function helloMac(link, participant, pub) {
  return new Uint8Array(await crypto.subtle.sign("HMAC", link.auth, helloText(link, participant, pub)));
}

export function checkHello(link, participant, pub, mac) {
  return crypto.subtle.verify("HMAC", link.auth, mac, helloText(link, participant, pub));
}

/** The AES-GCM key two participants share, from ECDH and the link secret. */
export async function pairKey(link, privateKey, theirPublic, me, them, myPub) {
  const point = await crypto.subtle.importKey("raw", theirPublic, { name: "ECDH", namedCurve: "P-256" }, false, []);
  const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "ECDH", public: point }, privateKey, 256));
  const [lo, hi] = me < them ? [[me, myPub], [them, theirPublic]] : [[them, theirPublic], [me, myPub]];
  const raw = await hkdf(
    shared,
    `confab e2ee pair|${link.linkId}|${lo[0]}|${hi[0]}|${toBase64(lo[1])}|${toBase64(hi[1])}`,
    128,
    link.pairSalt,
  );
  return aesKey(raw);
}

function keyLabel(from, to, kid) {
  return text.encode(`confab e2ee key|${from}|${to}|${kid}`);
}

/** A sender key wrapped for one participant. */
export async function wrapKey(pair, from, to, kid, raw) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: keyLabel(from, to, kid) }, pair, raw);
  return { kid, iv: toBase64(iv), key: toBase64(new Uint8Array(sealed)) };
}

export async function unwrapKey(pair, from, to, message) {
  try {
    const raw = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: fromBase64(message.iv), additionalData: keyLabel(from, to, message.kid) },
      pair,
      fromBase64(message.key),
    );
    return raw.byteLength === 32 ? new Uint8Array(raw) : null;
  } catch {
    return null;
  }
}

/**
 * The safety code of a call: the same 12 digits for everyone who holds the same
 * public keys, different for anyone a man in the middle gave other keys.
 */
export async function safetyCode(linkId, publicKeys) {
  const sorted = publicKeys.map(toBase64).sort();
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", text.encode(`${linkId}|${sorted.join(",")}`)));
  let n = 0n;
  for (const byte of digest.subarray(0, 8)) n = (n << 8n) | BigInt(byte);
  const digits = String(n % 1_000_000_000_000n).padStart(12, "0");
  return digits.match(/.../g).join(" ");
}
