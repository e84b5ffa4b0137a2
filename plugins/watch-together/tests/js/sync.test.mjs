// The watch-together player's logic (static/sync.js) against a simulated player
// and clock: `node --test plugins/watch-together/tests/js/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Follower, GroupClock, MAX_NUDGE, SEEK_ABOVE_S, command, positionAt, validPlay, videoAddress, videoTitle, clockText,
} from "../../static/sync.js";

/** A clock and timers that move only when told. */
class Time {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.next = 1;
  }
  setTimer(fn, ms) {
    const id = this.next++;
    this.timers.set(id, { at: this.now + Math.max(0, ms), fn });
    return id;
  }
  clearTimer(id) {
    this.timers.delete(id);
  }
  /** Moves on by `ms` in steps of `step`, running timers and `each` every step. */
  run(ms, each = () => {}, step = 5) {
    const end = this.now + ms;
    while (this.now < end) {
      this.now += step;
      for (const [id, t] of [...this.timers]) {
        if (t.at <= this.now) {
          this.timers.delete(id);
          t.fn();
        }
      }
      each(this.now);
    }
  }
}

/**
 * A player: a seek takes `seekMs` (it is not ready meanwhile); play starts
 * moving `startMs` after `play()`; time moves at the rate while playing.
 */
class FakePlayer {
  constructor(time, { seekMs = 200, startMs = 30, duration = 600 } = {}) {
    Object.assign(this, { clock: time, seekMs, startMs, length: duration });
    this.position = 0;
    this.isPaused = true;
    this.playbackRate = 1;
    this.seekDone = 0;
    this.movingFrom = Infinity;
    this.last = time.now;
    this.seeks = 0;
    this.rates = [];
  }
  advance() {
    const now = this.clock.now;
    if (!this.isPaused && !this.seeking()) {
      const from = Math.max(this.last, this.movingFrom, this.seekDone);
      if (now > from) this.position = Math.min(this.length, this.position + ((now - from) / 1000) * this.playbackRate);
    }
    this.last = now;
  }
  time() { this.advance(); return this.position; }
  paused() { return this.isPaused; }
  seeking() { return this.clock.now < this.seekDone; }
  ready() { return !this.seeking(); }
  duration() { return this.length; }
  rate() { return this.playbackRate; }
  setRate(r) { this.advance(); this.playbackRate = r; this.rates.push(r); }
  play() {
    this.advance();
    if (this.isPaused) {
      this.isPaused = false;
      this.movingFrom = this.clock.now + this.startMs;
    }
    return Promise.resolve();
  }
  pause() { this.advance(); this.isPaused = true; }
  seek(s) {
    this.advance();
    this.position = s;
    this.seekDone = this.clock.now + this.seekMs;
    this.seeks += 1;
  }
}

function follower(time, player) {
  return new Follower({
    player,
    now: () => time.now,
    setTimer: (fn, ms) => time.setTimer(fn, ms),
    clearTimer: (id) => time.clearTimer(id),
  });
}

/** Runs `ms` with the follower ticking every 100 ms. */
function play(time, f, ms) {
  time.run(ms, (now) => { if (now % 100 === 0) f.tick(); });
}

test("the group's position moves with the clock only while playing", () => {
  const p = { video: "v", playing: true, position: 10, rate: 1.5, at: 1_000 };
  assert.equal(positionAt(p, 1_000), 10);
  assert.equal(positionAt(p, 3_000), 13);
  assert.equal(positionAt(p, 500), 10, "a start announced for later has not begun");
  assert.equal(positionAt({ ...p, playing: false }, 9_000), 10);
});

test("commands carry on from where the group is", () => {
  const p = { video: "v", playing: true, position: 10, rate: 1, at: 0 };
  const paused = command(p, "pause", 2_000);
  assert.deepEqual([paused.playing, paused.position], [false, 12]);
  const resumed = command(paused, "play", 5_000);
  assert.equal(resumed.playing, true);
  assert.equal(resumed.position, 12, "a paused group goes on from where it paused");
  assert.ok(resumed.at > 5_000, "a start is announced a moment ahead, for every player at once");
  assert.equal(command(p, "seek", 2_000, 42).position, 42);
  const faster = command(p, "rate", 4_000, 2);
  assert.deepEqual([faster.position, faster.rate], [14, 2]);
  assert.ok(validPlay(faster));
  assert.ok(!validPlay({ ...faster, rate: 16 }), "only the offered rates");
  assert.ok(!validPlay({ ...faster, position: -1 }));
  assert.ok(!validPlay({ ...faster, position: Number.NaN }));
});

test("a player a little behind catches up by playing faster, then goes back to the rate", () => {
  const time = new Time();
  const player = new FakePlayer(time);
  const f = follower(time, player);
  player.position = 9.9;
  player.isPaused = false;
  player.movingFrom = 0;
  f.aligned = true;
  f.follow({ video: "v", playing: true, position: 10, rate: 1, at: 0 });
  assert.ok(player.playbackRate > 1 && player.playbackRate <= 1 + MAX_NUDGE, `rate ${player.playbackRate}`);
  assert.equal(player.seeks, 0, "a drift below 2 s is not a seek");
  play(time, f, 3_000);
  assert.ok(Math.abs(f.drift()) < 0.02, `drift ${f.drift()}`);
  assert.equal(player.playbackRate, 1, "back at the group's rate once in step");
  assert.ok(player.rates.every((r) => r >= 1 - MAX_NUDGE && r <= 1 + MAX_NUDGE));
});

test("a player ahead slows down", () => {
  const time = new Time();
  const player = new FakePlayer(time);
  const f = follower(time, player);
  player.position = 10.08;
  player.isPaused = false;
  player.movingFrom = 0;
  f.aligned = true;
  f.follow({ video: "v", playing: true, position: 10, rate: 1, at: 0 });
  assert.ok(player.playbackRate < 1);
  play(time, f, 5_000);
  assert.ok(Math.abs(f.drift()) < 0.02, `drift ${f.drift()}`);
});

test(`a drift above ${SEEK_ABOVE_S} s is a seek to where the group will be, started on time`, () => {
  const time = new Time();
  const player = new FakePlayer(time, { seekMs: 250, startMs: 20 });
  const f = follower(time, player);
  player.isPaused = false;
  player.movingFrom = 0;
  f.aligned = true;
  f.follow({ video: "v", playing: true, position: 30, rate: 1, at: 0 });
  assert.equal(player.seeks, 1);
  assert.ok(player.position > 30, "it seeks ahead of the group, to meet it");
  play(time, f, 2_000);
  assert.ok(Math.abs(f.drift()) < 0.05, `drift ${f.drift()}`);
});

test("a late joiner is with the group within 150 ms a second after it joined, and stays there", () => {
  for (const [seekMs, startMs] of [[80, 10], [200, 30], [350, 60]]) {
    const time = new Time();
    time.now = 60_000;
    const player = new FakePlayer(time, { seekMs, startMs });
    const f = follower(time, player);
    // The group started at 0 a minute ago.
    f.follow({ video: "v", playing: true, position: 0, rate: 1, at: 0 });
    play(time, f, 1_000);
    assert.ok(Math.abs(f.drift()) < 0.15, `seek ${seekMs} ms: drift ${f.drift()} after 1 s`);
    play(time, f, 3_000);
    assert.ok(Math.abs(f.drift()) < 0.025, `seek ${seekMs} ms: drift ${f.drift()} after 4 s`);
  }
});

test("a group that resumes from where every player paused starts without a seek", () => {
  const time = new Time();
  const player = new FakePlayer(time, { seekMs: 300, startMs: 0 });
  const f = follower(time, player);
  f.follow({ video: "v", playing: false, position: 12, rate: 1, at: 0 });
  play(time, f, 400);
  const seeks = player.seeks;
  f.follow({ video: "v", playing: true, position: 12, rate: 1, at: time.now + 150 });
  play(time, f, 200);
  assert.equal(player.seeks, seeks, "already there: no seek, which would take 300 ms");
  assert.ok(!player.paused(), "started at the announced moment");
});

test("a start announced for later begins then, from the position", () => {
  const time = new Time();
  const player = new FakePlayer(time, { seekMs: 50, startMs: 0 });
  const f = follower(time, player);
  f.follow({ video: "v", playing: true, position: 5, rate: 1, at: 1_000 });
  play(time, f, 900);
  assert.ok(player.paused(), "not before the start");
  assert.equal(player.time(), 5);
  play(time, f, 1_100);
  assert.ok(!player.paused());
  assert.ok(Math.abs(player.time() - 6) < 0.03, `at ${player.time()}`);
});

test("a paused group pauses every player where it paused, and a hold pauses without moving", () => {
  const time = new Time();
  const player = new FakePlayer(time, { seekMs: 10 });
  const f = follower(time, player);
  player.isPaused = false;
  player.movingFrom = 0;
  player.position = 12.02;
  f.follow({ video: "v", playing: false, position: 12, rate: 1, at: 0 });
  assert.ok(player.paused());
  play(time, f, 100);
  assert.equal(player.time(), 12);

  f.follow({ video: "v", playing: true, position: 12, rate: 1, at: time.now });
  play(time, f, 1_000);
  assert.ok(!player.paused());
  f.hold(true);
  assert.ok(player.paused(), "someone buffers: everyone waits");
  const there = player.time();
  play(time, f, 2_000);
  assert.equal(player.time(), there, "a held player does not seek after the group's clock");
});

test("the group clock takes the offset of the quickest round trip", () => {
  let local = 1_000;
  const clock = new GroupClock(() => local);
  // The host's clock is 500 ms ahead.
  const exchange = (up, down) => {
    const ping = clock.ping();
    local += up;
    const pong = GroupClock.pong(ping, local + 500);
    local += down;
    return clock.received(pong);
  };
  assert.ok(exchange(40, 200), "a slow, lopsided exchange");
  assert.ok(Math.abs(clock.offset - 500) > 50);
  assert.ok(exchange(5, 5));
  assert.equal(clock.offset, 500);
  assert.ok(exchange(100, 10), "a worse sample does not replace a better one");
  assert.equal(clock.offset, 500);
  assert.equal(clock.now(), local + 500);
  assert.ok(!clock.received({ t: "pong", id: 999, t1: 0 }), "nobody's answer");
  clock.reset();
  assert.equal(clock.offset, 0);
});

test("only https addresses and this server's are played", () => {
  const base = "http://127.0.0.1:8080";
  assert.equal(videoAddress("https://videos.example.org/a b.webm", base), "https://videos.example.org/a%20b.webm");
  assert.equal(videoAddress("/media/intro.mp4", base), "http://127.0.0.1:8080/media/intro.mp4");
  for (const bad of ["", "http://videos.example.org/a.mp4", "javascript:alert(1)", "data:video/mp4;base64,AAAA", "https://user:pw@example.org/a.mp4", `https://e.org/${"a".repeat(3000)}`, "//evil.example/a.mp4"]) {
    assert.throws(() => videoAddress(bad, base), /./, bad);
  }
  assert.equal(videoTitle("https://e.org/films/the%20film.webm?x=1"), "the film.webm");
  assert.equal(clockText(65), "1:05");
  assert.equal(clockText(3723), "1:02:03");
  assert.equal(clockText(Number.NaN), "0:00");
});
