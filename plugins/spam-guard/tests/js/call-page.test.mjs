// spam-guard's panel on the call page (plugins/spam-guard/static/call-page.js) on
// a fake DOM and a fake plugin handle: who can be reported, what a report sends,
// and the leaked-link warning with its lock and rotate buttons (the page, not the
// frame, shows the new link). Run with `node --test plugins/spam-guard/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Element, installDom, json, recordingFetch, settle, shown } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
// The frame's own address, which is not the call's: the module must not read it.
globalThis.location = { pathname: "/plugin-frame/spam-guard/call-page", href: "https://confab.example/plugin-frame/spam-guard/call-page" };
const { default: setup } = await import("../../static/call-page.js");

// What `plugin.link()` gives in a frame: the call's address, never its secret.
const ADDRESS = "https://confab.example/j/LinkForTests1";
const ROSTER = [
  { participant: 1, name: "Ana", guest: false },
  { participant: 2, name: "Bo", guest: true },
];
const LOBBY = [{ request: 7, name: "Cy", flags: [] }];
const STILL = { dataUrl: "data:image/jpeg;base64,AAAA", width: 640, height: 360 };

/** The panel set up for a signed-in Ana; `answer` answers its requests. */
function panel({ answer = () => json({ report: "r1" }), signedIn = true, still = STILL, address = ADDRESS, showLink } = {}) {
  const { fetch, requests } = recordingFetch(answer);
  const handlers = { participants: [], lobby: [], message: [] };
  const plugin = {
    name: "spam-guard",
    element: new Element("section"),
    signedIn,
    fetch,
    me: () => 1,
    participants: () => ROSTER,
    lobby: () => LOBBY,
    link: () => address,
    // What the page was asked to show, as [id, label].
    shownLinks: [],
    async showLink(id, label) {
      if (showLink) return showLink(id, label);
      this.shownLinks.push([id, label]);
    },
    stills: [],
    async captureStill(participant) {
      this.stills.push(participant);
      return still;
    },
    onParticipants: (h) => handlers.participants.push(h),
    onLobby: (h) => handlers.lobby.push(h),
    onMessage: (h) => handlers.message.push(h),
  };
  setup(plugin);
  const $ = (selector) => plugin.element.querySelector(selector);
  const $$ = (selector) => plugin.element.querySelectorAll(selector);
  const say = (notice, encrypted = false) => {
    for (const h of handlers.message) h(new TextEncoder().encode(JSON.stringify(notice)), { encrypted, from: encrypted ? 2 : undefined });
  };
  return { plugin, requests, handlers, $, $$, say };
}

/** Opens the report form of `row` (an `<li>`) and submits it with the button of `action`. */
async function report(row, action, { category, note, still } = {}) {
  if (!row.querySelector("form")) await row.querySelector("button").click();
  const form = row.querySelector("form");
  if (category) form.querySelector("select").value = category;
  if (note !== undefined) form.querySelector("textarea").value = note;
  if (still) form.querySelector("input[type=checkbox]").checked = true;
  await form.dispatch("submit", { submitter: form.querySelector(`button[data-action=${action}]`) });
  await settle();
  return form;
}

test("guests see nothing", () => {
  const { plugin, requests, handlers } = panel({ signedIn: false });
  assert.equal(plugin.element.hidden, true);
  assert.deepEqual([plugin.element.children, requests, handlers.message], [[], [], []]);
});

test("a frame whose handle names no call link sees nothing", () => {
  for (const address of [null, "", "https://confab.example/dashboard", "not an address"]) {
    const { plugin, requests } = panel({ address });
    assert.equal(plugin.element.hidden, true, String(address));
    assert.deepEqual([plugin.element.children, requests], [[], []]);
  }
});

test("a row for everyone else on the call and each lobby request, kept current", () => {
  const { $, $$, handlers } = panel();
  assert.equal($("details").matches("details.spam-guard"), true);
  assert.equal($("summary").textContent, "Report or block");
  assert.deepEqual($$("li[data-participant]").map((li) => [li.dataset.participant, li.querySelector(".name").textContent]), [["2", "Bo"]]);
  assert.deepEqual($$("li[data-request]").map((li) => [li.dataset.request, li.querySelector(".name").textContent]), [["7", "Cy"]]);
  assert.deepEqual($$("li").map((li) => li.querySelector("button").textContent), ["Report…", "Report…"]);

  handlers.lobby[0]([]);
  assert.deepEqual($$("li[data-request]"), [], "Cy's request ended");
  handlers.participants[0]([...ROSTER, { participant: 3, name: "Di", guest: true }]);
  assert.deepEqual($$("li[data-participant]").map((li) => li.dataset.participant), ["2", "3"]);
});

test("a row being reported stays when its person leaves, until the form is closed", async () => {
  const { $, $$, handlers } = panel();
  const bo = $("li[data-participant=2]");
  await bo.querySelector("button").click();
  handlers.participants[0](ROSTER.slice(0, 1));
  assert.equal($("li[data-participant=2]"), bo, "the same row, form and all");
  assert.ok(bo.querySelector("form"));
  assert.equal(shown(bo.querySelector(".tag")), true);
  assert.equal(bo.querySelector(".tag").textContent, "left the call");
  const cancel = bo.querySelector("form").querySelectorAll("button").find((b) => b.textContent === "Cancel");
  await cancel.click();
  assert.deepEqual($$("li[data-participant]"), []);
});

test("the report form: categories, an optional note, a still for participants, three actions", async () => {
  const { $ } = panel();
  const bo = $("li[data-participant=2]");
  await bo.querySelector("button").click();
  const form = bo.querySelector("form");
  assert.deepEqual(form.querySelector("select").attributes.get("name"), "category");
  assert.deepEqual(form.querySelectorAll("option").map((o) => [o.getAttribute("value"), o.textContent]), [
    ["spam", "Spam or unwanted caller"],
    ["harassment", "Harassment"],
    ["inappropriate", "Inappropriate content"],
    ["impersonation", "Impersonation"],
    ["other", "Other"],
  ]);
  assert.equal(form.querySelector("textarea[name=note]").getAttribute("maxlength"), "1000");
  assert.match(form.querySelector("input[type=checkbox]").parent.textContent, /Attach a still of their video/);
  assert.deepEqual(form.querySelectorAll("button[data-action]").map((b) => [b.dataset.action, b.textContent]), [
    ["report", "Report"],
    ["remove", "Remove and report"],
    ["block", "Remove and block"],
  ]);

  const cy = $("li[data-request=7]");
  await cy.querySelector("button").click();
  const lobbyForm = cy.querySelector("form");
  assert.equal(lobbyForm.querySelector("input[type=checkbox]"), null, "no video to take a still of");
  assert.deepEqual(lobbyForm.querySelectorAll("button[data-action]").map((b) => [b.dataset.action, b.textContent]), [
    ["report", "Report"],
    ["deny", "Deny and report"],
    ["block", "Deny and block"],
  ]);
});

test("Remove and block, with a still: what is sent, and what the reporter is told", async () => {
  const { $, requests, plugin } = panel({ answer: () => json({ report: "r1", removed: true, blocked: true, denied: false, escalated: false }) });
  const bo = $("li[data-participant=2]");
  await report(bo, "block", { category: "harassment", note: " shouting ", still: true });
  assert.deepEqual(plugin.stills, [2]);
  assert.deepEqual(requests, [{
    path: "/reports",
    method: "POST",
    headers: { "content-type": "application/json" },
    body: {
      link: "LinkForTests1",
      participant: 2,
      category: "harassment",
      note: "shouting",
      evidence: STILL.dataUrl,
      action: "block",
    },
  }]);
  assert.equal($(".spam-guard-result").textContent, "Reported. They were removed and blocked from this link.");
  assert.equal(shown($(".spam-guard-result")), true);
  assert.equal(bo.querySelector("form"), null, "the form closes");
});

test("a still the user declined: the report goes without one; unchecked, none is asked for", async () => {
  const { $, requests, plugin } = panel({ still: null });
  await report($("li[data-participant=2]"), "report", { still: true });
  assert.deepEqual([requests[0].body.evidence, requests[0].body.note, requests[0].body.category], [null, null, "spam"]);
  await report($("li[data-participant=2]"), "remove");
  assert.deepEqual(plugin.stills, [2], "asked once");
  assert.equal(requests[1].body.action, "remove");
});

test("a lobby request is reported by its request number", async () => {
  const { $, requests } = panel({ answer: () => json({ report: "r2", denied: true, blocked: true, escalated: true }) });
  await report($("li[data-request=7]"), "deny", { category: "spam" });
  assert.deepEqual(requests[0].body, { link: "LinkForTests1", request: 7, name: "Cy", category: "spam", note: null, evidence: null, action: "deny" });
  assert.equal(
    $(".spam-guard-result").textContent,
    "Reported. Reports from several people denied their request and blocked them from this link.",
  );
});

test("a refused report shows the server's message and keeps the form", async () => {
  const { $ } = panel({ answer: () => json({ error: { code: "forbidden", message: "Only the host may remove people." } }, 403) });
  const bo = $("li[data-participant=2]");
  const form = await report(bo, "remove");
  assert.equal(bo.querySelector("form"), form);
  assert.equal(form.querySelector(".spam-guard-error").textContent, "Only the host may remove people.");
  assert.equal(shown(form.querySelector(".spam-guard-error")), true);
  assert.equal(shown($(".spam-guard-result")), false);
  assert.equal(form.querySelectorAll("button[data-action]").every((b) => !b.disabled), true, "buttons usable again");
});

const LEAKED = { type: "leaked", link: "LinkForTests1", addresses: 6, denials: 3 };

test("leaked: only the server side's notice raises the warning", () => {
  const { $, say } = panel();
  say(LEAKED, true);
  say({ ...LEAKED, link: "SomeOtherLink" });
  say({ type: "suspended", link: "LinkForTests1" });
  assert.equal($(".spam-guard-leaked"), null);
  say(LEAKED);
  const box = $(".spam-guard-leaked");
  assert.equal(box.getAttribute("role"), "alert");
  assert.match(box.textContent, /This link may have been shared beyond the people you invited\./);
  assert.match(box.textContent, /6 different networks asked to join in the last 10 minutes; 3 requests were denied\./);
  say({ ...LEAKED, addresses: 9 });
  assert.equal(box.parent.querySelectorAll(".spam-guard-leaked").length, 1, "one box, brought up to date");
  assert.match(box.textContent, /9 different networks/);
});

const ROTATED = "The old link no longer works, and new guests now wait for approval. Share the new link shown above "
  + "with the people you invited: it works for this call and later ones.";

test("leaked: Lock lobby and Rotate link; the page shows the new link", async () => {
  const { $, requests, say, plugin } = panel({
    answer: (path) => (path === "/rotate" ? json({ id: "NewLink2" }) : json({ locked: true })),
  });
  say(LEAKED);
  await $("button[data-action=lock]").click();
  await settle();
  assert.deepEqual(requests.map((r) => [r.path, r.method, r.body]), [["/lobby-lock", "POST", { link: "LinkForTests1", locked: true }]]);
  assert.match($(".spam-guard-leaked").textContent, /The lobby is locked: nobody new can ask to join\./);
  assert.equal(shown($(".spam-guard-rotated")), false, "nothing about a new link before the rotation");
  await $("button[data-action=rotate]").click();
  await settle();
  assert.deepEqual(requests[1], {
    path: "/rotate",
    method: "POST",
    headers: { "content-type": "application/json" },
    body: { link: "LinkForTests1" },
  });
  // The page, which has the call's secret, shows the new link; the frame shows no address.
  assert.deepEqual(plugin.shownLinks, [["NewLink2", "New link"]]);
  assert.equal($("input"), null);
  assert.doesNotMatch(plugin.element.textContent, /https?:|#k=/);
  assert.equal(shown($(".spam-guard-rotated")), true);
  assert.equal($(".spam-guard-rotated").textContent, ROTATED);
  assert.equal(shown($(".spam-guard-leaked").querySelector(".spam-guard-error")), false);
  // From now on the call's link is the new one.
  await report($("li[data-participant=2]"), "report");
  assert.equal(requests[2].body.link, "NewLink2");
  say({ ...LEAKED, link: "NewLink2", addresses: 8 });
  assert.match($(".spam-guard-leaked").textContent, /8 different networks/);
});

test("leaked: a rotation answer without a link id shows nothing to share", async () => {
  for (const id of [undefined, "", "../admin", "a/b", 7]) {
    const { $, requests, say, plugin } = panel({ answer: () => json({ id }) });
    say(LEAKED);
    await $("button[data-action=rotate]").click();
    await settle();
    assert.deepEqual(plugin.shownLinks, [], String(id));
    assert.equal($(".spam-guard-leaked").querySelector(".spam-guard-error").textContent, "The server did not say what the new link is.");
    assert.equal(shown($(".spam-guard-rotated")), false);
    await report($("li[data-participant=2]"), "report");
    assert.equal(requests.at(-1).body.link, "LinkForTests1", "still the old link");
  }
});

test("leaked: a page that cannot show the new link says so, and the call still uses it", async () => {
  const { $, requests, say } = panel({
    answer: (path) => (path === "/rotate" ? json({ id: "NewLink2" }) : json({ report: "r1" })),
    showLink: () => Promise.reject(Object.assign(new Error("this page has no secret for that link"), { code: "no-secret" })),
  });
  say(LEAKED);
  await $("button[data-action=rotate]").click();
  await settle();
  assert.equal(
    $(".spam-guard-leaked").querySelector(".spam-guard-error").textContent,
    "The link was changed, but the page could not show the new one: this page has no secret for that link",
  );
  assert.equal(shown($(".spam-guard-rotated")), false);
  await report($("li[data-participant=2]"), "report");
  assert.equal(requests.at(-1).body.link, "NewLink2");
});

test("leaked: a refused rotation shows the server's message", async () => {
  const { $, say, plugin } = panel({ answer: () => json({ error: { code: "forbidden", message: "Only the link's owner may rotate it." } }, 403) });
  say(LEAKED);
  await $("button[data-action=rotate]").click();
  await settle();
  assert.equal($(".spam-guard-leaked").querySelector(".spam-guard-error").textContent, "Only the link's owner may rotate it.");
  assert.equal(shown($(".spam-guard-rotated")), false);
  assert.deepEqual(plugin.shownLinks, []);
});
