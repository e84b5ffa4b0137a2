// What spam-guard's page modules (call-page.js, dashboard.js) decide without a
// page: the words for the server's answers, which link the call is, which notices
// to believe, and how a group of reports reads on the dashboard. No DOM and no
// globals, so that Node can test them (plugins/spam-guard/tests/js/logic.test.mjs).

/** What a report may be about: its code and how the form and the dashboard name it. */
export const CATEGORIES = Object.freeze([
  ["spam", "Spam or unwanted caller"],
  ["harassment", "Harassment"],
  ["inappropriate", "Inappropriate content"],
  ["impersonation", "Impersonation"],
  ["other", "Other"],
]);

/** The buttons of the report form: for someone on the call, and for a lobby request. */
export const ACTIONS = Object.freeze({
  participant: Object.freeze([
    ["report", "Report"],
    ["remove", "Remove and report"],
    ["block", "Remove and block"],
  ]),
  request: Object.freeze([
    ["report", "Report"],
    ["deny", "Deny and report"],
    ["block", "Deny and block"],
  ]),
});

/** A link id, as the server makes them (and as `/j/{id}` takes them). */
const LINK_ID = /^[A-Za-z0-9]+$/;

/** The category's name, or its code when this page does not know it. */
export function categoryLabel(code) {
  return CATEGORIES.find(([value]) => value === code)?.[1] ?? String(code);
}

/** Whether `value` is a link id (what `/j/{id}` takes), such as the server's answer to a rotation. */
export function isLinkId(value) {
  return typeof value === "string" && LINK_ID.test(value);
}

/**
 * The link id of a call's address (`plugin.link()`: `https://host/j/{id}`), or
 * null when it is none. The frame's own address is not the call's.
 */
export function linkIdOf(address) {
  if (typeof address !== "string" || !address) return null;
  let pathname;
  try {
    pathname = new URL(address).pathname;
  } catch {
    return null;
  }
  return /^\/j\/([A-Za-z0-9]+)/.exec(pathname)?.[1] ?? null;
}

/**
 * What the reporter is told after the server took a report:
 * `{ report, removed, blocked, denied, escalated }`. An escalation means this
 * report was not the only one: together they did what this one alone may not.
 */
export function resultSentence(answer) {
  const sentence = didSentence(answer);
  // What could not be done (a removal after the removal window, say), as the server says it.
  const problem = typeof answer?.problem === "string" ? answer.problem.trim() : "";
  return problem ? `${sentence} ${problem}` : sentence;
}

function didSentence(answer) {
  const { removed, blocked, denied, escalated } = answer ?? {};
  if (escalated && (removed || blocked || denied)) {
    const did = [
      removed ? "removed them" : null,
      denied ? "denied their request" : null,
      blocked ? "blocked them from this link" : null,
    ].filter(Boolean);
    return `Reported. Reports from several people ${did.join(" and ")}.`;
  }
  if (removed && blocked) return "Reported. They were removed and blocked from this link.";
  if (removed) return "Reported. They were removed from the call.";
  if (denied && blocked) return "Reported. Their request was denied and they were blocked from this link.";
  if (denied) return "Reported. Their request was denied.";
  if (blocked) return "Reported. They were blocked from this link.";
  return "Reported.";
}

const isCount = (n) => Number.isSafeInteger(n) && n >= 0;

/**
 * A notice the plugin's server side sent on its channel, or null for anything
 * else. `encrypted` is what the page says of the message: participants' messages
 * are encrypted, and none of them may raise an alarm; `links` are the ids this page
 * knows its call by. Unknown types are null too, so that newer servers may add some.
 */
export function parseNotice(bytes, { encrypted, links = [] } = {}) {
  if (encrypted !== false) return null;
  let notice;
  try {
    notice = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
  if (!notice || typeof notice !== "object" || Array.isArray(notice)) return null;
  if (notice.type === "leaked") {
    const { link, addresses, denials } = notice;
    if (typeof link !== "string" || !links.includes(link)) return null;
    if (!isCount(addresses) || !isCount(denials)) return null;
    return { type: "leaked", link, addresses, denials };
  }
  return null;
}

/** The numbers of a `leaked` notice, as one line. */
export function leakedNumbers({ addresses, denials }) {
  const asked = addresses === 1
    ? "1 network asked to join in the last 10 minutes"
    : `${addresses} different networks asked to join in the last 10 minutes`;
  const denied = denials === 1 ? "1 request was denied" : `${denials} requests were denied`;
  return `${asked}; ${denied}.`;
}

/**
 * The rows of the report panel: everyone else on the call, then the lobby.
 * `key` tells rows apart across updates (`p…` a participant, `r…` a request).
 */
export function reportTargets(participants, me, lobby) {
  return [
    ...participants
      .filter((p) => p.participant !== me)
      .map((p) => ({ key: `p${p.participant}`, kind: "participant", id: p.participant, name: p.name })),
    ...lobby.map((r) => ({ key: `r${r.request}`, kind: "request", id: r.request, name: r.name })),
  ];
}

/** The body of `POST /reports`. An empty note is none. */
export function reportBody({ link, target, category, note, evidence, action }) {
  return {
    link,
    [target.kind]: target.id,
    // The server knows a participant's name; a waiting request's it takes from the reporter.
    ...(target.kind === "request" ? { name: target.name } : {}),
    category,
    note: note.trim() || null,
    evidence: evidence ?? null,
    action,
  };
}

/** The message of the server's `{"error": {code, message}}`, or what to say when there is none. */
export function problemMessage(body, status) {
  const message = body?.error?.message;
  return typeof message === "string" && message ? message : `The server answered ${status}.`;
}

const STATUSES = { new: "New", actioned: "Actioned", dismissed: "Dismissed" };
const SCOPES = { instance: "this server", link: "one link", call: "one call" };

/** A status code as the dashboard shows it. */
export function statusLabel(status) {
  return STATUSES[status] ?? String(status);
}

/**
 * How a group of reports (all about one caller) reads on the dashboard: its
 * `title` (the names they gave), `details` (network, browser, block),
 * `status`, and the reports the actions work on: `first` (what a block refers
 * to) and `fresh` (the new ones a dismissal closes). `date` formats a time in ms.
 */
export function summariseGroup(group, date = (ms) => new Date(ms).toLocaleString()) {
  const names = (group.names ?? []).filter((n) => typeof n === "string" && n.trim());
  const details = [group.address ? `Network ${group.address}` : "Network not recorded"];
  if (group.device) details.push("Their browser can be recognised");
  if (group.blocked) {
    const where = SCOPES[group.blocked.scope] ?? group.blocked.scope;
    const until = group.blocked.expires_at ? ` until ${date(group.blocked.expires_at)}` : "";
    details.push(`Blocked on ${where}${until}`);
  }
  const reports = group.reports ?? [];
  const count = reports.length === 1 ? "1 report" : `${reports.length} reports`;
  return {
    title: names.length ? names.join(", ") : "No name given",
    details,
    status: `${statusLabel(group.status)} · ${count}`,
    first: reports[0]?.id ?? null,
    fresh: reports.filter((r) => r.status === "new").map((r) => r.id),
  };
}

/** How one report reads on the dashboard; `date` as for `summariseGroup`. */
export function describeReport(report, date = (ms) => new Date(ms).toLocaleString()) {
  const where = report.link_title || report.link;
  return {
    category: categoryLabel(report.category),
    by: `Reported by ${report.reporter}${where ? ` on “${where}”` : ""} · ${date(report.at)} · ${statusLabel(report.status)}`,
    note: report.note || null,
    kept: report.keep_until ? `Keep for investigation until ${date(report.keep_until)}` : null,
  };
}
