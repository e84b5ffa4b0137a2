// Shared activities, the page's side (core/static/lib/activity.js): several pages,
// each with its own ActivityHost, joined through a fake server that numbers
// updates, asks the earliest member for a newcomer's snapshot and falls back to
// its stored copy, as core/src/calls/activity.rs does. Payloads are sealed with a
// per-sender XOR and a label, so the test can check the server never sees a plain
// value and that a payload sealed for one use does not open as another.
// Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { register } from "node:module";

register("./static-paths.mjs", import.meta.url);

const { ActivityHost, COPY_AFTER_MS, MAX_STATE_BYTES } = await import("../../static/lib/activity.js");
const { fromBase64 } = await import("../../static/lib/base64.js");

const PLUGIN = "watch-together";
const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

/** A page's sealing: the label, the sender, the bytes XORed with the sender's key. */
function crypto(me) {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  return {
    seal: async (bytes, label) => {
      const head = enc.encode(`${label}|${me}|`);
      return new Uint8Array([...head, ...bytes.map((b) => b ^ (0x50 + me))]);
    },
    open: async (bytes, label) => {
      const text = dec.decode(bytes);
      const [sealedFor, from] = text.split("|", 2);
      if (sealedFor !== label) return null;
      const start = `${sealedFor}|${from}|`.length;
      const sender = Number(from);
      return { bytes: bytes.slice(start).map((b) => b ^ (0x50 + sender)), from: sender, encrypted: true };
    },
  };
}

/** The server's side, as small as the tests need it. */
class FakeServer {
  constructor() {
    this.pages = new Map();
    this.members = [];
    this.host = null;
    this.seq = 0;
    this.log = [];
    this.copy = null;
    this.pending = [];
    this.seen = [];
    this.silent = new Set();
    this.guests = new Set();
  }
  presence() {
    const members = this.members.map((p) => ({ participant: p, role: p === this.host ? "host" : this.guests.has(p) ? "guest" : "member" }));
    for (const page of this.pages.values()) page.host.presenceChanged({ host: this.host, members });
  }
  to(p, message) {
    this.pages.get(p)?.inbox(message);
  }
  catchUp(newcomer, snapshot, joinedAfter) {
    const missing = this.log.filter((u) => u.seq > snapshot.seq && u.seq <= joinedAfter);
    this.to(newcomer, { type: "activity_snapshot", plugin: PLUGIN, seq: snapshot.seq, payload: snapshot.payload ?? null, next: snapshot.seq + 1, complete: true });
    for (const u of missing) this.to(newcomer, { type: "activity_update", plugin: PLUGIN, ...u });
  }
  timeout(newcomer) {
    const at = this.pending.findIndex((p) => p.newcomer === newcomer);
    const [p] = this.pending.splice(at, 1);
    this.catchUp(newcomer, this.copy ?? { seq: 0 }, p.joinedAfter);
  }
  receive(from, message) {
    this.seen.push(message);
    switch (message.type) {
      case "activity_join": {
        if (!this.members.includes(from)) {
          this.members.push(from);
          this.host ??= from;
          this.presence();
        }
        const asked = this.members.find((p) => p !== from);
        if (asked === undefined) this.catchUp(from, this.copy ?? { seq: 0 }, this.seq);
        else {
          this.pending.push({ newcomer: from, asked, joinedAfter: this.seq });
          if (!this.silent.has(asked)) this.to(asked, { type: "activity_snapshot_request", plugin: PLUGIN, newcomer: from });
        }
        break;
      }
      case "activity_leave":
        this.members = this.members.filter((p) => p !== from);
        if (this.host === from) this.host = this.members[0] ?? null;
        this.presence();
        break;
      case "activity_send":
        for (const p of message.to ?? this.members.filter((m) => m !== from)) {
          this.to(p, { type: "activity_message", plugin: PLUGIN, from, payload: message.payload });
        }
        break;
      case "activity_update": {
        this.seq += 1;
        const update = { seq: this.seq, from, payload: message.payload };
        this.log.push(update);
        for (const p of this.members) this.to(p, { type: "activity_update", plugin: PLUGIN, ...update });
        break;
      }
      case "activity_snapshot": {
        if (message.newcomer !== undefined) {
          const at = this.pending.findIndex((p) => p.newcomer === message.newcomer && p.asked === from);
          if (at >= 0) {
            const [p] = this.pending.splice(at, 1);
            this.catchUp(message.newcomer, message, p.joinedAfter);
          }
        }
        if (!this.copy || this.copy.seq <= message.seq) this.copy = { seq: message.seq, payload: message.payload, from };
        break;
      }
      default:
        throw new Error(`unexpected ${message.type}`);
    }
  }
}

/** Fake timers for one page: run by hand. */
function timers() {
  let next = 1;
  const due = new Map();
  return {
    setTimer: (fn) => { due.set(next, fn); return next++; },
    clearTimer: (id) => due.delete(id),
    setRepeat: () => next++,
    clearRepeat: () => {},
    runAll: () => { for (const [id, fn] of [...due]) { due.delete(id); fn(); } },
  };
}

/** Page `me` on `server`: its host and what its frame was told. */
function page(server, me, names = new Map([[1, "Ana"], [2, "Ben"], [3, "Cy"], [4, "Dee"]]), guests = server.guests) {
  const told = [];
  const clock = timers();
  const reports = [];
  const host = new ActivityHost({
    plugin: PLUGIN,
    send: (message) => queueMicrotask(() => server.receive(me, message)),
    ...crypto(me),
    emit: (event, data) => told.push({ event, data }),
    me: () => me,
    names: () => names,
    isGuest: (participant) => guests.has(participant),
    report: (text) => reports.push(text),
    ...clock,
  });
  const p = {
    host,
    told,
    clock,
    reports,
    inbox: (message) => {
      switch (message.type) {
        case "activity_update": host.updateArrived(message); break;
        case "activity_message": host.messageArrived(message); break;
        case "activity_snapshot": host.snapshotArrived(message); break;
        case "activity_snapshot_request": host.snapshotAsked(message); break;
        default: throw new Error(message.type);
      }
    },
    last: (event) => told.filter((t) => t.event === event).at(-1)?.data,
    all: (event) => told.filter((t) => t.event === event).map((t) => t.data),
  };
  server.pages.set(me, p);
  return p;
}

async function joined(...pages) {
  for (const p of pages) {
    p.host.join();
    await settle();
  }
}

test("a newcomer gets the state from the earliest member, and then every change in order", async () => {
  const server = new FakeServer();
  const ana = page(server, 1);
  const ben = page(server, 2);
  await joined(ana);
  assert.deepEqual(ana.last("activitySync"), { seq: 0, complete: true, state: {} });
  await ana.host.set("video", { url: "https://example.org/film.mp4" });
  await ana.host.set("playing", true);
  await settle();
  await joined(ben);
  assert.deepEqual(ben.last("activitySync").state, { video: { url: "https://example.org/film.mp4" }, playing: true });
  assert.equal(ben.last("activity").members.map((m) => `${m.name}:${m.role}`).join(","), "Ana:host,Ben:member");
  // Both write the same key at once: the server's order decides, the same for both.
  await Promise.all([ana.host.set("position", 10), ben.host.set("position", 42)]);
  await settle();
  assert.equal(ana.host.entries().position, ben.host.entries().position);
  assert.deepEqual(
    ana.all("activityState").filter((c) => c.key === "position").map((c) => c.seq),
    ben.all("activityState").filter((c) => c.key === "position").map((c) => c.seq),
  );
  // The server only ever saw ciphertext.
  for (const message of server.seen) {
    if (!message.payload) continue;
    const bytes = new TextDecoder().decode(fromBase64(message.payload));
    assert.ok(!bytes.includes("example.org") && !bytes.includes("playing"), `plain text reached the server: ${bytes}`);
  }
});

test("without an answer, the newcomer gets the copy the earliest member left with the server", async () => {
  const server = new FakeServer();
  const ana = page(server, 1);
  const cy = page(server, 3);
  await joined(ana);
  await ana.host.set("video", "a.mp4");
  await settle();
  // After a quiet COPY_AFTER_MS, Ana's page leaves a sealed copy.
  assert.ok(COPY_AFTER_MS > 0);
  ana.clock.runAll();
  await settle();
  assert.equal(server.copy?.seq, 1);
  await ana.host.set("paused", true);
  await settle();
  server.silent.add(1);
  await joined(cy);
  assert.equal(cy.last("activitySync"), undefined, "waits for an answer first");
  server.timeout(3);
  await settle();
  assert.deepEqual(cy.last("activitySync").state, { video: "a.mp4" }, "the copy");
  assert.deepEqual(cy.host.entries(), { video: "a.mp4", paused: true }, "then the update after it");
  assert.deepEqual(cy.all("activityState").map((c) => c.seq), [2]);
});

test("updates that arrive before the ones they follow are applied in the server's order", async () => {
  // Nothing reaches a server: the test plays it.
  const dee = page({ receive: () => {}, pages: new Map() }, 4);
  const seal = crypto(1).seal;
  const sealed = async (k, v) => Buffer.from(await seal(new TextEncoder().encode(JSON.stringify({ k, v })), `${PLUGIN}/activity-update`)).toString("base64");
  // Dee is a member; the state arrives, then update 3 before update 2.
  dee.host.presenceChanged({ host: 1, members: [{ participant: 1, role: "host" }, { participant: 4, role: "member" }] });
  dee.host.join();
  dee.host.snapshotArrived({ seq: 1, payload: null, next: 2, complete: true });
  dee.host.updateArrived({ seq: 3, payload: await sealed("x", "second") });
  await settle();
  assert.equal(dee.host.entries().x, undefined, "update 3 waits for update 2");
  dee.host.updateArrived({ seq: 2, payload: await sealed("x", "first") });
  await settle();
  assert.equal(dee.host.entries().x, "second");
  assert.deepEqual(dee.all("activityState").map((c) => c.value), ["first", "second"]);
});

test("a second answer to a join sent twice, older than the updates since, rolls nothing back", async () => {
  // As a browser did: the frame asked to join twice before its page heard it was
  // in, the earliest member answered both, and the later answer came last.
  const dee = page({ receive: () => {}, pages: new Map() }, 4);
  const seal = crypto(1).seal;
  const sealed = async (k, v) => Buffer.from(await seal(new TextEncoder().encode(JSON.stringify({ k, v })), `${PLUGIN}/activity-update`)).toString("base64");
  const snapshot = async (seq, entries) => Buffer.from(
    await seal(new TextEncoder().encode(JSON.stringify({ seq, entries })), `${PLUGIN}/activity-snapshot`),
  ).toString("base64");
  dee.host.presenceChanged({ host: 1, members: [{ participant: 1, role: "host" }, { participant: 4, role: "member" }] });
  dee.host.join();
  dee.host.join();
  dee.host.snapshotArrived({ seq: 0, payload: null, next: 1, complete: true });
  dee.host.updateArrived({ seq: 1, payload: await sealed("video", "a.webm") });
  dee.host.updateArrived({ seq: 2, payload: await sealed("play", { at: 5 }) });
  dee.host.snapshotArrived({ seq: 1, payload: await snapshot(1, [["video", "a.webm", 1, 1]]), next: 2, complete: true });
  await settle();
  assert.deepEqual(dee.host.entries(), { video: "a.webm", play: { at: 5 } });
  assert.equal(dee.host.seq, 2);
  assert.deepEqual(dee.last("activitySync").state, { video: "a.webm", play: { at: 5 } });
});

test("a key kept to the host is refused to others here, and dropped by every page if sent anyway", async () => {
  const server = new FakeServer();
  server.guests.add(3);
  const ana = page(server, 1);
  const cy = page(server, 3);
  await joined(ana, cy);
  for (const p of [ana, cy]) p.host.restrict("playback", ["host"]);
  await assert.rejects(cy.host.set("playback", "pause"), { code: "not-allowed" });
  // A guest's page that does not keep the rule: the others drop the update.
  cy.host.rules.clear();
  await cy.host.set("playback", "pause");
  await settle();
  assert.equal(ana.host.entries().playback, undefined);
  await ana.host.set("playback", "play");
  await settle();
  assert.equal(ana.host.entries().playback, "play");
  assert.equal(cy.host.entries().playback, "play");
});

test("a key kept to people who signed in is refused to a guest, even one who hosts it", async () => {
  const server = new FakeServer();
  server.guests.add(1);
  // Ana came as a guest and started it: she is its host, and still a guest.
  const ana = page(server, 1);
  const ben = page(server, 2);
  await joined(ana, ben);
  assert.equal(ana.host.roleOf(1), "host");
  for (const p of [ana, ben]) p.host.restrict("video", ["signed-in"]);
  await assert.rejects(ana.host.set("video", "spam"), { code: "not-allowed" });
  ana.host.rules.clear();
  await ana.host.set("video", "spam");
  await settle();
  assert.equal(ben.host.entries().video, undefined, "the guest host's update is dropped");
  await ben.host.set("video", "film");
  await settle();
  assert.equal(ben.host.entries().video, "film");
  assert.equal(ana.host.entries().video, "film");
  assert.throws(() => ben.host.restrict("video", ["admins"]), { code: "bad-request" });
});

test("a member who buffers suspends the activity for everyone until they resume or leave", async () => {
  const server = new FakeServer();
  const ana = page(server, 1);
  const ben = page(server, 2);
  await joined(ana, ben);
  await ben.host.suspend("buffering");
  await settle();
  assert.deepEqual(ana.last("activitySuspension"), { waitingFor: [{ participant: 2, name: "Ben", reason: "buffering" }] });
  await ben.host.resume();
  await settle();
  assert.deepEqual(ana.last("activitySuspension"), { waitingFor: [] });
  await ben.host.suspend("buffering");
  await settle();
  ben.host.leave();
  await settle();
  assert.deepEqual(ana.last("activitySuspension"), { waitingFor: [] }, "nobody waits for who left");
  // Nobody writes another's suspension.
  await assert.rejects(ana.host.set("~suspend/2", "x"), { code: "bad-request" });
});

test("messages go to everyone else in it or to those named, sealed for messages only", async () => {
  const server = new FakeServer();
  const [ana, ben, cy] = [page(server, 1), page(server, 2), page(server, 3)];
  await joined(ana, ben, cy);
  await ana.host.sendTo(new TextEncoder().encode("hi all"));
  await ana.host.sendTo(new TextEncoder().encode("hi Cy"), [3]);
  await settle();
  const words = (p) => p.all("activityMessage").map((m) => new TextDecoder().decode(m.bytes));
  assert.deepEqual(words(ben), ["hi all"]);
  assert.deepEqual(words(cy), ["hi all", "hi Cy"]);
  assert.equal(cy.last("activityMessage").from, 1);
  assert.equal(cy.last("activityMessage").role, "host");
  await assert.rejects(ana.host.sendTo(new Uint8Array(1), [9]), { code: "bad-request" });
  // A message replayed as an update does not open.
  const message = server.seen.find((m) => m.type === "activity_send");
  ben.host.updateArrived({ seq: ben.host.seq + 1, payload: message.payload });
  await settle();
  assert.ok(ben.reports.some((r) => r.includes("could not be decrypted")));
});

test("the state is bounded so that a snapshot fits one message", async () => {
  const server = new FakeServer();
  const ana = page(server, 1);
  await joined(ana);
  await assert.rejects(ana.host.set("big", "x".repeat(MAX_STATE_BYTES)), { code: "too-large" });
  await assert.rejects(ana.host.set("k".repeat(200), 1), { code: "bad-request" });
  const outsider = page(server, 4);
  await assert.rejects(outsider.host.set("a", 1), { code: "not-joined" });
});

test("replacing a large value counts the new value, not both", async () => {
  const server = new FakeServer();
  const ana = page(server, 1);
  await joined(ana);
  const big = "x".repeat(MAX_STATE_BYTES * 0.6);
  await ana.host.set("film", big);
  await settle();
  // Twice the size would not fit; the same size again does.
  await ana.host.set("film", big.replace("x", "y"));
  await settle();
  assert.equal(ana.host.entries().film[0], "y");
  await assert.rejects(ana.host.set("other", big), { code: "too-large" });
});
