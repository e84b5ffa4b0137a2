// email-invites on the dashboard (plugins/email-invites/static/dashboard.js) on a
// fake DOM and a fake dashboard handle, as plugin-kit.js gives it to the frame:
// the "Invite by email" action on the links opens a form in the card, whose Send
// asks the page to add the link with its secret; a link whose secret this browser
// lacks gets a sentence instead. Run with `node --test plugins/email-invites/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Element, installDom, json, recordingFetch, shown } from "../../../../sdk/test/js/fake-dom.mjs";

installDom();
const { default: setup } = await import("../../static/dashboard.js");

// Links as the handle lists them: addresses without their secrets.
const STANDUP = { id: "L1", title: "Standup", url: "https://confab.example/j/L1", status: "active", when: null, secret: true };
const RETRO = { id: "L2", title: "Retro", url: "https://confab.example/j/L2", status: "active", when: null, secret: true };
const ELSEWHERE = { id: "L3", title: "Board", url: "https://confab.example/j/L3", status: "active", when: null, secret: false };
const NO_SECRET = "This browser does not have the secret of “Board”, so the invitation cannot carry it: "
  + "open the link's full address once in this browser, then try again.";

/** The card set up with `answer` answering its requests. */
function card(answer = () => json({ queued: 1, ids: ["1"], scheduled: false, not_sent: [] }, 202)) {
  const { fetch, requests } = recordingFetch(answer);
  const actions = [];
  const dashboard = {
    name: "email-invites",
    page: "dashboard",
    admin: false,
    element: new Element("main"),
    links: () => [STANDUP, RETRO, ELSEWHERE],
    fetch,
    addLinkAction: (label, handler) => actions.push({ label, handler }),
    report() {},
  };
  setup(dashboard);
  const $ = (selector) => dashboard.element.querySelector(selector);
  const $$ = (selector) => dashboard.element.querySelectorAll(selector);
  // A click on the link's button in the page: the handler gets the link, nothing else.
  const click = (link) => actions[0].handler(link);
  return { dashboard, requests, actions, $, $$, click };
}

test("the card says what to do, asks the server nothing, and puts one button on the links", () => {
  const { dashboard, requests, actions, $$ } = card();
  assert.deepEqual($$("h2").map((h) => h.textContent), ["Email invitations"]);
  assert.match(dashboard.element.textContent, /Use “Invite by email” on any of your links\./);
  assert.deepEqual(actions.map((a) => a.label), ["Invite by email"]);
  assert.deepEqual(requests, [], "the reported list is the administrators' card's (admin.js)");
  assert.deepEqual($$("form"), []);
  assert.deepEqual($$("h3"), []);
  assert.equal(dashboard.element.hidden, false);
});

test("Invite by email opens the link's form in the card, under a heading naming it", async () => {
  const { dashboard, $, $$, click } = card();
  await click(STANDUP);
  const section = $("section[data-email-invites=L1]");
  assert.ok(section, "in the card");
  assert.equal(section.parentElement, dashboard.element);
  assert.equal(section.querySelector("h3").textContent, "Invite to “Standup”");
  const form = section.querySelector("form");
  assert.equal(form.getAttribute("aria-label"), "Invite people to “Standup” by email");
  assert.equal(form.querySelector("textarea").focused, true);
  assert.equal(shown(form), true);
  assert.equal($$("form").length, 1);
});

test("Send asks the page to add the link with its secret, and posts no link itself", async () => {
  const { requests, $, click } = card();
  await click(STANDUP);
  const form = $("section[data-email-invites=L1]").querySelector("form");
  form.querySelector("textarea[name=recipients]").value = "bo@example.org";
  await form.requestSubmit();
  assert.deepEqual(requests, [{
    path: "/invites",
    method: "POST",
    headers: { "content-type": "application/json" },
    body: { recipients: ["bo@example.org"], note: null },
    options: { withLink: "url", link: "L1" },
  }]);
  assert.equal(form.querySelector(".status").textContent, "Invitation sent to 1 person.");
});

test("one form per link: Close hides it, a second click shows the same form again", async () => {
  const { requests, $, $$, click } = card();
  await click(STANDUP);
  const section = $("section[data-email-invites=L1]");
  const form = section.querySelector("form");
  form.querySelector("textarea[name=recipients]").value = "typed@example.org";
  await form.querySelector("button.quiet").click();
  assert.equal(shown(form), false, "Close hides the form and its heading");
  assert.equal(shown(section.querySelector("h3")), false);
  await click(STANDUP);
  assert.equal($("section[data-email-invites=L1]"), section);
  assert.equal(shown(form), true);
  assert.equal(form.querySelector("textarea[name=recipients]").value, "typed@example.org", "what was typed is still there");
  assert.equal($$("form").length, 1);

  // Another link gets a form of its own, which sends for that link.
  await click(RETRO);
  assert.deepEqual($$("section").map((s) => s.dataset.emailInvites), ["L1", "L2"]);
  assert.equal($("section[data-email-invites=L2]").querySelector("h3").textContent, "Invite to “Retro”");
  const retro = $("section[data-email-invites=L2]").querySelector("form");
  retro.querySelector("textarea[name=recipients]").value = "cy@example.org";
  await retro.requestSubmit();
  assert.deepEqual(requests.at(-1).options, { withLink: "url", link: "L2" });
});

test("a link whose secret this browser lacks gets a sentence, no form and no request", async () => {
  const { requests, $, $$, click } = card();
  await click(ELSEWHERE);
  assert.deepEqual($$("form"), []);
  assert.deepEqual(requests, []);
  const alert = $("p[role=alert]");
  assert.equal(alert.textContent, NO_SECRET);
  assert.equal(shown(alert), true);
  assert.equal(alert.parentElement.tagName, "MAIN", "in the card");
  // A link with its secret opens its form, and the sentence goes.
  await click(STANDUP);
  assert.equal(shown(alert), false);
  assert.equal($$("form").length, 1);
  // Asked again for the link without its secret: the sentence again, still no form for it.
  await click(ELSEWHERE);
  assert.equal(shown(alert), true);
  assert.equal($("section[data-email-invites=L3]"), null);
});

test("a link without a title is named by its id", async () => {
  const { $, click } = card();
  await click({ ...STANDUP, id: "L9", title: "" });
  assert.equal($("section[data-email-invites=L9]").querySelector("h3").textContent, "Invite to “L9”");
  await click({ ...ELSEWHERE, title: "" });
  assert.match($("p[role=alert]").textContent, /^This browser does not have the secret of this link, so the invitation cannot carry it/);
});
