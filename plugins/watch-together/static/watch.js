// Watch together: a video everyone on the call watches in step. It runs in the
// plugin's sandboxed frame on the call page; the group's playback is the plugin's
// shared activity (sdk/README.md, "Shared activities"), which the page seals with
// the call's keys, so the server never learns what the call watches.
//
// Shared state: `video` ({ id, url, title, by }) is what plays, `play` the group's
// playback (sync.js), `options` a count the link's owner bumps when they change who
// may start a video. Messages: clock pings to the activity's host and its answers.
import {
  Follower, GroupClock, RATES, clockText, command, positionAt, validPlay,
  videoAddress, videoTitle,
} from "./sync.js";

/** The group starts a new video this long after it was chosen, so that every
 * player has loaded it. */
export const START_VIDEO_LEAD_MS = 1_000;
/** A player that stalls this long while the group plays in step makes the group
 * wait for it (sync.js, `stuckFor`) … */
export const STALL_MS = 500;
/** … and one that cannot start (it loads the video, or seeks) this long. */
export const START_STALL_MS = 3_000;
/** Clock pings to the host when it changes, this far apart, and then this often. */
const FIRST_PINGS = 5;
const PING_EVERY_MS = 200;
const REPING_MS = 10_000;
const TICK_MS = 100;
/** A join not answered by a presence that shows this page in is asked again after this long. */
const JOIN_AGAIN_MS = 5_000;

const STYLE = `
.watch video { width: 100%; max-height: 60vh; background: #000; border-radius: 6px; display: block; }
.watch .controls { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; margin: .5rem 0; }
.watch .controls input[type=range] { flex: 1 1 12rem; }
.watch .start { display: flex; gap: .5rem; flex-wrap: wrap; }
.watch .start input { flex: 1 1 16rem; }
.watch .status { margin: .25rem 0; }
`;

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function button(text, className = "button quiet") {
  return element("button", { type: "button", className, textContent: text });
}

/** The link's id from the call's address (`…/j/{id}`). */
export function linkId(address) {
  try {
    const parts = new URL(address).pathname.split("/").filter(Boolean);
    return parts.length >= 2 && parts[parts.length - 2] === "j" ? parts[parts.length - 1] : null;
  } catch {
    return null;
  }
}

export default function setup(plugin) {
  if (!plugin.activity) {
    plugin.element.append(element("p", { textContent: "Watching together needs a newer Confab server." }));
    return;
  }
  const watch = new Watch(plugin);
  watch.start();
  // For a look from the browser's console (and the browser tests' failure reports).
  globalThis.watchTogether = watch;
  return watch;
}

export class Watch {
  constructor(plugin) {
    this.plugin = plugin;
    this.activity = plugin.activity;
    this.link = linkId(plugin.link());
    this.clock = new GroupClock();
    this.options = { signed_in_only: false, can_change: false };
    this.video = null; // the shared `video`
    this.declined = false; // left the activity: do not join again until it ends
    this.suspended = false; // I made the group wait
    this.joinAsked = null; // when this page asked to join, until it is in
    this.ducked = false;
    this.hostAction = null;
    this.lastHost = null;
    this.pings = null;
    this.build();
    this.follower = new Follower({
      player: this.playerApi(),
      now: () => this.clock.now(),
      onRefused: (error) => this.refused(error),
    });
  }

  build() {
    const root = this.plugin.element;
    root.classList.add("watch");
    root.append(element("style", { textContent: STYLE }));
    this.status = element("p", { className: "status", role: "status" });
    this.problem = element("p", { className: "problem", role: "alert" });
    this.address = element("input", { type: "url", placeholder: "https://… a video file (MP4, WebM)", autocomplete: "off" });
    this.address.setAttribute("aria-label", "Video address");
    this.startButton = button("Watch together", "button");
    this.startForm = element("form", { className: "start" }, this.address, this.startButton);
    this.startButton.type = "submit";
    this.onlySignedIn = element("input", { type: "checkbox" });
    this.barred = element("p", { className: "barred", hidden: true, textContent: "Only people who signed in may start a video on this link." });
    this.optionLine = element("label", { className: "option", hidden: true }, this.onlySignedIn, " Only people who signed in may start a video on this link");
    this.player = element("video", { playsInline: true, preload: "auto" });
    this.playButton = button("Play", "button quiet play");
    this.seekBar = element("input", { type: "range", min: "0", max: "0", step: "0.1", value: "0" });
    this.seekBar.setAttribute("aria-label", "Position");
    this.time = element("span", { className: "time", textContent: "0:00" });
    this.rate = element("select");
    this.rate.setAttribute("aria-label", "Speed");
    for (const r of RATES) this.rate.append(element("option", { value: String(r), textContent: `${r}×` }));
    this.rate.value = "1";
    this.soundButton = button("Turn sound on", "button quiet sound");
    this.soundButton.hidden = true;
    this.stopButton = button("Stop the video", "button quiet stop");
    this.leaveButton = button("Stop watching", "button quiet leave");
    this.controls = element("div", { className: "controls" }, this.playButton, this.seekBar, this.time, this.rate, this.soundButton, this.stopButton, this.leaveButton);
    this.stage = element("div", { className: "stage", hidden: true }, this.player, this.controls);
    this.joinButton = button("Watch with them", "button");
    this.joinButton.hidden = true;
    root.append(element("h3", { textContent: "Watch together" }), this.status, this.problem, this.joinButton, this.startForm, this.barred, this.optionLine, this.stage);

    this.startForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.startVideo(this.address.value).catch((e) => this.say(e.message));
    });
    this.playButton.addEventListener("click", () => this.give(this.playing() ? "pause" : "play"));
    this.seekBar.addEventListener("change", () => this.give("seek", Number(this.seekBar.value)));
    this.rate.addEventListener("change", () => this.give("rate", Number(this.rate.value)));
    this.soundButton.addEventListener("click", () => {
      this.player.muted = false;
      this.soundButton.hidden = true;
      this.duck();
    });
    this.stopButton.addEventListener("click", () => this.stopVideo().catch((e) => this.say(e.message)));
    this.leaveButton.addEventListener("click", () => {
      this.declined = true;
      this.activity.leave().catch((e) => this.say(e.message));
    });
    this.joinButton.addEventListener("click", () => {
      this.declined = false;
      this.activity.join().catch((e) => this.say(e.message));
    });
    this.onlySignedIn.addEventListener("change", () => this.changeOption(this.onlySignedIn.checked).catch((e) => this.say(e.message)));

    const p = this.player;
    for (const event of ["waiting", "playing", "canplay", "seeked"]) p.addEventListener(event, () => this.tick());
    for (const event of ["play", "pause", "volumechange"]) p.addEventListener(event, () => this.duck());
    p.addEventListener("loadedmetadata", () => this.render());
    p.addEventListener("error", () => {
      if (this.video) this.say(`This video cannot be played here (${videoTitle(this.video.url)}).`);
    });
  }

  playerApi() {
    const p = this.player;
    return {
      time: () => p.currentTime,
      paused: () => p.paused,
      seeking: () => p.seeking,
      ready: () => p.readyState >= HTMLMediaElement.HAVE_FUTURE_DATA,
      duration: () => p.duration,
      rate: () => p.playbackRate,
      setRate: (r) => { p.playbackRate = r; },
      play: () => p.play(),
      pause: () => p.pause(),
      seek: (s) => { p.currentTime = s; },
      ahead: () => {
        const t = p.currentTime;
        for (let i = 0; i < p.buffered.length; i += 1) {
          if (p.buffered.start(i) <= t + 0.05 && p.buffered.end(i) > t) return p.buffered.end(i) - t;
        }
        return 0;
      },
    };
  }

  start() {
    const a = this.activity;
    a.onPresence(() => this.presenceChanged());
    a.state.onSync(({ state }) => this.synced(state));
    a.state.onChange((change) => this.changed(change));
    a.onSuspension(() => this.suspensionChanged());
    a.onMessage((bytes, meta) => this.message(bytes, meta));
    this.plugin.onParticipants?.(() => this.render());
    this.loadOptions();
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.presenceChanged();
    if (a.state.ready()) this.synced(a.state.all());
  }

  /** Stops its timers (the frame goes away with the page; tests call it). */
  stop() {
    clearInterval(this.ticker);
    clearInterval(this.pings);
    this.follower.reset();
  }

  // ---- what the activity says ----

  presenceChanged() {
    const { active, joined, host } = this.activity.presence();
    if (!active) this.declined = false;
    // Not watching (any more): this player stops.
    if (!joined) this.showVideo(null);
    if (joined || !active) this.joinAsked = null;
    if (active && !joined && !this.declined && !(Date.now() - this.joinAsked < JOIN_AGAIN_MS)) {
      // Someone started watching: this player opens it too (once: the presence
      // that says so may change again before it shows this page in).
      this.joinAsked = Date.now();
      this.activity.join().catch((e) => this.say(e.message));
    }
    if (host !== this.lastHost) this.hostChanged(host);
    this.render();
  }

  hostChanged(host) {
    const me = this.plugin.me();
    const wasHost = this.lastHost === me;
    this.lastHost = host;
    clearInterval(this.pings);
    this.pings = null;
    if (host === me && !wasHost) {
      // The group's clock is now mine: say where the group is, in it.
      const play = this.currentPlay();
      const here = play ? positionAt(play, this.clock.now()) : 0;
      this.clock.reset();
      if (play?.playing && this.activity.presence().joined) {
        this.setPlay({ ...play, position: here, at: this.clock.now() });
      }
      return;
    }
    this.clock.reset();
    if (host === null || host === me) return;
    let sent = 0;
    const ping = () => {
      if (!this.activity.presence().joined || this.activity.presence().host !== host) return;
      this.activity.send(JSON.stringify(this.clock.ping()), { to: [host] }).catch(() => {});
      sent += 1;
      if (sent === FIRST_PINGS) {
        clearInterval(this.pings);
        this.pings = setInterval(ping, REPING_MS);
      }
    };
    this.pings = setInterval(ping, PING_EVERY_MS);
    ping();
  }

  message(bytes, { from }) {
    let message;
    try {
      message = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      return;
    }
    if (message?.t === "ping" && Number.isInteger(message.id) && this.activity.presence().host === this.plugin.me()) {
      this.activity.send(JSON.stringify(GroupClock.pong(message)), { to: [from] }).catch(() => {});
    } else if (message?.t === "pong" && from === this.activity.presence().host) {
      this.clock.received(message);
    }
  }

  synced(state) {
    this.showVideo(this.acceptable(state.video, null) ? state.video : null);
    if (this.video && validPlay(state.play) && state.play.video === this.video.id) this.follower.follow(state.play);
    this.hostDuties();
    this.render();
  }

  changed({ key, value, from }) {
    if (key === "video") {
      this.showVideo(this.acceptable(value, from) ? value : null);
      const play = this.currentPlay();
      if (play) this.follower.follow(play);
    } else if (key === "play") {
      if (validPlay(value) && this.video && value.video === this.video.id) this.follower.follow(value);
      this.hostDuties();
    } else if (key === "options") {
      this.loadOptions();
    }
    this.render();
  }

  suspensionChanged() {
    const waiting = this.activity.waitingFor();
    this.follower.hold(waiting.length > 0);
    this.hostDuties();
    this.render();
  }

  /** Whether a shared `video` (written by `from`, when known) is one this page plays. */
  acceptable(video, from) {
    if (!video || typeof video !== "object" || typeof video.id !== "string" || typeof video.url !== "string") return false;
    if (from !== null && video.by !== from) return false;
    try {
      if (videoAddress(video.url, this.origin()) !== video.url) return false;
    } catch {
      return false;
    }
    if (this.options.signed_in_only && this.isGuest(video.by)) return false;
    return true;
  }

  isGuest(participant) {
    return this.plugin.participants().find((p) => p.participant === participant)?.guest !== false;
  }

  origin() {
    try {
      return new URL(this.plugin.link()).origin;
    } catch {
      return undefined;
    }
  }

  currentPlay() {
    const play = this.activity.state.ready() ? this.activity.state.get("play") : undefined;
    return this.video && validPlay(play) && play.video === this.video.id ? play : null;
  }

  /** The host makes the group wait while someone buffers, and go on together. */
  hostDuties() {
    const presence = this.activity.presence();
    if (!presence.joined || presence.host !== this.plugin.me()) return;
    const play = this.currentPlay();
    if (!play) return;
    const waiting = this.activity.waitingFor().length > 0;
    const now = this.clock.now();
    let next = null;
    if (waiting && play.playing) next = { ...command(play, "pause", now), hold: true };
    else if (!waiting && play.hold && !play.playing) next = command(play, "play", now);
    if (!next) return;
    // Once per state of the group: the write comes back in its turn.
    const action = `${next.playing}@${play.at}`;
    if (this.hostAction === action) return;
    this.hostAction = action;
    this.setPlay(next);
  }

  // ---- the player ----

  showVideo(video) {
    if (video?.id === this.video?.id) {
      this.video = video;
      return;
    }
    this.video = video;
    this.follower.reset();
    this.follower.play = null;
    this.resumeGroup();
    if (!video) {
      this.player.removeAttribute("src");
      this.player.load();
    } else {
      this.player.src = video.url;
      this.rate.value = "1";
    }
    this.duck();
  }

  tick() {
    if (!this.video) return;
    this.follower.tick();
    this.waitForMe();
    this.renderTime();
  }

  /** A player that cannot play where the group is makes the group wait (suspends
   * the activity, "buffering"), and lets it go on once it is ready there. */
  waitForMe() {
    if (this.suspended) {
      if (this.follower.readyToGo()) this.resumeGroup();
      return;
    }
    if (!this.currentPlay()?.playing || !this.activity.presence().joined) return;
    if (this.follower.stuckFor() >= (this.follower.aligned ? STALL_MS : START_STALL_MS)) {
      this.suspended = true;
      this.activity.suspend("buffering").catch(() => { this.suspended = false; });
    }
  }

  resumeGroup() {
    if (!this.suspended) return;
    this.suspended = false;
    this.activity.resume().catch(() => {});
  }

  refused(error) {
    if (error?.name !== "NotAllowedError" || this.player.muted) return;
    // The browser lets a frame play only without sound until the person clicks:
    // play on, muted, and offer the sound.
    this.player.muted = true;
    this.soundButton.hidden = false;
    this.follower.tick();
  }

  /** The call's audio is lowered while this player plays with sound. */
  duck() {
    const on = Boolean(this.video) && !this.player.paused && !this.player.muted && this.player.volume > 0;
    if (on === this.ducked) return;
    this.ducked = on;
    this.plugin.duckCallAudio?.(on).catch(() => {});
  }

  playing() {
    return Boolean(this.currentPlay()?.playing);
  }

  // ---- what this person does ----

  give(kind, argument) {
    this.say("");
    const play = this.currentPlay();
    if (!play) return;
    const next = command(play, kind, this.clock.now(), argument);
    this.setPlay(next);
  }

  setPlay(play) {
    this.activity.state.set("play", play).catch((e) => this.say(e.message));
  }

  async startVideo(text) {
    const url = videoAddress(text, this.origin());
    await this.loadOptions();
    if (this.options.signed_in_only && !this.plugin.signedIn) {
      throw new Error("Only people who signed in may start a video on this link.");
    }
    if (!this.activity.presence().joined) {
      this.declined = false;
      await this.activity.join();
    }
    await this.stateReady();
    const id = crypto.randomUUID();
    const me = this.plugin.me();
    await this.activity.state.set("video", { id, url, title: videoTitle(url), by: me });
    await this.activity.state.set("play", {
      video: id, playing: true, position: 0, rate: 1, at: this.clock.now() + START_VIDEO_LEAD_MS,
    });
    this.address.value = "";
  }

  async stopVideo() {
    await this.activity.state.delete("play");
    await this.activity.state.delete("video");
  }

  stateReady() {
    if (this.activity.state.ready()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const off = this.activity.state.onSync(() => {
        off();
        clearTimeout(timer);
        resolve();
      });
      const timer = setTimeout(() => {
        off();
        reject(new Error("The call did not answer. Try again."));
      }, 5_000);
    });
  }

  async loadOptions() {
    if (!this.link) return;
    try {
      const answer = await this.plugin.fetch(`/options?link=${encodeURIComponent(this.link)}`);
      if (!answer.ok) return;
      const options = await answer.json();
      this.options = { signed_in_only: Boolean(options.signed_in_only), can_change: Boolean(options.can_change) };
    } catch {
      return;
    }
    const anyone = ["host", "member", "guest", "signed-in"];
    await this.activity.restrict("video", this.options.signed_in_only ? ["signed-in"] : anyone).catch(() => {});
    // A guest's video from before the change stops here too.
    if (this.video && !this.acceptable(this.video, null)) this.showVideo(null);
    this.render();
  }

  async changeOption(signedInOnly) {
    const answer = await this.plugin.fetch(`/options?link=${encodeURIComponent(this.link)}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ signed_in_only: signedInOnly }),
    });
    if (!answer.ok) {
      const body = await answer.json().catch(() => null);
      throw new Error(body?.error?.message || "That did not work.");
    }
    await this.loadOptions();
    // Tell the others' pages to ask again.
    if (this.activity.presence().joined && this.activity.state.ready()) {
      await this.activity.state.set("options", (this.activity.state.get("options") ?? 0) + 1);
    }
  }

  // ---- what the frame shows ----

  /** A problem, in a sentence, until the next one (or the next command). */
  say(text) {
    this.problem.textContent = text;
  }

  render() {
    const presence = this.activity.presence();
    const names = new Map(this.plugin.participants().map((p) => [p.participant, p.name]));
    const video = this.video;
    const waiting = this.activity.waitingFor();
    this.stage.hidden = !video || !presence.joined;
    const guestBarred = this.options.signed_in_only && !this.plugin.signedIn;
    const watching = Boolean(video && presence.joined);
    this.startForm.hidden = watching || guestBarred;
    this.barred.hidden = watching || !guestBarred;
    this.optionLine.hidden = !this.options.can_change;
    this.onlySignedIn.checked = this.options.signed_in_only;
    this.joinButton.hidden = !(presence.active && !presence.joined);
    let status = "";
    if (waiting.length > 0) {
      status = `Waiting for ${waiting.map((w) => `${w.name || "someone"}${w.reason ? ` (${w.reason})` : ""}`).join(", ")}…`;
    } else if (video && presence.joined) {
      status = `${names.get(video.by) || "Someone"} started “${video.title}” · ${presence.members.length} watching`;
    } else if (presence.active && !presence.joined) {
      status = `${presence.members.length} watching a video together.`;
    }
    this.status.textContent = status;
    const play = this.currentPlay();
    this.playButton.textContent = play?.playing ? "Pause" : "Play";
    if (play) this.rate.value = String(play.rate);
    this.renderTime();
  }

  renderTime() {
    const d = this.player.duration;
    if (Number.isFinite(d)) this.seekBar.max = String(d);
    if (document.activeElement !== this.seekBar) this.seekBar.value = String(this.player.currentTime);
    this.time.textContent = `${clockText(this.player.currentTime)} / ${clockText(d)}`;
  }
}
