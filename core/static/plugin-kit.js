// The plugin kit: what a plugin's frame loads (`/plugin-frame/{plugin}/{kind}`)
// to run the plugin's web module. The frame is sandboxed without
// `allow-same-origin`: it has no cookies, no storage of Confab's and no network
// of its own. The kit talks to the page over the bridge (lib/plugin-frames.js
// is the page's side), hides it behind the handle the module's default export
// is called with, sizes the frame to its content, follows the page's colours and
// reports errors to the page. sdk/README.md ("Web code") documents the handle;
// it is versioned with the SDK, additively within 1.x.
//
//   export default function setup(plugin) { … }   // plugin: the handle below

/** The kit's version: the SDK version that documents it. */
export const KIT_VERSION = "1.3.0";
/** The bridge's version (lib/plugin-frames.js). */
const BRIDGE_VERSION = 1;

const root = document.getElementById("plugin");
const parentWindow = window.parent;
let nextId = 1;
const pending = new Map();
const listeners = new Map();

function post(message, transfer = []) {
  parentWindow.postMessage({ bridge: "confab", v: BRIDGE_VERSION, ...message }, "*", transfer);
}

/** A call to the page; resolves with its value, rejects with an Error that has a `code`. */
function call(name, args = {}, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    post({ id, call: name, args }, transfer);
  });
}

function on(event, handler) {
  const list = listeners.get(event) ?? [];
  list.push(handler);
  listeners.set(event, list);
  return () => listeners.set(event, (listeners.get(event) ?? []).filter((h) => h !== handler));
}

function fire(event, ...values) {
  for (const handler of listeners.get(event) ?? []) {
    try {
      handler(...values);
    } catch (error) {
      reportError(error);
    }
  }
}

addEventListener("message", (event) => {
  // Only the page that framed us speaks the bridge.
  if (event.source !== parentWindow) return;
  const message = event.data;
  if (!message || message.bridge !== "confab" || message.v !== BRIDGE_VERSION) return;
  if (typeof message.re === "number") {
    const waiting = pending.get(message.re);
    if (!waiting) return;
    pending.delete(message.re);
    if (message.ok) waiting.resolve(message.value);
    else {
      const error = new Error(message.error?.message || "the page refused");
      error.code = message.error?.code || "failed";
      waiting.reject(error);
    }
    return;
  }
  if (message.event === "ping") {
    post({ call: "pong", args: { n: message.data?.n } });
    return;
  }
  fire(message.event, message.data);
});

function reportError(error, fatal = false) {
  const text = error?.message || String(error);
  console.error(error);
  post({ call: "error", args: { message: text, fatal } });
}
addEventListener("error", (event) => reportError(event.error ?? event.message));
addEventListener("unhandledrejection", (event) => reportError(event.reason));

/** The page's colours on this frame's root. */
function applyTheme(theme) {
  if (!theme) return;
  for (const [name, value] of Object.entries(theme)) {
    if (name.startsWith("--") && typeof value === "string" && value) {
      document.documentElement.style.setProperty(name, value);
    }
  }
  if (theme.colorScheme === "dark" || theme.colorScheme === "light") {
    document.documentElement.style.colorScheme = theme.colorScheme;
  }
}

/** The frame's height, to the page whenever it changes. */
function followSize() {
  let last = -1;
  const measure = () => {
    const height = root.hidden ? 0 : Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height !== last) {
      last = height;
      post({ call: "resize", args: { height } });
    }
  };
  new ResizeObserver(measure).observe(document.body);
  new MutationObserver(measure).observe(root, { attributes: true, attributeFilter: ["hidden"] });
  measure();
}

function toBytes(data) {
  if (typeof data === "string") return new TextEncoder().encode(data);
  if (data instanceof Uint8Array) return new Uint8Array(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  throw new TypeError("send takes a Uint8Array, an ArrayBuffer or a string");
}

/** A request body as the bridge carries it (lib/plugin-frames.js, `requestBody`). */
async function describeBody(body) {
  if (body == null) return null;
  if (typeof body === "string") return { text: body };
  if (body instanceof URLSearchParams) return { text: body.toString() };
  if (body instanceof FormData) return { form: [...body.entries()] };
  if (body instanceof Blob) return { blob: body };
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return { bytes: toBytes(body) };
  throw new TypeError("fetch takes a string, URLSearchParams, FormData, Blob or bytes as its body");
}

/**
 * `fetch(`/p/{plugin}${path}`)` as the user who views the page, through the
 * page: the frame never holds the session's cookie or token. `options.withLink`
 * names a field of the JSON or form body the page fills with the full link
 * (`options.link`: which one, on the dashboard); it needs `web.link-secret`.
 * `options.download` saves the answer as that file name instead of handing it
 * to the frame.
 */
async function pluginFetch(path, init = {}, options = {}) {
  const headers = [...new Headers(init.headers || {})];
  if (init.body instanceof URLSearchParams && !headers.some(([name]) => name === "content-type")) {
    headers.push(["content-type", "application/x-www-form-urlencoded;charset=UTF-8"]);
  }
  const body = await describeBody(init.body);
  const answer = await call("fetch", {
    path,
    method: init.method || "GET",
    headers,
    body,
    withLink: options.withLink,
    link: options.link,
    download: options.download,
  });
  const empty = answer.body == null || [204, 205, 304].includes(answer.status);
  return new Response(empty ? null : answer.body, {
    status: answer.status,
    statusText: answer.statusText,
    headers: answer.headers,
  });
}

/**
 * Messages fired as `event`, held back (up to 100) until the module's first
 * handler: `deliver(bytes, meta)` for each arriving one, and `onMessage(handler)`
 * for the handle, which returns an unsubscribe function that works once.
 */
function heldMessages(event) {
  const early = [];
  let handlers = 0;
  return {
    deliver(bytes, meta) {
      if (handlers === 0) {
        if (early.length < 100) early.push([bytes, meta]);
        return;
      }
      fire(event, bytes, meta);
    },
    onMessage(handler) {
      handlers += 1;
      const off = on(event, handler);
      // Held-back messages after this call returns, so the handler may use what
      // it returned.
      queueMicrotask(() => {
        for (const [bytes, meta] of early.splice(0)) fire(event, bytes, meta);
      });
      let done = false;
      return () => {
        if (done) return;
        done = true;
        handlers -= 1;
        off();
      };
    },
  };
}

/**
 * `plugin.activity`: the plugin's shared activity on the call (sdk/README.md,
 * "Shared activities"). The page holds it and seals everything with the call's
 * keys; this side keeps a copy of what the page said, to read synchronously.
 */
function activityHandle(start) {
  let presence = start ?? { active: false, joined: false, host: null, members: [] };
  let state = start?.state ?? null;
  let waitingFor = [];
  const messages = heldMessages("activity-message");
  on("activity", (value) => {
    const left = presence.joined && !value.joined;
    presence = value;
    if (left || !value.active) state = null;
    fire("activity-presence", value);
  });
  on("activitySync", ({ state: entries, complete, seq }) => {
    state = { ...entries };
    fire("activity-sync", { state: { ...entries }, complete, seq });
  });
  on("activityState", (change) => {
    if (!state || change.key.startsWith("~")) return;
    if (change.value === undefined) delete state[change.key];
    else state[change.key] = change.value;
    fire("activity-state", change);
  });
  on("activitySuspension", (value) => {
    waitingFor = value.waitingFor ?? [];
    fire("activity-suspension", value);
  });
  on("activityMessage", ({ bytes, from, role }) => messages.deliver(bytes, { from, role }));
  return {
    /** `{ active, joined, host, members: [{ participant, role, name }] }`. */
    presence: () => presence,
    onPresence: (handler) => on("activity-presence", handler),
    /** Starts the activity on the call, or joins the one running. */
    join: () => call("activityJoin").then(() => undefined),
    leave: () => call("activityLeave").then(() => undefined),
    /** The role of `participant` (host, member, guest), or null if not in it. */
    role: (participant) => presence.members.find((m) => m.participant === participant)?.role ?? null,
    /** Sends `data` to the others in the activity, or to `options.to` (participant numbers). */
    send(data, options = {}) {
      const bytes = toBytes(data);
      return call("activitySend", { data: bytes, to: options.to }, [bytes.buffer]).then(() => undefined);
    },
    onMessage: messages.onMessage,
    state: {
      /** Whether the state arrived (after `join`). */
      ready: () => state !== null,
      get: (key) => (state ? state[key] : undefined),
      /** Every key and value. */
      all: () => ({ ...(state ?? {}) }),
      /** Sets `key` for everyone; applied here too when the server has put it in order. */
      set: (key, value) => call("activitySet", { key, value }).then(() => undefined),
      delete: (key) => call("activitySet", { key, remove: true }).then(() => undefined),
      /** `handler({ key, value, from, role, seq })` for each change, in the same order everywhere. */
      onChange: (handler) => on("activity-state", handler),
      /** `handler({ state, complete })` once the whole state arrived (after `join`). */
      onSync: (handler) => on("activity-sync", handler),
    },
    /** Keeps changes to `key` (or every key `prefix*` starts) to these roles. */
    restrict: (key, roles) => call("activityRestrict", { key, roles }).then(() => undefined),
    /** Tells everyone the activity waits for me (`reason`, e.g. "buffering"). */
    suspend: (reason) => call("activitySuspend", { reason: String(reason ?? "") }).then(() => undefined),
    resume: () => call("activityResume").then(() => undefined),
    /** Who the activity waits for: `[{ participant, name, reason }]`. */
    waitingFor: () => waitingFor,
    onSuspension: (handler) => on("activity-suspension", handler),
  };
}

/** The handle of a call-page frame. */
function callPageHandle(start) {
  let me = start.me ?? null;
  let participants = start.participants ?? [];
  let lobby = start.lobby ?? [];
  const messages = heldMessages("plugin-message");
  on("me", (value) => { me = value; });
  on("roster", (list) => { participants = list; fire("participants", list); });
  on("lobby", (list) => { lobby = list; fire("lobby-list", list); });
  on("message", ({ bytes, meta }) => messages.deliver(bytes, meta));
  return {
    signedIn: Boolean(start.signedIn),
    /** Sends `data` (≤ 32 KiB less 37 bytes), sealed by the page, to the plugin. */
    send(data) {
      const bytes = toBytes(data);
      return call("send", { data: bytes }, [bytes.buffer]).then(() => undefined);
    },
    onMessage: messages.onMessage,
    me: () => me,
    participants: () => participants,
    onParticipants: (handler) => on("participants", handler),
    lobby: () => lobby,
    onLobby: (handler) => on("lobby-list", handler),
    /** The call's address, without its secret (the page keeps that). */
    link: () => start.address ?? null,
    fetch: pluginFetch,
    captureStill: (participant) => call("captureStill", { participant }),
    notice: (text) => call("notice", { text: String(text ?? "") }).then(() => undefined),
    /** Asks the page to lower the call's audio while this plays something (`on`), or no
     * longer; the person can put it back, and the page says so. */
    duckCallAudio: (on) => call("duckCallAudio", { on: Boolean(on) }).then(() => undefined),
    /** The page shows the link `id` with this call's secret, to copy. */
    showLink: (id, label) => call("showLink", { id, label }).then(() => undefined),
    activity: activityHandle(start.activity),
  };
}

/** The handle of a dashboard or administrators' frame. */
function dashboardHandle(start) {
  let links = start.links ?? [];
  const actions = [];
  on("links", (list) => { links = list; });
  on("linkAction", async ({ index, ticket, link }) => {
    let error = null;
    try {
      await actions[index]?.(link);
    } catch (failure) {
      error = failure?.message || String(failure);
    }
    post({ call: "linkActionDone", args: { ticket, error } });
  });
  return {
    admin: Boolean(start.admin),
    /** The links on the page: `{ id, title, url, status, when, secret }`; `url` has no secret. */
    links: () => links,
    /** A button on each of the page's active links; `handler(link)` runs here. */
    addLinkAction(label, handler) {
      actions.push(handler);
      return call("addLinkAction", { label: String(label), index: actions.length - 1 }).then(() => undefined);
    },
    fetch: pluginFetch,
    report: (message) => call("report", { message: String(message ?? "") }).then(() => undefined),
  };
}

async function start() {
  const start = await call("hello", { kit: KIT_VERSION });
  applyTheme(start.theme);
  on("theme", applyTheme);
  followSize();
  const base = {
    name: start.plugin,
    page: start.page,
    element: root,
    kit: KIT_VERSION,
  };
  const handle = Object.assign(base, start.page === "call-page" ? callPageHandle(start) : dashboardHandle(start));
  const module = await import(root.dataset.module);
  if (typeof module.default !== "function") throw new TypeError("the module has no default export function");
  await module.default(handle);
  post({ call: "ready" });
}

if (root && parentWindow !== window) {
  start().catch((error) => reportError(error, true));
}
