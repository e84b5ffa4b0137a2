// "Invite by email" on the call page, for a signed-in user: the form of
// invite-form.js in a panel of the call. The frame knows the call's address
// without its secret (`plugin.link()`); the page puts the full link, `#k=` secret
// included, into what Send posts (`withLink`): the fragment carries what the
// server never sees (the call's key), so only the page can put it into the
// invitations.

import { el, inviteForm } from "./invite-form.js";

/** The link id of the call's address (`https://host/j/{id}`), or null. */
function linkIdOf(address) {
  if (typeof address !== "string" || !address) return null;
  try {
    return /^\/j\/([A-Za-z0-9]+)/.exec(new URL(address).pathname)?.[1] ?? null;
  } catch {
    return null;
  }
}

export default function setup(plugin) {
  // Guests have no account to invite from (the server takes invitations from the
  // link's owner only).
  if (!plugin.signedIn || typeof plugin.fetch !== "function") {
    plugin.element.hidden = true;
    return;
  }
  // The frame's own address is not the call's: the handle says which call this is.
  const id = linkIdOf(typeof plugin.link === "function" ? plugin.link() : null);
  if (!id) {
    plugin.element.hidden = true;
    return;
  }
  const form = inviteForm({
    // The page adds the link with its secret as the body's `url`.
    fetch: (path, init) => plugin.fetch(path, init, { withLink: "url" }),
    label: "Addresses",
  });
  plugin.element.append(el("details", { class: "email-invites" }, el("summary", { text: "Invite by email" }), form));
}
