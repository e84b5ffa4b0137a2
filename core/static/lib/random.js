// Random values the pages make in the browser.

import { toBase64Url } from "./base64.js";

/** `length` random bytes as unpadded base64url. */
export function randomToken(length) {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return toBase64Url(bytes);
}
