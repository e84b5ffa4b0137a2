// Call-page extensions: each plugin's `web.call-page` module runs in a sandboxed
// frame of its own (lib/plugin-frames.js), started once the user is on the call.
// The frame never sees the link secret, a key, the session cookie or a token: it
// gets what this file hands it over the bridge, and plugin-kit.js turns that into
// the handle the module's default export is called with (sdk/README.md, "Web
// code"):
//
//   plugin.send(data)             → call `send`: sealed here with the call's keys
//   plugin.onMessage(handler)     ← event `message`: what was opened here
//   plugin.participants() / onParticipants, me()   ← events `roster`, `me`
//   plugin.lobby() / onLobby      ← event `lobby`
//   plugin.fetch(path, init)      → call `fetch`: `/p/{plugin}{path}` as the user
//   plugin.captureStill(p)        → call `captureStill`: this page asks the user
//   plugin.notice(text)           → call `notice`
//   plugin.duckCallAudio(on)      → call `duckCallAudio`: this page lowers the
//                                   call's audio while it plays (call/ducking.js)
//   plugin.showLink(id, label)    → call `showLink`: this page shows the link `id`
//                                   with this call's secret (after a rotation)
//   plugin.activity.…             → calls `activity*`, events `activity*`: the
//                                   plugin's shared activity, which this page
//                                   holds and seals (lib/activity.js)
//
// Messages travel over the signaling connection as `plugin` messages
// (docs/signaling.md) to the plugin's `on-call-message` hook; the plugin answers
// with the `calls` capability. Payloads are end-to-end encrypted with the sender's
// key (docs/security.md): the server and the plugin see only ciphertext, and relay
// it. A frame gets the plain bytes with `encrypted: true` and `from` (who sent
// them); what the plugin itself sends arrives as it is, with `encrypted: false`.

import { fromBase64, toBase64 } from "/static/lib/base64.js";
import { ActivityHost } from "/static/lib/activity.js";
import { BridgeError, PluginFrames, clip } from "/static/lib/plugin-frames.js";

/** Largest payload of one message, as the server enforces it. */
export const MAX_MESSAGE_BYTES = 32 * 1024;
/** What encryption adds to a payload: a header, a nonce and the tag (e2ee.js, DATA_SEALING_BYTES). */
const SEALING_BYTES = 37;
/** Longest text a plugin may put in the call's notice line. */
export const MAX_NOTICE_CHARS = 300;
/** Messages kept for a frame that has not started yet. */
const EARLY_MESSAGES = 100;
/** Messages all plugins' frames may send on average per second, and at once: well
 * below the server's signaling limit, so a frame cannot crowd out the page's own
 * messages (keys, media) and get the user disconnected. */
export const PLUGIN_SENDS_PER_SEC = 10;
export const PLUGIN_SENDS_BURST = 20;
/** After the user says no to a still, the frame may not ask again for this long. */
export const STILL_REFUSED_MS = 30_000;
/** A link id as the server makes them. */
const LINK_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The bytes a frame asked to send: a Uint8Array or an ArrayBuffer (the kit encodes strings). */
export function payloadBytes(data) {
  const bytes = data instanceof Uint8Array ? data : data instanceof ArrayBuffer ? new Uint8Array(data) : null;
  if (!bytes) throw new BridgeError("bad-request", "send takes a Uint8Array, an ArrayBuffer or a string");
  const limit = MAX_MESSAGE_BYTES - SEALING_BYTES;
  if (bytes.length > limit) {
    throw new BridgeError("too-large", `a plugin message is at most ${limit} bytes (this one has ${bytes.length})`);
  }
  return bytes;
}

/**
 * The plugins of the call page. `send` sends a signaling message; `area` is the
 * element the plugins' frames go into; `me` and `participants` read the page's
 * state; `report` shows a problem to the user; `signedIn` says whether the user
 * is signed in, and `csrf` is their session's CSRF token (none for guests),
 * sent with the frames' fetches; `seal` and `open` encrypt and decrypt payloads
 * (call-crypto.js); `link` gives the link with its secret, and `linkTo(id)` the
 * link `id` with this call's secret — only the page uses them, for plugins
 * granted `web.link-secret` and for `showLink`. `lobby` reads the lobby as
 * plugins see it; `still(participant)` takes a picture of that participant's
 * camera tile (lib/still.js) once `confirm(question)` said yes; `notice` shows a
 * plugin's sentence on the call; `showLink(url, label)` shows a link to copy.
 */
export class CallPagePlugins {
  constructor({
    modules,
    area,
    send,
    me,
    participants,
    report,
    seal,
    open,
    link,
    linkTo = () => null,
    signedIn = false,
    csrf = null,
    lobby = () => [],
    still = () => null,
    confirm = (question) => window.confirm(question),
    notice = (text) => report(text),
    showLink = (url, label) => report(`${label}: ${url}`),
    generation = () => 0,
    limits = undefined,
    now = () => Date.now(),
    duck = () => {},
  }) {
    this.duck = duck;
    this.limits = limits;
    this.now = now;
    this.modules = modules;
    this.area = area;
    this.send = send;
    this.me = me;
    this.participants = participants;
    this.report = report;
    this.seal = seal;
    this.open = open;
    this.link = link;
    this.linkTo = linkTo;
    this.signedIn = Boolean(signedIn);
    this.csrf = csrf || null;
    this.lobby = lobby;
    this.still = still;
    this.confirm = confirm;
    this.notice = notice;
    this.showLinkOnPage = showLink;
    // Payloads are opened one after the other, so they reach frames in order.
    this.opening = Promise.resolve();
    this.undecryptable = false;
    this.frames = new Map();
    this.early = new Map();
    this.loading = null;
    this.sends = { tokens: PLUGIN_SENDS_BURST, at: now() };
    this.asking = false;
    this.refusedUntil = new Map();
    // Each plugin's shared activity, held here whether its frame runs yet or not.
    this.activities = new Map();
    for (const { plugin } of modules) {
      this.activities.set(plugin, new ActivityHost({
        plugin,
        send: (message) => this.send(message),
        seal: (bytes, label) => this.seal(bytes, label),
        open: (bytes, label) => this.open(bytes, label),
        emit: (event, data) => this.frames.get(plugin)?.emit(event, data),
        me: () => this.me(),
        names: () => new Map(this.participants().map((p) => [p.participant, p.name])),
        isGuest: (participant) => this.participants().find((p) => p.participant === participant)?.guest !== false,
        generation,
        report: (text) => this.report(text),
      }));
    }
  }

  /** Takes one of the plugins' sends, or says the frames are sending too fast. */
  takeSend() {
    const now = this.now();
    const s = this.sends;
    s.tokens = Math.min(PLUGIN_SENDS_BURST, s.tokens + (Math.max(0, now - s.at) / 1000) * PLUGIN_SENDS_PER_SEC);
    s.at = Math.max(s.at, now);
    if (s.tokens < 1) throw new BridgeError("busy", `plugins may send ${PLUGIN_SENDS_PER_SEC} messages a second`);
    s.tokens -= 1;
  }

  /** Starts every plugin's frame (once per page); resolves when each started or failed. */
  load() {
    this.loading ??= this.start();
    return this.loading;
  }

  async start() {
    const host = new PluginFrames();
    const started = [];
    for (const { plugin, frame: src, link_secret: linkSecret } of this.modules) {
      const frame = host.add({
        plugin,
        src,
        kind: "call-page",
        area: this.area,
        className: "plugin-area",
        csrf: this.csrf,
        linkSecret,
        fullLink: () => this.link(),
        limits: this.limits,
        report: (text) => this.report(text),
        init: () => ({
          signedIn: this.signedIn,
          me: this.me(),
          participants: this.participants(),
          lobby: this.lobby(),
          address: this.address(),
          activity: this.activityStart(plugin),
        }),
        calls: this.calls(plugin),
      });
      this.frames.set(plugin, frame);
      started.push(frame.started.then((ok) => {
        if (!ok) return;
        const held = this.early.get(plugin) ?? [];
        this.early.delete(plugin);
        for (const [bytes, meta] of held) this.dispatch(plugin, bytes, meta);
      }));
    }
    await Promise.all(started);
  }

  /** The activity as a starting frame gets it: presence, and the state once it arrived. */
  activityStart(plugin) {
    const host = this.activities.get(plugin);
    return { ...host.view(), state: host.synced ? host.entries() : null };
  }

  /** The link without its secret: what a frame may show. */
  address() {
    const full = this.link();
    return full ? full.split("#")[0] : null;
  }

  /** What a call-page frame may ask of this page. */
  calls(plugin) {
    return {
      send: async ({ data }) => {
        const bytes = payloadBytes(data);
        this.takeSend();
        const sealed = await this.seal(bytes, plugin);
        this.send({ type: "plugin", plugin, payload: toBase64(sealed) });
        return null;
      },
      captureStill: async ({ participant }) => this.captureStill(plugin, participant),
      ...this.activityCalls(plugin),
      notice: ({ text }) => {
        // Named, so that a plugin's sentence cannot pass for the page's own.
        this.notice(`${plugin}: ${clip(text, MAX_NOTICE_CHARS)}`);
        return null;
      },
      duckCallAudio: ({ on }) => {
        this.duck(plugin, Boolean(on));
        return null;
      },
      showLink: ({ id, label }) => {
        if (typeof id !== "string" || !LINK_ID.test(id)) throw new BridgeError("bad-request", "showLink takes a link id");
        const url = this.linkTo(id);
        if (!url) throw new BridgeError("no-secret", "this page has no secret for that link");
        this.showLinkOnPage(url, clip(label || "New link", 80));
        return null;
      },
    };
  }

  /** What a call-page frame may ask of its plugin's activity. Everything that
   * sends counts against the plugins' sending rate. */
  activityCalls(plugin) {
    const host = this.activities.get(plugin);
    return {
      activityJoin: () => {
        this.takeSend();
        return host.join();
      },
      activityLeave: () => {
        this.takeSend();
        return host.leave();
      },
      activitySend: async ({ data, to }) => {
        const bytes = payloadBytes(data);
        this.takeSend();
        return host.sendTo(bytes, to);
      },
      activitySet: async ({ key, value, remove }) => {
        host.checkKey(key);
        this.takeSend();
        return host.set(key, value, Boolean(remove));
      },
      activityRestrict: ({ key, roles }) => host.restrict(key, roles),
      activitySuspend: async ({ reason }) => {
        this.takeSend();
        return host.suspend(reason);
      },
      activityResume: async () => {
        this.takeSend();
        return host.resume();
      },
    };
  }

  /** An `activity*` message from the server. */
  activityMessage(message) {
    const host = this.activities.get(message.plugin);
    if (!host) return;
    switch (message.type) {
      case "activity":
        host.presenceChanged(message);
        break;
      case "activity_message":
        host.messageArrived(message);
        break;
      case "activity_update":
        host.updateArrived(message);
        break;
      case "activity_snapshot_request":
        host.snapshotAsked(message);
        break;
      case "activity_snapshot":
        host.snapshotArrived(message);
        break;
      default:
        break;
    }
  }

  /** Back on the call after a reconnect: each activity this page was in is joined
   * again, to take the updates the lost connection missed. */
  rejoined() {
    for (const host of this.activities.values()) if (host.joined) host.join();
  }

  async captureStill(plugin, participant) {
    // Never of myself, nor of someone the roster does not name: the question names them.
    if (participant === this.me()) return null;
    const person = this.participants().find((p) => p.participant === participant);
    if (!person) return null;
    // One question at a time, and none for a while after a no: a frame cannot
    // wear the user down with questions until they say yes.
    if (this.asking || this.now() < (this.refusedUntil.get(plugin) ?? 0)) {
      throw new BridgeError("busy", "the user was just asked");
    }
    // The page asks, not the plugin: a frame can't word the question or skip it.
    const question = `Attach a still of what your screen shows of ${person.name} to this report? `
      + "Only this picture is sent, to this server's administrators; the call itself stays end-to-end encrypted.";
    this.asking = true;
    let yes;
    try {
      yes = this.confirm(question);
    } finally {
      this.asking = false;
    }
    if (!yes) {
      this.refusedUntil.set(plugin, this.now() + STILL_REFUSED_MS);
      return null;
    }
    try {
      return (await this.still(participant)) ?? null;
    } catch (error) {
      console.error(`the still for the ${plugin} plugin failed`, error);
      return null;
    }
  }

  /** A `plugin` message from the server. */
  deliver(plugin, payload) {
    if (!this.frames.has(plugin)) return;
    let bytes;
    try {
      bytes = fromBase64(payload);
    } catch {
      return;
    }
    this.opening = this.opening.then(async () => {
      const opened = await this.open(bytes, plugin).catch(() => null);
      if (!opened) {
        // Sealed with a key this browser was not given: never shown as if it were plain.
        if (!this.undecryptable) {
          this.undecryptable = true;
          this.report(`A message for the ${plugin} plugin could not be decrypted.`);
        }
        return;
      }
      const { bytes: plain, ...meta } = opened;
      this.dispatch(plugin, plain, meta);
    });
  }

  dispatch(plugin, bytes, meta) {
    const frame = this.frames.get(plugin);
    // Until the held-back messages are handed over, new ones queue behind them.
    if (!frame?.ready || this.early.get(plugin)?.length) {
      const early = this.early.get(plugin) ?? [];
      if (early.length < EARLY_MESSAGES) early.push([bytes, meta]);
      this.early.set(plugin, early);
      return;
    }
    const copy = new Uint8Array(bytes);
    frame.emit("message", { bytes: copy, meta: { plugin, ...meta } }, [copy.buffer]);
  }

  /** The roster changed. */
  rosterChanged(list) {
    for (const frame of this.frames.values()) {
      frame.emit("me", this.me());
      frame.emit("roster", list);
    }
    // Names in the activities' presence and suspensions follow the roster.
    for (const host of this.activities.values()) {
      if (!host.view().active) continue;
      host.emit("activity", host.view());
      host.suspensionChanged();
    }
  }

  /** The lobby changed: `list` as `lobby` gives it. */
  lobbyChanged(list) {
    for (const frame of this.frames.values()) frame.emit("lobby", list);
  }
}
