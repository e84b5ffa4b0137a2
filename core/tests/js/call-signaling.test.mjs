// The call page's signaling client (core/static/call/signaling.js) against a
// scripted WebSocket: what it sends, and how it takes the place on the call back
// after the connection dropped. Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";

// What the module needs from a browser: a WebSocket whose events the test plays.
class FakeSocket {
  static OPEN = 1;
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.listeners = {};
    FakeSocket.made.push(this);
  }
  addEventListener(type, listener) {
    (this.listeners[type] ??= []).push(listener);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.drop();
  }
  fire(type, event = {}) {
    for (const listener of this.listeners[type] ?? []) listener(event);
  }
  open() {
    this.readyState = FakeSocket.OPEN;
    this.fire("open");
  }
  receive(message) {
    this.fire("message", { data: JSON.stringify(message) });
  }
  drop() {
    this.readyState = 3;
    this.fire("close");
  }
}
globalThis.WebSocket = FakeSocket;

// Timers the test runs by hand.
const timers = [];
globalThis.setTimeout = (callback, delay) => timers.push({ callback, delay });

const { RESUME_DELAYS_MS, Signaling } = await import("../../static/call/signaling.js");

const URL_ = "wss://confab.example/j/LinkForTests1/ws";

/**
 * A client; `token` is the resume token the page has (null: not on the call),
 * `waiting` the join request it waits in the lobby with (null: not waiting).
 */
function client(token = "resume-me", waiting = null) {
  FakeSocket.made.length = 0;
  timers.length = 0;
  const heard = { messages: [], reconnecting: 0, lost: 0 };
  const signaling = new Signaling({
    url: URL_,
    onMessage: (message) => heard.messages.push(message),
    resumeToken: () => heard.token,
    askAgain: () => heard.waiting,
    onReconnecting: () => { heard.reconnecting += 1; },
    onLost: () => { heard.lost += 1; },
  });
  heard.token = token;
  heard.waiting = waiting;
  return { signaling, heard };
}

const last = () => FakeSocket.made.at(-1);

test("the first message goes once the connection is open, every message with v: 1", () => {
  const { signaling, heard } = client();
  signaling.connect({ type: "join", name: "Ana" });
  assert.equal(last().url, URL_);
  assert.deepEqual(last().sent, [], "nothing before open");
  signaling.send({ type: "leave" });
  assert.deepEqual(last().sent, [], "dropped while not open");
  last().open();
  assert.deepEqual(last().sent, [{ v: 1, type: "join", name: "Ana" }]);
  signaling.send({ type: "mute", audio: true });
  assert.deepEqual(last().sent.at(-1), { v: 1, type: "mute", audio: true });
  last().receive({ type: "waiting", waiting_for: "host" });
  assert.deepEqual(heard.messages, [{ type: "waiting", waiting_for: "host" }]);
});

test("asking again on an open connection sends on it; else it opens one", () => {
  const { signaling } = client();
  signaling.sendOrConnect({ type: "join", name: "Ana" });
  assert.equal(FakeSocket.made.length, 1);
  last().open();
  signaling.sendOrConnect({ type: "join", name: "Ana" });
  assert.equal(FakeSocket.made.length, 1);
  assert.equal(last().sent.length, 2);
});

test("a drop on the call: back to the same place, after each wait in turn", () => {
  const { signaling, heard } = client("tok");
  signaling.connect({ type: "join", name: "Ana" });
  last().open();
  for (const [i, delay] of RESUME_DELAYS_MS.entries()) {
    last().drop();
    assert.equal(heard.reconnecting, i + 1);
    assert.equal(timers.at(-1).delay, delay);
    timers.at(-1).callback();
    last().open();
    assert.deepEqual(last().sent, [{ v: 1, type: "resume", resume_token: "tok" }]);
  }
  // No try left: the page says the connection is lost.
  last().drop();
  assert.equal(heard.lost, 1);
  assert.equal(timers.length, RESUME_DELAYS_MS.length);
  // The waits span a little longer than the server keeps the place (30 s).
  assert.ok(RESUME_DELAYS_MS.reduce((a, b) => a + b) > 30_000);
});

test("back in place (joined): a later drop gets every try again", () => {
  const { signaling, heard } = client();
  signaling.connect({ type: "resume", resume_token: "resume-me" });
  for (let i = 0; i < RESUME_DELAYS_MS.length - 1; i += 1) {
    last().drop();
    timers.at(-1).callback();
  }
  last().open();
  last().receive({ type: "joined", participant: 3 });
  last().drop();
  assert.equal(timers.at(-1).delay, RESUME_DELAYS_MS[0]);
  assert.equal(heard.lost, 0);
});

test("no place to take back (not on the call): the connection is lost at once", () => {
  const { signaling, heard } = client(null);
  signaling.connect({ type: "join", name: "Ana" });
  last().drop();
  assert.deepEqual([heard.reconnecting, heard.lost, timers.length], [0, 1, 0]);
});

test("a drop while waiting in the lobby: the same request again, on a fresh connection", () => {
  const join = { type: "join", name: "Ana", guest_key: "key-of-ana-0123456" };
  const { signaling, heard } = client(null, join);
  signaling.connect(join);
  last().open();
  last().receive({ type: "waiting", request: 4, waiting_for: "approval" });
  last().drop();
  assert.deepEqual([heard.reconnecting, heard.lost], [1, 0]);
  assert.equal(timers.at(-1).delay, RESUME_DELAYS_MS[0]);
  timers.at(-1).callback();
  last().open();
  assert.deepEqual(last().sent, [{ v: 1, ...join }]);
  // In the lobby again: a later drop starts over from the first wait.
  last().receive({ type: "waiting", request: 1, waiting_for: "approval" });
  last().drop();
  assert.equal(timers.at(-1).delay, RESUME_DELAYS_MS[0]);
  // No longer waiting (admitted, denied, withdrawn): a drop is no reason to ask.
  heard.waiting = null;
  timers.at(-1).callback();
  last().drop();
  assert.equal(heard.lost, 1);
});

test("leaving on purpose: no reconnecting, nothing to tell", () => {
  const { signaling, heard } = client();
  signaling.connect({ type: "join", name: "Ana" });
  last().open();
  signaling.leaving = true;
  signaling.close();
  assert.deepEqual([heard.reconnecting, heard.lost, timers.length], [0, 0, 0]);
  assert.equal(signaling.open, false);
});
