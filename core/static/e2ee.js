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

import { fromBase64, fromBase64Url, toBase64, toBase64Url } from "./lib/base64.js";

// Also exported from here: tests import them with this module (core/tests/it/e2ee.rs).
export { fromBase64, fromBase64Url, toBase64, toBase64Url };

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
/**
 * How long a sender's older key still opens frames once a newer one has opened
 * one (frames already on the way). After that, whoever kept a copy of the old key
 * (someone who was removed) can no longer pass frames off as that sender's.
 */
export const RETIRE_MS = 5000;
/** Frame counters accepted behind the newest one seen under a key (RFC 9605 §9.3). */
export const REPLAY_WINDOW = 1024;
/** A sender key seals at most this many frames; then the sender needs a new key. */
export const COUNTER_LIMIT = 2 ** 31;

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

/**
 * What a frame is bound to besides its sender key (which names the sender): the
 * kind and the sender's stream (0: camera and microphone, 1: screen), so that a
 * server cannot play one stream as another.
 */
export function streamBinding(kind, index) {
  return Uint8Array.of(kind === "audio" ? 1 : 2, index & 0xff);
}

/** The stream index in a stream id the SFU gives (`p3-1`: 1), or -1. */
export function streamIndex(stream) {
  const m = /^p\d+-(\d+)$/.exec(String(stream));
  return m ? Number(m[1]) : -1;
}

/** `frame` (Uint8Array) sealed with `key` as frame number `counter` of the stream `binding`. */
export async function sealFrame(key, counter, frame, clear, binding) {
  const trailer = new Uint8Array(TRAILER_BYTES);
  const view = new DataView(trailer.buffer);
  view.setUint32(0, key.kid);
  view.setUint32(4, counter >>> 0);
  trailer[8] = clear;
  trailer[9] = FRAME_MAGIC;
  const head = frame.subarray(0, clear);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce(key.salt, counter >>> 0), additionalData: concat(head, trailer, binding) },
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

/** The plain frame, or null when `key` does not open it as one of the stream `binding`. */
export async function openFrame(key, data, binding) {
  const trailer = frameTrailer(data);
  if (!trailer || trailer.kid !== key.kid) return null;
  const head = data.subarray(0, trailer.clear);
  const tail = data.subarray(data.length - TRAILER_BYTES);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: nonce(key.salt, trailer.counter), additionalData: concat(head, tail, binding) },
      key.frame,
      data.subarray(trailer.clear, data.length - TRAILER_BYTES),
    );
    return concat(head, new Uint8Array(plain));
  } catch {
    return null;
  }
}

/** magic (1) · kid (4) · sequence (4) · iv (12): the clear head of a sealed message. */
const DATA_HEAD_BYTES = 9;
const DATA_IV_BYTES = 12;
/** What sealing adds to a message: the head, the IV and the tag. */
export const DATA_SEALING_BYTES = DATA_HEAD_BYTES + DATA_IV_BYTES + TAG_BYTES;

function dataAad(head, plugin) {
  return concat(head, text.encode(`|${plugin}`));
}

/**
 * A message (plugin payload) for the plugin `plugin`, sealed with `key` as the
 * sender's message number `seq` under it: magic · kid · seq · iv · ciphertext. The
 * plugin's name is authenticated too, so a message cannot be moved to another
 * plugin.
 */
export async function sealData(key, bytes, plugin, seq) {
  const head = new Uint8Array(DATA_HEAD_BYTES);
  head[0] = DATA_MAGIC;
  const view = new DataView(head.buffer);
  view.setUint32(1, key.kid);
  view.setUint32(5, seq >>> 0);
  const iv = crypto.getRandomValues(new Uint8Array(DATA_IV_BYTES));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: dataAad(head, plugin) },
    key.data,
    bytes,
  );
  return concat(head, iv, new Uint8Array(sealed));
}

/** The key id and sequence number of a sealed message, or null if it is not one. */
export function dataHead(bytes) {
  if (bytes.length < DATA_SEALING_BYTES || bytes[0] !== DATA_MAGIC) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, DATA_HEAD_BYTES);
  return { kid: view.getUint32(1), seq: view.getUint32(5) };
}

/** The key id of a sealed message, or null if it is not one. */
export function dataKid(bytes) {
  return dataHead(bytes)?.kid ?? null;
}

/** The plain message for `plugin`, or null when `key` does not open it as one. */
export async function openData(key, bytes, plugin) {
  if (dataKid(bytes) !== key.kid) return null;
  const head = bytes.subarray(0, DATA_HEAD_BYTES);
  try {
    const plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: bytes.subarray(DATA_HEAD_BYTES, DATA_HEAD_BYTES + DATA_IV_BYTES), additionalData: dataAad(head, plugin) },
      key.data,
      bytes.subarray(DATA_HEAD_BYTES + DATA_IV_BYTES),
    );
    return new Uint8Array(plain);
  } catch {
    return null;
  }
}

/**
 * The frame counters seen under one key: the newest and a window of
 * [`REPLAY_WINDOW`] behind it. A counter seen before, or older than the window, is
 * a replay.
 */
export class ReplayWindow {
  constructor(size = REPLAY_WINDOW) {
    this.size = size;
    this.seen = new Uint8Array(size);
    this.top = -1;
  }

  /** Whether `counter` has not been seen (and is not too old to tell). */
  fresh(counter) {
    if (counter > this.top) return true;
    if (this.top - counter >= this.size) return false;
    return this.seen[counter % this.size] === 0;
  }

  /** Records `counter` (call once its frame authenticated). */
  mark(counter) {
    if (counter > this.top) {
      if (counter - this.top >= this.size) this.seen.fill(0);
      else for (let c = this.top + 1; c < counter; c += 1) this.seen[c % this.size] = 0;
      this.top = counter;
    }
    this.seen[counter % this.size] = 1;
  }
}

/** Whether 8-bit generation `a` comes after `b` (they wrap). */
export function newerGeneration(a, b) {
  const ahead = (a - b + 256) % 256;
  return ahead > 0 && ahead < 128;
}

/**
 * The keys one participant received from the others: per sender, a few recent
 * generations, each with its replay window. A frame under a newer generation than
 * the latest known is tried against the ratchet of the latest (someone joined); a
 * fresh key (someone left) arrives as a message before its first use. Once a
 * sender's newer key opened something, its older ones retire after `retireMs`.
 */
export class KeyRing {
  constructor({ keep = 4, retireMs = RETIRE_MS, now = () => performance.now() } = {}) {
    this.keepKeys = keep;
    this.retireMs = retireMs;
    this.now = now;
    /** participant → {keys, inUse: the newest generation that opened something, since} */
    this.senders = new Map();
    /** kid → the key derived by following a sender's ratchet (or null): each is derived once. */
    this.derived = new Map();
    /** Ratchet steps taken (what a made-up key id can cost). */
    this.steps = 0;
  }

  /**
   * Keeps `raw` as `participant`'s key of `generation`; with `onlyNewer`, only if
   * it is newer than the latest this ring holds for them (an old `key` message
   * replayed does not bring an old key back). Returns the key, or null when refused.
   * The same key again keeps its replay window.
   */
  async add(participant, generation, raw, { onlyNewer = false } = {}) {
    const sender = this.senders.get(participant) ?? { keys: [], inUse: null, since: 0 };
    const latest = sender.keys[sender.keys.length - 1];
    if (onlyNewer && latest && !newerGeneration(generation, generationOfKid(latest.kid))) return null;
    const kid = kidOf(participant, generation);
    const known = sender.keys.find((k) => k.kid === kid);
    if (known && equalBytes(known.raw, raw)) return known;
    return this.keep(participant, await senderKey(raw, kid));
  }

  /** Keeps `key` (fresh: no frame opened under it yet) as its sender's. */
  keep(participant, key) {
    const sender = this.senders.get(participant) ?? { keys: [], inUse: null, since: 0 };
    key.window = new ReplayWindow();
    key.messages = new ReplayWindow();
    sender.keys = [...sender.keys.filter((k) => k.kid !== key.kid), key].slice(-this.keepKeys);
    this.senders.set(participant, sender);
    this.forgetDerived(participant);
    return key;
  }

  forget(participant) {
    this.senders.delete(participant);
    this.forgetDerived(participant);
  }

  forgetDerived(participant) {
    for (const kid of this.derived.keys()) if (participantOfKid(kid) === participant) this.derived.delete(kid);
  }

  has(participant) {
    return (this.senders.get(participant)?.keys ?? []).length > 0;
  }

  /** Whether `key` may still open: not retired by a newer key of its sender. */
  usable(key) {
    const sender = this.senders.get(participantOfKid(key.kid));
    if (!sender || sender.inUse === null || sender.inUse === generationOfKid(key.kid)) return true;
    if (!newerGeneration(sender.inUse, generationOfKid(key.kid))) return true;
    return this.now() - sender.since <= this.retireMs;
  }

  /** `key` opened something: a newer generation in use starts the older ones' retirement. */
  opened(key) {
    const sender = this.senders.get(participantOfKid(key.kid));
    const generation = generationOfKid(key.kid);
    if (!sender || (sender.inUse !== null && !newerGeneration(generation, sender.inUse))) return;
    sender.inUse = generation;
    sender.since = this.now();
  }

  /**
   * The key `kid` names, following its sender's ratchet (at most
   * [`MAX_RATCHET_STEPS`], derived once per key id) when `opens` accepts the step.
   * `{key}`, or `{error}`: "no key", "retired", "wrong key".
   */
  async find(kid, opens) {
    const participant = participantOfKid(kid);
    const keys = this.senders.get(participant)?.keys;
    if (!keys?.length) return { error: "no key" };
    const known = keys.find((k) => k.kid === kid);
    if (known) return this.usable(known) ? { key: known } : { error: "retired" };
    if (!this.derived.has(kid)) this.derived.set(kid, this.derive(keys[keys.length - 1], kid));
    const candidate = await this.derived.get(kid);
    if (!candidate) return { error: "no key" };
    if (!(await opens(candidate))) return { error: "wrong key" };
    return { key: this.keep(participant, candidate), opened: true };
  }

  async derive(latest, kid) {
    const steps = (generationOfKid(kid) - generationOfKid(latest.kid) + 256) % 256;
    if (steps === 0 || steps > MAX_RATCHET_STEPS) return null;
    let raw = latest.raw;
    for (let i = 0; i < steps; i += 1) raw = await ratchet(raw);
    this.steps += steps;
    return senderKey(raw, kid);
  }
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The media worker's end of the encryption (e2ee-worker.js wraps it): seals this
 * browser's frames with its sender key and opens everyone else's, each frame
 * bound to its sender, kind and stream, each counter accepted once.
 */
export class FrameCrypto {
  constructor({ counterLimit = COUNTER_LIMIT, ...ring } = {}) {
    this.ring = new KeyRing(ring);
    this.counterLimit = counterLimit;
    this.sending = null;
    this.counter = 0;
    this.stats = {
      sealed: 0,
      opened: 0,
      failed: 0,
      dropped: 0,
      unsealed: 0,
      unknownKey: 0,
      wrongKey: 0,
      relabelled: 0,
      replayed: 0,
      retired: 0,
    };
  }

  /** My sender key from now on; its counter starts over only for a new key. */
  async setSendKey(participant, generation, raw) {
    const kid = kidOf(participant, generation);
    if (this.sending?.kid === kid && equalBytes(this.sending.raw, raw)) return;
    this.sending = await senderKey(raw, kid);
    this.counter = 0;
  }

  /**
   * `data` sealed as a frame of my stream `{kind, index}`: `{sealed}`, or
   * `{error}` ("no key", or "exhausted" when the key has sealed all it may: the
   * page must hand out a new one). Nothing leaves in clear.
   */
  async seal(data, { kind, index = 0 }, keyframe) {
    const key = this.sending;
    if (!key || this.counter >= this.counterLimit) {
      this.stats.dropped += 1;
      return { error: key ? "exhausted" : "no key" };
    }
    this.counter += 1;
    const clear = clearBytes(kind, keyframe, data.length);
    const sealed = await sealFrame(key, this.counter, data, clear, streamBinding(kind, index));
    this.stats.sealed += 1;
    return { sealed };
  }

  /**
   * A frame received on the stream `{kind, participant, index}` (from its id):
   * `{plain, participant}`, or `{error, participant}` with error "not encrypted",
   * "relabelled" (another participant's key), "replayed", "retired", "no key" or
   * "wrong key". Every error is counted.
   */
  async open(data, { kind, participant = -1, index = -1 }) {
    const trailer = frameTrailer(data);
    if (!trailer) {
      // A frame that is not sealed never reaches the decoder: a server could make one up.
      return this.refuse("not encrypted", participant, "unsealed");
    }
    const sender = participantOfKid(trailer.kid);
    if (sender !== participant || index < 0) return this.refuse("relabelled", participant, "relabelled");
    const binding = streamBinding(kind, index);
    let plain = null;
    // A key derived from the ratchet has seen no frame yet.
    const found = await this.ring.find(trailer.kid, async (candidate) => {
      plain = await openFrame(candidate, data, binding);
      return plain !== null;
    });
    const { key } = found;
    if (!key) {
      if (found.error === "retired") return this.refuse("retired", sender, "retired");
      return this.refuse(found.error, sender, found.error === "no key" ? "unknownKey" : "wrongKey");
    }
    if (!found.opened) {
      if (!key.window.fresh(trailer.counter)) return this.refuse("replayed", sender, "replayed");
      plain = await openFrame(key, data, binding);
      if (!plain) return this.refuse("wrong key", sender, "wrongKey");
    }
    key.window.mark(trailer.counter);
    this.ring.opened(key);
    this.stats.opened += 1;
    return { plain, participant: sender };
  }

  refuse(error, participant, counter) {
    this.stats.failed += 1;
    this.stats[counter] += 1;
    return { error, participant };
  }
}

/**
 * The name a call's cryptography binds everything to (hellos, pair keys,
 * commitments, the safety code): derived from the link secret alone, not from the
 * link's public id, because rotating a link gives it a new id and keeps its
 * secret; people already on the call and newcomers through the new address must
 * agree. The secret is random per link, so this still tells links apart.
 */
export async function secretId(secret) {
  return toBase64Url(await hkdf(fromBase64Url(secret), "confab e2ee link id", 128));
}

/**
 * What the link secret gives: the key that authenticates everyone's public key,
 * and the salt of the pairwise keys. `linkId` is the call's `secretId`.
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

function helloText(link, call, participant, pub) {
  return text.encode(`confab e2ee hello|${link.linkId}|${call}|${participant}|${toBase64(pub)}`);
}

/**
 * The MAC that proves `pub` was sent by someone who knows the link secret, as
 * participant `participant` of the call `call` (the id the server gives each run
 * of a link: participant numbers start over in every call).
 */
export async function helloMac(link, call, participant, pub) {
  return new Uint8Array(await crypto.subtle.sign("HMAC", link.auth, helloText(link, call, participant, pub)));
}

export function checkHello(link, call, participant, pub, mac) {
  return crypto.subtle.verify("HMAC", link.auth, mac, helloText(link, call, participant, pub));
}

/** An uncompressed P-256 point (65 bytes, 0x04 first): the only public keys accepted. */
export function isUncompressedPoint(pub) {
  return pub instanceof Uint8Array && pub.length === 65 && pub[0] === 0x04;
}

/** The AES-GCM key two participants of the call `call` share, from ECDH and the link secret. */
export async function pairKey(link, call, privateKey, theirPublic, me, them, myPub) {
  if (!isUncompressedPoint(theirPublic)) throw new Error("not an uncompressed P-256 point");
  const point = await crypto.subtle.importKey("raw", theirPublic, { name: "ECDH", namedCurve: "P-256" }, false, []);
  const shared = new Uint8Array(await crypto.subtle.deriveBits({ name: "ECDH", public: point }, privateKey, 256));
  const [lo, hi] = me < them ? [[me, myPub], [them, theirPublic]] : [[them, theirPublic], [me, myPub]];
  const raw = await hkdf(
    shared,
    `confab e2ee pair|${link.linkId}|${call}|${lo[0]}|${hi[0]}|${toBase64(lo[1])}|${toBase64(hi[1])}`,
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

/** Bytes of the random value each page commits to in a safety-code round. */
export const COMMIT_NONCE_BYTES = 32;

function commitText(linkId, call, round, attempt, participant, pub, nonce) {
  return text.encode(
    `confab e2ee commit|${linkId}|${call}|${round}|${attempt}|${participant}|${toBase64(pub)}|${toBase64(nonce)}`,
  );
}

/**
 * A page's commitment in a safety-code round: a hash of its participant number,
 * its public key and a random value it reveals only once it holds everyone else's
 * commitment (ZRTP, RFC 6189 §4.4.1.1, does the same with its hash commitment).
 * `round` names the people the round is for (their sorted numbers) and
 * `attempt` how often it started over.
 */
export async function commitHash(linkId, call, round, attempt, participant, pub, nonce) {
  return new Uint8Array(
    await crypto.subtle.digest("SHA-256", commitText(linkId, call, round, attempt, participant, pub, nonce)),
  );
}

/**
 * The safety code of a call: 12 digits, the same for everyone who holds the same
 * participants' numbers, public keys and revealed random values, and different for
 * anyone a man in the middle gave other keys. Because every honest page reveals
 * its random value only after everyone's commitment is fixed, a server that
 * swaps keys cannot search for keys that make two codes match: each try costs it
 * a round that people see (one chance in 10^12 that two codes agree anyway).
 *
 * @param {{participant: number, pub: Uint8Array | null, nonce?: Uint8Array}[]} entries
 *   everyone in the round; `pub: null` for someone whose keys did not verify
 */
export async function safetyCode(linkId, call, entries) {
  const lines = [...entries]
    .sort((a, b) => a.participant - b.participant)
    .map((e) => (e.pub ? `${e.participant}:${toBase64(e.pub)}:${toBase64(e.nonce)}` : `${e.participant}:unverified`));
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", text.encode(`confab e2ee safety code|${linkId}|${call}|${lines.join(",")}`)),
  );
  let n = 0n;
  for (const byte of digest.subarray(0, 8)) n = (n << 8n) | BigInt(byte);
  const digits = String(n % 1_000_000_000_000n).padStart(12, "0");
  return digits.match(/.../g).join(" ");
}
