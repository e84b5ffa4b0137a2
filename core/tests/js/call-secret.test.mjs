// Where the call page finds the link secret (core/static/call/secret.js): `#k=` in
// the address, else this tab's sessionStorage, else what the dashboard remembered
// on this device; it leaves the address bar, and this tab forgets it on Leave.
// Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { register } from "node:module";

// secret.js imports `/static/e2ee.js`, as the browser does.
register("./static-paths.mjs", import.meta.url);
const { deviceSecretKey, findSecret, forgetSecret, fullLink, hideSecret, keepSecret, tabSecretKey } =
  await import("../../static/call/secret.js");

const LINK = "LinkForTests1";
// Secrets as the dashboard makes them: 16 bytes, unpadded base64url.
const FROM_HASH = "AAAAAAAAAAAAAAAAAAAAAA";
const IN_TAB = "BBBBBBBBBBBBBBBBBBBBBB";
const ON_DEVICE = "CCCCCCCCCCCCCCCCCCCCCC";

/** A Storage in memory (getItem gives null for what it lacks, as browsers do). */
class MemoryStorage {
  constructor(entries = {}) {
    this.map = new Map(Object.entries(entries));
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

/** A storage the browser turned off: every use throws. */
const refusing = {
  getItem() { throw new Error("SecurityError"); },
  setItem() { throw new Error("SecurityError"); },
  removeItem() { throw new Error("SecurityError"); },
};

/** What the page passes: the storages, looked up only when used. */
function storages({ tab = null, device = null } = {}) {
  const session = new MemoryStorage(tab === null ? {} : { [tabSecretKey(LINK)]: tab });
  const local = new MemoryStorage(device === null ? {} : { [deviceSecretKey(LINK)]: device });
  return { session: () => session, local: () => local, sessionStorage: session, localStorage: local };
}

test("the keys are the ones the dashboard and earlier pages use", () => {
  assert.equal(tabSecretKey(LINK), `confab.tab-secret.${LINK}`);
  assert.equal(deviceSecretKey(LINK), `confab.secret.${LINK}`);
});

test("the secret in the address wins over what this tab and this device keep", () => {
  const both = storages({ tab: IN_TAB, device: ON_DEVICE });
  assert.equal(findSecret(LINK, `#k=${FROM_HASH}`, both), FROM_HASH);
  // With other parameters around it, and without the leading `#`.
  assert.equal(findSecret(LINK, `#x=1&k=${FROM_HASH}`, both), FROM_HASH);
  assert.equal(findSecret(LINK, `k=${FROM_HASH}`, both), FROM_HASH);
  // Storage isn't even looked at: a browser that refuses it still joins with the link.
  const refused = () => {
    throw new Error("SecurityError");
  };
  const broken = { session: refused, local: refused };
  assert.equal(findSecret(LINK, `#k=${FROM_HASH}`, broken), FROM_HASH);
});

test("without it in the address: this tab's before this device's", () => {
  assert.equal(findSecret(LINK, "", storages({ tab: IN_TAB, device: ON_DEVICE })), IN_TAB);
  assert.equal(findSecret(LINK, "", storages({ device: ON_DEVICE })), ON_DEVICE);
  assert.equal(findSecret(LINK, "", storages({ tab: IN_TAB })), IN_TAB);
  assert.equal(findSecret(LINK, "", storages()), null, "nowhere: the page says the link is incomplete");
  // Another link's secret is not this one's.
  const other = storages();
  other.localStorage.setItem(deviceSecretKey("OtherLink0001"), ON_DEVICE);
  other.sessionStorage.setItem(tabSecretKey("OtherLink0001"), IN_TAB);
  assert.equal(findSecret(LINK, "", other), null);
});

test("a malformed secret is no secret, wherever it is", () => {
  const both = storages({ tab: IN_TAB, device: ON_DEVICE });
  for (const bad of ["short", "", `${FROM_HASH}!`, "A".repeat(21), "A".repeat(129), "a b".repeat(10)]) {
    assert.equal(findSecret(LINK, `#k=${bad}`, both), IN_TAB, `hash ${bad}`);
    assert.equal(findSecret(LINK, "", storages({ tab: bad, device: ON_DEVICE })), ON_DEVICE, `tab ${bad}`);
    assert.equal(findSecret(LINK, "", storages({ device: bad })), null, `device ${bad}`);
  }
  assert.equal(findSecret(LINK, "#K=" + FROM_HASH, storages()), null, "the parameter is `k`");
});

test("storage turned off: no secret from it, and no error", () => {
  const off = { session: () => refusing, local: () => refusing };
  assert.equal(findSecret(LINK, "", off), null);
  const deviceOnly = storages({ device: ON_DEVICE });
  assert.equal(findSecret(LINK, "", { session: () => refusing, local: deviceOnly.local }), ON_DEVICE);
  assert.doesNotThrow(() => keepSecret(LINK, FROM_HASH, off));
});

/** A location and history as the page has them; `replaced` records replaceState. */
function address(hash) {
  const history = {
    state: { kept: true },
    replaced: [],
    replaceState(state, title, url) {
      this.replaced.push({ state, title, url });
    },
  };
  return { location: { hash, pathname: `/j/${LINK}`, search: "?lang=fr" }, history };
}

test("the secret leaves the address bar, and the history entry, at once", () => {
  const { location, history } = address(`#k=${FROM_HASH}`);
  hideSecret(location, history);
  assert.deepEqual(history.replaced, [{ state: { kept: true }, title: "", url: `/j/${LINK}?lang=fr` }]);
  // Any fragment goes, a malformed secret too; without one nothing changes.
  const bad = address("#k=short");
  hideSecret(bad.location, bad.history);
  assert.equal(bad.history.replaced.length, 1);
  const none = address("");
  hideSecret(none.location, none.history);
  assert.deepEqual(none.history.replaced, []);
});

test("this tab keeps the secret for a reload; the device keeps nothing", () => {
  const s = storages();
  keepSecret(LINK, FROM_HASH, s);
  assert.equal(s.sessionStorage.getItem(tabSecretKey(LINK)), FROM_HASH);
  assert.equal(s.localStorage.map.size, 0);
  // The reload: no fragment any more, the tab has it.
  assert.equal(findSecret(LINK, "", s), FROM_HASH);
  // No secret: nothing to keep.
  const empty = storages();
  keepSecret(LINK, null, empty);
  assert.equal(empty.sessionStorage.map.size, 0);
});

test("Leave: this tab forgets the secret, what the device remembers stays", () => {
  const s = storages({ tab: IN_TAB, device: ON_DEVICE });
  forgetSecret(LINK, s);
  assert.equal(s.sessionStorage.getItem(tabSecretKey(LINK)), null);
  assert.equal(s.localStorage.getItem(deviceSecretKey(LINK)), ON_DEVICE);
  assert.equal(findSecret(LINK, "", s), ON_DEVICE);
  // A guest's tab: after Leave a reload no longer finds it.
  const guest = storages();
  keepSecret(LINK, FROM_HASH, guest);
  forgetSecret(LINK, guest);
  assert.equal(findSecret(LINK, "", guest), null);
});

test("the full link carries the secret the page has", () => {
  assert.equal(fullLink("https://confab.example", LINK, FROM_HASH), `https://confab.example/j/${LINK}#k=${FROM_HASH}`);
  assert.equal(fullLink("https://confab.example", LINK, null), `https://confab.example/j/${LINK}`);
});
