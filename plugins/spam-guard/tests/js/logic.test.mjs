// What spam-guard's page modules decide without a page
// (plugins/spam-guard/static/logic.js): the reporter's sentence, the call's link id,
// which notices count, the report's body, and how the review queue reads. Run with
// `node --test plugins/spam-guard/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ACTIONS,
  CATEGORIES,
  categoryLabel,
  describeReport,
  isLinkId,
  leakedNumbers,
  linkIdOf,
  parseNotice,
  problemMessage,
  reportBody,
  reportTargets,
  resultSentence,
  statusLabel,
  summariseGroup,
} from "../../static/logic.js";

const LINK = "LinkForTests1";
const encode = (value) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const LEAKED = { type: "leaked", link: LINK, addresses: 6, denials: 3 };

test("the form's categories and buttons", () => {
  assert.deepEqual(CATEGORIES, [
    ["spam", "Spam or unwanted caller"],
    ["harassment", "Harassment"],
    ["inappropriate", "Inappropriate content"],
    ["impersonation", "Impersonation"],
    ["other", "Other"],
  ]);
  assert.deepEqual(ACTIONS.participant, [["report", "Report"], ["remove", "Remove and report"], ["block", "Remove and block"]]);
  assert.deepEqual(ACTIONS.request, [["report", "Report"], ["deny", "Deny and report"], ["block", "Deny and block"]]);
  assert.equal(categoryLabel("harassment"), "Harassment");
  assert.equal(categoryLabel("phishing"), "phishing", "a category this page does not know: its code");
});

test("linkIdOf: the id of the call's address, as plugin.link() gives it", () => {
  assert.equal(linkIdOf(`https://confab.example/j/${LINK}`), LINK);
  assert.equal(linkIdOf(`http://localhost:8080/j/${LINK}/`), LINK);
  assert.equal(linkIdOf(`https://confab.example/j/${LINK}#k=AAAAAAAAAAAAAAAAAAAAAA`), LINK, "a secret changes nothing");
  assert.equal(linkIdOf("https://confab.example/dashboard"), null);
  assert.equal(linkIdOf("https://confab.example/j/"), null);
  // The frame's own address is not a call's.
  assert.equal(linkIdOf("https://confab.example/plugin-frame/spam-guard/call-page"), null);
  for (const value of [null, undefined, "", `/j/${LINK}`, "not an address", 7]) {
    assert.equal(linkIdOf(value), null, String(value));
  }
});

test("isLinkId: only what /j/{id} takes, such as a rotation's answer", () => {
  assert.equal(isLinkId("NewLink2"), true);
  for (const id of ["", "../admin", "a/b", "a?b", "a#b", "a b", null, 7, undefined]) {
    assert.equal(isLinkId(id), false, String(id));
  }
});

test("resultSentence: what this report did", () => {
  const cases = [
    [{ report: "r1" }, "Reported."],
    [{ report: "r1", removed: true }, "Reported. They were removed from the call."],
    [{ report: "r1", removed: true, blocked: true }, "Reported. They were removed and blocked from this link."],
    [{ report: "r1", denied: true }, "Reported. Their request was denied."],
    [{ report: "r1", denied: true, blocked: true }, "Reported. Their request was denied and they were blocked from this link."],
    [{ report: "r1", blocked: true }, "Reported. They were blocked from this link."],
    [{ report: "r1", removed: false, blocked: false, denied: false, escalated: false }, "Reported."],
  ];
  for (const [answer, sentence] of cases) assert.equal(resultSentence(answer), sentence, JSON.stringify(answer));
  assert.equal(resultSentence(null), "Reported.");
  assert.equal(
    resultSentence({ report: "r1", removed: false, problem: "They could not be removed: the removal window passed." }),
    "Reported. They could not be removed: the removal window passed.",
  );
});

test("resultSentence: what several people's reports did together", () => {
  assert.equal(
    resultSentence({ report: "r1", removed: true, blocked: true, escalated: true }),
    "Reported. Reports from several people removed them and blocked them from this link.",
  );
  assert.equal(
    resultSentence({ report: "r1", denied: true, blocked: true, escalated: true }),
    "Reported. Reports from several people denied their request and blocked them from this link.",
  );
  assert.equal(resultSentence({ report: "r1", escalated: true }), "Reported.", "an escalation that did nothing says nothing");
});

test("parseNotice: a leaked warning from the server side", () => {
  assert.deepEqual(parseNotice(encode(LEAKED), { encrypted: false, links: [LINK] }), LEAKED);
  const extra = { ...LEAKED, since: 1 };
  assert.deepEqual(parseNotice(encode(extra), { encrypted: false, links: [LINK] }), LEAKED, "only what the page uses");
  assert.deepEqual(
    parseNotice(encode({ ...LEAKED, link: "NewLink2" }), { encrypted: false, links: [LINK, "NewLink2"] }),
    { ...LEAKED, link: "NewLink2" },
    "after a rotation, about the new link",
  );
});

test("parseNotice: nothing a participant sends, nor anything malformed, nor unknown types", () => {
  const bytes = encode(LEAKED);
  assert.equal(parseNotice(bytes, { encrypted: true, links: [LINK] }), null, "a participant's message");
  assert.equal(parseNotice(bytes, { links: [LINK] }), null, "no word on encryption");
  assert.equal(parseNotice(bytes, { encrypted: false, links: ["Other"] }), null, "another link");
  assert.equal(parseNotice(bytes, { encrypted: false }), null);
  const bad = [
    "not json",
    "[]",
    "null",
    "\"leaked\"",
    { type: "suspended", link: LINK },
    { type: "LEAKED", link: LINK, addresses: 1, denials: 1 },
    { ...LEAKED, addresses: -1 },
    { ...LEAKED, addresses: 1.5 },
    { ...LEAKED, denials: "3" },
    { ...LEAKED, denials: undefined },
    { ...LEAKED, link: 7 },
  ];
  for (const value of bad) {
    assert.equal(parseNotice(encode(value), { encrypted: false, links: [LINK] }), null, JSON.stringify(value));
  }
  const invalidUtf8 = new Uint8Array([0x7b, 0xff, 0x7d]);
  assert.equal(parseNotice(invalidUtf8, { encrypted: false, links: [LINK] }), null);
});

test("leakedNumbers: the line under the warning", () => {
  assert.equal(leakedNumbers(LEAKED), "6 different networks asked to join in the last 10 minutes; 3 requests were denied.");
  assert.equal(leakedNumbers({ addresses: 1, denials: 1 }), "1 network asked to join in the last 10 minutes; 1 request was denied.");
  assert.equal(leakedNumbers({ addresses: 0, denials: 0 }), "0 different networks asked to join in the last 10 minutes; 0 requests were denied.");
});

test("reportTargets: everyone else on the call, then the lobby", () => {
  const roster = [
    { participant: 1, name: "Ana", guest: false },
    { participant: 2, name: "Bo", guest: true },
  ];
  const lobby = [{ request: 7, name: "Cy", flags: [] }];
  assert.deepEqual(reportTargets(roster, 1, lobby), [
    { key: "p2", kind: "participant", id: 2, name: "Bo" },
    { key: "r7", kind: "request", id: 7, name: "Cy" },
  ]);
  assert.deepEqual(reportTargets(roster.slice(0, 1), 1, []), [], "alone");
  // A request number and a participant number may be the same: they stay apart.
  const keys = reportTargets([{ participant: 7, name: "Di" }], 1, lobby).map((t) => t.key);
  assert.deepEqual(keys, ["p7", "r7"]);
});

test("reportBody: who is reported, as a participant or a request", () => {
  const body = reportBody({
    link: LINK,
    target: { kind: "participant", id: 2 },
    category: "spam",
    note: "  shouting  ",
    evidence: "data:image/jpeg;base64,AAAA",
    action: "block",
  });
  assert.deepEqual(body, {
    link: LINK,
    participant: 2,
    category: "spam",
    note: "shouting",
    evidence: "data:image/jpeg;base64,AAAA",
    action: "block",
  });
  const request = reportBody({ link: LINK, target: { kind: "request", id: 7, name: "Lurker" }, category: "other", note: " ", evidence: null, action: "deny" });
  assert.deepEqual(request, { link: LINK, request: 7, name: "Lurker", category: "other", note: null, evidence: null, action: "deny" });
  assert.equal("participant" in request, false);
});

test("problemMessage: the server's words, or its status", () => {
  assert.equal(problemMessage({ error: { code: "forbidden", message: "Only the link's owner may block." } }, 403), "Only the link's owner may block.");
  assert.equal(problemMessage(null, 502), "The server answered 502.");
  assert.equal(problemMessage({ error: {} }, 500), "The server answered 500.");
  assert.equal(problemMessage({ error: "nope" }, 400), "The server answered 400.");
});

const date = (ms) => `<${ms}>`;
const GROUP = {
  identity: "opaque",
  names: ["Spammy", "Spam 2"],
  address: "198.51.100.7",
  device: true,
  status: "new",
  blocked: null,
  reports: [
    { id: "r2", category: "spam", note: "", evidence: true, reporter: "Ana", link: "L1", link_title: "Standup", at: 2000, status: "new", keep_until: null },
    { id: "r1", category: "harassment", note: "rude", evidence: false, reporter: "Bo", link: "L2", link_title: "", at: 1000, status: "dismissed", keep_until: 5000 },
    { id: "r0", category: "other", note: null, evidence: false, reporter: "Cy", link: "L1", link_title: "Standup", at: 500, status: "new", keep_until: null },
  ],
};

test("summariseGroup: who, from where, what state, and what the actions work on", () => {
  assert.deepEqual(summariseGroup(GROUP, date), {
    title: "Spammy, Spam 2",
    details: ["Network 198.51.100.7", "Their browser can be recognised"],
    status: "New · 3 reports",
    first: "r2",
    fresh: ["r2", "r0"],
  });
  const blocked = summariseGroup({
    ...GROUP,
    names: [],
    address: null,
    device: false,
    status: "actioned",
    blocked: { id: "b1", scope: "instance", expires_at: 9000 },
    reports: GROUP.reports.slice(1, 2),
  }, date);
  assert.deepEqual(blocked, {
    title: "No name given",
    details: ["Network not recorded", "Blocked on this server until <9000>"],
    status: "Actioned · 1 report",
    first: "r1",
    fresh: [],
  });
  assert.equal(summariseGroup({ ...GROUP, blocked: { id: "b2", scope: "link", expires_at: null } }, date).details[2], "Blocked on one link");
  assert.deepEqual(summariseGroup({ identity: "x", reports: [] }, date).first, null);
  assert.equal(statusLabel("dismissed"), "Dismissed");
});

test("describeReport: category, who reported it where and when, the note, how long it is kept", () => {
  assert.deepEqual(describeReport(GROUP.reports[0], date), {
    category: "Spam or unwanted caller",
    by: "Reported by Ana on “Standup” · <2000> · New",
    note: null,
    kept: null,
  });
  assert.deepEqual(describeReport(GROUP.reports[1], date), {
    category: "Harassment",
    by: "Reported by Bo on “L2” · <1000> · Dismissed",
    note: "rude",
    kept: "Keep for investigation until <5000>",
  });
  // The page's own formatting: the browser's locale.
  assert.equal(describeReport(GROUP.reports[2]).by, `Reported by Cy on “Standup” · ${new Date(500).toLocaleString()} · New`);
});
