// What the call page shows, from the state call.js gives it (call/state.js): the
// join card (form, waiting, status line, camera preview) and the call card (roster,
// lobby and its lock, the encryption indicator, notices). Element ids, classes and
// texts are what the browser tests (core/tests/it) look for.

import { button, showText } from "/static/lib/dom.js";
import { secondsLeft, waited } from "/static/lib/time.js";
import { myEntry } from "/static/call/state.js";

const FLAGS = {
  same_network_as_removed: "Same network as a guest who was removed",
  same_network_as_blocked: "Same network as a guest who was declined twice",
};

export class CallViews {
  /**
   * @param {object} hooks
   * @param {boolean} hooks.signedIn whether the user is signed in (not a guest)
   * @param {(message: object) => void} hooks.send signaling
   * @param {() => number} hooks.now the server's time now, in ms
   * @param {() => void} hooks.layout lays the video tiles out again (call/tiles.js)
   */
  constructor({ signedIn, send, now, layout }) {
    this.signedIn = signedIn;
    this.send = send;
    this.now = now;
    this.layout = layout;
    this.joinCard = document.getElementById("join");
    this.form = document.getElementById("join-form");
    this.statusLine = document.getElementById("status");
    this.withdrawButton = document.getElementById("withdraw");
    this.approvalHint = document.getElementById("approval-hint");
    this.callCard = document.getElementById("call");
    this.callNote = document.getElementById("call-note");
    this.rosterList = document.getElementById("roster");
    this.lobbyPanel = document.getElementById("lobby-panel");
    this.lobbyList = document.getElementById("lobby");
    this.lobbyMore = document.getElementById("lobby-more");
    this.lockButton = document.getElementById("lock-lobby");
    // One `admit_all` lets everyone waiting in, up to the call's cap.
    this.admitAllButton = document.getElementById("admit-all");
    this.admitAllButton?.addEventListener("click", () => send({ type: "admit_all" }));
    this.suspendButton = document.getElementById("suspend-guests");
    this.suspendedLine = document.getElementById("guests-suspended");
    this.lobbyState = document.getElementById("lobby-state");
    this.securityLine = document.getElementById("e2ee");
    this.securityProblems = document.getElementById("e2ee-problems");
    this.securityCount = document.getElementById("e2ee-count");
  }

  /** Whether the call card is shown (on the call). */
  get onCall() {
    return !this.callCard.hidden;
  }

  /** The line under the join form. */
  say(text) {
    showText(this.statusLine, text);
  }

  /** The notice line of the call card. */
  note(text) {
    showText(this.callNote, text);
  }

  /** Tells the user something: on the call in its notice line, else under the join form. */
  inform(text) {
    if (this.callCard.hidden) this.say(text);
    else this.note(text);
  }

  /** Why this page can't join (no secret, no HTTPS, no frame encryption): the form can't be sent. */
  cannotJoin(secret) {
    const secretProblem = document.getElementById("secret-problem");
    secretProblem.textContent = !secret
      ? "This link is missing its secret key (the part after #k=). Calls are end-to-end encrypted with it: ask the person who invited you for the whole link."
      : !window.isSecureContext
        ? "Calls are end-to-end encrypted, which browsers only allow on pages served over HTTPS. Ask the administrator to serve Confab over HTTPS."
        : "This browser can't encrypt calls end to end, so it can't join. Use a current Chrome, Edge, Firefox or Safari.";
    secretProblem.hidden = false;
    this.form.querySelector("button[type=submit]").disabled = true;
  }

  /** The join form, with `text` under it; `linkGone`: it can't be sent any more. */
  showForm(text, linkGone) {
    this.callCard.hidden = true;
    this.joinCard.hidden = false;
    this.form.hidden = false;
    this.withdrawButton.hidden = true;
    if (this.approvalHint) this.approvalHint.hidden = false;
    if (linkGone) this.form.querySelector("button[type=submit]").disabled = true;
    this.say(text);
  }

  showWaiting(text) {
    this.joinCard.hidden = false;
    this.callCard.hidden = true;
    this.form.hidden = true;
    this.withdrawButton.hidden = false;
    if (this.approvalHint) this.approvalHint.hidden = true;
    this.say(text);
  }

  showCall() {
    this.joinCard.hidden = true;
    this.callCard.hidden = false;
  }

  /** The tiles, the roster, the lobby and its lock, as `state` has them. */
  render(state) {
    if (this.callCard.hidden) return;
    this.layout();
    const { roster, lobby, lobbyTotal, lobbyLocked, guestsSuspended, me } = state;
    const { signedIn, send } = this;
    const mine = myEntry(state);
    const iAmOwner = Boolean(mine && mine.owner);
    this.rosterList.replaceChildren(...roster.map((p) => {
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
        p.suspended ? "suspended" : null,
        p.connected ? null : "reconnecting…",
      ];
      for (const tag of tags.filter(Boolean)) {
        const t = document.createElement("span");
        t.className = "tag";
        t.textContent = tag;
        li.append(t);
      }
      if (signedIn && p.guest && p.participant !== me) {
        const left = p.removable_until ? secondsLeft(p.removable_until, this.now()) : 0;
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
    this.lockButton.hidden = !mayDecide;
    this.lockButton.textContent = lobbyLocked ? "Unlock lobby" : "Lock lobby";
    this.lockButton.setAttribute("aria-pressed", String(lobbyLocked));
    this.lobbyState.hidden = !mayDecide || !lobbyLocked;
    if (this.suspendButton) {
      this.suspendButton.hidden = !mayDecide;
      this.suspendButton.textContent = guestsSuspended ? "Resume guests" : "Suspend guests";
      this.suspendButton.setAttribute("aria-pressed", String(Boolean(guestsSuspended)));
    }
    if (this.suspendedLine) {
      this.suspendedLine.hidden = !guestsSuspended;
      this.suspendedLine.textContent = !guestsSuspended
        ? ""
        : mine && mine.guest
          ? "The people running this call suspended all guests: for now nobody sees or hears you."
          : "All guests are suspended: their audio, video and screens are not passed on, and the lobby is locked.";
    }
    this.lobbyPanel.hidden = !signedIn || lobby.length === 0;
    if (this.admitAllButton) {
      this.admitAllButton.hidden = !mayDecide || lobbyTotal < 2;
      this.admitAllButton.textContent = `Admit all (${lobbyTotal})`;
    }
    this.lobbyMore.hidden = lobbyTotal <= lobby.length;
    this.lobbyMore.textContent = `and ${lobbyTotal - lobby.length} more waiting`;
    // Rebuilt only when the requests changed: a roster message arriving between a
    // host's mouse-down and mouse-up on Admit would otherwise swap the button out
    // and lose the click.
    const entries = JSON.stringify(lobby.map((r) => [r.request, r.name, r.asked_at, r.flags, r.warnings]));
    if (entries === this.lobbyShown) return;
    this.lobbyShown = entries;
    this.lobbyList.replaceChildren(...lobby.map((r) => {
      const li = document.createElement("li");
      li.dataset.request = r.request;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = r.name;
      const since = document.createElement("span");
      since.className = "meta";
      since.dataset.since = r.asked_at;
      since.textContent = `waiting ${waited(r.asked_at, this.now())}`;
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

  // Countdowns and waiting times tick every second, in place: rebuilding the lists
  // would swap buttons out from under a click.
  tick() {
    for (const label of document.querySelectorAll("[data-since]")) {
      label.textContent = `waiting ${waited(label.dataset.since, this.now())}`;
    }
    for (const remove of document.querySelectorAll("[data-until]")) {
      const left = secondsLeft(remove.dataset.until, this.now());
      if (left > 0) remove.textContent = `Remove (${left}s)`;
      else remove.remove();
    }
  }

  /** The encryption indicator, the safety code, and whose frames cannot be opened. */
  showSecurity(encryption, state) {
    if (!encryption || this.callCard.hidden) return;
    const code = encryption.code;
    this.securityLine.textContent = code
      ? `End-to-end encrypted · Safety code ${code}`
      : "End-to-end encrypted · Checking the safety code…";
    this.securityLine.title = "Compare the safety code out loud: everyone on the call with the right keys sees the same one.";
    this.securityLine.hidden = false;
    // Everyone on the roster should have exactly one verified key, and nobody else.
    const people = encryption.onRoster.size;
    const keys = encryption.peers.size;
    this.securityCount.textContent = `${people} ${people === 1 ? "other person" : "other people"} · ${keys} ${keys === 1 ? "key" : "keys"}`;
    this.securityCount.classList.toggle("mismatch", people !== keys);
    this.securityCount.hidden = people === 0 && keys === 0;
    const problems = [...encryption.failed.entries()]
      .filter(([participant]) => participant !== state.me)
      .map(([participant, reason]) => {
        const person = state.roster.find((p) => p.participant === participant);
        return `Can't decrypt ${person ? person.name : "a participant"}: their browser ${reason}. One of you may have a different or incomplete link.`;
      });
    for (const participant of encryption.ghostParticipants()) {
      problems.push(
        `Someone who is not on the call (participant ${participant}) sent encryption keys. The server may be trying to listen in; this browser gave them no keys.`,
      );
    }
    this.securityProblems.replaceChildren(...problems.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }));
    this.securityProblems.hidden = problems.length === 0;
    this.layout();
  }
}

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

// Camera and microphone: a preview before joining, with a choice of devices. The
// stream is kept for the call's media.
export class Preview {
  /**
   * @param {object} hooks
   * @param {() => boolean} hooks.onCall whether the call's media runs (and takes a new stream)
   * @param {(stream: MediaStream) => Promise<void>} hooks.onStream gives it a new stream
   *   from the chosen devices
   */
  constructor({ onCall, onStream }) {
    this.onCall = onCall;
    this.onStream = onStream;
    this.stream = null;
    this.video = document.getElementById("preview");
    this.mediaNote = document.getElementById("media-note");
    this.cameraSelect = document.getElementById("camera");
    this.micSelect = document.getElementById("microphone");
    this.cameraSelect.addEventListener("change", () => this.start());
    this.micSelect.addEventListener("change", () => this.start());
  }

  async start() {
    const { video: preview, mediaNote, cameraSelect, micSelect } = this;
    if (!navigator.mediaDevices?.getUserMedia) {
      mediaNote.textContent = "This browser can't use a camera or microphone on this page. Use a current Chrome, Edge, Firefox or Safari.";
      mediaNote.hidden = false;
      return;
    }
    const pick = (select) => (select.value ? { deviceId: { exact: select.value } } : true);
    this.stream?.getTracks().forEach((track) => track.stop());
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video: pick(cameraSelect), audio: pick(micSelect) });
      preview.srcObject = this.stream;
      mediaNote.hidden = true;
      if (this.onCall()) await this.onStream(this.stream);
      // Device names are only visible once access is granted.
      const devices = await navigator.mediaDevices.enumerateDevices();
      fillDevices(cameraSelect, devices.filter((d) => d.kind === "videoinput"), "Camera");
      fillDevices(micSelect, devices.filter((d) => d.kind === "audioinput"), "Microphone");
      const [video] = this.stream.getVideoTracks();
      const [audio] = this.stream.getAudioTracks();
      if (video) cameraSelect.value = video.getSettings().deviceId ?? cameraSelect.value;
      if (audio) micSelect.value = audio.getSettings().deviceId ?? micSelect.value;
    } catch (error) {
      this.stream = null;
      preview.srcObject = null;
      mediaNote.textContent = explainMediaError(error);
      mediaNote.hidden = false;
    }
  }
}
