// The watch-together panel (static/watch.js) on a fake DOM, a fake player and a
// fake activity that puts updates in order as the server does: joining what
// others started, who may start a video, the host's part when someone buffers,
// the clock pings and the call's audio. Run with
// `node --test plugins/watch-together/tests/js/`.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { Element, installDom, json, recordingFetch, settle, shown } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
globalThis.HTMLMediaElement = { HAVE_FUTURE_DATA: 3 };
const { START_STALL_MS, STALL_MS, Watch } = await import("../../static/watch.js");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Waits until `done()` holds, up to `ms` (timers run late on a busy machine). */
async function until(done, what, ms = 5_000) {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

const ADDRESS = "https://confab.example/j/LinkForTests1";
const VIDEO = "https://videos.example.org/film.webm";

/** One activity that several fake pages share: updates in one order for all. */
class Room {
  constructor() {
    this.members = [];
    this.state = new Map();
    this.pages = new Map();
    this.waiting = [];
  }
  presence(me) {
    const host = this.members[0] ?? null;
    return {
      active: this.members.length > 0,
      joined: this.members.includes(me),
      host,
      members: this.members.map((p) => ({ participant: p, role: p === host ? "host" : "member", name: `P${p}` })),
    };
  }
  broadcastPresence() {
    for (const page of this.pages.values()) page.fire("presence", page.activity.presence());
  }
  update(from, key, value) {
    if (value === undefined) this.state.delete(key);
    else this.state.set(key, value);
    for (const page of this.pages.values()) {
      if (this.members.includes(page.me)) page.fire("change", { key, value, from, role: "member" });
    }
  }
}

/** A page on `room` as participant `me`: the plugin handle, the player, what it asked. */
function page(room, me, { signedIn = true, guests = new Set(), options = { signed_in_only: false, can_change: false } } = {}) {
  const handlers = { presence: [], sync: [], change: [], suspension: [], message: [], participants: [] };
  const sent = [];
  const ducks = [];
  const rules = new Map();
  const { fetch, requests } = recordingFetch((path, init) => {
    if (init.method === "PUT") {
      Object.assign(options, JSON.parse(init.body));
      return json({ ...options, can_change: true });
    }
    return json(options);
  });
  const p = {
    me,
    sent,
    ducks,
    requests,
    fire: (kind, value) => { for (const h of handlers[kind]) h(value, ...(kind === "message" ? [value.meta] : [])); },
  };
  const activity = {
    presence: () => room.presence(me),
    onPresence: (h) => handlers.presence.push(h),
    join: async () => {
      if (!room.members.includes(me)) room.members.push(me);
      room.broadcastPresence();
      const state = Object.fromEntries(room.state);
      for (const h of handlers.sync) h({ state, complete: true, seq: 0 });
    },
    leave: async () => {
      room.members = room.members.filter((m) => m !== me);
      room.broadcastPresence();
    },
    send: async (data, { to } = {}) => {
      sent.push({ message: JSON.parse(data), to });
      for (const other of to ?? room.members.filter((m) => m !== me)) {
        const bytes = new TextEncoder().encode(data);
        for (const h of room.pages.get(other)?.handlers.message ?? []) h(bytes, { from: me });
      }
    },
    onMessage: (h) => handlers.message.push(h),
    state: {
      ready: () => room.members.includes(me),
      get: (key) => room.state.get(key),
      all: () => Object.fromEntries(room.state),
      set: async (key, value) => {
        const roles = rules.get(key);
        if (roles && !roles.includes("guest") && guests.has(me)) {
          throw Object.assign(new Error("not allowed"), { code: "not-allowed" });
        }
        room.update(me, key, value);
      },
      delete: async (key) => room.update(me, key, undefined),
      onChange: (h) => { handlers.change.push(h); return () => {}; },
      onSync: (h) => {
        handlers.sync.push(h);
        return () => handlers.sync.splice(handlers.sync.indexOf(h), 1);
      },
    },
    restrict: async (key, roles) => { rules.set(key, roles); },
    suspend: async (reason) => {
      room.waiting.push({ participant: me, name: `P${me}`, reason });
      for (const other of room.pages.values()) other.fire("suspension", { waitingFor: room.waiting });
    },
    resume: async () => {
      room.waiting = room.waiting.filter((w) => w.participant !== me);
      for (const other of room.pages.values()) other.fire("suspension", { waitingFor: room.waiting });
    },
    waitingFor: () => room.waiting,
    onSuspension: (h) => handlers.suspension.push(h),
  };
  p.handlers = handlers;
  p.activity = activity;
  p.rules = rules;
  const roster = () => [...room.pages.values()].map((o) => ({ participant: o.me, name: `P${o.me}`, guest: guests.has(o.me) }));
  const plugin = {
    name: "watch-together",
    element: new Element("main"),
    signedIn,
    me: () => me,
    link: () => ADDRESS,
    participants: roster,
    onParticipants: (h) => handlers.participants.push(h),
    fetch,
    activity,
    duckCallAudio: async (on) => { ducks.push(on); },
  };
  room.pages.set(me, p);
  const watch = new Watch(plugin);
  // The player: a fake <video> that plays when told.
  const v = watch.player;
  Object.defineProperty(v, "src", { value: "", writable: true });
  Object.assign(v, {
    currentTime: 0, paused: true, seeking: false, readyState: 4, duration: 600, playbackRate: 1, muted: false, volume: 1,
    // What it holds: from `from` to `to` seconds (`buffered`).
    held: { from: 0, to: 600 },
    play() { this.paused = false; this.dispatch("play"); return Promise.resolve(); },
    pause() { this.paused = true; this.dispatch("pause"); },
    load() {},
  });
  Object.defineProperty(v, "buffered", {
    get() {
      const { from, to } = this.held;
      return { length: 1, start: () => from, end: () => to };
    },
  });
  watch.start();
  p.watch = watch;
  p.plugin = plugin;
  return p;
}

const pages = [];
function open(...args) {
  const p = page(...args);
  pages.push(p);
  return p;
}
afterEach(() => {
  for (const p of pages.splice(0)) p.watch.stop();
});

async function startVideo(p, url = VIDEO) {
  p.watch.address.value = url;
  p.watch.startForm.dispatch("submit", { preventDefault() {} });
  for (let i = 0; i < 5; i++) await settle();
}

test("someone starts a video: every page joins and opens it; one who stops watching stays out until it ends", async () => {
  const room = new Room();
  const ana = open(room, 1);
  const ben = open(room, 2);
  await settle();
  await startVideo(ana);
  assert.equal(room.state.get("video").url, VIDEO);
  assert.equal(room.state.get("video").by, 1);
  assert.ok(room.members.includes(2), "Ben's page joined by itself");
  assert.equal(ben.watch.player.src, VIDEO);
  assert.ok(shown(ben.watch.stage));
  assert.match(ben.watch.status.textContent, /P1 started “film.webm” · 2 watching/);

  ben.watch.leaveButton.click();
  await settle();
  assert.ok(!room.members.includes(2));
  assert.equal(ben.watch.video, null, "Ben's player stopped");
  assert.ok(!ben.watch.player.hasAttribute("src"));
  room.broadcastPresence();
  await settle();
  assert.ok(!room.members.includes(2), "not pulled back in");
  assert.match(ben.watch.status.textContent, /1 watching a video together/);
  ben.watch.joinButton.click();
  await settle();
  assert.ok(room.members.includes(2));
});

test("a page asks to join once, while the presence does not show it in yet", async () => {
  const room = new Room();
  const ana = open(room, 1);
  const ben = open(room, 2);
  await settle();
  let asked = 0;
  // Ben's join is slow to show: the presence changes twice before it does.
  ben.activity.join = async () => { asked += 1; };
  await ana.activity.join();
  room.broadcastPresence();
  await settle();
  assert.equal(asked, 1);
});

test("an address that is not https is refused with a sentence, and nothing is shared", async () => {
  const room = new Room();
  const ana = open(room, 1);
  await settle();
  await startVideo(ana, "http://videos.example.org/film.webm");
  assert.match(ana.watch.problem.textContent, /Only https:\/\/ addresses/);
  assert.equal(room.members.length, 0);
});

test("where only people who signed in start videos, a guest cannot, and a guest's video does not play", async () => {
  const room = new Room();
  const options = { signed_in_only: true, can_change: false };
  const guests = new Set([2]);
  const ana = open(room, 1, { options, guests });
  const bo = open(room, 2, { options, guests, signedIn: false });
  await settle();
  await settle();
  assert.deepEqual(ana.rules.get("video"), ["signed-in"], "every page keeps the rule");
  assert.ok(!shown(bo.watch.startForm));
  assert.ok(shown(bo.watch.barred));
  await startVideo(bo);
  assert.match(bo.watch.problem.textContent, /Only people who signed in/);
  assert.equal(room.state.get("video"), undefined);

  // A guest's modified page sends one anyway (here: straight into the room).
  await ana.activity.join();
  room.members.push(2);
  room.update(2, "video", { id: "x", url: VIDEO, title: "film.webm", by: 2 });
  assert.equal(ana.watch.video, null, "not played");
  assert.ok(!shown(ana.watch.stage));
});

test("a video that claims another writer than its sender is ignored", async () => {
  const room = new Room();
  const ana = open(room, 1);
  await settle();
  await ana.activity.join();
  room.members.push(2);
  room.update(2, "video", { id: "x", url: VIDEO, title: "film.webm", by: 1 });
  assert.equal(ana.watch.video, null);
  room.update(2, "video", { id: "y", url: "javascript:alert(1)", title: "x", by: 2 });
  assert.equal(ana.watch.video, null, "an address the form would refuse is refused from others too");
});

/** Ana (the host) and Ben watching Ana's video, at 0:11 now. */
async function twoWatching() {
  const room = new Room();
  const ana = open(room, 1);
  const ben = open(room, 2);
  await settle();
  await startVideo(ana);
  const id = room.state.get("video").id;
  room.update(1, "play", { video: id, playing: true, position: 10, rate: 1, at: Date.now() - 1_000 });
  return { room, ana, ben };
}

test("someone who buffers makes the group wait; the host pauses it there and starts everyone together after", async () => {
  const { room, ana, ben } = await twoWatching();
  // Ben's page stalls.
  await ben.activity.suspend("buffering");
  const held = room.state.get("play");
  assert.equal(held.playing, false, "the host paused the group");
  assert.equal(held.hold, true);
  assert.ok(held.position >= 11 && held.position < 11.5, `at ${held.position}`);
  assert.ok(ana.watch.player.paused);
  assert.match(ana.watch.status.textContent, /Waiting for P2 \(buffering\)/);
  await ben.activity.resume();
  const resumed = room.state.get("play");
  assert.equal(resumed.playing, true, "everyone goes on together");
  assert.equal(resumed.position, held.position);
  assert.ok(resumed.at > Date.now() - 50, "from a moment ahead");
});

test("a player that runs out of video makes the group wait, and lets it go on once it holds enough where the group waits", async () => {
  const { room, ana, ben } = await twoWatching();
  await sleep(300);
  assert.deepEqual(room.waiting, [], "both play");
  // Ben's player runs out: it has the picture where it is, and nothing after.
  const v = ben.watch.player;
  v.readyState = 2;
  v.held = { from: 0, to: v.currentTime };
  v.dispatch("waiting");
  await until(() => room.waiting.length > 0, "the group waits for Ben", STALL_MS + 5_000);
  assert.deepEqual(room.waiting.map((w) => [w.participant, w.reason]), [[2, "buffering"]]);
  const held = room.state.get("play");
  assert.equal(held.playing, false, "the host paused the group");
  assert.equal(held.hold, true);
  assert.ok(ana.watch.player.paused && v.paused);
  assert.match(ana.watch.status.textContent, /Waiting for P2 \(buffering\)/);
  // Ben's player waits where the group will go on from.
  assert.ok(Math.abs(v.currentTime - held.position) < 0.011, `at ${v.currentTime}, the group at ${held.position}`);
  // Some video arrives, not yet enough to go on with.
  v.readyState = 3;
  v.held = { from: 0, to: held.position + 0.5 };
  await sleep(300);
  assert.equal(room.waiting.length, 1, "half a second ahead is not enough");
  v.held = { from: 0, to: held.position + 5 };
  await until(() => room.waiting.length === 0, "the group goes on");
  const resumed = room.state.get("play");
  assert.equal(resumed.playing, true, "everyone goes on together");
  assert.equal(resumed.position, held.position);
});

test("a player that cannot start the video within a few seconds makes the group wait too", async () => {
  const room = new Room();
  const ana = open(room, 1);
  const ben = open(room, 2);
  await settle();
  // Ben's player has nothing yet: it loads the video.
  ben.watch.player.readyState = 1;
  ben.watch.player.held = { from: 0, to: 0 };
  await startVideo(ana);
  const id = room.state.get("video").id;
  room.update(1, "play", { video: id, playing: true, position: 10, rate: 1, at: Date.now() - 1_000 });
  await sleep(STALL_MS + 300);
  assert.deepEqual(room.waiting, [], `not after ${STALL_MS} ms: loading a video takes a moment`);
  await until(() => room.waiting.length > 0, "the group waits for Ben", START_STALL_MS + 5_000);
  assert.deepEqual(room.waiting.map((w) => [w.participant, w.reason]), [[2, "buffering"]]);
  assert.equal(room.state.get("play").hold, true);
});

test("the host answers clock pings; a member takes answers from the host only", async () => {
  const room = new Room();
  const ana = open(room, 1);
  const ben = open(room, 2);
  await settle();
  await startVideo(ana);
  await settle();
  const pings = ben.sent.filter((s) => s.message.t === "ping");
  assert.ok(pings.length >= 1, "Ben pings the host");
  assert.deepEqual(pings[0].to, [1]);
  const pongs = ana.sent.filter((s) => s.message.t === "pong");
  assert.ok(pongs.length >= 1, "Ana answers");
  assert.ok(ben.watch.clock.samples.length >= 1);
  const before = ben.watch.clock.samples.length;
  // A pong from someone who is not the host changes nothing.
  for (const h of ben.handlers.message) h(new TextEncoder().encode(JSON.stringify({ t: "pong", id: 1, t1: 0 })), { from: 3 });
  assert.equal(ben.watch.clock.samples.length, before);
});

test("the call's audio is lowered while the video plays with sound, and not once it stops", async () => {
  const room = new Room();
  const ana = open(room, 1);
  await settle();
  await startVideo(ana);
  const v = ana.watch.player;
  v.play();
  assert.deepEqual(ana.ducks, [true]);
  v.muted = true;
  v.dispatch("volumechange");
  assert.deepEqual(ana.ducks, [true, false]);
  v.muted = false;
  v.dispatch("volumechange");
  ana.watch.stopButton.click();
  await settle();
  await settle();
  assert.equal(room.state.get("video"), undefined);
  assert.deepEqual(ana.ducks, [true, false, true, false]);
});

test("the link's owner changes who may start a video, and the others' pages ask again", async () => {
  const room = new Room();
  const options = { signed_in_only: false, can_change: true };
  const ana = open(room, 1, { options });
  const ben = open(room, 2, { options: { ...options, can_change: false } });
  await settle();
  await startVideo(ana);
  assert.ok(shown(ana.watch.optionLine));
  assert.ok(!shown(ben.watch.optionLine));
  ana.watch.onlySignedIn.checked = true;
  ana.watch.onlySignedIn.dispatch("change");
  for (let i = 0; i < 5; i++) await settle();
  const put = ana.requests.find((r) => r.method === "PUT");
  assert.deepEqual(put.body, { signed_in_only: true });
  assert.equal(room.state.get("options"), 1);
  assert.ok(ben.requests.filter((r) => r.method === "GET").length >= 2, "Ben's page asked again");
});
