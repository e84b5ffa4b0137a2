// The call state that the server's messages change (docs/signaling.md): which
// participant I am, who is on the call, who waits in the lobby, whether the lobby
// is locked, whether the link is gone, the server's clock. Pure functions, with no
// DOM and no globals, so that Node can test them
// (core/tests/js/call-state.test.mjs); call.js shows what they give.

export const LINK_REVOKED = "This link was revoked. Ask the person who shared it for a new one.";

/** What the page says for the server's error codes (and a name it refuses to send). */
export const MESSAGES = Object.freeze({
  call_full: "This call is full.",
  blocked: "You were declined twice and can't ask to join this call again.",
  removed: "You were removed from this call and can't join it again.",
  lobby_locked: "The people on this call locked it: nobody new can ask to join right now.",
  lobby_full: "Too many people are waiting to join this call. Try again in a few minutes.",
  too_many_requests: "Too many requests to join came from your network. Wait a minute and try again.",
  link_rotated: "This link was replaced with a new one. Ask the person who shared it for the new link.",
  unavailable: "The server couldn't do that just now. Try again.",
  call_on_another_node: "This call is running on another server of this service. Try again in a moment.",
  resume_expired: "Connection lost. Ask to join again.",
  invalid_name: "Enter a name of 1 to 64 characters.",
});

/** Why a request ended (`request_ended`), as the join form says it. */
const REQUEST_ENDED = {
  withdrawn: "",
  timed_out: "Nobody answered your request. Ask again when the call is on.",
  call_ended: "The call has ended.",
  link_rotated: MESSAGES.link_rotated,
};

/** The state of a page that has not asked to join. */
export function initialState() {
  return {
    me: null, // my participant id once joined
    roster: [],
    lobby: [],
    lobbyTotal: 0,
    lobbyLocked: false,
    guestsSuspended: false,
    // The link was revoked: nothing on this page can join any more.
    linkGone: false,
    // Server clock minus this browser's clock: times come from the server.
    skew: 0,
    speaker: null, // the participant speaking now (`active_speaker`)
  };
}

/** Back on the join form (the server's answer, Leave, a lost connection): off the call. */
export function backToForm(state) {
  return { ...state, me: null, lobby: [], lobbyTotal: 0, speaker: null };
}

/** The link is gone (revoked or deleted): for good. */
const REVOKED = Object.freeze({ form: LINK_REVOKED, revoked: true, forget: true });

/**
 * What the page does about `message`, given the state before it, or null when
 * `reduce` says it all: `{ waiting }` (text of the waiting screen), `{ call: true }`,
 * `{ form }` (back to the join form with that text; `forget`: the resume token too,
 * `revoked`: the link is gone), `{ inform }` (a notice), `{ note }` (a notice on the
 * call), `{ restartMedia: true }`.
 */
export function reaction(state, message) {
  switch (message.type) {
    case "waiting":
      return {
        waiting: message.waiting_for === "host"
          ? "Waiting for the host to join…"
          : "Asked to join. Someone on the call will let you in.",
      };
    case "joined":
      return { call: true };
    case "denied":
      if (message.reason) return { form: `Your request to join was declined: ${message.reason}` };
      return {
        form: message.blocked
          ? "You were declined twice and can't ask to join this call again."
          : "Your request to join was declined.",
      };
    case "removed":
      return { form: `You were removed from the call by ${message.by}.`, forget: true };
    case "request_ended":
      if (message.why === "link_revoked") return REVOKED;
      return { form: REQUEST_ENDED[message.why] ?? "" };
    case "call_ended":
      if (message.reason === "link_revoked") return REVOKED;
      return { form: "The call has ended.", forget: true };
    case "error": {
      if (message.code === "link_revoked") return REVOKED;
      // The server reset this call's media: start over with fresh connections.
      if (message.code === "media_failed") return { restartMedia: true };
      if (message.code === "bad_sdp" || message.code === "media_unavailable") {
        return { note: `Audio and video could not start: ${message.message}` };
      }
      const text = MESSAGES[message.code] ?? message.message;
      if (message.code === "resume_expired") return { form: text, forget: true };
      return state.me === null ? { form: text } : { inform: text };
    }
    default:
      return null;
  }
}

/** The state after `message` from the server; `now` is this browser's clock (ms). */
export function reduce(state, message, now = Date.now()) {
  const outcome = reaction(state, message);
  let next = state;
  switch (message.type) {
    case "joined":
      next = { ...state, me: message.participant };
      break;
    case "active_speaker":
      next = { ...state, speaker: message.participant };
      break;
    case "roster":
      next = {
        ...state,
        skew: Date.parse(message.now) - now,
        roster: message.participants,
        guestsSuspended: Boolean(message.guests_suspended),
      };
      break;
    case "lobby":
      next = {
        ...state,
        skew: Date.parse(message.now) - now,
        lobby: message.requests,
        lobbyTotal: message.total ?? message.requests.length,
        lobbyLocked: Boolean(message.locked),
      };
      break;
    default:
      break;
  }
  if (outcome?.revoked) next = { ...next, linkGone: true };
  if (outcome?.form !== undefined) next = backToForm(next);
  return next;
}

/** The server's time now, in ms, from this browser's clock `now`. */
export function serverNow(state, now = Date.now()) {
  return now + state.skew;
}

/** My entry on the roster, if I am on it. */
export function myEntry(state) {
  return state.roster.find((p) => p.participant === state.me);
}

/** The roster as plugins' modules see it (static/plugins.js). */
export function publicRoster(state) {
  return state.roster.map((p) => ({ participant: p.participant, name: p.name, guest: p.guest }));
}

/**
 * The lobby as plugins' modules see it (static/plugins.js): what the lobby panel
 * shows this user, so nothing for a guest or off the call.
 */
export function publicLobby(state, signedIn) {
  if (!signedIn || state.me === null) return [];
  return state.lobby.map((r) => ({ request: r.request, name: r.name, flags: [...(r.flags ?? [])] }));
}
