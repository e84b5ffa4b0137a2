// email-invites on administrators' dashboards (plugins/email-invites/static/admin.js)
// on a fake DOM and a fake dashboard handle: the senders whose invitations were
// reported as unwanted, and no card at all for anyone the server refuses. Run with
// `node --test plugins/email-invites/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Element, installDom, json, recordingFetch } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
const { default: setup } = await import("../../static/admin.js");

const ANA = { user: 3, name: "Ana Lima", email: "ana@example.org", reported: 4, last_reported_at: "2026-12-06T10:00:00+00:00" };
const BO = { user: 9, name: "Bo Ek", email: "bo@example.org", reported: 1, last_reported_at: "2026-11-20T08:30:00+00:00" };
const FORBIDDEN = { error: { code: "forbidden", message: "Administrators only." } };

/** The card set up with `answer` answering its requests; resolves once it is drawn. */
async function card(answer) {
  const { fetch, requests } = recordingFetch(answer);
  const dashboard = {
    name: "email-invites",
    page: "admin",
    admin: true,
    element: new Element("main"),
    links: () => [],
    fetch,
    report() {},
  };
  await setup(dashboard);
  const $ = (selector) => dashboard.element.querySelector(selector);
  const $$ = (selector) => dashboard.element.querySelectorAll(selector);
  return { dashboard, requests, $, $$ };
}

const reported = (senders, window_days = 30) => (path) =>
  path === "/reported" ? json({ senders, window_days }) : json({}, 404);

for (const [who, status, body] of [["non-administrators", 403, FORBIDDEN], ["the signed-out", 401, { error: { code: "unauthorized", message: "Sign in." } }]]) {
  test(`${who} (${status}) see no card and no error`, async () => {
    const { dashboard, requests, $$ } = await card(() => json(body, status));
    assert.deepEqual(requests.map((r) => [r.method, r.path]), [["GET", "/reported"]]);
    assert.equal(dashboard.element.hidden, true);
    assert.deepEqual($$("table"), []);
    assert.deepEqual($$(".error"), []);
  });
}

test("administrators see the card's heading, then a row per sender, in the server's order", async () => {
  const { dashboard, requests, $, $$ } = await card(reported([ANA, BO]));
  assert.equal(dashboard.element.hidden, false);
  assert.deepEqual(requests.map((r) => [r.method, r.path]), [["GET", "/reported"]]);
  assert.deepEqual(dashboard.element.children.map((child) => child.tagName), ["H2", "H3", "P", "TABLE"]);
  assert.equal($("h2").textContent, "Email invitations");
  assert.equal($("h3").textContent, "Invitations reported as unwanted");
  assert.equal($("p.hint").textContent, "People whose invitations were reported by those who got them, in the last 30 days.");
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

test("a sender with only an address, or no date, still gets a row", async () => {
  const { $ } = await card(reported([{ user: 5, email: "cy@example.org", reported: 2, last_reported_at: null }]));
  const [row] = $("tbody").children;
  assert.deepEqual(row.children.map((cell) => cell.textContent), ["cy@example.org", "2", ""]);
});

test("nobody reported: a hint with the server's window", async () => {
  const { $, $$ } = await card(reported([]));
  assert.equal($("h3").textContent, "Invitations reported as unwanted");
  assert.deepEqual($$("table"), []);
  assert.equal($$("p.hint").at(-1).textContent, "No invitation was reported in the last 30 days.");
  const other = await card(reported([], 1));
  assert.equal(other.$$("p.hint").at(-1).textContent, "No invitation was reported in the last day.");
});

test("names and addresses from the server are text, never markup", async () => {
  const name = "<img src=x onerror=alert(1)>";
  const { $, $$ } = await card(reported([{ ...ANA, name, email: "<b>x</b>@example.org" }]));
  assert.deepEqual($$("img"), []);
  assert.deepEqual($$("b"), []);
  assert.equal($("tbody").querySelector("strong").textContent, name);
  assert.equal($("tbody").textContent.includes(name), true);
});

test("another failure says the server's message, and the card stays", async () => {
  const { dashboard, $, $$ } = await card(() => json({ error: { code: "unavailable", message: "Try again later." } }, 503));
  assert.equal(dashboard.element.hidden, false);
  assert.equal($("h3").textContent, "Invitations reported as unwanted");
  assert.equal($(".error").textContent, "Try again later.");
  assert.equal($(".error").getAttribute("role"), "alert");
  assert.deepEqual($$("table"), []);
});

test("a request that fails says so, and setup still resolves", async () => {
  const { dashboard, $ } = await card(() => {
    throw new TypeError("Failed to fetch");
  });
  assert.equal(dashboard.element.hidden, false);
  assert.equal($(".error").textContent, "The list could not be loaded: Failed to fetch");
});
