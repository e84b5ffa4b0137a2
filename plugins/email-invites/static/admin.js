// email-invites on administrators' dashboards (`web.admin`): whose invitations
// the people who got them reported as unwanted (the "report this invitation" link
// in the mail), to spot someone using the server to send spam. The server answers
// everyone else 401 or 403, and then the card hides itself.

import { el, problem } from "./invite-form.js";

const REPORTED = "Invitations reported as unwanted";

function lastDays(n) {
  return n === 1 ? "the last day" : `the last ${n} days`;
}

/** A date from the server as this browser writes dates; nothing when there is none. */
function when(value) {
  const date = new Date(value);
  if (!value || Number.isNaN(date.getTime())) return "";
  return date.toLocaleString();
}

function senderRow(sender) {
  const name = typeof sender.name === "string" ? sender.name.trim() : "";
  const email = typeof sender.email === "string" ? sender.email : "";
  const who = el("td", { class: "title" });
  // The name and address are the users' own: text, never markup.
  if (name) who.append(el("strong", { text: name }), " ");
  if (email) who.append(el("span", { class: "meta", text: name ? `<${email}>` : email }));
  const date = when(sender.last_reported_at);
  return el(
    "tr",
    { "data-user": sender.user },
    who,
    el("td", { text: String(sender.reported ?? 0) }),
    el("td", {}, date ? el("time", { datetime: sender.last_reported_at, text: date }) : ""),
  );
}

/**
 * The list of reported senders, added under the card's heading once the server
 * answered. Someone the server refuses (401, 403) sees no card at all. Never
 * rejects: the page would show the failure as the plugin's.
 */
async function showReported(dashboard) {
  let response;
  let body;
  try {
    response = await dashboard.fetch("/reported");
    if (response.status === 401 || response.status === 403) {
      dashboard.element.hidden = true;
      return;
    }
    body = response.ok ? await response.json() : null;
  } catch (error) {
    dashboard.element.append(
      el("h3", { text: REPORTED }),
      el("p", { class: "status error", role: "alert", text: `The list could not be loaded: ${error.message || error}` }),
    );
    return;
  }
  if (!response.ok) {
    const { message } = await problem(response);
    dashboard.element.append(el("h3", { text: REPORTED }), el("p", { class: "status error", role: "alert", text: message }));
    return;
  }
  const senders = Array.isArray(body?.senders) ? body.senders.filter((sender) => sender && typeof sender === "object") : [];
  const days = Number.isInteger(body?.window_days) && body.window_days > 0 ? body.window_days : 30;
  const heading = el("h3", { id: "email-invites-reported", text: REPORTED });
  if (!senders.length) {
    dashboard.element.append(heading, el("p", { class: "hint", text: `No invitation was reported in ${lastDays(days)}.` }));
    return;
  }
  dashboard.element.append(
    heading,
    el("p", {
      class: "hint",
      text: `People whose invitations were reported by those who got them, in ${lastDays(days)}.`,
    }),
    el(
      "table",
      { class: "email-invites-reported", "aria-labelledby": heading.id },
      el(
        "thead",
        {},
        el("tr", {}, ...["Sender", "Reports", "Last report"].map((text) => el("th", { scope: "col", text }))),
      ),
      // In the server's order: most reported first.
      el("tbody", {}, ...senders.map(senderRow)),
    ),
  );
}

export default function setup(dashboard) {
  dashboard.element.append(el("h2", { text: "Email invitations" }));
  if (typeof dashboard.fetch !== "function") {
    dashboard.element.hidden = true;
    return Promise.resolve();
  }
  return showReported(dashboard);
}
