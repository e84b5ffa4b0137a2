// The call page: asks to join over the signaling WebSocket (docs/signaling.md),
// shows the lobby while waiting, and once on the call the video grid, controls,
// roster, join requests and removal controls. Media goes through the SFU
// (media.js).
//
// This file wires the pieces together: call/signaling.js (the WebSocket and
// resuming after a drop), call/state.js (what the server's messages change),
// call/secret.js (where the link secret comes from), call/views.js (the join and
// call cards) and call/tiles.js (the video grid and its controls).

import { CallCrypto, frameApi } from "/static/call-crypto.js";
import { secretFromHash } from "/static/e2ee.js";
import { MediaSession } from "/static/media.js";
import { CallPagePlugins } from "/static/plugins.js";
import { frameLimits } from "/static/lib/plugin-frames.js";
import { randomToken } from "/static/lib/random.js";
import { captureStill } from "/static/lib/still.js";
import { findSecret, forgetSecret, fullLink as linkWithSecret, hideSecret, keepSecret } from "/static/call/secret.js";
import { Signaling } from "/static/call/signaling.js";
import { MESSAGES, backToForm, initialState, publicLobby, publicRoster, reaction, reduce, serverNow } from "/static/call/state.js";
import { Controls, Tiles } from "/static/call/tiles.js";
import { Ducking } from "/static/call/ducking.js";
import { CallViews, Preview } from "/static/call/views.js";

const joinCard = document.getElementById("join");
const linkId = joinCard.dataset.link;
const signedIn = joinCard.dataset.signedIn === "yes";
const form = document.getElementById("join-form");
const withdrawButton = document.getElementById("withdraw");
const callCard = document.getElementById("call");
const leaveButton = document.getElementById("leave");
const lockButton = document.getElementById("lock-lobby");
const pluginArea = document.getElementById("plugin-areas");

// The link secret (call/secret.js): from `#k=`, else this tab, else this device.
// It leaves the address bar at once, and this tab keeps it until Leave.
const storages = { session: () => sessionStorage, local: () => localStorage };
const secret = findSecret(linkId, location.hash, storages);
hideSecret(location, history);
// The full link pasted into the address bar of this page: start over with it.
addEventListener("hashchange", () => {
  if (secretFromHash(location.hash)) location.reload();
});
keepSecret(linkId, secret, storages);
/** The link as people share it, with its secret (kept here, not in the address bar). */
function fullLink() {
  return linkWithSecret(location.origin, linkId, secret);
}

const resumeKey = `confab.resume.${linkId}`;
let state = initialState();
const signaling = new Signaling({
  url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/j/${linkId}/ws`,
  onMessage: (message) => handle(message),
  resumeToken: () => (state.me !== null ? sessionStorage.getItem(resumeKey) : null),
  askAgain: () => (state.me === null ? waitingWith : null),
  onReconnecting: () => inform("Connection lost. Reconnecting…"),
  onLost: () => {
    if (state.me !== null || form.hidden) showForm("Connection lost. Ask to join again.");
  },
});

function send(message) {
  signaling.send(message);
}

// Servers built for the test suite mark the page; only there can the tests reach
// into the encryption (its keys, the frame probe). Elsewhere no global holds a key.
const testHooks = joinCard.hasAttribute("data-test-hooks");
const canEncrypt = Boolean(window.isSecureContext && crypto.subtle && frameApi());
const encryption = secret && canEncrypt
  ? new CallCrypto({
    secret,
    send,
    onChange: () => showSecurity(),
    probe: testHooks && Boolean(localStorage.getItem("confab.e2eeProbe")),
  })
  : null;

const tiles = new Tiles({ grid: document.getElementById("grid"), send, state: () => state, encryption });
const views = new CallViews({ signedIn, send, now: () => serverNow(state), layout: () => tiles.layout() });
if (!encryption) views.cannotJoin(secret);

/** A random key this browser keeps for this link, so the lobby knows a returning guest. */
function guestKey() {
  const storageKey = `confab.guest.${linkId}`;
  let key = localStorage.getItem(storageKey);
  if (!key) {
    key = randomToken(18);
    localStorage.setItem(storageKey, key);
  }
  return key;
}

function note(text) {
  views.note(text);
}

/** Tells the user something: on the call in its notice line, else under the join form. */
function inform(text) {
  views.inform(text);
}

function showForm(message) {
  const hadLobby = state.lobby.length > 0;
  state = backToForm(state);
  // Off the call nobody waits for this user any more.
  if (hadLobby) plugins.lobbyChanged(publicLobby(state, signedIn));
  stopMedia();
  encryption?.close();
  views.showForm(message, state.linkGone);
}

function showCall() {
  views.showCall();
  render();
  showSecurity();
}

function render() {
  views.render(state);
}

function showSecurity() {
  views.showSecurity(encryption, state);
}

/** The call this page last joined (`joined`'s `call`). */
let lastCall = null;
/** The join request waiting in the lobby, to make again after a drop; null otherwise. */
let waitingWith = null;
/** The join request last sent. */
let lastJoin = null;

function handle(message) {
  const outcome = reaction(state, message);
  const wasMe = state.me;
  state = reduce(state, message, Date.now());
  switch (message.type) {
    case "welcome":
      break;
    case "waiting":
      waitingWith = lastJoin;
      views.showWaiting(outcome.waiting);
      break;
    case "joined":
      waitingWith = null;
      sessionStorage.setItem(resumeKey, message.resume_token);
      views.say("");
      showCall();
      // Keys first: frames that would leave before them are not sent at all.
      encryption.start(state.me, message.call).then(startMedia, mediaFailed);
      plugins.load();
      // Resumed in the same place (same call, same number): back into the activities.
      if (wasMe === message.participant && lastCall === message.call) plugins.rejoined();
      lastCall = message.call;
      break;
    case "e2ee":
      encryption?.receive(message.from, message.payload);
      break;
    case "plugin":
      plugins.deliver(message.plugin, message.payload);
      break;
    case "activity":
    case "activity_message":
    case "activity_update":
    case "activity_snapshot_request":
    case "activity_snapshot":
      plugins.activityMessage(message);
      break;
    case "publish_answer":
      media.onPublishAnswer(message.sdp).catch(mediaFailed);
      break;
    case "subscribe_offer":
      media.onSubscribeOffer(message.sdp).catch(mediaFailed);
      break;
    case "active_speaker":
      tiles.layout();
      break;
    case "roster":
      encryption?.rosterChanged(state.roster);
      render();
      plugins.rosterChanged(publicRoster(state));
      break;
    case "lobby":
      render();
      plugins.lobbyChanged(publicLobby(state, signedIn));
      break;
    default:
      // denied, removed, request_ended, call_ended, error: what `reaction` says.
      if (["denied", "removed", "request_ended", "call_ended", "error"].includes(message.type)) {
        waitingWith = null;
      }
      if (outcome) act(outcome);
      break;
  }
}

/** Does what call/state.js's `reaction` asks for a message that ends or troubles the call. */
function act(outcome) {
  if (outcome.forget) sessionStorage.removeItem(resumeKey);
  // The link was revoked or deleted: the server closes the connection, no reconnecting.
  if (outcome.revoked) signaling.leaving = true;
  if (outcome.restartMedia) restartMedia();
  else if (outcome.note !== undefined) note(outcome.note);
  else if (outcome.inform !== undefined) inform(outcome.inform);
  else if (outcome.form !== undefined) showForm(outcome.form);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!encryption) return;
  const name = form.elements.name.value.trim();
  if (!name || name.length > 64) {
    views.say(MESSAGES.invalid_name);
    return;
  }
  signaling.leaving = false;
  const join = { type: "join", name, ...(signedIn ? {} : { guest_key: guestKey() }) };
  lastJoin = join;
  signaling.sendOrConnect(join);
  views.say("Connecting…");
});
// The button starts disabled (join.html): until now a click would have sent the
// form to the server instead of here.
if (encryption) form.querySelector("button[type=submit]").disabled = false;

lockButton.addEventListener("click", () => send({ type: "lock_lobby", locked: !state.lobbyLocked }));
document.getElementById("suspend-guests")
  .addEventListener("click", () => send({ type: "suspend_guests", suspended: !state.guestsSuspended }));

withdrawButton.addEventListener("click", () => {
  waitingWith = null;
  send({ type: "withdraw" });
  showForm("");
});

leaveButton.addEventListener("click", () => {
  signaling.leaving = true;
  send({ type: "leave" });
  sessionStorage.removeItem(resumeKey);
  forgetSecret(linkId, storages);
  signaling.close();
  showForm("You left the call.");
});

setInterval(() => views.tick(), 1000);

// Camera and microphone: a preview before joining (call/views.js). On the call, a
// new choice of devices goes to the call's media too.
const preview = new Preview({
  onCall: () => state.me !== null && Boolean(media.publisher),
  onStream: async (stream) => {
    await media.replaceTrack("audio", stream.getAudioTracks()[0] ?? null);
    await media.replaceTrack("video", stream.getVideoTracks()[0] ?? null);
    tiles.show("local", stream);
  },
});
preview.start();

// ---- Media: the grid of tiles and the controls ----

let mediaRetries = 0;
const media = new MediaSession({
  send,
  crypto: encryption,
  onStream: (id, stream) => tiles.show(id, stream),
  onStreamGone: (id) => tiles.remove(id),
  onConnection: (connection) => {
    if (connection === "connected") {
      mediaRetries = 0;
      note("");
    } else if (connection === "reconnecting") {
      note("Connection lost. Reconnecting…");
    } else if (connection === "failed") {
      // ICE gave up: start over with fresh connections while the call goes on.
      restartMedia();
    }
  },
});

/** Starts audio and video over with fresh connections, a few times at most. */
function restartMedia() {
  if (state.me !== null && mediaRetries < 5) {
    mediaRetries += 1;
    note("Connection lost. Reconnecting…");
    setTimeout(startMedia, 1000);
  } else {
    note("Connection lost. Check your network, then leave and join again.");
  }
}
/**
 * A link a plugin asked the page to show (`showLink`, after it rotated the link):
 * the page writes it, with this call's secret, above the plugins' frames.
 */
function showPluginLink(url, label) {
  const box = document.createElement("p");
  box.className = "plugin-link";
  const text = document.createElement("label");
  text.textContent = `${label} `;
  const input = document.createElement("input");
  input.className = "url";
  input.readOnly = true;
  input.value = url;
  text.append(input);
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "button quiet";
  copy.textContent = "Copy";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(url);
      copy.textContent = "Copied";
    } catch {
      input.select();
    }
  });
  box.append(text, copy);
  pluginArea.before(box);
  input.focus();
}

// The call's audio, lowered while a plugin plays something.
const ducking = new Ducking({ setVolume: (volume) => tiles.setVolume(volume), before: pluginArea });

// Plugins' call-page frames, started once on the call (static/plugins.js).
const plugins = new CallPagePlugins({
  modules: JSON.parse(callCard.dataset.pluginModules || "[]"),
  area: pluginArea,
  send,
  me: () => state.me,
  participants: () => publicRoster(state),
  report: (text) => note(text),
  signedIn,
  csrf: callCard.dataset.csrf,
  seal: (bytes, plugin) => encryption.seal(bytes, plugin),
  link: () => fullLink(),
  linkTo: (id) => (secret ? linkWithSecret(location.origin, id, secret) : null),
  showLink: (url, label) => showPluginLink(url, label),
  open: (bytes, plugin) => encryption.open(bytes, plugin),
  lobby: () => publicLobby(state, signedIn),
  // The only way a plugin gets at the grid: one camera frame, after plugins.js asked.
  still: (participant) => captureStill(tiles.cameraVideo(participant)),
  notice: (text) => note(text),
  generation: () => encryption?.generation ?? 0,
  limits: frameLimits(callCard.dataset.pluginLimits),
  duck: (plugin, on) => ducking.ask(plugin, on),
});
/**
 * What the page's scripts (and the benchmarks) may read of the encryption: its
 * state and counters, no key. The tests of a test build get the object itself.
 */
function encryptionStatus(e) {
  if (!e) return null;
  return Object.freeze({
    get api() { return e.api; },
    get me() { return e.me; },
    get call() { return e.call; },
    get generation() { return e.generation; },
    get code() { return e.code; },
    get peers() { return [...e.peers.keys()]; },
    get joinedAt() { return e.joinedAt; },
    get firstFrame() { return new Map(e.firstFrame); },
    workerStats: () => e.workerStats(),
  });
}
window.confab = {
  media,
  plugins,
  e2ee: testHooks ? encryption : encryptionStatus(encryption),
  tiles: () => tiles.ids(),
  /** The run of the call this page is on (`joined`'s `call`; not a secret). */
  get call() { return lastCall; },
};

const controls = new Controls({ media, tiles, send, note, link: () => fullLink() });

function mediaFailed(error) {
  console.error(error);
  note(`Audio and video could not start (${error.name ?? error}). Leave and join again.`);
}

function startMedia() {
  tiles.keepLocal();
  tiles.show("local", preview.stream);
  // From a clean slate: an offer sent while the connection was down is never
  // answered and would hold up every later one; a screen share ends with it.
  media.close();
  controls.screenOff();
  media.start(preview.stream).catch(mediaFailed);
  controls.sendMute();
}

function stopMedia() {
  media.close();
  tiles.clear();
}

window.addEventListener("resize", () => tiles.layout());

// Back after a reload within the reconnect grace: take the same place (-1: a place
// whose participant number the server tells again).
const saved = sessionStorage.getItem(resumeKey);
if (saved && encryption) {
  state = { ...state, me: -1 };
  signaling.connect({ type: "resume", resume_token: saved });
}
