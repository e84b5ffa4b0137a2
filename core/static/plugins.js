// Call-page extensions: ES modules that plugins ship (their manifest's
// `web.call-page`), imported by the call page once the user is on the call. Each
// module's default export is called once with a handle for that plugin:
//
//   export default function setup(plugin) {
//     plugin.element;            // a <section> of the call page the module may fill
//     plugin.name;               // the plugin's name
//     plugin.send(data);         // Uint8Array, ArrayBuffer or string (UTF-8), ≤ 32 KiB
//                                // less 37 bytes of encryption; returns a promise
//     plugin.onMessage((bytes, { from, encrypted }) => …);  // what the plugin relays
//     plugin.me();               // my participant number
//     plugin.participants();     // [{ participant, name, guest }]
//     plugin.onParticipants((list) => …);
//     plugin.signedIn;           // whether the user is signed in (not a guest)
//     plugin.link();             // the link as the user shares it, `#k=` secret included
//     plugin.fetch(path, init);  // fetch(`/p/${name}${path}`) as the signed-in user
//     plugin.lobby();            // [{ request, name, flags }] waiting in the lobby
//     plugin.onLobby((list) => …);
//     plugin.captureStill(participant);  // promise of { dataUrl, width, height } or null
//     plugin.notice(text);       // a sentence in the call's notice line
//   }
//
// Messages travel over the signaling connection as `plugin` messages
// (docs/signaling.md) to the plugin's `on-call-message` hook; the plugin answers
// with the `calls` capability. Payloads are end-to-end encrypted with the sender's
// key (docs/security.md): the server and the plugin see only ciphertext, and relay
// it. A handler gets the plain bytes with `encrypted: true` and `from` (who sent
// them); what the plugin itself sends arrives as it is, with `encrypted: false`. `fetch`
// sends the session's CSRF token, so the plugin's `handle-http` sees the user; for
// a guest it is a plain request.
//
// `onParticipants` and `onLobby` return a function that unsubscribes the handler.
// `lobby` lists the requests the page shows this user: none for a guest or off the
// call; `flags` are the server's codes (`same_network_as_removed`, …), as the lobby
// panel shows them. `captureStill` is for attaching evidence to a report: the page
// itself asks the user whether to send a still of that participant's camera, as
// this screen shows it (end-to-end encrypted video that only the browser sees
// decrypted), and gives a JPEG `data:` URL at most 640 pixels wide, or null when
// the user says no or there is no picture yet. `notice` shows plain text, at most
// 300 characters, where the page shows its own notices on the call.

import { fromBase64, toBase64 } from "/static/lib/base64.js";
import { pluginFetch } from "/static/lib/plugin-fetch.js";
import { loadPluginModules } from "/static/lib/plugin-modules.js";

/** Largest payload of one message, as the server enforces it. */
export const MAX_MESSAGE_BYTES = 32 * 1024;
/** What encryption adds to a payload: a header, a nonce and the tag (e2ee.js, DATA_SEALING_BYTES). */
const SEALING_BYTES = 37;
/** Messages kept for a module that has not registered `onMessage` yet. */
const EARLY_MESSAGES = 100;
/** Longest text a plugin may put in the call's notice line. */
export const MAX_NOTICE_CHARS = 300;

function toBytes(data) {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("send takes a Uint8Array, an ArrayBuffer or a string");
}

/** One plugin's side of the page. */
class PluginHandle {
  constructor(name, element, host) {
    this.name = name;
    this.element = element;
    this.host = host;
    this.handlers = [];
    this.rosterHandlers = [];
    this.lobbyHandlers = [];
    this.early = [];
    this.signedIn = host.signedIn;
  }

  fetch(path, init = {}) {
    return pluginFetch(this.name, this.host.csrf, path, init);
  }

  async send(data) {
    const bytes = toBytes(data);
    const limit = MAX_MESSAGE_BYTES - SEALING_BYTES;
    if (bytes.length > limit) {
      throw new RangeError(`a plugin message is at most ${limit} bytes (this one has ${bytes.length})`);
    }
    const sealed = await this.host.seal(bytes, this.name);
    this.host.send({ type: "plugin", plugin: this.name, payload: toBase64(sealed) });
  }

  onMessage(handler) {
    this.handlers.push(handler);
    for (const [bytes, meta] of this.early.splice(0)) this.dispatch(bytes, meta);
    return () => { this.handlers = this.handlers.filter((h) => h !== handler); };
  }

  onParticipants(handler) {
    this.rosterHandlers.push(handler);
    return () => { this.rosterHandlers = this.rosterHandlers.filter((h) => h !== handler); };
  }

  onLobby(handler) {
    this.lobbyHandlers.push(handler);
    return () => { this.lobbyHandlers = this.lobbyHandlers.filter((h) => h !== handler); };
  }

  me() {
    return this.host.me();
  }

  participants() {
    return this.host.participants();
  }

  link() {
    return this.host.link();
  }

  lobby() {
    return this.host.lobby();
  }

  async captureStill(participant) {
    // Never of myself, nor of someone the roster does not name: the question names them.
    if (participant === this.host.me()) return null;
    const person = this.host.participants().find((p) => p.participant === participant);
    if (!person) return null;
    // The page asks, not the plugin: a module can't word the question or skip it.
    const question = `Attach a still of what your screen shows of ${person.name} to this report? `
      + "Only this picture is sent, to this server's administrators; the call itself stays end-to-end encrypted.";
    if (!this.host.confirm(question)) return null;
    try {
      return (await this.host.still(participant)) ?? null;
    } catch (error) {
      console.error(`the still for the ${this.name} plugin failed`, error);
      return null;
    }
  }

  notice(text) {
    // By code points, so that a cut never splits a character in two.
    this.host.notice(Array.from(String(text ?? "")).slice(0, MAX_NOTICE_CHARS).join(""));
  }

  dispatch(bytes, meta) {
    if (this.handlers.length === 0) {
      if (this.early.length < EARLY_MESSAGES) this.early.push([bytes, meta]);
      return;
    }
    for (const handler of this.handlers) {
      try {
        handler(bytes, { plugin: this.name, ...meta });
      } catch (error) {
        console.error(`the ${this.name} plugin's message handler failed`, error);
      }
    }
  }
}

/**
 * The plugins of the call page. `send` sends a signaling message; `area` is the
 * element the plugins' sections go into; `me` and `participants` read the page's
 * state; `report` shows a problem to the user; `signedIn` says whether the user is
 * signed in, and `csrf` is their session's CSRF token (none for guests); `seal`
 * and `open` encrypt and decrypt payloads (call-crypto.js); `link` gives the
 * link with its secret (the address bar no longer shows it). `lobby` reads the
 * lobby as plugins see it; `still(participant)` takes a picture of that
 * participant's camera tile (lib/still.js) once `confirm(question)` said yes;
 * `notice` shows a plugin's sentence on the call (by default as `report` does).
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
    signedIn = false,
    csrf = null,
    lobby = () => [],
    still = () => null,
    confirm = (question) => window.confirm(question),
    notice = (text) => report(text),
  }) {
    this.modules = modules;
    this.area = area;
    this.host = {
      send,
      me,
      participants,
      seal,
      link,
      lobby,
      still,
      confirm,
      notice,
      signedIn: Boolean(signedIn),
      csrf: csrf || null,
    };
    this.open = open;
    // Payloads are opened one after the other, so they reach modules in order.
    this.opening = Promise.resolve();
    this.undecryptable = false;
    this.report = report;
    this.handles = new Map();
    this.loading = null;
  }

  /** Imports every module (once per page) and calls its default export. */
  load() {
    this.loading ??= loadPluginModules(this.modules, {
      area: this.area,
      className: "plugin-area",
      page: "call-page",
      handle: (plugin, element) => {
        const handle = new PluginHandle(plugin, element, this.host);
        this.handles.set(plugin, handle);
        return handle;
      },
      report: (message) => this.report(message),
    });
    return this.loading;
  }

  /** A `plugin` message from the server. */
  deliver(plugin, payload) {
    const handle = this.handles.get(plugin);
    if (!handle) return;
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
      handle.dispatch(plain, meta);
    });
  }

  /** The roster changed. */
  rosterChanged(list) {
    this.notify("rosterHandlers", "roster", list);
  }

  /** The lobby changed: `list` as `lobby` gives it. */
  lobbyChanged(list) {
    this.notify("lobbyHandlers", "lobby", list);
  }

  notify(handlers, what, list) {
    for (const handle of this.handles.values()) {
      for (const handler of handle[handlers]) {
        try {
          handler(list);
        } catch (error) {
          console.error(`the ${handle.name} plugin's ${what} handler failed`, error);
        }
      }
    }
  }
}
