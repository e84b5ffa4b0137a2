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
//
// A peer whose hello does not verify (they opened the link with another secret, or
// the server made it up) never gets a key and gives none.

import {
  KeyRing,
  ROTATE_DELAY_MS,
  SWITCH_DELAY_MS,
  checkHello,
  dataKid,
  fromBase64,
  helloMac,
  kidOf,
  linkKeys,
  openData,
  pairKey,
  participantOfKid,
  ratchet,
  safetyCode,
  sealData,
  senderKey,
  toBase64,
  unwrapKey,
  wrapKey,
} from "./e2ee.js";

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

export class CallCrypto {
  /**
   * @param {object} options
   * @param {string} options.secret the link secret from `#k=`
   * @param {string} options.linkId
   * @param {(message: object) => void} options.send signaling
   * @param {() => void} options.onChange the state below changed (peers, safety code, failures)
   */
  constructor({ secret, linkId, send, onChange }) {
    this.secret = secret;
    this.linkId = linkId;
    this.send = send;
    this.onChange = onChange;
    this.api = frameApi();
    this.ready = this.init();
    this.me = null;
    this.peers = new Map();
    this.answered = new Set();
    this.failed = new Map();
    this.decrypted = new Map();
    this.code = "";
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
    this.joinedAt = null;
    this.firstFrame = new Map();
    this.probe = [];
    this.worker = new Worker("/static/e2ee-worker.js", { type: "module" });
    this.worker.addEventListener("message", (event) => this.fromWorker(event.data));
    this.statsWaiting = new Map();
    if (localStorage.getItem("confab.e2eeProbe")) this.worker.postMessage({ op: "probe", frames: 30 });
  }

  async init() {
    this.link = await linkKeys(this.secret, this.linkId);
    this.identity = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
    this.publicKey = new Uint8Array(await crypto.subtle.exportKey("raw", this.identity.publicKey));
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

  /** Seals everything `sender` sends (`kind` "audio" or "video"). */
  attachSender(sender, kind) {
    this.attach(sender, { side: "send", kind });
  }

  /** Opens everything `receiver` gets from the stream `stream` (`p3-0`). */
  attachReceiver(receiver, kind, stream) {
    const participant = Number(/^p(\d+)-/.exec(stream)?.[1] ?? -1);
    this.attach(receiver, { side: "receive", kind, stream, participant });
  }

  /** On the call as participant `me` (again after a reconnect: same keys). */
  start(me) {
    // In line with the messages: one that arrives meanwhile waits for my keys.
    this.inbox = (this.inbox ?? this.ready).catch(() => {}).then(() => this.begin(me));
    return this.inbox;
  }

  async begin(me) {
    if (this.me !== me) {
      this.me = me;
      this.peers.clear();
      this.answered.clear();
      this.failed.clear();
      this.generation = 0;
      this.raw = crypto.getRandomValues(new Uint8Array(32));
      await this.use(this.generation, this.raw);
    }
    this.joinedAt = performance.now();
    await this.hello(null, false);
    this.changed();
  }

  async use(generation, raw) {
    this.current = await senderKey(raw, kidOf(this.me, generation));
    // My own payloads come back through plugins that relay to everyone.
    this.own = [this.current, ...this.own].slice(0, 4);
    this.worker.postMessage({ op: "send", participant: this.me, generation, raw });
  }

  async hello(to, reply) {
    const mac = await helloMac(this.link, this.me, this.publicKey);
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
      if (this.me === null) return;
      const message = decodeMessage(payload);
      if (!message) return;
      if (message.t === "hello") await this.onHello(from, message);
      else if (message.t === "key") await this.onKey(from, message);
    }).catch((error) => console.error("an e2ee message could not be handled", error));
    return this.inbox;
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
    if (!(await checkHello(this.link, from, pub, mac))) {
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
        pair = await pairKey(this.link, this.identity.privateKey, pub, this.me, from, this.publicKey);
      } catch {
        return this.fail(from, "sent a public key that is not valid");
      }
      this.peers.set(from, { pub, pair });
      this.failed.delete(from);
    }
    if (!message.reply) await this.hello(from, true);
    if (!same) {
      if (!message.reply && !known) {
        // A newcomer: one ratchet step, and only the new key for them.
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
    await this.ring.add(from, generation, raw);
    this.worker.postMessage({ op: "key", participant: from, generation, raw });
    this.changed();
  }

  async giveKey(to, { generation, raw }) {
    const peer = this.peers.get(to);
    if (!peer) return;
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
    this.pendingKey = await senderKey(raw, kidOf(this.me, pending.generation));
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

  /** The roster changed: anyone gone means a fresh key for everyone left. */
  rosterChanged(participants) {
    const ids = new Set(participants.map((p) => p.participant));
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

  async changed() {
    if (this.me !== null && this.publicKey) {
      const keys = [this.publicKey, ...[...this.peers.values()].map((p) => p.pub)];
      this.code = await safetyCode(this.linkId, keys);
    }
    this.onChange?.();
  }

  /** A plugin payload, sealed with my current sender key. */
  async seal(bytes) {
    await this.ready;
    const key = this.pendingKey ?? this.current;
    if (!key) throw new Error("not on the call yet");
    return sealData(key, bytes);
  }

  /**
   * A plugin payload opened: `{bytes, from, encrypted: true}`; `{bytes, encrypted:
   * false}` for what the plugin itself sent; null when it cannot be opened.
   */
  async open(bytes) {
    const kid = dataKid(bytes);
    if (kid === null) return { bytes, encrypted: false };
    const from = participantOfKid(kid);
    if (from === this.me) {
      const key = this.own.find((k) => k.kid === kid);
      const plain = key ? await openData(key, bytes) : null;
      return plain ? { bytes: plain, from, encrypted: true } : null;
    }
    let plain = null;
    const key = await this.ring.find(kid, async (candidate) => (plain = await openData(candidate, bytes)) !== null);
    if (key && !plain) plain = await openData(key, bytes);
    return plain ? { bytes: plain, from, encrypted: true } : null;
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
