// spam-guard's review queue on the dashboard (plugins/spam-guard/static/dashboard.js)
// on a fake DOM and a fake dashboard handle: nothing for non-administrators, the
// groups as the server lists them, stills only when asked for, and what each
// action sends. Run with `node --test plugins/spam-guard/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Element, installDom, json, recordingFetch, settle, shown } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
const { default: setup } = await import("../../static/dashboard.js");

const REPORT = { id: "r2", category: "spam", note: "links in chat", evidence: true, reporter: "Ana", link: "L1", link_title: "Standup", at: 2000, status: "new", keep_until: null };
const KEPT = { id: "r1", category: "harassment", note: "", evidence: false, reporter: "Bo", link: "L1", link_title: "Standup", at: 1000, status: "dismissed", keep_until: 9_000_000 };
const OTHER = { id: "r0", category: "other", note: null, evidence: false, reporter: "Cy", link: "L2", link_title: "Retro", at: 500, status: "new", keep_until: null };
const SPAMMY = { identity: "id-1", names: ["Spammy", "Spam 2"], address: "198.51.100.7", device: true, status: "new", blocked: null, reports: [REPORT, KEPT, OTHER] };
const BLOCKED = { identity: "id-2", names: ["Eve"], address: null, device: false, status: "actioned", blocked: { id: "b1", scope: "instance", expires_at: 5_000_000 }, reports: [KEPT] };
const JPEG = new Uint8Array([0xff, 0xd8, 0xff, 0xd9]);

/** The card set up with `answer` answering its requests; resolves once the list is drawn. */
async function card(answer) {
  const { fetch, requests } = recordingFetch(answer);
  const dashboard = { name: "spam-guard", element: new Element("section"), fetch, report() {} };
  await setup(dashboard);
  const $ = (selector) => dashboard.element.querySelector(selector);
  const $$ = (selector) => dashboard.element.querySelectorAll(selector);
  return { dashboard, requests, $, $$ };
}

/** A server that lists `groups` and takes every action. */
const listing = (groups) => (path, init = {}) => {
  if (path === "/reports" && !init.method) return json({ groups });
  if (path.endsWith("/evidence")) return new Response(JPEG, { headers: { "content-type": "image/jpeg" } });
  return json({});
};

test("non-administrators see nothing at all", async () => {
  const { dashboard, requests } = await card(() => json({ error: { code: "forbidden", message: "Administrators only." } }, 403));
  assert.equal(dashboard.element.hidden, true);
  assert.deepEqual(requests.map((r) => [r.method, r.path]), [["GET", "/reports"]]);
});

test("no reports", async () => {
  const { $ } = await card(listing([]));
  assert.equal($("h2").textContent, "Reports");
  assert.equal($(".empty").textContent, "No reports.");
});

test("a listing that fails says why", async () => {
  const { $, dashboard } = await card(() => json({ error: { code: "unavailable", message: "Try again later." } }, 503));
  assert.equal(dashboard.element.hidden, false);
  assert.equal($(".spam-guard-error").textContent, "Try again later.");
});

test("a group per caller, in the server's order, with its reports", async () => {
  const { $$ } = await card(listing([SPAMMY, BLOCKED]));
  const groups = $$(".spam-guard-group");
  assert.deepEqual(groups.map((g) => g.dataset.identity), ["id-1", "id-2"]);
  const [spammy, blocked] = groups;
  const text = spammy.textContent;
  for (const part of ["Spammy, Spam 2", "198.51.100.7", "New · 3 reports", "Spam or unwanted caller", "links in chat",
    "Reported by Ana on “Standup”", new Date(2000).toLocaleString(), "Harassment",
    `Keep for investigation until ${new Date(9_000_000).toLocaleString()}`]) {
    assert.ok(text.includes(part), part);
  }
  assert.deepEqual(spammy.querySelectorAll("[data-report]").map((r) => r.dataset.report), ["r2", "r1", "r0"]);
  assert.deepEqual(spammy.querySelectorAll("button[data-action]").map((b) => b.dataset.action), ["evidence", "keep", "keep", "block", "dismiss"]);
  assert.match(blocked.textContent, /Blocked on this server until/);
  assert.deepEqual(blocked.querySelectorAll("button[data-action]").map((b) => b.dataset.action), ["unblock"]);
});

test("a still is fetched and shown only when asked for", async () => {
  const { $, $$, requests } = await card(listing([SPAMMY]));
  assert.deepEqual($$("img"), []);
  assert.equal(requests.length, 1);
  await $("button[data-action=evidence]").click();
  await settle();
  assert.deepEqual(requests.map((r) => [r.method, r.path]).slice(1), [["GET", "/reports/r2/evidence"]]);
  const [image] = $$("img");
  assert.match(image.src, /^blob:/);
  assert.equal(image.parent.dataset.report, "r2");
  assert.equal($("button[data-action=evidence]"), null);
});

test("each action's request, then the list again", async () => {
  const { $, $$, requests } = await card(listing([SPAMMY, BLOCKED]));
  const sent = () => requests.splice(0).map((r) => [r.method, r.path, r.body]);
  sent();
  await $("button[data-action=block]").click();
  assert.deepEqual(sent(), [["POST", "/blocks", { report: "r2", scope: "instance" }], ["GET", "/reports", undefined]]);
  await $("button[data-action=dismiss]").click();
  assert.deepEqual(sent(), [
    ["POST", "/reports/r2", { status: "dismissed" }],
    ["POST", "/reports/r0", { status: "dismissed" }],
    ["GET", "/reports", undefined],
  ]);
  await $("[data-report=r0]").querySelector("button[data-action=keep]").click();
  assert.deepEqual(sent(), [["POST", "/reports/r0", { keep: true }], ["GET", "/reports", undefined]]);
  await $$(".spam-guard-group")[1].querySelector("button[data-action=unblock]").click();
  assert.deepEqual(sent(), [["DELETE", "/blocks/b1", undefined], ["GET", "/reports", undefined]]);
});

test("a refused action says why, over the list drawn again", async () => {
  const { $, requests } = await card((path, init = {}) => {
    if (init.method === "POST") return json({ error: { code: "forbidden", message: "Not allowed." } }, 403);
    return listing([SPAMMY])(path, init);
  });
  await $("button[data-action=dismiss]").click();
  assert.deepEqual(requests.map((r) => [r.method, r.path]).slice(1), [["POST", "/reports/r2"], ["GET", "/reports"]], "stops at the first refusal");
  assert.equal($(".spam-guard-error").textContent, "Not allowed.");
  assert.equal(shown($(".spam-guard-error")), true);
  assert.equal($(".spam-guard-groups").children.length, 1);
});
