// The call page's end-to-end encryption: the key exchange over signaling (`e2ee`
// messages, docs/signaling.md), the media worker (e2ee-worker.js) that seals and
// opens frames, and the sealing of plugin payloads. docs/security.md explains the
// design; e2ee.js has the formats.
//
// Key exchange, all of it relayed by the server without being able to read it:
//   hello  {pub, mac}       my ECDH public key, with a MAC made from the link
//                           secret: broadcast on joining, answered (reply: true)
//                           by everyone already there
//   key    {kid, iv, key}   my sender key, wrapped with our pairwise key
//   commit {round, attempt, hash}   a hash of my number, public key and a random
//                           value, whenever the roster changes (a safety-code round)
//   reveal {round, attempt, pub, nonce}   that value, once I hold everyone's commit
//
// A peer whose hello does not verify (they opened the link with another secret, or
// the server made it up) never gets a key and gives none. Keys are exchanged only
// with participants on the roster everyone sees: messages from anyone else wait
// until the roster lists them (and are reported meanwhile), and someone who left
// the roster is never given a key again in this call. Whether a participant gets
// my current key or the next ratchet step is decided here, from who could see the
// current key's frames, never from what the message says.

import {
  KeyRing,
  ROTATE_DELAY_MS,
  SWITCH_DELAY_MS,
  checkHello,
  COUNTER_LIMIT,
  COMMIT_NONCE_BYTES,
  ReplayWindow,
  commitHash,
  dataHead,
  helloMac,
  isUncompressedPoint,
  kidOf,
  linkKeys,
  openData,
  pairKey,
  participantOfKid,
  ratchet,
  streamIndex,
  safetyCode,
  secretId,
  sealData,
  senderKey,
  unwrapKey,
  wrapKey,
} from "./e2ee.js";
import { fromBase64, toBase64 } from "./lib/base64.js";

/**
 * Which API this browser has for touching encoded frames, or null:
 * `RTCRtpScriptTransform` where it exists, else Chromium's older
 * `createEncodedStreams`. `localStorage["confab.e2eeApi"] = "streams"` picks the
 * older one where both exist (both encrypt the same way; the tests use it).
 */
export function frameApi() {
  const script = typeof RTCRtpScriptTransform === "function";
  const streams = typeof RTCRtpSender !== "undefined" && "createEncodedStreams" in RTCRtpSender.prototype;
  if (streams && (!script || localStorage.getItem("confab.e2eeApi") === "streams")) return "streams";
  if (script) return "script";
  return null;
}

function encodeMessage(message) {
  return toBase64(new TextEncoder().encode(JSON.stringify(message)));
}

function decodeMessage(payload) {
  try {
    const message = JSON.parse(new TextDecoder().decode(fromBase64(payload)));
    return message && typeof message === "object" ? message : null;
  } catch {
    return null;
  }
}

/** How long a participant's keys may wait for the roster to list them before the page warns. */
export const GHOST_WARNING_MS = 2000;
/**
 * What the safety-code round is bound to besides the call's id (random per call):
 * the same for everyone on the call, whatever address they opened and whatever
 * secret they hold. So a page with another secret still takes part in the round
 * and shows a code that differs, and a link rotated during the call changes
 * nothing. (Hellos and pair keys are bound to the secret's id instead.)
 */
export const ROUND_SCOPE = "call";
/** Messages kept per participant not on the roster yet, and such participants kept. */
const HELD_MESSAGES = 4;
const HELD_SENDERS = 32;
/** Safety-code commitments and reveals kept per participant (rounds that may come). */
const ROUND_MEMORY = 6;
/** A round names at most the call's people; an attempt number past this is refused. */
const MAX_ROUND_CHARS = 400;
const MAX_ATTEMPT = 1_000_000;

function sameBytes(a, b) {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

export class CallCrypto {
  /**
   * @param {object} options
   * @param {string} options.secret the link secret from `#k=`
   * @param {(message: object) => void} options.send signaling
   * @param {() => void} options.onChange the state below changed (peers, safety code, failures)
   * @param {boolean} [options.probe] tests only: the worker copies the first plain frames sent
   */
  constructor({ secret, send, onChange, probe = false }) {
    // Set by init: the secret's id (e2ee.secretId), the same under every address
    // the link has had.
    this.linkId = null;
    this.send = send;
    this.onChange = onChange;
    this.api = frameApi();
    // The secret is used once, here: what it gives (linkKeys) is all that is kept.
    this.ready = this.init(secret);
    this.me = null;
    this.peers = new Map();
    this.answered = new Set();
    this.failed = new Map();
    this.decrypted = new Map();
    this.code = "";
    // The safety-code round: who it is for, how often it started over, my random
    // value, whether I revealed it; everyone's commitments and reveals.
    this.round = null;
    this.attempt = 0;
    this.nonce = null;
    this.revealed = false;
    this.commits = new Map();
    this.reveals = new Map();
    this.ring = new KeyRing();
    this.generation = 0;
    this.raw = null;
    this.current = null;
    this.pending = null;
    this.pendingKey = null;
    this.own = [];
    this.switchTimer = null;
    this.rotateTimer = null;
    this.attached = new WeakSet();
    this.roster = [];
    this.onRoster = new Set();
    this.departed = new Set();
    this.held = new Map();
    this.ghosts = new Map();
    this.audience = null;
    this.joinedAt = null;
    this.firstFrame = new Map();
    this.probe = [];
    this.worker = new Worker("/static/e2ee-worker.js", { type: "module" });
    this.worker.addEventListener("message", (event) => this.fromWorker(event.data));
    this.statsWaiting = new Map();
    if (probe) this.worker.postMessage({ op: "probe", frames: 30 });
  }

  async init(secret) {
    this.linkId = await secretId(secret);
    this.link = await linkKeys(secret, this.linkId);
  }

  /** Options for RTCPeerConnection: the older API must be asked for up front. */
  connectionOptions() {
    return this.api === "streams" ? { encodedInsertableStreams: true } : {};
  }

  attach(endpoint, options) {
    if (this.attached.has(endpoint)) return;
    this.attached.add(endpoint);
    if (this.api === "script") {
      endpoint.transform = new RTCRtpScriptTransform(this.worker, options);
    } else if (this.api === "streams") {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.worker.postMessage({ op: "streams", readable, writable, options }, [readable, writable]);
    }
  }

  /**
   * Seals everything `sender` sends (`kind` "audio" or "video") on my stream
   * `index` (0: camera and microphone, 1: screen, as the SFU numbers them).
   */
  attachSender(sender, kind, index = 0) {
    this.attach(sender, { side: "send", kind, index });
  }

  /**
   * Opens everything `receiver` gets from the stream `stream` (`p3-0`): only
   * frames sealed by that participant for that kind and stream open.
   */
  attachReceiver(receiver, kind, stream) {
    const participant = Number(/^p(\d+)-/.exec(stream)?.[1] ?? -1);
    this.attach(receiver, { side: "receive", kind, stream, participant, index: streamIndex(stream) });
  }

  /**
   * On the call `call` (the id `joined` gives) as participant `me`; again after a
   * reconnect: same keys.
   */
  start(me, call = "") {
    const again = this.me === me && this.call === call;
    // Who I am and which call, at once: the roster that follows `joined` is read
    // as this call's (a call that came back on another server numbers everyone
    // anew), even before my keys are ready.
    if (!again) this.enter(me, call);
    // In line with the messages: one that arrives meanwhile waits for my keys.
    this.inbox = (this.inbox ?? this.ready).catch(() => {}).then(() => this.begin(again));
    return this.inbox;
  }

  /** A new call (or a new place on one): nothing of the one before carries over. */
  enter(me, call) {
    const first = this.me === null;
    // Keys of the call before: its participant numbers come again in this one
    // (from 1), and a key under an old number must not stand for a new person.
    for (const p of new Set([...this.peers.keys(), ...this.onRoster])) {
      this.ring.forget(p);
      this.worker.postMessage({ op: "forget", participant: p });
    }
    this.me = me;
    this.call = call;
    this.peers.clear();
    this.answered.clear();
    this.failed.clear();
    this.departed.clear();
    this.held.clear();
    this.ghosts.clear();
    this.commits.clear();
    this.reveals.clear();
    this.round = null;
    this.code = "";
    this.onRoster.delete(me);
    if (!first) {
      // The roster of the call before says nothing of this one.
      this.onRoster = new Set();
      this.roster = [];
    }
    // Who may have my first key: whoever the first roster shows (they were there).
    this.audience = this.roster.length ? new Set(this.onRoster) : null;
  }

  async begin(again) {
    if (!again) {
      // A key pair of its own for each call.
      this.identity = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
      this.publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", this.identity.publicKey));
      this.generation = 0;
      this.raw = crypto.getRandomValues(new Uint8Array(32));
      await this.use(this.generation, this.raw);
    }
    this.joinedAt = performance.now();
    await this.hello(null, false);
    // Back after a reconnect: messages may have been lost, the round starts over.
    await this.startRound(again);
    this.changed();
  }

  /**
   * My sender key of `generation` as an object that counts the messages sealed
   * with it and remembers those that came back: the same one each time for the
   * same key, so that message numbers never repeat under it.
   */
  async ownKey(generation, raw) {
    const kid = kidOf(this.me, generation);
    const known = this.own.find((k) => k.kid === kid && k.raw.every((b, i) => b === raw[i]));
    if (known) return known;
    const key = await senderKey(raw, kid);
    key.sent = 0;
    key.messages = new ReplayWindow();
    return key;
  }

  async use(generation, raw) {
    this.current = await this.ownKey(generation, raw);
    // My own payloads come back through plugins that relay to everyone.
    this.own = [this.current, ...this.own].slice(0, 4);
    this.worker.postMessage({ op: "send", participant: this.me, generation, raw });
  }

  async hello(to, reply) {
    const mac = await helloMac(this.link, this.call, this.me, this.publicKey);
    this.send({
      type: "e2ee",
      ...(to === null ? {} : { to }),
      payload: encodeMessage({ t: "hello", pub: toBase64(this.publicKey), mac: toBase64(mac), reply }),
    });
  }

  /**
   * An `e2ee` message from participant `from`. Messages are handled one after the
   * other: a key must not overtake the hello it depends on.
   */
  receive(from, payload) {
    this.inbox = (this.inbox ?? this.ready).catch(() => {}).then(async () => {
      if (this.me === null || this.departed.has(from)) return;
      if (!this.onRoster.has(from)) return this.hold(from, payload);
      const message = decodeMessage(payload);
      if (!message) return;
      if (message.t === "hello") await this.onHello(from, message);
      else if (message.t === "key") await this.onKey(from, message);
      else if (message.t === "commit") await this.onCommit(from, message);
      else if (message.t === "reveal") await this.onReveal(from, message);
    }).catch((error) => console.error("an e2ee message could not be handled", error));
    return this.inbox;
  }

  /**
   * A message from someone the roster does not list (yet): kept until it does, and
   * reported if it does not soon. A server that knows the link secret could sign
   * keys for a participant nobody sees; this is what keeps them out.
   */
  hold(from, payload) {
    if (!this.held.has(from) && this.held.size >= HELD_SENDERS) return;
    const messages = this.held.get(from) ?? [];
    if (messages.length < HELD_MESSAGES) messages.push(payload);
    this.held.set(from, messages);
    if (!this.ghosts.has(from)) {
      this.ghosts.set(from, performance.now());
      setTimeout(() => this.changed(), GHOST_WARNING_MS + 10);
    }
  }

  /** Participants not on the roster whose keys have waited too long: the page warns. */
  ghostParticipants() {
    const now = performance.now();
    return [...this.ghosts.entries()].filter(([, since]) => now - since >= GHOST_WARNING_MS).map(([p]) => p);
  }

  async onHello(from, message) {
    let pub;
    let mac;
    try {
      pub = fromBase64(message.pub);
      mac = fromBase64(message.mac);
    } catch {
      return this.fail(from, "sent keys that could not be read");
    }
    if (!(await checkHello(this.link, this.call, from, pub, mac))) {
      // Answer once all the same, so that they learn it too (a hello is public).
      if (!message.reply && !this.answered.has(from)) {
        this.answered.add(from);
        await this.hello(from, true);
      }
      return this.fail(from, "has keys made with a different link secret");
    }
    const known = this.peers.get(from);
    const same = known && toBase64(known.pub) === toBase64(pub);
    if (!same) {
      let pair;
      try {
        pair = await pairKey(this.link, this.call, this.identity.privateKey, pub, this.me, from, this.publicKey);
      } catch {
        return this.fail(from, "sent a public key that is not valid");
      }
      if (known) {
        // A new key pair (their page reloaded): their keys start over too.
        this.ring.forget(from);
        this.worker.postMessage({ op: "forget", participant: from });
      }
      this.peers.set(from, { pub, pair });
      this.failed.delete(from);
      // The safety code covers their new key: a new round.
      if (known) await this.startRound(true);
    }
    if (!message.reply) await this.hello(from, true);
    if (!same) {
      if (!this.audience?.has(from)) {
        // Someone who could not see my frames so far (whatever their message
        // says): one ratchet step, and only the new key for them.
        this.audience = new Set([...(this.audience ?? []), from]);
        const base = this.pending ?? { generation: this.generation, raw: this.raw };
        await this.next(base.generation + 1, await ratchet(base.raw), [from]);
      } else {
        // Someone already on the call (or back with a reloaded page): what I use.
        await this.giveKey(from, { generation: this.generation, raw: this.raw });
        if (this.pending) await this.giveKey(from, this.pending);
      }
    }
    this.changed();
  }

  async onKey(from, message) {
    const peer = this.peers.get(from);
    if (!peer || typeof message.kid !== "number" || participantOfKid(message.kid) !== from) return;
    const raw = await unwrapKey(peer.pair, from, this.me, message);
    if (!raw) return this.fail(from, "sent a key that could not be opened");
    const generation = message.kid & 0xff;
    // A key older than one they already gave (a replayed message) is not taken back.
    if (!(await this.ring.add(from, generation, raw, { onlyNewer: true }))) return;
    this.worker.postMessage({ op: "key", participant: from, generation, raw });
    this.changed();
  }

  async giveKey(to, { generation, raw }) {
    const peer = this.peers.get(to);
    if (!peer || !this.onRoster.has(to)) return;
    const wrapped = await wrapKey(peer.pair, this.me, to, kidOf(this.me, generation), raw);
    this.send({ type: "e2ee", to, payload: encodeMessage({ t: "key", ...wrapped }) });
  }

  /**
   * The next generation of my sender key: handed to `to` (everyone verified when
   * null) now, used after SWITCH_DELAY_MS so that it arrives first.
   */
  async next(generation, raw, to) {
    const pending = { generation: generation & 0xff, raw };
    this.pending = pending;
    const targets = to ?? [...this.peers.keys()];
    await Promise.all(targets.map((p) => this.giveKey(p, pending)));
    // Messages use it at once: they travel behind the key on the same connection,
    // and whoever did not get it follows the ratchet.
    this.pendingKey = await this.ownKey(pending.generation, raw);
    this.own = [this.pendingKey, ...this.own].slice(0, 4);
    clearTimeout(this.switchTimer);
    this.switchTimer = setTimeout(() => this.switchNow(), SWITCH_DELAY_MS);
  }

  async switchNow() {
    const pending = this.pending;
    if (!pending) return;
    this.pending = null;
    this.pendingKey = null;
    this.generation = pending.generation;
    this.raw = pending.raw;
    await this.use(this.generation, this.raw);
    this.changed();
  }

  /**
   * The roster changed: anyone gone means a fresh key for everyone left (and never
   * a key for them again in this call); messages of anyone it now lists are handled.
   */
  rosterChanged(participants) {
    const ids = new Set(participants.map((p) => p.participant));
    if (this.me !== null) ids.delete(this.me);
    if (this.me !== null) for (const p of this.onRoster) if (!ids.has(p)) this.departed.add(p);
    this.onRoster = ids;
    if (this.audience === null && this.me !== null) this.audience = new Set(ids);
    for (const p of [...this.commits.keys()]) if (!ids.has(p)) this.commits.delete(p);
    for (const p of [...this.reveals.keys()]) if (!ids.has(p)) this.reveals.delete(p);
    // A safety-code round for the people now listed, before their messages.
    this.inbox = (this.inbox ?? this.ready).catch(() => {}).then(() => this.startRound(false)).catch((error) => console.error("the safety code round could not start", error));
    for (const [p, messages] of [...this.held.entries()]) {
      if (!ids.has(p)) continue;
      this.held.delete(p);
      this.ghosts.delete(p);
      for (const payload of messages) this.receive(p, payload);
    }
    const gone = [...this.peers.keys()].filter((p) => !ids.has(p));
    for (const p of [...this.failed.keys()]) if (!ids.has(p)) this.failed.delete(p);
    this.roster = participants;
    if (gone.length === 0) {
      this.changed();
      return;
    }
    for (const p of gone) {
      this.peers.delete(p);
      this.ring.forget(p);
      this.worker.postMessage({ op: "forget", participant: p });
    }
    clearTimeout(this.rotateTimer);
    this.rotateTimer = setTimeout(() => this.rotate(), ROTATE_DELAY_MS);
    this.changed();
  }

  /** A fresh random sender key, for everyone still here. */
  async rotate() {
    if (this.me === null) return;
    if (this.pending) await this.switchNow();
    // Made now: for the people on the call now.
    this.audience = new Set(this.onRoster);
    await this.next(this.generation + 1, crypto.getRandomValues(new Uint8Array(32)), null);
  }

  fail(participant, reason) {
    this.failed.set(participant, reason);
    this.changed();
  }

  fromWorker(message) {
    if (message.op === "decrypted") {
      this.decrypted.set(message.participant, true);
      if (this.failed.get(message.participant)?.startsWith("sends frames")) this.failed.delete(message.participant);
      const key = `${message.participant}:${message.kind}`;
      // The page's clock: a worker's performance.now() starts when the worker does.
      if (!this.firstFrame.has(key) && this.joinedAt !== null) this.firstFrame.set(key, performance.now() - this.joinedAt);
      this.changed();
    } else if (message.op === "failed") {
      if (!this.failed.has(message.participant)) {
        this.failed.set(message.participant, "sends frames this browser cannot decrypt");
        this.changed();
      }
    } else if (message.op === "exhausted") {
      // My key sealed all the frames it may: a fresh one, as when someone leaves.
      this.rotate();
    } else if (message.op === "probe") {
      this.probe.push(toBase64(message.bytes));
    } else if (message.op === "stats") {
      this.statsWaiting.get(message.id)?.(message.stats);
      this.statsWaiting.delete(message.id);
    }
  }

  /** Counters of the worker: frames sealed, opened, failed, dropped. */
  workerStats() {
    const id = Math.random();
    return new Promise((resolve) => {
      this.statsWaiting.set(id, resolve);
      this.worker.postMessage({ op: "stats", id });
    });
  }

  changed() {
    this.onChange?.();
  }

  /** The people on the call as a safety-code round names them: `2,5,7`. */
  roundOf() {
    return [...this.onRoster, this.me].sort((a, b) => a - b).join(",");
  }

  /**
   * A safety-code round for the roster as it is, when it changed; `again`: over
   * again even if not (a peer's key changed, or I reconnected).
   */
  async startRound(again) {
    if (this.me === null || !this.publicKey) return;
    const round = this.roundOf();
    if (round === this.round && !again) return;
    let attempt = round === this.round ? this.attempt + 1 : 0;
    // Others may have started over already: join the latest attempt.
    for (const list of this.commits.values()) {
      for (const c of list) if (c.round === round && c.attempt > attempt) attempt = c.attempt;
    }
    await this.openRound(round, attempt);
  }

  async openRound(round, attempt) {
    this.round = round;
    this.attempt = attempt;
    this.nonce = crypto.getRandomValues(new Uint8Array(COMMIT_NONCE_BYTES));
    this.revealed = false;
    this.code = "";
    const hash = await commitHash(ROUND_SCOPE, this.call, round, attempt, this.me, this.publicKey, this.nonce);
    this.send({ type: "e2ee", payload: encodeMessage({ t: "commit", round, attempt, hash: toBase64(hash) }) });
    await this.progress();
    this.changed();
  }

  /** A round's message from `from`, checked and kept (the first one per round counts). */
  remember(map, from, message, fields) {
    const { round, attempt } = message;
    if (typeof round !== "string" || round.length > MAX_ROUND_CHARS) return null;
    if (!Number.isSafeInteger(attempt) || attempt < 0 || attempt > MAX_ATTEMPT) return null;
    const list = map.get(from) ?? [];
    if (list.some((c) => c.round === round && c.attempt === attempt)) return null;
    const entry = { round, attempt, ...fields };
    list.push(entry);
    if (list.length > ROUND_MEMORY) list.shift();
    map.set(from, list);
    return entry;
  }

  async onCommit(from, message) {
    let hash;
    try {
      hash = fromBase64(message.hash);
    } catch {
      return;
    }
    if (hash.length !== 32) return;
    const entry = this.remember(this.commits, from, message, { hash });
    if (!entry) return;
    // Someone started this round over: so do I, with a fresh value.
    if (entry.round === this.round && entry.attempt > this.attempt) await this.openRound(entry.round, entry.attempt);
    else await this.progress();
  }

  async onReveal(from, message) {
    let pub;
    let nonce;
    try {
      pub = fromBase64(message.pub);
      nonce = fromBase64(message.nonce);
    } catch {
      return;
    }
    if (!isUncompressedPoint(pub) || nonce.length !== COMMIT_NONCE_BYTES) return;
    if (this.remember(this.reveals, from, message, { pub, nonce })) await this.progress();
  }

  /**
   * The round goes on: once everyone's commitment is here I reveal my value; once
   * everyone's value is here and matches their commitment, the code is shown.
   */
  async progress() {
    if (this.round === null) return;
    const { round, attempt } = this;
    const find = (map, p) => map.get(p)?.find((c) => c.round === round && c.attempt === attempt);
    const others = round.split(",").map(Number).filter((p) => p !== this.me);
    if (!this.revealed) {
      if (!others.every((p) => find(this.commits, p))) return;
      this.revealed = true;
      const reveal = { t: "reveal", round, attempt, pub: toBase64(this.publicKey), nonce: toBase64(this.nonce) };
      this.send({ type: "e2ee", payload: encodeMessage(reveal) });
    }
    const entries = [{ participant: this.me, pub: this.publicKey, nonce: this.nonce }];
    for (const p of others) {
      const commit = find(this.commits, p);
      const reveal = find(this.reveals, p);
      if (!reveal) return;
      const expected = await commitHash(ROUND_SCOPE, this.call, round, attempt, p, reveal.pub, reveal.nonce);
      const peer = this.peers.get(p);
      if (!sameBytes(expected, commit.hash) || (peer && !sameBytes(peer.pub, reveal.pub))) {
        // Someone changed what they committed to: no code is better than one that lies.
        if (round === this.round && attempt === this.attempt) this.code = "";
        return this.fail(p, "sent safety-code values that do not match their keys");
      }
      // Someone whose keys did not verify (another link secret) counts as such: their
      // code, made from the other side, differs.
      entries.push(peer ? { participant: p, pub: reveal.pub, nonce: reveal.nonce } : { participant: p, pub: null });
    }
    const code = await safetyCode(ROUND_SCOPE, this.call, entries);
    if (round !== this.round || attempt !== this.attempt || code === this.code) return;
    this.code = code;
    this.changed();
  }

  /** A payload for the plugin `plugin`, sealed with my newest sender key. */
  async seal(bytes, plugin) {
    await this.ready;
    const key = this.pendingKey ?? this.current;
    if (!key) throw new Error("not on the call yet");
    if (key.sent >= COUNTER_LIMIT) {
      this.rotate();
      throw new Error("the encryption key is being renewed; send again in a moment");
    }
    key.sent += 1;
    return sealData(key, bytes, plugin, key.sent);
  }

  /**
   * A payload for the plugin `plugin` opened: `{bytes, from, encrypted: true}`;
   * `{bytes, encrypted: false}` for what the plugin itself sent; null when it
   * cannot be opened, was sealed for another plugin, or was seen before.
   */
  async open(bytes, plugin) {
    const head = dataHead(bytes);
    if (head === null) return { bytes, encrypted: false };
    const { kid, seq } = head;
    const from = participantOfKid(kid);
    let key;
    let plain = null;
    if (from === this.me) {
      key = this.own.find((k) => k.kid === kid);
      if (!key || !key.messages.fresh(seq)) return null;
      plain = await openData(key, bytes, plugin);
    } else {
      const found = await this.ring.find(kid, async (candidate) => (plain = await openData(candidate, bytes, plugin)) !== null);
      key = found.key;
      if (!key) return null;
      if (!found.opened) {
        if (!key.messages.fresh(seq)) return null;
        plain = await openData(key, bytes, plugin);
      }
    }
    if (!plain) return null;
    key.messages.mark(seq);
    if (from !== this.me) this.ring.opened(key);
    return { bytes: plain, from, encrypted: true };
  }

  close() {
    clearTimeout(this.switchTimer);
    clearTimeout(this.rotateTimer);
    this.me = null;
    this.pending = null;
    this.pendingKey = null;
    this.peers.clear();
  }
}
