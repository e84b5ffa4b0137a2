// "Invite by email" on every active link of the dashboard: the form of
// invite-form.js under the link, sending the link as the dashboard shows it.

import { el, inviteForm } from "./invite-form.js";

export default function setup(dashboard) {
  dashboard.element.append(
    el("h2", { text: "Email invitations" }),
    el("p", {
      class: "hint",
      text: "Use “Invite by email” on any of your links. A link with a date also sends a calendar invitation, "
        + "and everyone invited hears of a new time or a cancellation.",
    }),
  );
  const opened = new Map();
  dashboard.addLinkAction?.("Invite by email", async (link, button) => {
    let form = opened.get(link.id);
    if (!form) {
      form = inviteForm({
        fetch: (path, init) => dashboard.fetch(path, init),
        // The link as the dashboard knows it: with its #fragment.
        url: () => link.url,
        title: link.title,
        close: () => {
          form.hidden = true;
        },
      });
      form.dataset.emailInvites = link.id;
      // Below the link's row, across its whole width.
      form.style.flexBasis = "100%";
      opened.set(link.id, form);
      const row = button.closest("li") || button.parentElement;
      row.append(form);
    }
    form.hidden = false;
    form.querySelector("textarea").focus();
  });
}
