// "Invite by email" on every active link of the dashboard: the form of
// invite-form.js in this card, one per link, under a heading naming the link. The
// card runs in a frame that never sees a link's secret: the page puts the full
// link into what Send posts (`withLink`), which it can only do for links whose
// secret this browser has. Administrators' list of reported invitations is in
// admin.js, on their dashboards only.

import { el, inviteForm } from "./invite-form.js";

/** What the card says when this browser lacks the secret of `link`. */
function noSecretSentence(link) {
  const name = link.title ? `“${link.title}”` : "this link";
  return `This browser does not have the secret of ${name}, so the invitation cannot carry it: `
    + "open the link's full address once in this browser, then try again.";
}

export default function setup(dashboard) {
  // Said when a link's secret is missing; one line, about the last link asked for.
  const missing = el("p", { class: "status error", role: "alert", hidden: true });
  dashboard.element.append(
    el("h2", { text: "Email invitations" }),
    el("p", {
      class: "hint",
      text: "Use “Invite by email” on any of your links. A link with a date also sends a calendar invitation, "
        + "and everyone invited hears of a new time or a cancellation.",
    }),
    missing,
  );
  // The form of each link asked for, by link id: shown again on a second click.
  const opened = new Map();
  dashboard.addLinkAction?.("Invite by email", (link) => {
    if (!link.secret) {
      // The page could not add the link: an invitation without its secret would
      // not let anyone in.
      missing.textContent = noSecretSentence(link);
      missing.hidden = false;
      return;
    }
    missing.hidden = true;
    let section = opened.get(link.id);
    if (!section) {
      section = el("section", { class: "stack email-invites-link", "data-email-invites": link.id });
      const form = inviteForm({
        fetch: (path, init) => dashboard.fetch(path, init, { withLink: "url", link: link.id }),
        title: link.title,
        close: () => {
          section.hidden = true;
        },
      });
      section.append(el("h3", { text: `Invite to “${link.title || link.id}”` }), form);
      opened.set(link.id, section);
      dashboard.element.append(section);
    }
    section.hidden = false;
    section.querySelector("textarea").focus();
  });
}
