// The call page's plugin handle (core/static/plugins.js) beyond messages: the
// lobby and its changes, a still of a participant's video only after the page asked
// the user, and the notice line. The page's side comes in as the host's hooks.
// Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { register } from "node:module";

// plugins.js imports `/static/lib/…`, as the browser does.
register("./static-paths.mjs", import.meta.url);

// What loading modules needs from a browser: sections to put in an area.
const fakeDocument = {
  createElement(tag) {
    return { tag, className: "", dataset: {}, remove() {} };
  },
};
globalThis.document = fakeDocument;

const { CallPagePlugins, MAX_NOTICE_CHARS } = await import("../../static/plugins.js");

const ROSTER = [
  { participant: 1, name: "Ana", guest: false },
  { participant: 2, name: "Bo", guest: true },
];
const LOBBY = [{ request: 7, name: "Cy", flags: ["same_network_as_removed"] }];

const module = (source) => `data:text/javascript,${encodeURIComponent(source)}`;
const NOTHING = module("export default () => {};");

/** The call page with plugins `names` loaded and `host` hooks; gives their handles. */
async function page(host = {}, names = ["spam-guard"]) {
  const seen = { reports: [], notices: [], questions: [], stills: [] };
  const plugins = new CallPagePlugins({
    modules: names.map((plugin) => ({ plugin, url: NOTHING })),
    area: { append() {} },
    send: () => {},
    me: () => 1,
    participants: () => ROSTER,
    report: (text) => seen.reports.push(text),
    link: () => "https://confab.example/j/LinkForTests1#k=AAAAAAAAAAAAAAAAAAAAAA",
    signedIn: true,
    confirm: (question) => {
      seen.questions.push(question);
      return true;
    },
    still: (participant) => {
      seen.stills.push(participant);
      return { dataUrl: "data:image/jpeg;base64,AAAA", width: 640, height: 360 };
    },
    notice: (text) => seen.notices.push(text),
    ...host,
  });
  await plugins.load();
  return { plugins, seen, handles: names.map((name) => plugins.handles.get(name)) };
}

test("lobby: the handle reads the host's lobby, and none when the host gives none", async () => {
  const { handles: [handle] } = await page({ lobby: () => LOBBY });
  assert.deepEqual(handle.lobby(), LOBBY);
  const { handles: [bare] } = await page({});
  assert.deepEqual(bare.lobby(), [], "a host without a lobby hook: nobody waits");
});

test("onLobby: every plugin's handlers hear each change until they unsubscribe", async (t) => {
  const logged = t.mock.method(console, "error", () => {});
  const { plugins, handles: [first, second] } = await page({}, ["first", "second"]);
  const heard = [];
  const stop = first.onLobby((list) => heard.push(["first", list]));
  second.onLobby(() => {
    throw new Error("broken handler");
  });
  second.onLobby((list) => heard.push(["second", list]));
  plugins.lobbyChanged(LOBBY);
  assert.deepEqual(heard, [["first", LOBBY], ["second", LOBBY]], "a failing handler stops no other");
  assert.deepEqual(logged.mock.calls.map((c) => c.arguments[0]), ["the second plugin's lobby handler failed"]);
  stop();
  plugins.lobbyChanged([]);
  assert.deepEqual(heard.slice(2), [["second", []]], "the first unsubscribed");
  // The roster's handlers are another list.
  plugins.rosterChanged(ROSTER);
  assert.equal(heard.length, 3);
});

test("onParticipants is unchanged beside onLobby", async () => {
  const { plugins, handles: [handle] } = await page();
  const heard = [];
  const stop = handle.onParticipants((list) => heard.push(list));
  plugins.lobbyChanged(LOBBY);
  plugins.rosterChanged(ROSTER);
  stop();
  plugins.rosterChanged([]);
  assert.deepEqual(heard, [ROSTER]);
});

test("captureStill: declined, nothing is taken and the page's DOM is not touched", async () => {
  const { handles: [handle], seen } = await page({
    confirm: (question) => {
      seen.questions.push(question);
      return false;
    },
  });
  const touched = [];
  globalThis.document = new Proxy({}, { get: (_, key) => touched.push(key) && undefined });
  try {
    assert.equal(await handle.captureStill(2), null);
  } finally {
    globalThis.document = fakeDocument;
  }
  assert.deepEqual(seen.stills, []);
  assert.deepEqual(touched, []);
  assert.deepEqual(seen.questions, [
    "Attach a still of what your screen shows of Bo to this report? Only this picture is sent, "
      + "to this server's administrators; the call itself stays end-to-end encrypted.",
  ]);
});

test("captureStill: agreed, the page's picture of that participant", async () => {
  const { handles: [handle], seen } = await page();
  assert.deepEqual(await handle.captureStill(2), { dataUrl: "data:image/jpeg;base64,AAAA", width: 640, height: 360 });
  assert.deepEqual(seen.stills, [2]);
  assert.equal(seen.questions.length, 1);
});

test("captureStill: no picture, nobody by that number, or myself: null", async (t) => {
  t.mock.method(console, "error", () => {});
  const { handles: [noFrame], seen } = await page({ still: () => null });
  assert.equal(await noFrame.captureStill(2), null, "no tile or no decoded frame");
  assert.equal(seen.questions.length, 1);
  assert.equal(await noFrame.captureStill(9), null, "not on the roster");
  assert.equal(await noFrame.captureStill(1), null, "me");
  assert.equal(seen.questions.length, 1, "asked about neither");
  const { handles: [failing] } = await page({
    still: () => {
      throw new Error("SecurityError");
    },
  });
  assert.equal(await failing.captureStill(2), null);
});

test("notice: plain text, cut to 300 characters, never in the middle of one", async () => {
  const { handles: [handle], seen } = await page();
  handle.notice("Report sent.");
  handle.notice("x".repeat(400));
  handle.notice(`${"y".repeat(299)}😀😀`);
  handle.notice(42);
  assert.equal(MAX_NOTICE_CHARS, 300);
  assert.deepEqual(seen.notices, ["Report sent.", "x".repeat(300), `${"y".repeat(299)}😀`, "42"]);
});

test("notice: without a notice hook it is shown as the page's reports are", async () => {
  const { handles: [handle], seen } = await page({ notice: undefined });
  handle.notice("Blocked.");
  assert.deepEqual([seen.reports, seen.notices], [["Blocked."], []]);
});
