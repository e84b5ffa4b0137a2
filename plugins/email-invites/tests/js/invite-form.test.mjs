// email-invites' form (plugins/email-invites/static/invite-form.js) on a fake DOM
// with a fake `fetch`: what Send posts (never the link: the page adds it on the
// way out, as the frame does not know its secret), what the status says for each answer
// (people left out because they unsubscribed among them), and what stays in the
// addresses field. Run with `node --test plugins/email-invites/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { installDom, json, recordingFetch } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
const { inviteForm, splitAddresses } = await import("../../static/invite-form.js");

const BO_UNSUBSCRIBED = {
  email: "bo@example.org",
  code: "suppressed",
  reason: "This person asked not to get invitations from this server.",
};

/** The form with `answer` answering Send; `send(to, note)` types and presses Send. */
function form(answer) {
  const { fetch, requests } = recordingFetch(answer);
  const node = inviteForm({ fetch, title: "Standup" });
  const $ = (selector) => node.querySelector(selector);
  const to = $("textarea[name=recipients]");
  const note = $("textarea[name=note]");
  const status = $(".status");
  async function send(addresses, text = "") {
    to.value = addresses;
    note.value = text;
    return node.requestSubmit();
  }
  return { node, requests, to, note, status, send, $ };
}

test("Send posts the addresses one by one and the note, and no link of its own", async () => {
  const { requests, send } = form(() => json({ queued: 2, ids: ["1", "2"], scheduled: false }, 202));
  const event = await send('ana@example.org; "Ek, Bo" <bo@example.org>\ncy@example.org', "See you.");
  assert.equal(event.defaultPrevented, true, "the page stays");
  assert.deepEqual(requests, [{
    path: "/invites",
    method: "POST",
    headers: { "content-type": "application/json" },
    body: { recipients: ["ana@example.org", '"Ek, Bo" <bo@example.org>', "cy@example.org"], note: "See you." },
  }]);
  assert.equal("url" in requests[0].body, false, "the page's fetch wrapper adds the link");
});

test("the form names its link for screen readers, and Close calls the caller's close", async () => {
  const { node } = form(() => json({}, 202));
  assert.equal(node.getAttribute("aria-label"), "Invite people to “Standup” by email");
  assert.equal(node.querySelector("button.quiet"), null, "no Close without a close");
  let closed = 0;
  const closable = inviteForm({ fetch: async () => json({}, 202), close: () => { closed += 1; } });
  assert.equal(closable.getAttribute("aria-label"), "Invite people to this call by email");
  await closable.querySelector("button.quiet").click();
  assert.equal(closed, 1);
});

test("a request the page refuses says so and keeps what was typed", async () => {
  const { status, to, send } = form(() => {
    throw Object.assign(new Error("this browser does not have that link's secret"), { code: "no-secret" });
  });
  await send("ana@example.org");
  assert.equal(status.textContent, "The invitation did not go out: this browser does not have that link's secret");
  assert.equal(status.classList.contains("error"), true);
  assert.equal(to.value, "ana@example.org");
});

test("no note is sent as null", async () => {
  const { requests, send } = form(() => json({ queued: 1, ids: ["1"], scheduled: false }, 202));
  await send("ana@example.org");
  assert.equal(requests[0].body.note, null);
});

test("an older server's answer, without not_sent: everyone was invited", async () => {
  const { status, to, note, send } = form(() => json({ queued: 2, ids: ["1", "2"], scheduled: true }, 202));
  await send("ana@example.org, bo@example.org", "Bring the numbers.");
  assert.equal(status.textContent, "Invitation sent to 2 people, with a calendar invitation.");
  assert.equal(status.classList.contains("error"), false);
  assert.equal(status.querySelectorAll("br").length, 0);
  assert.equal(to.value, "");
  assert.equal(note.value, "");
});

test("people who unsubscribed are named, each on a line, and stay in the field", async () => {
  const { status, to, note, send } = form(() => json({ queued: 1, ids: ["7"], scheduled: false, not_sent: [BO_UNSUBSCRIBED] }, 202));
  await send("ana@example.org, Bo Ek <BO@example.org>", "Hi.");
  assert.equal(
    status.textContent,
    "Invitation sent to 1 person."
      + "Not sent to bo@example.org: this person asked not to get invitations from this server.",
  );
  assert.equal(status.querySelectorAll("br").length, 1, "the left-out person on a line of their own");
  assert.equal(status.classList.contains("error"), false, "the others did get it");
  assert.equal(status.getAttribute("role"), "status");
  assert.equal(status.getAttribute("aria-live"), "polite");
  assert.equal(to.value, "Bo Ek <BO@example.org>", "only Bo's address stays, as it was typed");
  assert.equal(note.value, "");
});

test("nobody invited because everyone unsubscribed is an error", async () => {
  const cy = { email: "cy@example.org", code: "suppressed", reason: "This person asked not to get invitations from this server." };
  const { status, to, note, send } = form(() => json({ queued: 0, ids: [], scheduled: false, not_sent: [BO_UNSUBSCRIBED, cy] }, 202));
  await send("bo@example.org\ncy@example.org", "Hi.");
  assert.equal(status.classList.contains("error"), true);
  assert.doesNotMatch(status.textContent, /Invitation sent/);
  assert.match(status.textContent, /Not sent to bo@example\.org: this person asked/);
  assert.match(status.textContent, /Not sent to cy@example\.org: this person asked/);
  assert.equal(status.querySelectorAll("br").length, 2);
  assert.deepEqual(splitAddresses(to.value), ["bo@example.org", "cy@example.org"]);
  assert.equal(note.value, "Hi.", "the note is kept for another try");
});

test("a refusal shows the server's message and keeps what was typed", async () => {
  const { status, to, send } = form(() => json({ error: { code: "invalid_recipients", message: "“bo@” is not an email address." } }, 422));
  await send("ana@example.org, bo@");
  assert.equal(status.textContent, "“bo@” is not an email address.");
  assert.equal(status.classList.contains("error"), true);
  assert.equal(to.value, "ana@example.org, bo@");
});

test("a success after an error is no longer shown as one", async () => {
  let answer = json({ error: { code: "rate_limited", message: "Too many invitations." } }, 429);
  const { status, send } = form(() => answer);
  await send("ana@example.org");
  assert.equal(status.classList.contains("error"), true);
  answer = json({ queued: 1, ids: ["1"], scheduled: false, not_sent: [] }, 202);
  await send("ana@example.org");
  assert.equal(status.textContent, "Invitation sent to 1 person.");
  assert.equal(status.classList.contains("error"), false);
});

test("no address: nothing is sent", async () => {
  const { requests, status, to, send } = form(() => json({}, 202));
  await send(" ,; \n");
  assert.deepEqual(requests, []);
  assert.equal(status.textContent, "Add at least one address.");
  assert.equal(to.focused, true);
});

test("addresses split at commas, semicolons and line breaks, not inside quotes or angle brackets", () => {
  assert.deepEqual(
    splitAddresses('"Lima, Ana" <ana@example.org>, Bo Ek <bo@example.org>;cy@example.org\r\n\n"Odd <, name>" <dee@example.org>'),
    ['"Lima, Ana" <ana@example.org>', "Bo Ek <bo@example.org>", "cy@example.org", '"Odd <, name>" <dee@example.org>'],
  );
  assert.deepEqual(splitAddresses("<x,y@example.org>, z@example.org"), ["<x,y@example.org>", "z@example.org"]);
  assert.deepEqual(splitAddresses("  \n , "), []);
});
