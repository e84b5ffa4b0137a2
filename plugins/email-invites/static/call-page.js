// "Invite by email" on the call page, for a signed-in user: the form of
// invite-form.js in a panel of the call. It sends the link as the user has it,
// `#k=` secret included (`plugin.link()`): the fragment carries what the server
// never sees (the call's key), so only this page can put it into the invitations.

import { el, inviteForm } from "./invite-form.js";

export default function setup(plugin) {
  // Guests have no account to invite from (the server takes invitations from the
  // link's owner only).
  if (!plugin.signedIn || typeof plugin.fetch !== "function") {
    plugin.element.hidden = true;
    return;
  }
  const id = location.pathname.match(/^\/j\/([A-Za-z0-9]+)/)?.[1];
  if (!id) {
    plugin.element.hidden = true;
    return;
  }
  const form = inviteForm({
    fetch: (path, init) => plugin.fetch(path, init),
    // The link with its secret: the page took it out of the address bar.
    url: () => plugin.link(),
    label: "Addresses",
  });
  plugin.element.append(el("details", { class: "email-invites" }, el("summary", { text: "Invite by email" }), form));
}
