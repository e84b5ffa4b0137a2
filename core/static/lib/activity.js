// The page's side of a plugin's shared activity (docs/plugins.md, "Shared
// activities"; the frame's side is plugin-kit.js, `plugin.activity`).
//
// The page, not the frame, holds the activity: it seals what the frame sends with
// the call's end-to-end keys, opens what arrives, keeps the shared state, answers
// a newcomer's request for it and leaves a sealed copy with the server. The frame
// only ever sees plain values and participant numbers; the server and the
// plugin's WebAssembly side only ever see ciphertext (docs/security.md).
//
// - Presence: `activity` messages say who is in it and their role (host, member,
//   guest); the role of whoever sent an update is read from there.
// - Messages: sealed for `{plugin}/activity-message`, to everyone in it or some.
// - State: a map of keys to JSON values. An update is `{k, v}` (or `{k, d: 1}` to
//   delete) sealed for `{plugin}/activity-update`; the server numbers them and
//   every page applies them in that order, so the last writer of a key wins
//   everywhere. A key may be kept to some roles (`restrict`); every page drops an
//   update to it from anyone else, so they all agree.
// - Late join: the page answers `activity_snapshot_request` with the whole state
//   sealed for `{plugin}/activity-snapshot`; a newcomer holds updates back until
//   its snapshot arrives, then applies those after it.
// - Suspension: `~suspend/{participant}` keys (written only by that participant)
//   say who the activity waits for, and why.

import { fromBase64, toBase64 } from "/static/lib/base64.js";
import { BridgeError, clip } from "/static/lib/plugin-frames.js";

/** Largest shared state, as JSON, so that a snapshot fits one message. */
export const MAX_STATE_BYTES = 24 * 1024;
/** Longest key of the shared state. */
export const MAX_KEY_CHARS = 128;
/** Longest reason given for a suspension. */
export const MAX_REASON_CHARS = 100;
/** The page that keeps the activity's earliest member leaves a sealed copy of the
 * state with the server after this long without updates, or after this many. */
export const COPY_AFTER_MS = 2_000;
export const COPY_AFTER_UPDATES = 32;
/** And again this often when its key changed since (a newcomer gets only new keys). */
export const COPY_CHECK_MS = 5_000;
/** Updates held back for their turn (or the snapshot); past this, a missing one is given up on. */
const HELD_UPDATES = 1_000;
// `signed-in` is anyone in it who is not a guest: a member, or a host who signed in.
const ROLES = new Set(["host", "member", "guest", "signed-in"]);
const SUSPEND = "~suspend/";

const text = new TextEncoder();
const words = new TextDecoder();

function encodeJson(value) {
  return text.encode(JSON.stringify(value));
}

function decodeJson(bytes) {
  try {
    return JSON.parse(words.decode(bytes));
  } catch {
    return undefined;
  }
}

/**
 * One plugin's activity, on the call page. `send` sends a signaling message;
 * `seal(bytes, label)` and `open(bytes, label)` are call-crypto's (the label is
 * authenticated, so a payload cannot be moved from one use to another);
 * `emit(event, data)` reaches the plugin's frame; `me()` is my participant
 * number, `names()` a map of numbers to names; `generation()` my key's generation.
 */
export class ActivityHost {
  constructor({
    plugin, send, seal, open, emit, me,
    names = () => new Map(),
    // Whether a participant came in as a guest (the roster says), for `signed-in`.
    isGuest = () => true,
    generation = () => 0,
    report = () => {},
    // Called as methods of this object: the browser's own would throw "Illegal invocation".
    setTimer = (fn, ms) => setTimeout(fn, ms),
    clearTimer = (id) => clearTimeout(id),
    setRepeat = (fn, ms) => setInterval(fn, ms),
    clearRepeat = (id) => clearInterval(id),
  }) {
    Object.assign(this, { plugin, sendMessage: send, seal, open, emit, me, names, isGuest, generation, report, setTimer, clearTimer, setRepeat, clearRepeat });
    this.presence = { host: null, members: [] };
    this.joined = false;
    this.synced = false;
    this.seq = 0;
    this.state = new Map();
    this.rules = new Map();
    // Updates that arrived ahead of their turn, by number.
    this.held = new Map();
    this.askedFor = [];
    // Sealing and opening are asynchronous; one chain keeps them in order.
    this.chain = Promise.resolve();
    this.copy = { dirty: 0, generation: null, timer: null, repeat: null };
    this.undecryptable = false;
  }

  label(kind) {
    return `${this.plugin}/activity-${kind}`;
  }

  later(step) {
    this.chain = this.chain.then(step).catch((error) => console.error(`the ${this.plugin} activity`, error));
    return this.chain;
  }

  /** The role of `participant` in the activity, or null if they are not in it. */
  roleOf(participant) {
    return this.presence.members.find((m) => m.participant === participant)?.role ?? null;
  }

  /** What the frame is told of the presence. */
  view() {
    const names = this.names();
    return {
      active: this.presence.members.length > 0,
      joined: this.joined,
      host: this.presence.host,
      members: this.presence.members.map((m) => ({ ...m, name: names.get(m.participant) ?? "" })),
    };
  }

  // ---- from the frame ----

  join() {
    // Again after a reconnect: the state here stays, and only what is newer is taken.
    this.rejoining = this.synced;
    this.synced = false;
    this.sendMessage({ type: "activity_join", plugin: this.plugin });
    return null;
  }

  leave() {
    if (!this.joined) throw new BridgeError("not-joined", "join the activity first");
    this.sendMessage({ type: "activity_leave", plugin: this.plugin });
    return null;
  }

  async sendTo(bytes, to) {
    this.mustBeIn();
    let recipients;
    if (to != null) {
      if (!Array.isArray(to) || to.length === 0 || !to.every((p) => Number.isInteger(p) && this.roleOf(p) && p !== this.me())) {
        throw new BridgeError("bad-request", "to names other members of the activity");
      }
      recipients = [...new Set(to)];
    }
    const sealed = await this.seal(bytes, this.label("message"));
    this.sendMessage({ type: "activity_send", plugin: this.plugin, ...(recipients ? { to: recipients } : {}), payload: toBase64(sealed) });
    return null;
  }

  /** Sets (or with `remove`, deletes) `key` of the shared state. */
  async set(key, value, remove = false) {
    this.mustBeIn();
    this.checkKey(key);
    if (key.startsWith(SUSPEND)) throw new BridgeError("bad-request", `keys starting with ${SUSPEND} are the page's`);
    return this.write(key, value, remove);
  }

  async write(key, value, remove) {
    const allowed = key.startsWith(SUSPEND) ? null : this.allowedRoles(key);
    if (allowed && !this.mayChange(allowed, this.me())) {
      throw new BridgeError("not-allowed", `only ${[...allowed].join(", ")} may change ${clip(key, 40)}`);
    }
    if (!remove && value === undefined) throw new BridgeError("bad-request", "a value that JSON can carry");
    const bytes = encodeJson(remove ? { k: key, d: 1 } : { k: key, v: value });
    // The state as it would be: this key's value replaced (or gone).
    const old = this.state.get(key);
    const after = this.stateBytes()
      - (old ? encodeJson([key, old.value]).length : 0)
      + (remove ? 0 : encodeJson([key, value]).length);
    if (after > MAX_STATE_BYTES) throw new BridgeError("too-large", `the shared state is at most ${MAX_STATE_BYTES} bytes as JSON`);
    const sealed = await this.seal(bytes, this.label("update"));
    this.sendMessage({ type: "activity_update", plugin: this.plugin, payload: toBase64(sealed) });
    return null;
  }

  /** Keeps changes to `key` (or, ending in `*`, every key it starts) to `roles`. */
  restrict(key, roles) {
    if (typeof key !== "string" || !key || key.length > MAX_KEY_CHARS) throw new BridgeError("bad-request", "restrict takes a key");
    if (!Array.isArray(roles) || !roles.every((r) => ROLES.has(r))) {
      throw new BridgeError("bad-request", "roles are host, member, guest and signed-in");
    }
    this.rules.set(key, new Set(roles));
    return null;
  }

  suspend(reason) {
    this.mustBeIn();
    return this.write(`${SUSPEND}${this.me()}`, clip(reason || "waiting", MAX_REASON_CHARS), false);
  }

  resume() {
    this.mustBeIn();
    if (!this.state.has(`${SUSPEND}${this.me()}`)) return null;
    return this.write(`${SUSPEND}${this.me()}`, null, true);
  }

  mustBeIn() {
    if (!this.joined) throw new BridgeError("not-joined", "join the activity first");
    if (!this.synced) throw new BridgeError("busy", "the activity's state has not arrived yet");
  }

  checkKey(key) {
    if (typeof key !== "string" || !key || Array.from(key).length > MAX_KEY_CHARS) {
      throw new BridgeError("bad-request", `a key is 1 to ${MAX_KEY_CHARS} characters`);
    }
  }

  /** Whether `participant` has one of `roles` in the activity. */
  mayChange(roles, participant) {
    const role = this.roleOf(participant);
    if (role === null) return false;
    return roles.has(role) || (roles.has("signed-in") && role !== "guest" && !this.isGuest(participant));
  }

  allowedRoles(key) {
    if (this.rules.has(key)) return this.rules.get(key);
    for (const [rule, roles] of this.rules) {
      if (rule.endsWith("*") && key.startsWith(rule.slice(0, -1))) return roles;
    }
    return null;
  }

  stateBytes() {
    let n = 2;
    for (const [key, entry] of this.state) n += encodeJson([key, entry.value]).length;
    return n;
  }

  // ---- from the server ----

  /** `activity`: who is in it. */
  presenceChanged({ host, members }) {
    const wasIn = this.joined;
    this.presence = { host: host ?? null, members: members ?? [] };
    this.joined = this.roleOf(this.me()) !== null;
    if (!this.joined) {
      if (wasIn || this.presence.members.length === 0) this.reset();
    }
    this.emit("activity", this.view());
    this.suspensionChanged();
    this.keepCopy();
  }

  reset() {
    this.synced = false;
    this.seq = 0;
    this.state.clear();
    this.held.clear();
    this.askedFor = [];
    this.copy.dirty = 0;
  }

  /** `activity_message`. */
  messageArrived({ payload }) {
    return this.later(async () => {
      const opened = await this.opened(payload, "message");
      if (!opened) return;
      this.emit("activityMessage", { bytes: opened.bytes, from: opened.from, role: this.roleOf(opened.from) });
    });
  }

  /** `activity_update`: applied in the server's order, whatever order they came in. */
  updateArrived({ seq, payload }) {
    return this.later(async () => {
      if (!Number.isSafeInteger(seq) || seq <= this.seq) return;
      if (!this.synced && this.held.size >= HELD_UPDATES) return;
      this.held.set(seq, payload);
      if (this.synced) await this.applyHeld();
    });
  }

  /** Applies the held updates that are next in order. Past HELD_UPDATES waiting
   * for one that never came (a connection lost them), it goes on without it. */
  async applyHeld() {
    for (;;) {
      let payload = this.held.get(this.seq + 1);
      if (payload === undefined && this.held.size > HELD_UPDATES) {
        this.seq = Math.min(...this.held.keys()) - 1;
        payload = this.held.get(this.seq + 1);
      }
      if (payload === undefined) return;
      this.held.delete(this.seq + 1);
      await this.applyUpdate(this.seq + 1, payload);
    }
  }

  /** `activity_snapshot`: the state as of `seq`; the updates from `next` on follow or were held back. */
  snapshotArrived({ seq, payload, next, complete }) {
    return this.later(async () => {
      const rejoining = this.rejoining;
      this.rejoining = false;
      if ((rejoining || this.synced) && seq <= this.seq) {
        // Back after a reconnect with the state already here, or the answer to a
        // join sent twice, older than what arrived since: only what is new. (Taken
        // as it is, it would roll the state back to before updates already applied.)
      } else {
        this.state.clear();
        if (payload) {
          const opened = await this.opened(payload, "snapshot");
          const snap = opened && decodeJson(opened.bytes);
          if (snap && Array.isArray(snap.entries) && snap.seq === seq) {
            for (const [key, value, at, from] of snap.entries) {
              if (typeof key === "string") this.state.set(key, { value, seq: at, from });
            }
          } else if (opened) {
            this.report(`The ${this.plugin} activity's state could not be read.`);
          }
        }
        this.seq = Math.max(seq, (Number.isSafeInteger(next) ? next : seq + 1) - 1);
      }
      this.synced = true;
      for (const at of this.held.keys()) if (at <= this.seq) this.held.delete(at);
      await this.applyHeld();
      this.emit("activitySync", { seq: this.seq, complete: complete !== false, state: this.entries() });
      this.suspensionChanged();
      this.keepCopy();
      for (const newcomer of this.askedFor.splice(0)) await this.answer(newcomer);
    });
  }

  /** `activity_snapshot_request`: `newcomer` wants the state. */
  snapshotAsked({ newcomer }) {
    return this.later(async () => {
      if (!this.synced) {
        this.askedFor.push(newcomer);
        return;
      }
      await this.answer(newcomer);
    });
  }

  async answer(newcomer) {
    const sealed = await this.sealedState();
    if (!sealed) return;
    this.sendMessage({ type: "activity_snapshot", plugin: this.plugin, newcomer, seq: this.seq, payload: sealed });
    this.copySent();
  }

  async sealedState() {
    const entries = [...this.state].map(([key, e]) => [key, e.value, e.seq, e.from]);
    const sealed = await this.seal(encodeJson({ seq: this.seq, entries }), this.label("snapshot"));
    return toBase64(sealed);
  }

  async applyUpdate(seq, payload) {
    const opened = await this.opened(payload, "update");
    this.seq = seq;
    if (!opened) return;
    const update = decodeJson(opened.bytes);
    if (!update || typeof update.k !== "string") return;
    const { k: key } = update;
    const from = opened.from;
    if (key.startsWith(SUSPEND)) {
      // Only the participant it names says they are waiting, or no longer.
      if (key !== `${SUSPEND}${from}`) return;
    } else {
      const allowed = this.allowedRoles(key);
      if (allowed && !this.mayChange(allowed, from)) return;
    }
    if (update.d) this.state.delete(key);
    else this.state.set(key, { value: update.v, seq, from });
    this.copy.dirty += 1;
    this.keepCopy();
    this.emit("activityState", { key, value: update.d ? undefined : update.v, from, role: this.roleOf(from), seq });
    if (key.startsWith(SUSPEND)) this.suspensionChanged();
  }

  async opened(payload, kind) {
    let bytes;
    try {
      bytes = fromBase64(payload);
    } catch {
      return null;
    }
    const opened = await this.open(bytes, this.label(kind)).catch(() => null);
    if (!opened?.encrypted) {
      // Not sealed by a page of this call: never taken as if it were.
      if (!this.undecryptable) {
        this.undecryptable = true;
        this.report(`A message of the ${this.plugin} activity could not be decrypted.`);
      }
      return null;
    }
    return opened;
  }

  /** The state as the frame gets it: `{ key: value }`, without the page's keys. */
  entries() {
    const out = {};
    for (const [key, entry] of this.state) if (!key.startsWith(SUSPEND)) out[key] = entry.value;
    return out;
  }

  /** Who the activity waits for, to the frame when it changes. */
  suspensionChanged() {
    const names = this.names();
    const waitingFor = [];
    for (const [key, entry] of this.state) {
      if (!key.startsWith(SUSPEND)) continue;
      const participant = Number(key.slice(SUSPEND.length));
      if (this.roleOf(participant) === null) continue;
      waitingFor.push({ participant, name: names.get(participant) ?? "", reason: String(entry.value ?? "") });
    }
    const summary = JSON.stringify(waitingFor);
    if (summary === this.lastSuspension) return;
    this.lastSuspension = summary;
    this.emit("activitySuspension", { waitingFor });
  }

  // ---- the server's copy ----

  /** Whether this page keeps the server's copy: it is the earliest member. */
  keeper() {
    return this.joined && this.synced && this.presence.members[0]?.participant === this.me();
  }

  keepCopy() {
    if (!this.keeper()) {
      this.clearTimer(this.copy.timer);
      this.clearRepeat(this.copy.repeat);
      this.copy.timer = null;
      this.copy.repeat = null;
      return;
    }
    this.copy.repeat ??= this.setRepeat(() => {
      if (this.copy.dirty > 0 || this.copy.generation !== this.generation()) this.leaveCopy();
    }, COPY_CHECK_MS);
    if (this.copy.dirty >= COPY_AFTER_UPDATES) {
      this.leaveCopy();
      return;
    }
    if (this.copy.dirty > 0) {
      this.clearTimer(this.copy.timer);
      this.copy.timer = this.setTimer(() => this.leaveCopy(), COPY_AFTER_MS);
    }
  }

  leaveCopy() {
    this.clearTimer(this.copy.timer);
    this.copy.timer = null;
    if (!this.keeper()) return this.chain;
    return this.later(async () => {
      const sealed = await this.sealedState();
      this.sendMessage({ type: "activity_snapshot", plugin: this.plugin, seq: this.seq, payload: sealed });
      this.copySent();
    });
  }

  copySent() {
    this.copy.dirty = 0;
    this.copy.generation = this.generation();
  }

  close() {
    this.clearTimer(this.copy.timer);
    this.clearRepeat(this.copy.repeat);
  }
}
