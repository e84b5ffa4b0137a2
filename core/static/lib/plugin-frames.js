// The page's side of plugin frames (docs/plugins.md, "Web code in frames"): what
// the call page (plugins.js) and the dashboard (dashboard.js) do alike.
//
// A plugin's web code runs in an `<iframe sandbox="allow-scripts …">` without
// `allow-same-origin`: an opaque origin that reaches none of this page's
// cookies, storage, address or keys. The frame's document
// (`/plugin-frame/{plugin}/{kind}`) loads `/static/plugin-kit.js`, which talks
// to this page over `postMessage`, the versioned bridge below, and starts the
// plugin's module. This page answers only the calls its kind of frame offers
// and the plugin was granted; anything else gets `access-denied`.
//
// The bridge, version 1. Every message is an object with `bridge: "confab"` and
// `v: 1`. The frame sends calls `{ id, call, args }` and gets `{ re: id, ok: true,
// value }` or `{ re: id, ok: false, error: { code, message } }`; the page sends
// events `{ event, data }`. Calls without an answer (`resize`, `error`, `ready`,
// `pong`) carry no id.

/** The bridge's version; additive changes keep it, within SDK 1.x. */
export const BRIDGE_VERSION = 1;
/** How long a frame may take from loading to `ready`. */
export const START_TIMEOUT_MS = 10_000;
/** How often the page asks a frame whether it still answers, and how long it waits. */
export const PING_EVERY_MS = 5_000;
/** Fetches one frame may have waiting at once. */
export const MAX_FETCHES = 8;
/** Tallest a frame may make itself, in CSS pixels. */
export const MAX_HEIGHT = 4000;
/** The limits a page's frames get, unless the server says otherwise
 * (`plugins.frame_*`, docs/operations.md; the page passes them as `limits`). */
export const DEFAULT_LIMITS = Object.freeze({
  startMs: START_TIMEOUT_MS,
  pingMs: PING_EVERY_MS,
  maxFetches: MAX_FETCHES,
  maxHeight: MAX_HEIGHT,
});

/** The server's frame limits as a page's `data-plugin-limits` carries them (JSON), over the defaults. */
export function frameLimits(json) {
  let given = {};
  try {
    given = JSON.parse(json || "{}") ?? {};
  } catch {
    given = {};
  }
  const limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS)) {
    const value = Number(given[key]);
    if (Number.isInteger(value) && value > 0) limits[key] = value;
  }
  return limits;
}
/** Longest text of a report or notice. */
export const MAX_TEXT_CHARS = 300;
/** The colours and measures of app.css a frame gets, so it follows the page. */
export const THEME_VARIABLES = ["--bg", "--card", "--ink", "--muted", "--line", "--accent", "--accent-ink", "--danger", "--warn-bg", "--radius"];
/** Request headers a frame may not set: the page's credentials are not the plugin's. */
const WITHHELD_HEADERS = new Set(["cookie", "authorization", "proxy-authorization", "x-csrf-token"]);

/** An error the frame receives as `{ code, message }`. */
export class BridgeError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** At most `max` characters of `text`, cut by code points. */
export function clip(text, max = MAX_TEXT_CHARS) {
  return Array.from(String(text ?? "")).slice(0, max).join("");
}

/** The page's theme as the frame gets it: each variable's computed value. */
export function currentTheme(root = document.documentElement) {
  const style = getComputedStyle(root);
  const theme = {};
  for (const name of THEME_VARIABLES) theme[name] = style.getPropertyValue(name).trim();
  theme.colorScheme = matchMedia?.("(prefers-color-scheme: dark)")?.matches ? "dark" : "light";
  return theme;
}

/**
 * The URL a frame's `fetch(path)` reaches: under `/p/{plugin}/` of this server
 * and nowhere else (no `..`, no other host, no other plugin). Throws
 * `access-denied` otherwise.
 */
export function pluginUrl(plugin, path, origin = location.origin) {
  if (typeof path !== "string" || !path.startsWith("/") || path.startsWith("//")) {
    throw new BridgeError("bad-request", "a plugin fetches a path that starts with one /");
  }
  // Encoded slashes, backslashes and dots, and `;`, in the path (not the query):
  // a proxy in front of the server might decode them into a way out.
  if (/%2f|%5c|%2e|;/i.test(path.split(/[?#]/)[0])) {
    throw new BridgeError("bad-request", "a plugin's path has no encoded /, \\ or . and no ;");
  }
  const url = new URL(`/p/${plugin}${path}`, origin);
  const own = `/p/${plugin}`;
  if (url.origin !== new URL(origin).origin || !(url.pathname === own || url.pathname.startsWith(`${own}/`))) {
    throw new BridgeError("access-denied", `a plugin may fetch only its own routes under ${own}/`);
  }
  return url;
}

/** The request body a frame described (plugin-kit.js, `describeBody`). */
export function requestBody(body) {
  if (body == null) return undefined;
  if (typeof body.text === "string") return body.text;
  if (body.bytes instanceof ArrayBuffer || ArrayBuffer.isView(body.bytes)) return body.bytes;
  if (body.blob instanceof Blob) return body.blob;
  if (Array.isArray(body.form)) {
    const form = new FormData();
    for (const [name, value] of body.form) form.append(String(name), value instanceof Blob ? value : String(value));
    return form;
  }
  throw new BridgeError("bad-request", "the request body is not one a plugin may send");
}

/** The frame's headers, less those that carry the page's credentials. */
export function requestHeaders(entries) {
  const headers = new Headers();
  for (const [name, value] of Array.isArray(entries) ? entries : []) {
    if (!WITHHELD_HEADERS.has(String(name).toLowerCase())) headers.append(String(name), String(value));
  }
  return headers;
}

/**
 * Puts `link` (the full link, secret included) into the request body's `field`:
 * a JSON object's member, or a form field.
 */
export function withLink(body, field, link) {
  if (typeof field !== "string" || !field || field.length > 64) {
    throw new BridgeError("bad-request", "withLink names the field the link goes into");
  }
  if (body instanceof FormData) {
    body.set(field, link);
    return body;
  }
  let object;
  try {
    object = JSON.parse(typeof body === "string" ? body : "{}");
  } catch {
    throw new BridgeError("bad-request", "withLink needs a JSON object or form body");
  }
  if (!object || typeof object !== "object" || Array.isArray(object)) {
    throw new BridgeError("bad-request", "withLink needs a JSON object or form body");
  }
  object[field] = link;
  return JSON.stringify(object);
}

/**
 * One plugin's frame on the page. `kind` is `call-page`, `dashboard` or
 * `admin`; `calls` answers the bridge calls this kind of frame offers (each
 * `(args, frame) => value or promise`), `init()` gives what the frame starts
 * with, `report(text)` shows a problem on the page.
 */
/**
 * Whether the user just clicked or typed (in this page or in one of its frames:
 * activation reaches the ancestors of the frame it happened in). Browsers
 * without `navigator.userActivation` (Safari before 16.4) are taken at their
 * word.
 */
export function userActive() {
  return globalThis.navigator?.userActivation?.isActive ?? true;
}

export class PluginFrame {
  constructor({ plugin, src, kind, area, className, calls, init, report, csrf = null, linkSecret = false, fullLink = () => null, gesture = userActive, limits = DEFAULT_LIMITS }) {
    this.gesture = gesture;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.plugin = plugin;
    this.kind = kind;
    this.calls = calls;
    this.init = init;
    this.report = report;
    this.csrf = csrf;
    this.linkSecret = Boolean(linkSecret);
    this.fullLink = fullLink;
    this.fetches = 0;
    this.connected = false;
    this.ready = false;
    this.failed = false;
    this.pingSent = 0;
    this.pongSeen = 0;
    this.silent = false;

    this.element = document.createElement("section");
    this.element.className = className;
    this.element.dataset.plugin = plugin;
    this.iframe = document.createElement("iframe");
    this.iframe.setAttribute("sandbox", "allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads");
    this.iframe.setAttribute("title", `${plugin} plugin`);
    // A frame may play sound (a shared video) and show it full screen; nothing else
    // of the page's permissions (camera, microphone) reaches it.
    this.iframe.setAttribute("allow", "autoplay; fullscreen");
    this.iframe.setAttribute("referrerpolicy", "no-referrer");
    this.iframe.className = "plugin-frame";
    this.iframe.dataset.plugin = plugin;
    this.iframe.src = src;
    // The frame's document is the one the page chose: a frame that navigates
    // itself elsewhere (out from under its CSP) is taken away.
    this.loads = 0;
    this.iframe.addEventListener("load", () => {
      this.loads += 1;
      if (this.loads > 1) this.fail("left its frame and was stopped");
    });
    this.element.append(this.iframe);
    area.append(this.element);
    this.started = new Promise((resolve) => { this.resolveStarted = resolve; });
    this.startTimer = setTimeout(() => this.fail("could not start on this page"), this.limits.startMs);
  }

  /** The frame's window, to tell its messages from everyone else's. */
  get window() {
    return this.iframe.contentWindow;
  }

  post(message, transfer = []) {
    this.window?.postMessage({ bridge: "confab", v: BRIDGE_VERSION, ...message }, "*", transfer);
  }

  /** An event for the frame. */
  emit(event, data, transfer = []) {
    if (this.connected && !this.failed) this.post({ event, data }, transfer);
  }

  fail(why) {
    clearTimeout(this.startTimer);
    if (this.failed) return;
    this.failed = true;
    this.element.remove();
    this.resolveStarted(false);
    this.report(`The ${this.plugin} plugin ${why}.`);
  }

  /** A message from this frame's window. */
  async receive(message) {
    if (!message || message.bridge !== "confab" || message.v !== BRIDGE_VERSION || this.failed) return;
    const { id, call, args } = message;
    switch (call) {
      case "ready":
        if (this.ready) return;
        clearTimeout(this.startTimer);
        this.ready = true;
        this.resolveStarted(true);
        this.watch();
        return;
      case "resize": {
        const height = Math.max(0, Math.min(this.limits.maxHeight, Math.ceil(Number(args?.height) || 0)));
        this.iframe.style.height = `${height}px`;
        this.element.hidden = height === 0;
        return;
      }
      case "error":
        if (args?.fatal) {
          console.error(`the ${this.plugin} plugin's frame did not start`, args?.message);
          this.fail("could not start on this page");
          return;
        }
        if (!this.reportedError) {
          this.reportedError = true;
          this.report(`The ${this.plugin} plugin ran into a problem: ${clip(args?.message, 200)}`);
        }
        console.error(`the ${this.plugin} plugin's frame failed`, args?.message);
        return;
      case "pong":
        this.pongSeen = Math.max(this.pongSeen, Number(args?.n) || 0);
        if (this.silent && this.pongSeen === this.pingSent) this.silent = false;
        return;
      default:
        break;
    }
    if (typeof id !== "number") return;
    try {
      let value;
      if (call === "hello") {
        this.connected = true;
        value = { ...this.init(), plugin: this.plugin, page: this.kind, linkSecret: this.linkSecret, theme: currentTheme(), bridge: BRIDGE_VERSION };
      } else if (call === "fetch") {
        value = await this.fetch(args ?? {});
      } else if (Object.hasOwn(this.calls, call)) {
        value = await this.calls[call](args ?? {}, this);
      } else {
        throw new BridgeError("access-denied", `a ${this.kind} frame may not call ${clip(call, 40)}`);
      }
      const transfer = value?.body instanceof ArrayBuffer ? [value.body] : [];
      this.post({ re: id, ok: true, value }, transfer);
    } catch (error) {
      const code = error instanceof BridgeError ? error.code : "failed";
      this.post({ re: id, ok: false, error: { code, message: clip(error?.message || error, 300) } });
    }
  }

  /** Asks the frame every few seconds whether it still answers; says so once when it does not. */
  watch() {
    this.pinger = setInterval(() => {
      if (this.failed || !this.iframe.isConnected) {
        clearInterval(this.pinger);
        return;
      }
      if (this.pongSeen < this.pingSent && !this.silent) {
        this.silent = true;
        this.report(`The ${this.plugin} plugin is not responding; the rest of the page goes on.`);
      }
      this.pingSent += 1;
      this.post({ event: "ping", data: { n: this.pingSent } });
    }, this.limits.pingMs);
  }

  /** `fetch` of the plugin's own routes as the viewer, for the frame. */
  async fetch({ path, method = "GET", headers, body, withLink: linkField, link, download }) {
    const url = pluginUrl(this.plugin, path);
    const { maxFetches } = this.limits;
    if (this.fetches >= maxFetches) throw new BridgeError("busy", `at most ${maxFetches} requests at once`);
    let payload = requestBody(body);
    const verb = String(method).toUpperCase();
    if (linkField !== undefined) {
      if (!this.linkSecret) {
        throw new BridgeError("access-denied", `the operator has not granted web.link-secret to the ${this.plugin} plugin`);
      }
      // The full link leaves only on the user's say: a frame cannot collect the
      // links of a page in the background.
      if (!this.gesture()) {
        throw new BridgeError("needs-gesture", "the full link goes only right after a click or key press of the user's");
      }
      if (verb === "GET" || verb === "HEAD" || !(payload === undefined || typeof payload === "string" || payload instanceof FormData)) {
        throw new BridgeError("bad-request", "withLink goes into the JSON or form body of a POST, PUT or PATCH");
      }
      const full = this.fullLink(link);
      if (!full) throw new BridgeError("no-secret", "this browser does not have that link's secret");
      payload = withLink(payload, linkField, full);
    }
    const sent = requestHeaders(headers);
    if (this.csrf) sent.set("x-csrf-token", this.csrf);
    this.fetches += 1;
    try {
      const response = await fetch(url, {
        method: verb,
        headers: sent,
        body: payload,
        credentials: "same-origin",
        // A plugin's redirect is not followed with the viewer's cookies.
        redirect: "error",
        cache: "no-store",
      });
      const answer = { status: response.status, statusText: response.statusText, headers: [...response.headers] };
      if (download && response.ok) {
        const blob = await response.blob();
        saveAs(blob, String(download));
        // The page keeps the last file it saved for the frame, where the page's
        // own scripts (and tests) can look at it again.
        this.element.lastDownload = blob;
        this.element.dataset.download = clip(download, 100);
        return { ...answer, body: null };
      }
      return { ...answer, body: await response.arrayBuffer() };
    } finally {
      this.fetches -= 1;
    }
  }
}

/** Saves a file the page fetched for a frame (a calendar file with the full link in it). */
function saveAs(blob, name) {
  const url = URL.createObjectURL(blob);
  const anchor = document.createElement("a");
  anchor.href = url;
  anchor.download = clip(name, 100).replace(/[\\/]/g, "_") || "download";
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * The frames of one page: routes each `message` event to the frame whose window
 * sent it (no other window is listened to), and tells every frame when the
 * page's colours change.
 */
export class PluginFrames {
  constructor() {
    this.frames = [];
    addEventListener("message", (event) => {
      const frame = this.frames.find((f) => f.window && f.window === event.source);
      if (frame) frame.receive(event.data);
    });
    matchMedia?.("(prefers-color-scheme: dark)")?.addEventListener?.("change", () => {
      for (const frame of this.frames) frame.emit("theme", currentTheme());
    });
  }

  add(options) {
    const frame = new PluginFrame(options);
    this.frames.push(frame);
    return frame;
  }

  /** Sends an event to every frame that is ready. */
  emit(event, data) {
    for (const frame of this.frames) frame.emit(event, data);
  }
}
