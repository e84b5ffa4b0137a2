// Plugin web code in sandboxed frames: the page's side (core/static/plugins.js and
// lib/plugin-frames.js) and the frame's side (core/static/plugin-kit.js), joined
// by a fake postMessage channel that clones what it carries as browsers do. The
// example hello plugin's real module runs in the "frame". Run with
// `node --test core/tests/js/`.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { register } from "node:module";

register("./static-paths.mjs", import.meta.url);

// ---- a small DOM: elements that hold children, listeners and attributes ----
class FakeElement {
  constructor(tag) {
    this.tag = tag;
    this.children = [];
    this.dataset = {};
    this.style = { setProperty: (name, value) => { this.style[name] = value; } };
    this.attributes = {};
    this.listeners = {};
    this.hidden = false;
    this.textContent = "";
    this.className = "";
    this.parent = null;
  }
  append(...nodes) {
    for (const node of nodes) {
      if (node instanceof FakeElement) node.parent = this;
      this.children.push(node);
    }
  }
  remove() {
    if (this.parent) this.parent.children = this.parent.children.filter((c) => c !== this);
    this.parent = null;
  }
  get isConnected() {
    return this.parent !== null;
  }
  setAttribute(name, value) {
    this.attributes[name] = String(value);
  }
  getAttribute(name) {
    return this.attributes[name] ?? null;
  }
  addEventListener(type, handler) {
    (this.listeners[type] ??= []).push(handler);
  }
  click() {
    for (const handler of this.listeners.click ?? []) handler({ type: "click" });
  }
  getBoundingClientRect() {
    return { height: 120 };
  }
  /** Every descendant's text, in order. */
  text() {
    return [this.textContent, ...this.children.map((c) => (c instanceof FakeElement ? c.text() : String(c)))].join("");
  }
  find(tag) {
    for (const child of this.children) {
      if (!(child instanceof FakeElement)) continue;
      if (child.tag === tag) return child;
      const inner = child.find(tag);
      if (inner) return inner;
    }
    return null;
  }
}

// ---- two windows, one channel: the page (PARENT) and the plugin's frame (FRAME) ----
const listeners = [];
function deliver(source, message, transfer) {
  const data = structuredClone(message, { transfer });
  setTimeout(() => {
    for (const listener of [...listeners]) listener({ source, data });
  }, 0);
}
const PARENT = { postMessage: (message, _origin, transfer = []) => deliver(FRAME, message, transfer) };
const FRAME = { postMessage: (message, _origin, transfer = []) => deliver(PARENT, message, transfer) };

const root = new FakeElement("main");
root.id = "plugin";
root.dataset.module = new URL("../../../examples/hello-plugin/static/hello.js", import.meta.url).href;
const documentElement = new FakeElement("html");
globalThis.window = globalThis;
globalThis.location = { origin: "https://confab.example" };
globalThis.parent = PARENT;
globalThis.addEventListener = (type, handler) => {
  if (type === "message") listeners.push(handler);
};
globalThis.document = {
  createElement: (tag) => {
    const element = new FakeElement(tag);
    if (tag === "iframe") element.contentWindow = FRAME;
    return element;
  },
  getElementById: (id) => (id === "plugin" ? root : null),
  documentElement,
  body: new FakeElement("body"),
};
globalThis.getComputedStyle = () => ({ getPropertyValue: (name) => (name === "--bg" ? " #121417" : "") });
globalThis.matchMedia = () => ({ matches: true, addEventListener() {} });
globalThis.ResizeObserver = class { observe() {} };
globalThis.MutationObserver = class { observe() {} };
const fetched = [];
globalThis.fetch = async (url, init) => {
  fetched.push({ url: String(url), init });
  return new Response(JSON.stringify({ ok: true }), { status: 200, headers: { "content-type": "application/json" } });
};

const { CallPagePlugins } = await import("../../static/plugins.js");
const frames = await import("../../static/lib/plugin-frames.js");

const ROSTER = [
  { participant: 1, name: "Ana", guest: false },
  { participant: 2, name: "Bo", guest: true },
];
const sent = [];
const reports = [];
const notices = [];
const area = new FakeElement("div");
const page = new CallPagePlugins({
  modules: [{ plugin: "hello", frame: "/plugin-frame/hello/call-page", link_secret: false }],
  area,
  send: (message) => sent.push(message),
  me: () => 1,
  participants: () => ROSTER,
  report: (text) => reports.push(text),
  seal: async (bytes) => new Uint8Array([0xee, ...bytes]),
  open: async (bytes) => ({ bytes: bytes.slice(1), from: 2, encrypted: true }),
  link: () => "https://confab.example/j/LinkForTests1#k=AAAAAAAAAAAAAAAAAAAAAA",
  signedIn: true,
  csrf: "csrf-token",
  notice: (text) => notices.push(text),
});
const loading = page.load();
// The frame's document loads the kit, which says hello to the page.
await import("../../static/plugin-kit.js");
await loading;
const frame = page.frames.get("hello");
// The page keeps pinging its frames; the test process ends once the tests do.
after(() => clearInterval(frame.pinger));

/** Waits for the channel to carry what is in flight. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

/** A bridge call as any code in the frame could send it; resolves with the page's answer. */
let rawIds = 1_000_000;
function rawCall(call, args = {}) {
  rawIds += 1;
  const id = rawIds;
  return new Promise((resolve) => {
    listeners.push(({ source, data }) => {
      if (source === PARENT && data.re === id) resolve(data);
    });
    PARENT.postMessage({ bridge: "confab", v: 1, id, call, args }, "*");
  });
}

test("the frame starts the plugin's module with the call as the page sees it, and no secret", async () => {
  assert.equal(frame.ready, true);
  assert.equal(reports.length, 0, reports.join("; "));
  assert.equal(root.find("h3").textContent, "Hello");
  assert.equal(root.find("button").textContent, "Wave");
  // The page's colours reach the frame's root.
  assert.equal(documentElement.style["--bg"], "#121417");
  assert.equal(documentElement.style.colorScheme, "dark");
  // What the frame was told: the address without the secret.
  const hello = await rawCall("hello");
  assert.equal(hello.value.address, "https://confab.example/j/LinkForTests1");
  assert.ok(!JSON.stringify(hello.value).includes("#k="), JSON.stringify(hello.value));
  assert.ok(!JSON.stringify(hello.value).includes("csrf-token"));
});

test("a wave is sealed by the page and sent as a plugin message", async () => {
  sent.length = 0;
  root.find("button").click();
  await settle();
  assert.equal(sent.length, 1);
  assert.equal(sent[0].type, "plugin");
  assert.equal(sent[0].plugin, "hello");
  const bytes = Buffer.from(sent[0].payload, "base64");
  assert.equal(bytes[0], 0xee, "sealed by the page");
  assert.equal(bytes.subarray(1).toString(), "Ana waves");
});

test("what the page opens reaches the module, in order", async () => {
  for (const text of ["Bo waves", "Bo waves again"]) {
    page.deliver("hello", Buffer.from([0xee, ...Buffer.from(text)]).toString("base64"));
  }
  await settle();
  const items = root.find("ul").children.map((li) => li.textContent);
  assert.deepEqual(items, ["Bo waves", "Bo waves again"]);
});

test("the roster follows the page", async () => {
  const hello = await rawCall("hello");
  assert.deepEqual(hello.value.participants, ROSTER);
  sent.length = 0;
  page.rosterChanged([{ participant: 1, name: "Ana Lima", guest: false }]);
  await settle();
  root.find("button").click();
  await settle();
  assert.equal(Buffer.from(sent[0].payload, "base64").subarray(1).toString(), "Ana Lima waves");
});

test("calls a call-page frame may not make are refused with access-denied", async () => {
  for (const call of ["addLinkAction", "report", "linkActionDone", "steal"]) {
    const answer = await rawCall(call, { label: "x" });
    assert.equal(answer.ok, false, call);
    assert.equal(answer.error.code, "access-denied", call);
  }
});

test("fetch reaches only the plugin's own routes, as the user, and never asks for the secret unasked", async () => {
  fetched.length = 0;
  const ok = await rawCall("fetch", { path: "/roster?x=1", method: "POST", headers: [["content-type", "application/json"], ["x-csrf-token", "forged"], ["cookie", "a=b"], ["authorization", "Bearer x"]], body: { text: "{}" } });
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.equal(ok.value.status, 200);
  assert.equal(fetched.length, 1);
  assert.equal(fetched[0].url, `${location.origin}/p/hello/roster?x=1`);
  const headers = fetched[0].init.headers;
  assert.equal(headers.get("x-csrf-token"), "csrf-token", "the page's token, not the frame's");
  assert.equal(headers.get("cookie"), null);
  assert.equal(headers.get("authorization"), null);
  assert.equal(fetched[0].init.redirect, "error", "a plugin's redirect is not followed as the user");
  for (const path of ["/../../api/v1/links", "/%2e%2e/%2e%2e/api/v1/links", "//evil.example/x", "/../other/x", "relative"]) {
    const refused = await rawCall("fetch", { path });
    assert.equal(refused.ok, false, path);
    assert.ok(["access-denied", "bad-request"].includes(refused.error.code), `${path}: ${refused.error.code}`);
  }
  const link = await rawCall("fetch", { path: "/invites", method: "POST", body: { text: "{}" }, withLink: "url" });
  assert.equal(link.error.code, "access-denied", "web.link-secret was not granted");
  assert.equal(fetched.length, 1, "nothing else went out");
});

test("notices are cut to 300 characters and name their plugin; showLink gives the page's link for an id", async () => {
  await rawCall("notice", { text: "é".repeat(400) });
  assert.equal(notices.at(-1), `hello: ${"é".repeat(300)}`);
  await rawCall("notice", { text: "Confab: your connection is not secure" });
  assert.equal(notices.at(-1), "hello: Confab: your connection is not secure");
  const refused = await rawCall("showLink", { id: "../x" });
  assert.equal(refused.error.code, "bad-request");
});

test("a frame's size, its errors (once) and its failure to start reach the page", async () => {
  PARENT.postMessage({ bridge: "confab", v: 1, call: "resize", args: { height: 99999 } }, "*");
  await settle();
  assert.equal(frame.iframe.style.height, `${frames.MAX_HEIGHT}px`);
  PARENT.postMessage({ bridge: "confab", v: 1, call: "resize", args: { height: 0 } }, "*");
  await settle();
  assert.equal(frame.element.hidden, true, "an empty frame takes no room");
  reports.length = 0;
  for (const message of ["boom", "boom again"]) {
    PARENT.postMessage({ bridge: "confab", v: 1, call: "error", args: { message } }, "*");
  }
  await settle();
  assert.deepEqual(reports, ["The hello plugin ran into a problem: boom"]);
});

test("messages from other windows are ignored", async () => {
  sent.length = 0;
  for (const listener of [...listeners]) {
    listener({ source: {}, data: { bridge: "confab", v: 1, id: 5, call: "send", args: { data: new Uint8Array([1]) } } });
  }
  await settle();
  assert.equal(sent.length, 0);
});

/** A call-page frame of `plugin` with no calls, whose reports go to `said`. */
function bareFrame(plugin, said, options = {}) {
  return new frames.PluginFrame({
    plugin,
    src: `/plugin-frame/${plugin}/call-page`,
    kind: "call-page",
    area,
    className: "plugin-area",
    calls: {},
    init: () => ({}),
    report: (text) => said.push(text),
    ...options,
  });
}

test("a frame that never starts is taken away and reported", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const lost = [];
  const host = bareFrame("slow", lost);
  assert.equal(host.element.isConnected, true);
  t.mock.timers.tick(frames.START_TIMEOUT_MS);
  assert.deepEqual(lost, ["The slow plugin could not start on this page."]);
  assert.equal(host.element.isConnected, false);
});

test("a frame that stops answering pings is reported once, and again only after it recovered", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const said = [];
  const host = bareFrame("stuck", said);
  t.after(() => clearInterval(host.pinger));
  const bridge = { bridge: "confab", v: 1 };
  await host.receive({ ...bridge, call: "ready" });
  const stuck = "The stuck plugin is not responding; the rest of the page goes on.";
  // The first ping goes out; it is unanswered when the next is due.
  t.mock.timers.tick(frames.PING_EVERY_MS);
  assert.deepEqual(said, []);
  t.mock.timers.tick(frames.PING_EVERY_MS);
  assert.deepEqual(said, [stuck]);
  // Still stuck: said once, not every five seconds.
  t.mock.timers.tick(frames.PING_EVERY_MS * 3);
  assert.deepEqual(said, [stuck]);
  assert.equal(host.element.isConnected, true, "a slow frame stays; the call goes on");
  // It answers the latest ping: well again, so a new hang is worth saying.
  await host.receive({ ...bridge, call: "pong", args: { n: host.pingSent } });
  assert.equal(host.silent, false);
  t.mock.timers.tick(frames.PING_EVERY_MS);
  assert.deepEqual(said, [stuck]);
  t.mock.timers.tick(frames.PING_EVERY_MS);
  assert.deepEqual(said, [stuck, stuck]);
  // An answer to an older ping is not an answer to the latest.
  await host.receive({ ...bridge, call: "pong", args: { n: host.pingSent - 1 } });
  assert.equal(host.silent, true);
});

test("pluginUrl, requestHeaders and withLink", () => {
  const origin = "https://confab.example";
  assert.equal(frames.pluginUrl("cal", "/feed?x=1", origin).href, "https://confab.example/p/cal/feed?x=1");
  assert.throws(() => frames.pluginUrl("cal", "/../calendar2/x", origin), { code: "access-denied" });
  // Encoded slashes, backslashes and dots, and `;`, are refused in the path (a
  // proxy might decode them into a way out), not in the query.
  for (const path of ["/..%2f..%2fapi", "/..%5C..%5Capi", "/%2E%2E/x", "/..;/api"]) {
    assert.throws(() => frames.pluginUrl("cal", path, origin), { code: "bad-request" }, path);
  }
  assert.equal(frames.pluginUrl("cal", "/shared?network=10.0.0.0%2F24", origin).search, "?network=10.0.0.0%2F24");
  const headers = frames.requestHeaders([["Cookie", "a"], ["X-CSRF-Token", "b"], ["accept", "text/calendar"]]);
  assert.deepEqual([...headers], [["accept", "text/calendar"]]);
  assert.equal(frames.withLink('{"recipients":["a@b"]}', "url", "L#k=S"), '{"recipients":["a@b"],"url":"L#k=S"}');
  const form = new FormData();
  assert.equal(frames.withLink(form, "url", "L#k=S").get("url"), "L#k=S");
  assert.throws(() => frames.withLink("[1]", "url", "L"), { code: "bad-request" });
  assert.throws(() => frames.withLink("{}", "", "L"), { code: "bad-request" });
});

test("a frame has at most MAX_FETCHES requests waiting; the next is told busy", async () => {
  const saved = globalThis.fetch;
  const waiting = [];
  globalThis.fetch = () => new Promise((resolve) => waiting.push(resolve));
  try {
    const answers = [];
    for (let i = 0; i <= frames.MAX_FETCHES; i += 1) answers.push(rawCall("fetch", { path: `/slow/${i}` }));
    const refused = await answers.at(-1);
    assert.equal(refused.ok, false);
    assert.equal(refused.error.code, "busy");
    assert.equal(waiting.length, frames.MAX_FETCHES);
    for (const resolve of waiting) resolve(new Response("done"));
    for (const answer of await Promise.all(answers.slice(0, -1))) assert.equal(answer.value.status, 200);
    // Once they are answered, the frame may ask again.
    globalThis.fetch = saved;
    assert.equal((await rawCall("fetch", { path: "/again" })).ok, true);
  } finally {
    globalThis.fetch = saved;
  }
});

test("a flood of sends is told busy before it reaches the server's limit", async () => {
  // The page's clock stands still: the burst is all there is.
  const saved = page.now;
  let clock = 1_000_000;
  page.now = () => clock;
  page.sends = { tokens: 20, at: clock };
  try {
    sent.length = 0;
    const answers = [];
    for (let i = 0; i < 40; i += 1) answers.push(rawCall("send", { data: new Uint8Array([i]) }));
    const results = await Promise.all(answers);
    const busy = results.filter((r) => !r.ok && r.error.code === "busy").length;
    assert.equal(sent.length, 20);
    assert.equal(busy, 20);
    // A second later, ten more may go.
    clock += 1000;
    const later = await Promise.all(Array.from({ length: 11 }, (_, i) => rawCall("send", { data: new Uint8Array([i]) })));
    assert.equal(later.filter((r) => r.ok).length, 10);
  } finally {
    page.now = saved;
  }
});

test("after a no, the page does not ask for a still again for a while", async () => {
  let asked = 0;
  page.confirm = () => {
    asked += 1;
    return false;
  };
  assert.equal((await rawCall("captureStill", { participant: 2 })).value, null);
  const again = await rawCall("captureStill", { participant: 2 });
  assert.equal(again.error.code, "busy");
  assert.equal(asked, 1, "asked once");
});

/** The first element under `element` with class `name`. */
function byClass(element, name) {
  for (const child of element.children) {
    if (!(child instanceof FakeElement)) continue;
    if (child.className.split(" ").includes(name)) return child;
    const inner = byClass(child, name);
    if (inner) return inner;
  }
  return null;
}

test("the hello plugin's shared note: joined through the page, sealed there, and handed to a late joiner", async () => {
  page.sends = { tokens: 20, at: page.now() };
  sent.length = 0;
  const toggle = byClass(root, "note-toggle");
  const note = byClass(root, "note");
  assert.equal(toggle.textContent, "Start a shared note");
  assert.equal(note.hidden, true);
  toggle.click();
  await settle();
  assert.deepEqual(sent, [{ type: "activity_join", plugin: "hello" }]);
  // The server says who is in it, then the (empty) state.
  page.activityMessage({ type: "activity", plugin: "hello", host: 1, members: [{ participant: 1, role: "host" }] });
  page.activityMessage({ type: "activity_snapshot", plugin: "hello", seq: 0, from: null, payload: null, next: 1, complete: true });
  await settle();
  assert.equal(byClass(root, "note-status").textContent, "Ana started a shared note · 1 in it");
  assert.equal(note.hidden, false);
  assert.equal(toggle.textContent, "Leave the note");
  // What is typed leaves the page sealed, as an update.
  sent.length = 0;
  note.value = "Meet at noon";
  for (const handler of note.listeners.input) handler({ type: "input" });
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(sent.length, 1, JSON.stringify(sent));
  assert.equal(sent[0].type, "activity_update");
  const sealed = Buffer.from(sent[0].payload, "base64");
  assert.equal(sealed[0], 0xee, "sealed by the page");
  assert.deepEqual(JSON.parse(sealed.subarray(1).toString()), { k: "note", v: "Meet at noon" });
  // Ordered by the server and back; then a newcomer asks for the state.
  page.activityMessage({ type: "activity_update", plugin: "hello", seq: 1, from: 1, payload: sent[0].payload });
  sent.length = 0;
  page.activityMessage({ type: "activity_snapshot_request", plugin: "hello", newcomer: 2 });
  await settle();
  assert.equal(sent.length, 1, JSON.stringify(sent));
  assert.equal(sent[0].type, "activity_snapshot");
  assert.equal(sent[0].newcomer, 2);
  assert.equal(sent[0].seq, 1);
  const snapshot = JSON.parse(Buffer.from(sent[0].payload, "base64").subarray(1).toString());
  assert.equal(snapshot.seq, 1);
  assert.deepEqual(snapshot.entries.map(([key, value]) => [key, value]), [["note", "Meet at noon"]]);
  // Someone else's change reaches the box.
  page.activityMessage({ type: "activity_update", plugin: "hello", seq: 2, from: 2, payload: Buffer.from([0xee, ...Buffer.from(JSON.stringify({ k: "note", v: "Noon, room 4" }))]).toString("base64") });
  await settle();
  assert.equal(note.value, "Noon, room 4");
  page.activities.get("hello").close();
});

test("the full link goes to a plugin granted web.link-secret only right after the user clicked or typed", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let active = false;
  const frame = bareFrame("calendar", [], {
    src: "/plugin-frame/calendar/dashboard",
    kind: "dashboard",
    linkSecret: true,
    fullLink: () => "https://confab.example/j/LinkForTests1#k=SECRET",
    gesture: () => active,
  });
  fetched.length = 0;
  const ask = () => frame.fetch({ path: "/ics", method: "POST", body: { text: "{}" }, withLink: "url" });
  await assert.rejects(ask(), { code: "needs-gesture" });
  assert.equal(fetched.length, 0, "nothing left the page");
  // Without a link in the request, no gesture is needed.
  await frame.fetch({ path: "/ics", method: "POST", body: { text: "{}" } });
  assert.equal(fetched.length, 1);
  active = true;
  await ask();
  assert.equal(fetched.length, 2);
  assert.equal(JSON.parse(fetched[1].init.body).url, "https://confab.example/j/LinkForTests1#k=SECRET");
  frame.fail("test over");
});

test("the server's frame limits replace the defaults; anything else keeps them", async (t) => {
  assert.deepEqual(frames.frameLimits('{"startMs":2000,"pingMs":1000,"maxFetches":3,"maxHeight":500}'), { startMs: 2000, pingMs: 1000, maxFetches: 3, maxHeight: 500 });
  assert.deepEqual(frames.frameLimits("not json"), frames.DEFAULT_LIMITS);
  assert.deepEqual(frames.frameLimits('{"maxFetches":-1,"maxHeight":"tall"}'), frames.DEFAULT_LIMITS);
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval"] });
  const said = [];
  const small = bareFrame("small", said, {
    limits: frames.frameLimits('{"startMs":2000,"maxHeight":500}'),
  });
  await small.receive({ bridge: "confab", v: 1, call: "resize", args: { height: 9000 } });
  assert.equal(small.iframe.style.height, "500px");
  t.mock.timers.tick(1999);
  assert.deepEqual(said, []);
  t.mock.timers.tick(1);
  assert.deepEqual(said, ["The small plugin could not start on this page."]);
});
