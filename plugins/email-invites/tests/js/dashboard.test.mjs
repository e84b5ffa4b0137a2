// email-invites on the dashboard (plugins/email-invites/static/dashboard.js) on a
// fake DOM and a fake dashboard handle: the "Invite by email" action on the links,
// and the administrators' list of senders whose invitations were reported as
// unwanted, which nobody else sees. Run with `node --test plugins/email-invites/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Element, installDom, json, recordingFetch } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
const { default: setup } = await import("../../static/dashboard.js");

const ANA = { user: 3, name: "Ana Lima", email: "ana@example.org", reported: 4, last_reported_at: "2026-12-06T10:00:00+00:00" };
const BO = { user: 9, name: "Bo Ek", email: "bo@example.org", reported: 1, last_reported_at: "2026-11-20T08:30:00+00:00" };
const FORBIDDEN = { error: { code: "forbidden", message: "Administrators only." } };

/** The card set up with `answer` answering its requests; resolves once it is drawn. */
async function card(answer) {
  const { fetch, requests } = recordingFetch(answer);
  const actions = [];
  const dashboard = {
    name: "email-invites",
    element: new Element("section"),
    fetch,
    addLinkAction: (label, handler) => actions.push({ label, handler }),
    report() {},
  };
  await setup(dashboard);
  const $ = (selector) => dashboard.element.querySelector(selector);
  const $$ = (selector) => dashboard.element.querySelectorAll(selector);
  return { dashboard, requests, actions, $, $$ };
}

const reported = (senders, window_days = 30) => (path) =>
  path === "/reported" ? json({ senders, window_days }) : json({}, 404);

for (const [who, status, body] of [["signed-in users", 403, FORBIDDEN], ["the signed-out", 401, { error: { code: "unauthorized", message: "Sign in." } }]]) {
  test(`${who} (${status}) see no reported list and no error`, async () => {
    const { dashboard, requests, $$ } = await card(() => json(body, status));
    assert.deepEqual(requests.map((r) => [r.method, r.path]), [["GET", "/reported"]]);
    assert.deepEqual($$("h2").map((h) => h.textContent), ["Email invitations"]);
    assert.deepEqual($$("h3"), []);
    assert.deepEqual($$("table"), []);
    assert.deepEqual($$(".error"), []);
    assert.doesNotMatch(dashboard.element.textContent, /reported|Administrators/i);
    assert.equal(dashboard.element.hidden, false, "the card still offers the invitations");
  });
}

test("administrators see a row per sender, in the server's order", async () => {
  const { $, $$ } = await card(reported([ANA, BO]));
  assert.equal($("h3").textContent, "Invitations reported as unwanted");
  assert.deepEqual($$("th").map((th) => th.textContent), ["Sender", "Reports", "Last report"]);
  const rows = $("tbody").children;
  assert.deepEqual(rows.map((row) => row.dataset.user), ["3", "9"]);
  const cells = rows.map((row) => row.children.map((cell) => cell.textContent));
  assert.deepEqual(cells, [
    ["Ana Lima <ana@example.org>", "4", new Date(ANA.last_reported_at).toLocaleString()],
    ["Bo Ek <bo@example.org>", "1", new Date(BO.last_reported_at).toLocaleString()],
  ]);
  assert.equal($("table").getAttribute("aria-labelledby"), $("h3").id);
  assert.deepEqual($$(".error"), []);
});

test("the list comes after the card's heading and hint", async () => {
  const { dashboard } = await card(reported([ANA]));
  assert.deepEqual(dashboard.element.children.map((child) => child.tagName), ["H2", "P", "H3", "P", "TABLE"]);
});

test("nobody reported: a hint with the server's window", async () => {
  const { $, $$ } = await card(reported([]));
  assert.equal($("h3").textContent, "Invitations reported as unwanted");
  assert.deepEqual($$("table"), []);
  assert.equal($$("p.hint").at(-1).textContent, "No invitation was reported in the last 30 days.");
  const other = await card(reported([], 7));
  assert.equal(other.$$("p.hint").at(-1).textContent, "No invitation was reported in the last 7 days.");
});

test("names and addresses from the server are text, never markup", async () => {
  const name = "<img src=x onerror=alert(1)>";
  const { $, $$ } = await card(reported([{ ...ANA, name, email: "<b>x</b>@example.org" }]));
  assert.deepEqual($$("img"), []);
  assert.deepEqual($$("b"), []);
  assert.equal($("tbody").querySelector("strong").textContent, name);
  assert.equal($("tbody").textContent.includes(name), true);
});

test("another failure says the server's message", async () => {
  const { $, $$ } = await card(() => json({ error: { code: "unavailable", message: "Try again later." } }, 503));
  assert.equal($("h3").textContent, "Invitations reported as unwanted");
  assert.equal($(".error").textContent, "Try again later.");
  assert.equal($(".error").getAttribute("role"), "alert");
  assert.deepEqual($$("table"), []);
});

test("a request that fails says so, and setup still resolves", async () => {
  const { $ } = await card(() => {
    throw new TypeError("Failed to fetch");
  });
  assert.equal($(".error").textContent, "The list could not be loaded: Failed to fetch");
});

test("the link action is there before the server answers", async () => {
  let answer;
  const { fetch } = recordingFetch(() => new Promise((resolve) => { answer = resolve; }));
  const actions = [];
  const dashboard = { name: "email-invites", element: new Element("section"), fetch, addLinkAction: (label) => actions.push(label) };
  const started = setup(dashboard);
  assert.deepEqual(actions, ["Invite by email"]);
  let done = false;
  started.then(() => { done = true; });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(done, false, "setup waits for the list");
  answer(json(FORBIDDEN, 403));
  await started;
  assert.equal(done, true);
});

test("Invite by email opens one form under the link's row and focuses its addresses", async () => {
  const { actions, requests } = await card(() => json(FORBIDDEN, 403));
  const [{ label, handler }] = actions;
  assert.equal(label, "Invite by email");
  const row = new Element("li");
  const slot = new Element("div");
  const button = new Element("button");
  slot.append(button);
  row.append(slot);
  const link = { id: "L1", title: "Standup", url: "https://confab.example/j/L1#k=SECRET", status: "active", when: null };
  await handler(link, button);
  const form = row.querySelector("form[data-email-invites=L1]");
  assert.ok(form, "under the row, not in the button's slot");
  assert.equal(form.parentElement, row);
  assert.equal(form.style.flexBasis, "100%");
  assert.equal(form.querySelector("textarea").focused, true);
  assert.equal(form.getAttribute("aria-label"), "Invite people to “Standup” by email");
  // Close hides it; the action shows the same form again.
  await form.querySelector("button.quiet").click();
  assert.equal(form.hidden, true);
  await handler(link, button);
  assert.equal(form.hidden, false);
  assert.equal(row.querySelectorAll("form").length, 1);
  // Its Send posts the link as the dashboard shows it.
  form.querySelector("textarea").value = "bo@example.org";
  await form.requestSubmit();
  assert.deepEqual(requests.at(-1).body.url, link.url);
});
