// The link secret (`#k=…`): the browser never sends it to the server; every key of
// the call is made from it. Once read it leaves the address bar (where a screen
// share would show it, and history would keep it); this tab keeps it so that a
// reload finds it, and forgets it on Leave. A link's owner who asked the
// dashboard to remember the secret on this device has it in localStorage.
//
// Written as functions of the location, history and storages they are given, so
// that Node can test the rule (core/tests/js/call-secret.test.mjs). The storages
// come as functions (`{ session: () => sessionStorage, local: () => localStorage }`):
// each is only looked up where the rule needs it.

import { secretFromHash } from "/static/e2ee.js";

/** Where this tab keeps the secret of link `linkId` (sessionStorage). */
export const tabSecretKey = (linkId) => `confab.tab-secret.${linkId}`;
/** Where the dashboard keeps it on this device when asked to (localStorage). */
export const deviceSecretKey = (linkId) => `confab.secret.${linkId}`;

function storedSecret(storage, key) {
  try {
    return secretFromHash(`k=${storage.getItem(key) ?? ""}`);
  } catch {
    return null; // storage turned off
  }
}

/** The secret of link `linkId`: from the address's `hash`, else this tab, else this device. */
export function findSecret(linkId, hash, storages) {
  return secretFromHash(hash)
    ?? storedSecret(storages.session(), tabSecretKey(linkId))
    ?? storedSecret(storages.local(), deviceSecretKey(linkId));
}

/** Takes the fragment (and the secret in it) out of the address bar and this history entry. */
export function hideSecret(location, history) {
  if (location.hash) history.replaceState(history.state, "", `${location.pathname}${location.search}`);
}

/** Keeps `secret` (if any) for this tab, so that a reload finds it. */
export function keepSecret(linkId, secret, storages) {
  if (!secret) return;
  try {
    storages.session().setItem(tabSecretKey(linkId), secret);
  } catch {
    // No storage: a reload needs the link again.
  }
}

/** Leave: this tab forgets the secret (what the device remembers stays). */
export function forgetSecret(linkId, storages) {
  storages.session().removeItem(tabSecretKey(linkId));
}

/** The link as people share it, with its secret (kept here, not in the address bar). */
export function fullLink(origin, linkId, secret) {
  return `${origin}/j/${linkId}${secret ? `#k=${secret}` : ""}`;
}
