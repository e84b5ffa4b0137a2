// The call page: asks to join over the signaling WebSocket (docs/signaling.md),
// shows the lobby while waiting, and once on the call the video grid, controls,
// roster, join requests and removal controls. Media goes through the SFU
// (media.js).

import { CallCrypto, frameApi } from "/static/call-crypto.js";
import { secretFromHash } from "/static/e2ee.js";
import { MediaSession } from "/static/media.js";
import { CallPagePlugins } from "/static/plugins.js";

const joinCard = document.getElementById("join");
const linkId = joinCard.dataset.link;
const signedIn = joinCard.dataset.signedIn === "yes";
const form = document.getElementById("join-form");
const statusLine = document.getElementById("status");
const withdrawButton = document.getElementById("withdraw");
const callCard = document.getElementById("call");
const rosterList = document.getElementById("roster");
const lobbyPanel = document.getElementById("lobby-panel");
const lobbyList = document.getElementById("lobby");
const lobbyMore = document.getElementById("lobby-more");
const leaveButton = document.getElementById("leave");
const approvalHint = document.getElementById("approval-hint");
const preview = document.getElementById("preview");
const mediaNote = document.getElementById("media-note");
const cameraSelect = document.getElementById("camera");
const micSelect = document.getElementById("microphone");
const grid = document.getElementById("grid");
const micButton = document.getElementById("toggle-mic");
const camButton = document.getElementById("toggle-camera");
const screenButton = document.getElementById("toggle-screen");
const copyButton = document.getElementById("copy-link");
const lockButton = document.getElementById("lock-lobby");
const lobbyState = document.getElementById("lobby-state");
const callNote = document.getElementById("call-note");
const pluginArea = document.getElementById("plugin-areas");
const securityLine = document.getElementById("e2ee");
const securityProblems = document.getElementById("e2ee-problems");
const securityCount = document.getElementById("e2ee-count");
const secretProblem = document.getElementById("secret-problem");

// The link secret (`#k=…`): the browser never sends it to the server; every key of
// the call is made from it. Once read it leaves the address bar (where a screen
// share would show it, and history would keep it); this tab keeps it so that a
// reload finds it, and forgets it on Leave. A link's owner who asked the
// dashboard to remember the secret on this device has it in localStorage.
const tabSecretKey = `confab.tab-secret.${linkId}`;
const storedSecret = (storage, key) => {
  try {
    return secretFromHash(`k=${storage.getItem(key) ?? ""}`);
  } catch {
    return null; // storage turned off
  }
};
const secret = secretFromHash(location.hash)
  ?? storedSecret(sessionStorage, tabSecretKey)
  ?? storedSecret(localStorage, `confab.secret.${linkId}`);
if (location.hash) history.replaceState(history.state, "", `${location.pathname}${location.search}`);
// The full link pasted into the address bar of this page: start over with it.
addEventListener("hashchange", () => {
  if (secretFromHash(location.hash)) location.reload();
});
if (secret) {
  try {
    sessionStorage.setItem(tabSecretKey, secret);
  } catch {
    // No storage: a reload needs the link again.
  }
}
/** The link as people share it, with its secret (kept here, not in the address bar). */
function fullLink() {
  return `${location.origin}/j/${linkId}${secret ? `#k=${secret}` : ""}`;
}
// Servers built for the test suite mark the page; only there can the tests reach
// into the encryption (its keys, the frame probe). Elsewhere no global holds a key.
const testHooks = document.getElementById("join").hasAttribute("data-test-hooks");
const canEncrypt = Boolean(window.isSecureContext && crypto.subtle && frameApi());
const encryption = secret && canEncrypt
  ? new CallCrypto({
    secret,
    linkId,
    send,
    onChange: () => showSecurity(),
    probe: testHooks && Boolean(localStorage.getItem("confab.e2eeProbe")),
  })
  : null;
if (!encryption) {
  secretProblem.textContent = !secret
    ? "This link is missing its secret key (the part after #k=). Calls are end-to-end encrypted with it: ask the person who invited you for the whole link."
    : !window.isSecureContext
      ? "Calls are end-to-end encrypted, which browsers only allow on pages served over HTTPS. Ask the administrator to serve Confab over HTTPS."
      : "This browser can't encrypt calls end to end, so it can't join. Use a current Chrome, Edge, Firefox or Safari.";
  secretProblem.hidden = false;
  form.querySelector("button[type=submit]").disabled = true;
}

const resumeKey = `confab.resume.${linkId}`;
let socket = null;
let me = null; // my participant id once joined
let roster = [];
let lobby = [];
let lobbyTotal = 0;
let lobbyLocked = false;
let leaving = false;
// The link was revoked: nothing on this page can join any more.
let linkGone = false;
// Server clock minus this browser's clock: times come from the server.
let skew = 0;
// Waits before each try to take our place back after the connection dropped. The
// server keeps the place for calls.reconnect_grace_secs (30 s by default) and answers
// resume_expired after that; these tries span a little longer.
const RESUME_DELAYS_MS = [1000, 2000, 3000, 5000, 5000, 5000, 5000, 5000];
let resumeTries = 0;

/** A random key this browser keeps for this link, so the lobby knows a returning guest. */
function guestKey() {
  const storageKey = `confab.guest.${linkId}`;
  let key = localStorage.getItem(storageKey);
  if (!key) {
    const bytes = crypto.getRandomValues(new Uint8Array(18));
    key = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    localStorage.setItem(storageKey, key);
  }
  return key;
}

function say(text) {
  statusLine.textContent = text;
  statusLine.hidden = !text;
}

/** Tells the user something: on the call in its notice line, else under the join form. */
function inform(text) {
  if (callCard.hidden) say(text);
  else note(text);
}

function showForm(message) {
  me = null;
  lobby = [];
  lobbyTotal = 0;
  stopMedia();
  encryption?.close();
  callCard.hidden = true;
  joinCard.hidden = false;
  form.hidden = false;
  withdrawButton.hidden = true;
  if (approvalHint) approvalHint.hidden = false;
  if (linkGone) form.querySelector("button[type=submit]").disabled = true;
  say(message);
}

/** The link was revoked or deleted: say so, for good. */
function linkRevoked() {
  linkGone = true;
  leaving = true; // the server closes the connection: no reconnecting
  sessionStorage.removeItem(resumeKey);
  showForm(LINK_REVOKED);
}

function showWaiting(text) {
  joinCard.hidden = false;
  callCard.hidden = true;
  form.hidden = true;
  withdrawButton.hidden = false;
  if (approvalHint) approvalHint.hidden = true;
  say(text);
}

function showCall() {
  joinCard.hidden = true;
  callCard.hidden = false;
  render();
  showSecurity();
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ v: 1, ...message }));
}

function connect(first) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/j/${linkId}/ws`);
  socket.addEventListener("open", () => send(first));
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    socket = null;
    if (leaving) return;
    const token = sessionStorage.getItem(resumeKey);
    if (me !== null && token && resumeTries < RESUME_DELAYS_MS.length) {
      // The network dropped: come back to the same place, without the lobby. A try
      // while the network is still down fails the same way and leads to the next.
      const delay = RESUME_DELAYS_MS[resumeTries];
      resumeTries += 1;
      inform("Connection lost. Reconnecting…");
      setTimeout(() => connect({ type: "resume", resume_token: token }), delay);
    } else if (me !== null || form.hidden) {
      showForm("Connection lost. Ask to join again.");
    }
  });
}

const LINK_REVOKED = "This link was revoked. Ask the person who shared it for a new one.";

const messages = {
  call_full: "This call is full.",
  blocked: "You were declined twice and can't ask to join this call again.",
  removed: "You were removed from this call and can't join it again.",
  lobby_locked: "The people on this call locked it: nobody new can ask to join right now.",
  lobby_full: "Too many people are waiting to join this call. Try again in a few minutes.",
  too_many_requests: "Too many requests to join came from your network. Wait a minute and try again.",
  link_rotated: "This link was replaced with a new one. Ask the person who shared it for the new link.",
  unavailable: "The server couldn't do that just now. Try again.",
  resume_expired: "Connection lost. Ask to join again.",
  invalid_name: "Enter a name of 1 to 64 characters.",
};

function handle(message) {
  switch (message.type) {
    case "welcome":
      break;
    case "waiting":
      showWaiting(
        message.waiting_for === "host"
          ? "Waiting for the host to join…"
          : "Asked to join. Someone on the call will let you in.",
      );
      break;
    case "joined":
      me = message.participant;
      resumeTries = 0;
      sessionStorage.setItem(resumeKey, message.resume_token);
      say("");
      showCall();
      // Keys first: frames that would leave before them are not sent at all.
      encryption.start(me, message.call).then(startMedia, mediaFailed);
      plugins.load();
      break;
    case "e2ee":
      encryption?.receive(message.from, message.payload);
      break;
    case "plugin":
      plugins.deliver(message.plugin, message.payload);
      break;
    case "publish_answer":
      media.onPublishAnswer(message.sdp).catch(mediaFailed);
      break;
    case "subscribe_offer":
      media.onSubscribeOffer(message.sdp).catch(mediaFailed);
      break;
    case "active_speaker":
      speaker = message.participant;
      layoutTiles();
      break;
    case "roster":
      skew = Date.parse(message.now) - Date.now();
      roster = message.participants;
      encryption?.rosterChanged(roster);
      render();
      plugins.rosterChanged(publicRoster());
      break;
    case "lobby":
      skew = Date.parse(message.now) - Date.now();
      lobby = message.requests;
      lobbyTotal = message.total ?? lobby.length;
      lobbyLocked = Boolean(message.locked);
      render();
      break;
    case "denied":
      if (message.reason) showForm(`Your request to join was declined: ${message.reason}`);
      else showForm(message.blocked
        ? "You were declined twice and can't ask to join this call again."
        : "Your request to join was declined.");
      break;
    case "removed":
      sessionStorage.removeItem(resumeKey);
      showForm(`You were removed from the call by ${message.by}.`);
      break;
    case "request_ended":
      if (message.why === "link_revoked") {
        linkRevoked();
        break;
      }
      showForm({
        withdrawn: "",
        timed_out: "Nobody answered your request. Ask again when the call is on.",
        call_ended: "The call has ended.",
        link_rotated: messages.link_rotated,
      }[message.why] ?? "");
      break;
    case "call_ended":
      sessionStorage.removeItem(resumeKey);
      if (message.reason === "link_revoked") linkRevoked();
      else showForm("The call has ended.");
      break;
    case "error":
      if (message.code === "link_revoked") {
        linkRevoked();
        break;
      }
      if (message.code === "media_failed") {
        // The server reset this call's media: start over with fresh connections.
        restartMedia();
        break;
      }
      if (message.code === "bad_sdp" || message.code === "media_unavailable") {
        note(`Audio and video could not start: ${message.message}`);
        break;
      }
      if (message.code === "resume_expired") sessionStorage.removeItem(resumeKey);
      if (me === null || message.code === "resume_expired") showForm(messages[message.code] ?? message.message);
      else inform(messages[message.code] ?? message.message);
      break;
    default:
      break;
  }
}

function serverNow() {
  return Date.now() + skew;
}

function secondsLeft(until) {
  return Math.max(0, Math.ceil((Date.parse(until) - serverNow()) / 1000));
}

function waited(since) {
  const s = Math.max(0, Math.floor((serverNow() - Date.parse(since)) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `button ${className}`;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

const FLAGS = {
  same_network_as_removed: "Same network as a guest who was removed",
  same_network_as_blocked: "Same network as a guest who was declined twice",
};

function render() {
  if (callCard.hidden) return;
  layoutTiles();
  const mine = roster.find((p) => p.participant === me);
  const iAmOwner = Boolean(mine && mine.owner);
  rosterList.replaceChildren(...roster.map((p) => {
    const li = document.createElement("li");
    li.dataset.participant = p.participant;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = p.name + (p.participant === me ? " (you)" : "");
    li.append(name);
    const tags = [
      p.owner ? "host" : null,
      p.guest ? "guest" : null,
      p.sharing_screen ? "sharing screen" : null,
      p.connected ? null : "reconnecting…",
    ];
    for (const tag of tags.filter(Boolean)) {
      const t = document.createElement("span");
      t.className = "tag";
      t.textContent = tag;
      li.append(t);
    }
    if (signedIn && p.guest && p.participant !== me) {
      const left = p.removable_until ? secondsLeft(p.removable_until) : 0;
      if (iAmOwner || left > 0) {
        const label = iAmOwner ? "Remove" : `Remove (${left}s)`;
        const remove = button(label, "quiet", () => send({ type: "remove", participant: p.participant }));
        // Others may remove a guest only during the window: the label counts down.
        if (!iAmOwner) remove.dataset.until = p.removable_until;
        li.append(remove);
      }
    }
    return li;
  }));
  const mayDecide = signedIn && Boolean(mine) && !mine.guest;
  lockButton.hidden = !mayDecide;
  lockButton.textContent = lobbyLocked ? "Unlock lobby" : "Lock lobby";
  lockButton.setAttribute("aria-pressed", String(lobbyLocked));
  lobbyState.hidden = !mayDecide || !lobbyLocked;
  lobbyPanel.hidden = !signedIn || lobby.length === 0;
  lobbyMore.hidden = lobbyTotal <= lobby.length;
  lobbyMore.textContent = `and ${lobbyTotal - lobby.length} more waiting`;
  lobbyList.replaceChildren(...lobby.map((r) => {
    const li = document.createElement("li");
    li.dataset.request = r.request;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = r.name;
    const since = document.createElement("span");
    since.className = "meta";
    since.dataset.since = r.asked_at;
    since.textContent = `waiting ${waited(r.asked_at)}`;
    const actions = document.createElement("span");
    actions.className = "actions";
    actions.append(
      button("Admit", "primary", () => send({ type: "admit", request: r.request })),
      button("Deny", "danger", () => send({ type: "deny", request: r.request })),
    );
    li.append(name, since, actions);
    // What the server noticed, then what plugins that screen requests (a spam
    // check, say) doubt.
    for (const flag of r.flags ?? []) {
      const w = document.createElement("p");
      w.className = "warning";
      w.textContent = `⚠ ${FLAGS[flag] ?? flag}`;
      li.append(w);
    }
    for (const warning of r.warnings ?? []) {
      const w = document.createElement("p");
      w.className = "warning";
      w.textContent = `⚠ ${warning.message} (${warning.plugin})`;
      li.append(w);
    }
    return li;
  }));
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!encryption) return;
  const name = form.elements.name.value.trim();
  if (!name || name.length > 64) {
    say(messages.invalid_name);
    return;
  }
  leaving = false;
  const join = { type: "join", name, ...(signedIn ? {} : { guest_key: guestKey() }) };
  if (socket && socket.readyState === WebSocket.OPEN) send(join);
  else connect(join);
  say("Connecting…");
});

lockButton.addEventListener("click", () => send({ type: "lock_lobby", locked: !lobbyLocked }));

withdrawButton.addEventListener("click", () => {
  send({ type: "withdraw" });
  showForm("");
});

leaveButton.addEventListener("click", () => {
  leaving = true;
  send({ type: "leave" });
  sessionStorage.removeItem(resumeKey);
  sessionStorage.removeItem(tabSecretKey);
  socket?.close();
  showForm("You left the call.");
});

// Countdowns and waiting times tick every second, in place: rebuilding the lists
// would swap buttons out from under a click.
function tick() {
  for (const label of document.querySelectorAll("[data-since]")) {
    label.textContent = `waiting ${waited(label.dataset.since)}`;
  }
  for (const remove of document.querySelectorAll("[data-until]")) {
    const left = secondsLeft(remove.dataset.until);
    if (left > 0) remove.textContent = `Remove (${left}s)`;
    else remove.remove();
  }
}
setInterval(tick, 1000);

// Camera and microphone: a preview before joining, with a choice of devices. The
// stream is kept for the call's media.
let localStream = null;

function explainMediaError(error) {
  switch (error.name) {
    case "NotAllowedError":
      return "Confab isn't allowed to use your camera and microphone. Allow them in your browser's site settings and reload the page. You can still ask to join.";
    case "NotFoundError":
      return "No camera or microphone was found. You can still ask to join.";
    case "NotReadableError":
      return "Your camera or microphone is in use by another app. Close it and reload the page.";
    default:
      return `Your camera or microphone could not be started (${error.name}).`;
  }
}

function fillDevices(select, devices, fallback) {
  const chosen = select.value;
  select.replaceChildren(...devices.map((device, i) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || `${fallback} ${i + 1}`;
    return option;
  }));
  if (devices.some((d) => d.deviceId === chosen)) select.value = chosen;
  select.disabled = devices.length === 0;
}

async function startPreview() {
  if (!navigator.mediaDevices?.getUserMedia) {
    mediaNote.textContent = "This browser can't use a camera or microphone on this page. Use a current Chrome, Edge, Firefox or Safari.";
    mediaNote.hidden = false;
    return;
  }
  const pick = (select) => (select.value ? { deviceId: { exact: select.value } } : true);
  localStream?.getTracks().forEach((track) => track.stop());
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ video: pick(cameraSelect), audio: pick(micSelect) });
    preview.srcObject = localStream;
    mediaNote.hidden = true;
    if (me !== null && media.publisher) {
      await media.replaceTrack("audio", localStream.getAudioTracks()[0] ?? null);
      await media.replaceTrack("video", localStream.getVideoTracks()[0] ?? null);
      showStream("local", localStream);
    }
    // Device names are only visible once access is granted.
    const devices = await navigator.mediaDevices.enumerateDevices();
    fillDevices(cameraSelect, devices.filter((d) => d.kind === "videoinput"), "Camera");
    fillDevices(micSelect, devices.filter((d) => d.kind === "audioinput"), "Microphone");
    const [video] = localStream.getVideoTracks();
    const [audio] = localStream.getAudioTracks();
    if (video) cameraSelect.value = video.getSettings().deviceId ?? cameraSelect.value;
    if (audio) micSelect.value = audio.getSettings().deviceId ?? micSelect.value;
  } catch (error) {
    localStream = null;
    preview.srcObject = null;
    mediaNote.textContent = explainMediaError(error);
    mediaNote.hidden = false;
  }
}

cameraSelect.addEventListener("change", startPreview);
micSelect.addEventListener("change", startPreview);
startPreview();

// ---- Media: the grid of tiles and the controls ----

const media = new MediaSession({
  send,
  crypto: encryption,
  onStream: (id, stream) => showStream(id, stream),
  onStreamGone: (id) => removeTile(id),
  onConnection: (state) => {
    if (state === "connected") {
      mediaRetries = 0;
      note("");
    } else if (state === "reconnecting") {
      note("Connection lost. Reconnecting…");
    } else if (state === "failed") {
      // ICE gave up: start over with fresh connections while the call goes on.
      restartMedia();
    }
  },
});

/** Starts audio and video over with fresh connections, a few times at most. */
function restartMedia() {
  if (me !== null && mediaRetries < 5) {
    mediaRetries += 1;
    note("Connection lost. Reconnecting…");
    setTimeout(startMedia, 1000);
  } else {
    note("Connection lost. Check your network, then leave and join again.");
  }
}
// Plugins' call-page modules, loaded once on the call (static/plugins.js).
function publicRoster() {
  return roster.map((p) => ({ participant: p.participant, name: p.name, guest: p.guest }));
}
const plugins = new CallPagePlugins({
  modules: JSON.parse(callCard.dataset.pluginModules || "[]"),
  area: pluginArea,
  send,
  me: () => me,
  participants: publicRoster,
  report: (text) => note(text),
  signedIn,
  csrf: callCard.dataset.csrf,
  seal: (bytes, plugin) => encryption.seal(bytes, plugin),
  link: () => fullLink(),
  open: (bytes, plugin) => encryption.open(bytes, plugin),
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
  tiles: () => [...grid.children].map((t) => t.dataset.stream),
};

/** The encryption indicator, the safety code, and whose frames cannot be opened. */
function showSecurity() {
  if (!encryption || callCard.hidden) return;
  const code = encryption.code;
  securityLine.textContent = code
    ? `End-to-end encrypted · Safety code ${code}`
    : "End-to-end encrypted · Checking the safety code…";
  securityLine.title = "Compare the safety code out loud: everyone on the call with the right keys sees the same one.";
  securityLine.hidden = false;
  // Everyone on the roster should have exactly one verified key, and nobody else.
  const people = encryption.onRoster.size;
  const keys = encryption.peers.size;
  securityCount.textContent = `${people} ${people === 1 ? "other person" : "other people"} · ${keys} ${keys === 1 ? "key" : "keys"}`;
  securityCount.classList.toggle("mismatch", people !== keys);
  securityCount.hidden = people === 0 && keys === 0;
  const problems = [...encryption.failed.entries()]
    .filter(([participant]) => participant !== me)
    .map(([participant, reason]) => {
      const person = roster.find((p) => p.participant === participant);
      return `Can't decrypt ${person ? person.name : "a participant"}: their browser ${reason}. One of you may have a different or incomplete link.`;
    });
  for (const participant of encryption.ghostParticipants()) {
    problems.push(
      `Someone who is not on the call (participant ${participant}) sent encryption keys. The server may be trying to listen in; this browser gave them no keys.`,
    );
  }
  securityProblems.replaceChildren(...problems.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  securityProblems.hidden = problems.length === 0;
  layoutTiles();
}
let mediaRetries = 0;
let speaker = null;
let micOn = true;
let camOn = true;
const sentQuality = new Map();

function note(text) {
  callNote.textContent = text;
  callNote.hidden = !text;
}

function mediaFailed(error) {
  console.error(error);
  note(`Audio and video could not start (${error.name ?? error}). Leave and join again.`);
}

function startMedia() {
  for (const tile of [...grid.children]) if (tile.dataset.stream !== "local") tile.remove();
  showStream("local", localStream);
  // From a clean slate: an offer sent while the connection was down is never
  // answered and would hold up every later one; a screen share ends with it.
  media.close();
  toggle(screenButton, true, "Share screen", "Stop sharing");
  media.start(localStream).catch(mediaFailed);
  sendMute();
}

function stopMedia() {
  media.close();
  grid.replaceChildren();
  sentQuality.clear();
  speaker = null;
}

function participantOf(streamId) {
  if (streamId === "local") return me;
  const m = /^p(\d+)-(\d+)$/.exec(streamId);
  return m ? Number(m[1]) : null;
}

function showStream(id, stream) {
  let tile = grid.querySelector(`[data-stream="${CSS.escape(id)}"]`);
  if (!tile) {
    tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.stream = id;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    // Your own tile never plays your microphone back.
    if (id === "local") video.muted = true;
    const label = document.createElement("figcaption");
    tile.append(video, label);
    grid.append(tile);
  }
  const video = tile.querySelector("video");
  if (video.srcObject !== stream) video.srcObject = stream;
  video.play?.().catch(() => {});
  layoutTiles();
}

function removeTile(id) {
  grid.querySelector(`[data-stream="${CSS.escape(id)}"]`)?.remove();
  layoutTiles();
}

/** Names, speaker highlight, screen tiles first, a grid from 1 to 32 tiles, and the quality each tile needs. */
function layoutTiles() {
  const tiles = [...grid.children];
  for (const tile of tiles) {
    const id = tile.dataset.stream;
    const who = participantOf(id);
    const person = roster.find((p) => p.participant === who);
    const screen = /-1$/.test(id);
    const name = person ? person.name : "";
    let label = who === me ? `${name || "You"} (you)` : name;
    if (screen) label = `${name}'s screen`;
    if (person?.audio_muted && !screen) label += " · muted";
    const undecryptable = who !== me && who !== null && Boolean(encryption?.failed.has(who));
    if (undecryptable) label += " · can't decrypt";
    tile.classList.toggle("undecryptable", undecryptable);
    tile.querySelector("figcaption").textContent = label;
    tile.classList.toggle("speaking", who !== null && who === speaker && !screen);
    tile.classList.toggle("screen", screen);
    // A participant who left loses their tiles even before the offer removing them.
    if (id !== "local" && roster.length && !person) tile.remove();
  }
  const count = grid.children.length;
  const columns = Math.ceil(Math.sqrt(count));
  grid.style.setProperty("--columns", String(Math.max(1, columns)));
  grid.dataset.count = String(count);
  for (const tile of grid.children) {
    const who = participantOf(tile.dataset.stream);
    if (tile.dataset.stream === "local" || tile.classList.contains("screen") || who === null) continue;
    const width = tile.clientWidth || 640;
    const layer = width < 240 ? 0 : width < 480 ? 1 : 2;
    if (sentQuality.get(who) !== layer) {
      sentQuality.set(who, layer);
      send({ type: "set_quality", participant: who, layer });
    }
  }
}
window.addEventListener("resize", layoutTiles);

function sendMute() {
  send({ type: "mute", audio: !micOn, video: !camOn, screen: Boolean(media.screen) });
}

function toggle(button, on, onLabel, offLabel) {
  button.textContent = on ? onLabel : offLabel;
  button.setAttribute("aria-pressed", String(!on));
}

micButton.addEventListener("click", () => {
  micOn = !micOn;
  media.setEnabled("audio", micOn);
  toggle(micButton, micOn, "Mute", "Unmute");
  sendMute();
  layoutTiles();
});

camButton.addEventListener("click", () => {
  camOn = !camOn;
  media.setEnabled("video", camOn);
  toggle(camButton, camOn, "Stop video", "Start video");
  sendMute();
});

screenButton.addEventListener("click", async () => {
  if (media.screen) {
    await media.stopScreen();
    removeTile(`local-screen`);
    toggle(screenButton, true, "Share screen", "Stop sharing");
    sendMute();
    return;
  }
  if (!navigator.mediaDevices?.getDisplayMedia) {
    note("This browser can't share its screen.");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    stream.getVideoTracks()[0].addEventListener("ended", () => {
      if (media.screen === stream) screenButton.click();
    });
    await media.shareScreen(stream);
    toggle(screenButton, false, "Share screen", "Stop sharing");
    sendMute();
  } catch (error) {
    if (error.name !== "NotAllowedError") note(`Screen sharing could not start (${error.name}).`);
  }
});

copyButton.addEventListener("click", async () => {
  const url = fullLink();
  try {
    await navigator.clipboard.writeText(url);
    copyButton.textContent = "Link copied";
  } catch {
    window.prompt("Copy this link:", url);
  }
  setTimeout(() => { copyButton.textContent = "Copy link"; }, 2000);
});

// Back after a reload within the reconnect grace: take the same place.
const saved = sessionStorage.getItem(resumeKey);
if (saved && encryption) {
  me = -1;
  connect({ type: "resume", resume_token: saved });
}
