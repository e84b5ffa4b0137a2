// Bytes as base64 (plugins.js, call-crypto.js, e2ee.js) and base64url (link
// secrets: e2ee.js, random.js). Runs on the page and in the media worker.

/** Bytes per `String.fromCharCode` call, below engines' argument limits. */
const CHUNK = 0x8000;

/** `bytes` (a Uint8Array) as standard base64, `+` and `/`, padded with `=`. */
export function toBase64(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += CHUNK) {
    out += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(out);
}

/** Standard base64 back to a Uint8Array, as lenient as `atob`; throws on anything else. */
export function fromBase64(value) {
  const raw = atob(value);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

/** `bytes` as unpadded base64url (`-` and `_`). */
export function toBase64Url(bytes) {
  return toBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Base64url, padded or not, back to a Uint8Array. */
export function fromBase64Url(value) {
  const padded = value.replace(/-/g, "+").replace(/_/g, "/");
  return fromBase64(padded + "=".repeat((4 - (padded.length % 4)) % 4));
}
