// Keeping a player in step with the group: the logic, without the page. watch.js
// gives it a player (the <video>), a clock and the group's playback; node tests
// give it a fake player (tests/js/sync.test.mjs).
//
// The group's playback is one value of the activity's shared state, `play`:
//
//   { video, playing, position, rate, at, hold? }
//
// "At `at` (ms on the group's clock) the video `video` was at `position` seconds,
// playing at `rate` (or paused there)". Every page computes where the group is now
// (`positionAt`) and steers its player there:
//
// - a drift below SEEK_ABOVE_S (2 s) is closed by playing a little faster or slower
//   (at most MAX_NUDGE, 10 %, of the rate), from NUDGE_ABOVE_S (25 ms) until it is
//   below SETTLED_BELOW_S (10 ms);
// - above it, and when the player starts (a newcomer, a seek), a *prepared start*:
//   the player seeks to where the group will be a moment later (the lead, learnt
//   from how long this player's seeks take), waits there and starts playing when
//   the group reaches that position. The first lead is 400 ms; a seek that lands
//   late is tried again with a longer one.
//
// A player that cannot play where the group is (it waits for data: after a seek,
// when its buffer ran out, or while it loads the video) counts as stuck from when
// it should have been playing (`stuckFor`); watch.js makes the group wait for it.
// A held group (someone is stuck) stays paused where it is until the host's pause
// arrives, and then waits at that position; the stuck player is ready again
// (`readyToGo`) once it has RESUME_AHEAD_S of video there.
//
// The group's clock is the activity host's `Date.now()`: each page measures its
// offset to it over the activity's messages (GroupClock, as NTP does: the sample
// with the shortest round trip wins).

/** Above this drift (seconds), the player seeks instead of playing faster or slower. */
export const SEEK_ABOVE_S = 2;
/** From this drift on, the player plays faster or slower … */
export const NUDGE_ABOVE_S = 0.025;
/** … until it is below this one. */
export const SETTLED_BELOW_S = 0.01;
/** The largest change of the rate while catching up, as a fraction of it. */
export const MAX_NUDGE = 0.1;
/** How strongly the rate follows the drift: a rate change of GAIN × drift (s). */
export const NUDGE_GAIN = 2;
/** When a player starts, a drift above this is a prepared start, not a nudge. */
export const ALIGN_ABOVE_S = 0.1;
/** Play and seek commands take effect this long after they are given, so that
 * every player starts at the same moment. */
export const START_LEAD_MS = 150;
/** The first lead of a prepared start, and its bounds. */
export const FIRST_SEEK_LEAD_MS = 400;
export const MIN_SEEK_LEAD_MS = 150;
export const MAX_SEEK_LEAD_MS = 5_000;
/** Prepared starts in a row that land late before the player just plays and nudges. */
export const PREPARE_TRIES = 3;
/** A stuck player is ready to go on once it holds this much video ahead. */
export const RESUME_AHEAD_S = 2;
/** Playback rates a person may choose. */
export const RATES = [0.5, 0.75, 1, 1.25, 1.5, 2];

/** Where the group is at `now` (ms on the group's clock), in seconds. */
export function positionAt(play, now) {
  if (!play) return 0;
  if (!play.playing || now <= play.at) return play.position;
  return play.position + ((now - play.at) / 1000) * play.rate;
}

/** Whether `value` is a well-formed `play` (what a page accepts from the others). */
export function validPlay(value) {
  return Boolean(value)
    && typeof value === "object"
    && typeof value.video === "string"
    && typeof value.playing === "boolean"
    && Number.isFinite(value.position) && value.position >= 0 && value.position < 1e7
    && RATES.includes(value.rate)
    && Number.isFinite(value.at);
}

/** The `play` after `command` at `now` (group clock), from `play`. */
export function command(play, kind, now, argument) {
  const here = positionAt(play, now);
  switch (kind) {
    case "play":
      return { video: play.video, playing: true, position: here, rate: play.rate, at: now + START_LEAD_MS };
    case "pause":
      return { video: play.video, playing: false, position: here, rate: play.rate, at: now };
    case "seek":
      return { video: play.video, playing: play.playing, position: Math.max(0, argument), rate: play.rate, at: now + START_LEAD_MS };
    case "rate":
      return { video: play.video, playing: play.playing, position: here, rate: argument, at: now };
    default:
      throw new Error(`no such command: ${kind}`);
  }
}

/** The shortest addresses a video may have. */
const MAX_URL_CHARS = 2048;

/**
 * The video at `text`, as the player opens it: an `https://` address, or a path on
 * this server (`/…`), resolved against `base` (the server's origin). Throws an Error
 * whose message is a sentence for the person.
 */
export function videoAddress(text, base) {
  const raw = String(text ?? "").trim();
  if (!raw) throw new Error("Paste the address of a video.");
  if (raw.length > MAX_URL_CHARS) throw new Error(`An address is at most ${MAX_URL_CHARS} characters.`);
  let url;
  try {
    url = new URL(raw, base);
  } catch {
    throw new Error("That is not an address.");
  }
  const sameServer = base && url.origin === new URL(base).origin;
  if (url.protocol !== "https:" && !sameServer) {
    throw new Error("Only https:// addresses (or ones on this server) can be played.");
  }
  if (url.username || url.password) throw new Error("An address with a name or password in it cannot be shared.");
  return url.href;
}

/** A short title for the video at `href`: its file name. */
export function videoTitle(href) {
  try {
    const url = new URL(href);
    const name = decodeURIComponent(url.pathname.split("/").pop() || "") || url.host;
    return name.length > 80 ? `${name.slice(0, 77)}…` : name;
  } catch {
    return "a video";
  }
}

/** "1:05", "1:02:03". */
export function clockText(seconds) {
  const s = Math.max(0, Math.floor(Number.isFinite(seconds) ? seconds : 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/**
 * The offset of this page's clock to the group's (the activity host's), from
 * ping/pong messages: `offset` is what to add to `Date.now()`.
 */
export class GroupClock {
  constructor(local = () => Date.now(), keep = 8) {
    this.local = local;
    this.keep = keep;
    this.reset();
  }

  /** The host changed (or I am it): the samples were of another clock. */
  reset() {
    this.samples = [];
    this.offset = 0;
    this.sent = new Map();
    this.next = 1;
  }

  now() {
    return this.local() + this.offset;
  }

  /** A ping to send to the host. */
  ping() {
    const id = this.next++;
    const t0 = this.local();
    this.sent.set(id, t0);
    if (this.sent.size > 16) this.sent.delete(this.sent.keys().next().value);
    return { t: "ping", id, t0 };
  }

  /** The host's answer to `ping` (it has its clock at `t1`). */
  static pong(ping, local = Date.now()) {
    return { t: "pong", id: ping.id, t1: local };
  }

  /** A pong arrived: one more sample. Returns whether it was one of mine. */
  received(pong) {
    const t0 = this.sent.get(pong.id);
    if (t0 === undefined || !Number.isFinite(pong.t1)) return false;
    this.sent.delete(pong.id);
    const t2 = this.local();
    const rtt = Math.max(0, t2 - t0);
    this.samples.push({ rtt, offset: pong.t1 + rtt / 2 - t2 });
    if (this.samples.length > this.keep) this.samples.shift();
    this.offset = this.samples.reduce((best, s) => (s.rtt < best.rtt ? s : best)).offset;
    return true;
  }
}

/**
 * Steers a player after the group. `player` is
 * `{ time(), paused(), seeking(), ready(), duration(), rate(), setRate(r), play(), pause(), seek(s), ahead() }`
 * (`play` returns a promise; `ready` is "can play on from here"; `ahead`, the
 * seconds of video it holds from here on: optional);
 * `now()` is the group's clock; `setTimer`/`clearTimer` schedule a start.
 */
export class Follower {
  constructor({ player, now, setTimer = (fn, ms) => setTimeout(fn, ms), clearTimer = (id) => clearTimeout(id), onRefused = () => {} }) {
    Object.assign(this, { player, now, setTimer, clearTimer, onRefused });
    this.play = null;
    this.held = false;
    this.lead = FIRST_SEEK_LEAD_MS;
    this.reset();
  }

  reset() {
    if (this.timer) this.clearTimer(this.timer);
    this.timer = null;
    this.preparing = null;
    this.aligned = false;
    this.nudging = false;
    this.tries = 0;
    this.stuckSince = null;
  }

  /** The group's playback changed (or a new video: `reset` first). */
  follow(play) {
    const before = this.play;
    this.play = play;
    const moved = !before || before.video !== play?.video || before.position !== play?.position
      || before.playing !== play?.playing || before.at !== play?.at || before.rate !== play?.rate;
    if (moved && this.preparing) {
      // Prepared for what no longer holds.
      if (this.timer) this.clearTimer(this.timer);
      this.timer = null;
      this.preparing = null;
    }
    if (moved) {
      this.aligned = false;
      this.tries = 0;
    }
    this.tick();
  }

  /** The group waits (someone buffers): stay paused where we are. */
  hold(on) {
    this.held = Boolean(on);
    this.tick();
  }

  /** How long (ms) this player has been unable to play while the group plays; 0 if it can. */
  stuckFor() {
    return this.stuckSince === null ? 0 : Math.max(0, this.now() - this.stuckSince);
  }

  /** Whether this player, having made the group wait, can go on: ready where the
   * group waits (once the host paused it there) with RESUME_AHEAD_S of video. */
  readyToGo() {
    const { player, play } = this;
    if (!play || player.seeking() || !player.ready()) return false;
    if (this.held && play.playing) return false;
    if (!play.playing && Math.abs(player.time() - play.position) > 0.01) return false;
    const ahead = player.ahead?.() ?? Infinity;
    const end = player.duration();
    return ahead >= RESUME_AHEAD_S || (Number.isFinite(end) && player.time() + ahead >= end - 0.1);
  }

  /** Where this player should be now, and how far off it is (seconds, + = behind). */
  drift() {
    if (!this.play) return 0;
    return positionAt(this.play, this.now()) - this.player.time();
  }

  /** Called often (every 100 ms and on the player's events). */
  tick() {
    const { player, play } = this;
    if (!play) return;
    if (this.held || !play.playing) {
      this.stuckSince = null;
      this.cancelStart();
      if (!player.paused()) player.pause();
      this.setRate(play.rate);
      // Held while the group still plays (the host's pause is on its way): stay.
      if (this.held && play.playing) return;
      // Paused (or held there): exactly where the group paused, and goes on from.
      if (!player.seeking() && Math.abs(player.time() - play.position) > 0.01) player.seek(play.position);
      this.aligned = true;
      return;
    }
    const now = this.now();
    const end = player.duration();
    if (Number.isFinite(end) && end > 0 && positionAt(play, now) >= end - 0.05) {
      // The group reached the end: so does this player.
      this.stuckSince = null;
      this.cancelStart();
      this.setRate(play.rate);
      if (player.paused() && !player.seeking() && player.time() < end - 0.25) player.seek(end);
      return;
    }
    // Due to play (since the group's start, or this player's prepared one) and
    // waiting for data: stuck, from then on, until it can play again.
    if (player.seeking() || !player.ready()) {
      if (this.stuckSince === null && now >= (this.preparing?.startAt ?? play.at)) this.stuckSince = now;
    } else {
      this.stuckSince = null;
    }
    if (this.preparing) {
      this.checkPrepared(now);
      return;
    }
    if (now < play.at) {
      // A start announced for `at`: be at the position, paused, and start then.
      this.prepare(now, play.at);
      return;
    }
    const drift = this.drift();
    const away = Math.abs(drift);
    if (player.paused()) {
      if (away > ALIGN_ABOVE_S) this.prepare(now);
      else this.start();
      return;
    }
    if (away > SEEK_ABOVE_S || (!this.aligned && away > ALIGN_ABOVE_S && this.tries < PREPARE_TRIES)) {
      this.prepare(now);
      return;
    }
    this.aligned = true;
    this.nudge(drift);
  }

  nudge(drift) {
    const away = Math.abs(drift);
    if (this.nudging ? away < SETTLED_BELOW_S : away < NUDGE_ABOVE_S) {
      this.nudging = false;
      this.setRate(this.play.rate);
      return;
    }
    this.nudging = true;
    const change = Math.max(-MAX_NUDGE, Math.min(MAX_NUDGE, drift * NUDGE_GAIN));
    this.setRate(this.play.rate * (1 + change));
  }

  setRate(rate) {
    if (Math.abs(this.player.rate() - rate) > 1e-6) this.player.setRate(rate);
  }

  /** Seeks to where the group will be at `startAt` (now + the lead), then waits. */
  prepare(now, startAt = now + this.lead) {
    const duration = this.player.duration();
    let target = positionAt(this.play, startAt);
    if (Number.isFinite(duration) && duration > 0) target = Math.min(target, duration);
    this.cancelStart();
    if (!this.player.paused()) this.player.pause();
    this.setRate(this.play.rate);
    // A paused player already there (the group resumes) only waits for the start.
    if (this.player.seeking() || Math.abs(this.player.time() - target) > 0.01) this.player.seek(target);
    this.preparing = { target, startAt, since: now };
    this.tries += 1;
  }

  checkPrepared(now) {
    const p = this.preparing;
    if (this.timer) return;
    if (this.player.seeking() || !this.player.ready()) {
      if (now > p.startAt) {
        // Still seeking after the start: the lead was too short. Try again longer.
        this.lead = Math.min(MAX_SEEK_LEAD_MS, this.lead * 2);
        this.preparing = null;
        if (this.tries < PREPARE_TRIES) this.prepare(now);
      }
      return;
    }
    // There, and ready: learn from how long it took, and start on time.
    const took = now - p.since;
    this.lead = Math.max(MIN_SEEK_LEAD_MS, Math.min(MAX_SEEK_LEAD_MS, Math.round(0.7 * this.lead + 0.3 * took * 1.5)));
    const wait = p.startAt - now;
    if (wait < 0) {
      // Late: start anyway; the nudge (or another prepared start) takes it from here.
      this.preparing = null;
      this.start();
      return;
    }
    this.timer = this.setTimer(() => {
      this.timer = null;
      this.preparing = null;
      this.start();
    }, wait);
  }

  cancelStart() {
    if (this.timer) this.clearTimer(this.timer);
    this.timer = null;
    this.preparing = null;
  }

  start() {
    if (!this.player.paused()) return;
    Promise.resolve(this.player.play()).catch((error) => this.onRefused(error));
  }
}
