// The call page's state (core/static/call/state.js): what each message from the
// server (docs/signaling.md) changes, and what the page then tells the user. Run
// with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  LINK_REVOKED,
  MESSAGES,
  backToForm,
  initialState,
  myEntry,
  publicLobby,
  publicRoster,
  reaction,
  reduce,
  serverNow,
} from "../../static/call/state.js";
import { secondsLeft, waited } from "../../static/lib/time.js";

// This browser's clock, one minute behind the server's.
const NOW = Date.parse("2030-01-01T12:00:00Z");
const SERVER = "2030-01-01T12:01:00Z";

const ANA = { participant: 1, name: "Ana", owner: true, guest: false, connected: true };
const BO = { participant: 2, name: "Bo", guest: true, connected: true, removable_until: "2030-01-01T12:01:30Z" };
const REQUEST = { request: 7, name: "Cy", asked_at: "2030-01-01T12:00:00Z" };

/** Freezes `value` all the way down, so that a reducer writing to it throws. */
function frozen(value) {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) frozen(inner);
    Object.freeze(value);
  }
  return value;
}

/** Feeds `messages` to the reducer, from the state of a page that has not joined. */
function after(...messages) {
  return messages.reduce((state, message) => reduce(state, frozen(message), NOW), frozen(initialState()));
}

/** On the call as participant 2, with Ana and Bo, and Cy waiting in the lobby. */
function onCall() {
  return after(
    { type: "joined", participant: 2, call: "c", resume_token: "t" },
    { type: "roster", now: SERVER, participants: [ANA, BO] },
    { type: "lobby", now: SERVER, requests: [REQUEST], total: 3, locked: false },
  );
}

test("a page that has not asked to join knows nobody and is nobody", () => {
  const state = initialState();
  assert.equal(state.me, null);
  assert.deepEqual([state.roster, state.lobby, state.lobbyTotal], [[], [], 0]);
  assert.equal(state.lobbyLocked, false);
  assert.equal(state.linkGone, false);
  assert.equal(state.skew, 0);
  assert.equal(state.speaker, null);
  // Each page gets its own.
  assert.notEqual(initialState().roster, initialState().roster);
});

test("joined: I am the participant the server names, and the call shows", () => {
  const message = { type: "joined", participant: 5, call: "c", resume_token: "t" };
  assert.deepEqual(reaction(initialState(), message), { call: true });
  assert.equal(after(message).me, 5);
});

test("waiting: the join card says for whom", () => {
  assert.deepEqual(reaction(initialState(), { type: "waiting", waiting_for: "host" }), {
    waiting: "Waiting for the host to join…",
  });
  assert.deepEqual(reaction(initialState(), { type: "waiting", waiting_for: "approval" }), {
    waiting: "Asked to join. Someone on the call will let you in.",
  });
  const before = initialState();
  assert.equal(reduce(before, { type: "waiting", waiting_for: "host" }, NOW), before, "nothing else changes");
});

test("roster: the server's list replaces the page's, and I find myself on it", () => {
  const state = onCall();
  assert.deepEqual(state.roster, [ANA, BO]);
  assert.deepEqual(myEntry(state), BO);
  const later = reduce(state, { type: "roster", now: SERVER, participants: [BO] }, NOW);
  assert.deepEqual(later.roster, [BO], "Ana left");
  assert.deepEqual(state.roster, [ANA, BO], "the state before is left as it was");
  // Plugins' modules see who is there, not who may remove whom.
  assert.deepEqual(publicRoster(state), [
    { participant: 1, name: "Ana", guest: false },
    { participant: 2, name: "Bo", guest: true },
  ]);
});

test("lobby: the requests, how many wait in all, and whether the lobby is locked", () => {
  const state = onCall();
  assert.deepEqual(state.lobby, [REQUEST]);
  assert.equal(state.lobbyTotal, 3, "the server sends the first requests and the total");
  assert.equal(state.lobbyLocked, false);
  const alone = reduce(state, { type: "lobby", now: SERVER, requests: [REQUEST] }, NOW);
  assert.equal(alone.lobbyTotal, 1, "no total: as many as listed");
  const empty = reduce(state, { type: "lobby", now: SERVER, requests: [] }, NOW);
  assert.deepEqual([empty.lobby, empty.lobbyTotal], [[], 0]);
});

test("lobby for plugins: what the panel shows a signed-in user on the call, and nothing to a guest", () => {
  const flagged = { ...REQUEST, flags: ["same_network_as_blocked"], warnings: [{ plugin: "p", message: "m" }] };
  const state = reduce(onCall(), { type: "lobby", now: SERVER, requests: [flagged, { request: 8, name: "Di" }] }, NOW);
  assert.deepEqual(publicLobby(state, true), [
    { request: 7, name: "Cy", flags: ["same_network_as_blocked"] },
    { request: 8, name: "Di", flags: [] },
  ]);
  assert.deepEqual(publicLobby(state, false), [], "a guest");
  assert.deepEqual(publicLobby(backToForm(state), true), [], "off the call");
  assert.deepEqual(publicLobby({ ...state, me: null }, true), [], "not on the call yet");
});

test("lobby lock: the lobby message says whether it is locked, and unlocked again", () => {
  const locked = reduce(onCall(), { type: "lobby", now: SERVER, requests: [], locked: true }, NOW);
  assert.equal(locked.lobbyLocked, true);
  const unlocked = reduce(locked, { type: "lobby", now: SERVER, requests: [], locked: false }, NOW);
  assert.equal(unlocked.lobbyLocked, false);
  const silent = reduce(locked, { type: "lobby", now: SERVER, requests: [] }, NOW);
  assert.equal(silent.lobbyLocked, false, "no `locked`: not locked");
  // Back on the form the page still knows, for when it joins again.
  assert.equal(backToForm(locked).lobbyLocked, true);
});

test("skew: waiting times and removal countdowns count on the server's clock", () => {
  const state = onCall();
  assert.equal(state.skew, 60_000);
  assert.equal(serverNow(state, NOW), NOW + 60_000);
  // Cy asked at 12:00 on the server's clock, which says 12:01 when this browser's
  // says 12:00: Cy has waited a minute, not no time at all.
  assert.equal(waited(REQUEST.asked_at, serverNow(state, NOW)), "1:00");
  assert.equal(waited(REQUEST.asked_at, NOW), "0:00");
  assert.equal(waited(REQUEST.asked_at, serverNow(state, NOW + 65_000)), "2:05");
  assert.equal(secondsLeft(BO.removable_until, serverNow(state, NOW)), 30);
  assert.equal(secondsLeft(BO.removable_until, serverNow(state, NOW + 40_000)), 0, "never below 0");
  // A roster message sets it too; the latest message wins.
  const behind = reduce(state, { type: "roster", now: "2030-01-01T11:59:00Z", participants: [ANA, BO] }, NOW);
  assert.equal(behind.skew, -60_000);
  const lobby = reduce(behind, { type: "lobby", now: "2030-01-01T12:00:00Z", requests: [] }, NOW);
  assert.equal(lobby.skew, 0);
});

test("active_speaker: whose tile is highlighted", () => {
  const state = reduce(onCall(), { type: "active_speaker", participant: 1 }, NOW);
  assert.equal(state.speaker, 1);
  assert.equal(reduce(state, { type: "active_speaker", participant: null }, NOW).speaker, null);
});

test("denied: back on the form, with the reason or whether I may ask again", () => {
  const waiting = after({ type: "waiting", waiting_for: "approval" });
  assert.deepEqual(reaction(waiting, { type: "denied", reason: "not today" }), {
    form: "Your request to join was declined: not today",
  });
  assert.deepEqual(reaction(waiting, { type: "denied", blocked: true }), {
    form: "You were declined twice and can't ask to join this call again.",
  });
  assert.deepEqual(reaction(waiting, { type: "denied" }), { form: "Your request to join was declined." });
  assert.equal(reduce(waiting, { type: "denied" }, NOW).linkGone, false, "asking again is allowed");
});

test("removed: back on the form, saying by whom, and the place is not taken back", () => {
  const state = onCall();
  const message = { type: "removed", by: "Ana" };
  assert.deepEqual(reaction(state, message), { form: "You were removed from the call by Ana.", forget: true });
  const next = reduce(state, message, NOW);
  assert.equal(next.me, null);
  assert.deepEqual([next.lobby, next.lobbyTotal, next.speaker], [[], 0, null]);
  assert.deepEqual(next.roster, state.roster, "the roster stays until the next one");
});

test("request_ended: each reason as the form says it", () => {
  const texts = {
    withdrawn: "",
    timed_out: "Nobody answered your request. Ask again when the call is on.",
    call_ended: "The call has ended.",
    link_rotated: MESSAGES.link_rotated,
    something_new: "",
  };
  for (const [why, text] of Object.entries(texts)) {
    assert.deepEqual(reaction(initialState(), { type: "request_ended", why }), { form: text }, why);
    assert.equal(after({ type: "request_ended", why }).linkGone, false, why);
  }
});

test("call_ended: the form says so, and the place is not taken back", () => {
  const state = onCall();
  assert.deepEqual(reaction(state, { type: "call_ended" }), { form: "The call has ended.", forget: true });
  const next = reduce(state, { type: "call_ended" }, NOW);
  assert.equal(next.me, null);
  assert.equal(next.linkGone, false);
});

test("link revoked: whichever message says it, the page can't join any more", () => {
  const revoked = [
    { type: "request_ended", why: "link_revoked" },
    { type: "call_ended", reason: "link_revoked" },
    { type: "error", code: "link_revoked", message: "revoked" },
  ];
  for (const message of revoked) {
    for (const before of [initialState(), onCall()]) {
      assert.deepEqual(reaction(before, message), { form: LINK_REVOKED, revoked: true, forget: true });
      const next = reduce(before, message, NOW);
      assert.equal(next.linkGone, true, message.type);
      assert.equal(next.me, null, message.type);
    }
  }
  // For good: later messages don't bring it back.
  const gone = after(revoked[0], { type: "lobby", now: SERVER, requests: [] }, { type: "denied" });
  assert.equal(gone.linkGone, true);
});

test("error: media troubles on the call, refusals before it", () => {
  const state = onCall();
  const error = (code, message = "the server's words") => ({ type: "error", code, message });
  // The server reset the call's media: the page starts it over and stays on the call.
  assert.deepEqual(reaction(state, error("media_failed")), { restartMedia: true });
  assert.equal(reduce(state, error("media_failed"), NOW), state);
  for (const code of ["bad_sdp", "media_unavailable"]) {
    assert.deepEqual(reaction(state, error(code, "no codec")), { note: "Audio and video could not start: no codec" });
    assert.equal(reduce(state, error(code), NOW).me, 2, code);
  }
  // Too late to take the place back: the form, and the token is forgotten.
  assert.deepEqual(reaction(state, error("resume_expired")), { form: MESSAGES.resume_expired, forget: true });
  assert.equal(reduce(state, error("resume_expired"), NOW).me, null);
  // Not on the call yet: the form says why.
  for (const code of ["call_full", "blocked", "removed", "lobby_locked", "lobby_full", "too_many_requests",
    "link_rotated", "unavailable", "call_on_another_node", "invalid_name"]) {
    assert.deepEqual(reaction(initialState(), error(code)), { form: MESSAGES[code] }, code);
  }
  assert.deepEqual(reaction(initialState(), error("new_code", "Something new.")), { form: "Something new." });
  // On the call: a notice, and I stay.
  assert.deepEqual(reaction(state, error("unavailable")), { inform: MESSAGES.unavailable });
  assert.deepEqual(reaction(state, error("rate_limited", "Slow down.")), { inform: "Slow down." });
  assert.equal(reduce(state, error("unavailable"), NOW).me, 2);
  // Resuming after a reload (me = -1) counts as on the call.
  assert.deepEqual(reaction({ ...initialState(), me: -1 }, error("unavailable")), { inform: MESSAGES.unavailable });
});

test("messages that change no call state leave it as it is", () => {
  const state = onCall();
  for (const message of [
    { type: "welcome" },
    { type: "e2ee", from: 1, payload: "AA==" },
    { type: "plugin", plugin: "hello", payload: "AA==" },
    { type: "publish_answer", sdp: "v=0" },
    { type: "subscribe_offer", sdp: "v=0" },
    { type: "something_new" },
  ]) {
    assert.equal(reduce(state, message, NOW), state, message.type);
    assert.equal(reaction(state, message), null, message.type);
  }
});

test("back on the form (Leave, Cancel, a lost connection): off the call, lobby forgotten", () => {
  const state = reduce(onCall(), { type: "active_speaker", participant: 1 }, NOW);
  const left = backToForm(state);
  assert.deepEqual([left.me, left.lobby, left.lobbyTotal, left.speaker], [null, [], 0, null]);
  assert.equal(state.me, 2, "the state before is left as it was");
});

test("the roster says whether the guests are suspended", () => {
  const state = reduce(initialState(), { type: "roster", now: SERVER, participants: [ANA, BO], guests_suspended: true }, NOW);
  assert.equal(state.guestsSuspended, true);
  const resumed = reduce(state, { type: "roster", now: SERVER, participants: [ANA, BO], guests_suspended: false }, NOW);
  assert.equal(resumed.guestsSuspended, false);
  assert.equal(reduce(state, { type: "roster", now: SERVER, participants: [ANA] }, NOW).guestsSuspended, false);
});
