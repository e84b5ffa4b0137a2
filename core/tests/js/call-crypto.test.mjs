// The call page's key exchange (core/static/call-crypto.js), run in Node between
// honest pages and a scripted malicious relay: a server that knows the link secret
// (it made the link, or sent the invitation) and relays, drops or makes up `e2ee`
// messages. Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";

// What the page module needs from a browser, and nothing more.
globalThis.Worker = class {
  constructor() {
    this.posted = [];
  }
  postMessage(message) {
    this.posted.push(message);
  }
  addEventListener() {}
};
globalThis.localStorage = { getItem: () => null };

const { CallCrypto, GHOST_WARNING_MS, ROUND_SCOPE } = await import("../../static/call-crypto.js");
const e2ee = await import("../../static/e2ee.js");

const CALL = "CallForTests0001";
const secret = e2ee.newSecret();
// What the pages bind the call to: the secret's id, whatever address the link has.
const LINK = await e2ee.secretId(secret);

function decode(payload) {
  return JSON.parse(new TextDecoder().decode(e2ee.fromBase64(payload)));
}

/** A page on the call as participant `me`; `sent` is what it gave the server. */
async function page(me) {
  const sent = [];
  const p = new CallCrypto({ secret, send: (m) => sent.push(m), onChange: () => {} });
  p.sent = sent;
  await p.start(me, CALL);
  return p;
}

function roster(...ids) {
  return ids.map((participant) => ({ participant }));
}

/** Relays what `from` sent (to everyone or to `to.me`) since the last call, like an honest server. */
async function relay(from, to) {
  from.relayed ??= new Map();
  const start = from.relayed.get(to) ?? 0;
  const messages = from.sent.slice(start);
  from.relayed.set(to, from.sent.length);
  for (const m of messages) if (m.to === undefined || m.to === to.me) await to.receive(from.me, m.payload);
}

/** Relays both ways until nothing new is sent. */
async function settle(...pages) {
  for (let round = 0; round < 6; round += 1) {
    for (const a of pages) for (const b of pages) if (a !== b) await relay(a, b);
  }
}

/** A safety code as the page shows it. */
const CODE = /^\d{3} \d{3} \d{3} \d{3}$/;

/** What `p` sent of type `type` for the safety-code round `round`. */
function sentOfType(p, type, round) {
  return p.sent.map((m) => decode(m.payload)).filter((m) => m.t === type && m.round === round);
}

function encode(message) {
  return e2ee.toBase64(new TextEncoder().encode(JSON.stringify(message)));
}

function keysSent(p, to) {
  return p.sent.filter((m) => m.to === to && decode(m.payload).t === "key").map((m) => decode(m.payload));
}

/** What a server with the secret can sign: a hello for any participant number. */
async function forgedHello(participant, { reply = false, call = CALL } = {}) {
  const link = await e2ee.linkKeys(secret, LINK);
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const mac = await e2ee.helloMac(link, call, participant, pub);
  const message = { t: "hello", pub: e2ee.toBase64(pub), mac: e2ee.toBase64(mac), reply };
  return e2ee.toBase64(new TextEncoder().encode(JSON.stringify(message)));
}

async function twoOnACall() {
  const alice = await page(1);
  alice.rosterChanged(roster(1));
  const bob = await page(2);
  alice.rosterChanged(roster(1, 2));
  bob.rosterChanged(roster(1, 2));
  await settle(alice, bob);
  return { alice, bob };
}

test("two honest pages exchange keys and show the same safety code", async () => {
  const { alice, bob } = await twoOnACall();
  assert.deepEqual([...alice.peers.keys()], [2]);
  assert.deepEqual([...bob.peers.keys()], [1]);
  assert.match(alice.code, CODE);
  assert.equal(alice.code, bob.code);
  assert.ok(bob.ring.has(1) && alice.ring.has(2));
  for (const p of [alice, bob]) p.close();
});

test("a participant nobody sees gets no key and is reported; listed, it is handled", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { alice, bob } = await twoOnACall();
  const codeBefore = alice.code;
  await alice.receive(9, await forgedHello(9));
  assert.deepEqual(keysSent(alice, 9), [], "no key for a ghost");
  assert.ok(!alice.peers.has(9), "its key is not in the safety code");
  await alice.changed();
  assert.equal(alice.code, codeBefore);
  assert.deepEqual(alice.ghostParticipants(), [], "not reported at once: the roster may be a moment behind");

  const realNow = performance.now.bind(performance);
  const later = realNow() + GHOST_WARNING_MS + 1;
  t.mock.method(performance, "now", () => later);
  assert.deepEqual(alice.ghostParticipants(), [9], "reported once it waited too long");

  // The server has to show the ghost to everyone before anyone gives it a key.
  alice.rosterChanged(roster(1, 2, 9));
  await alice.inbox;
  assert.ok(alice.peers.has(9));
  assert.equal(keysSent(alice, 9).length, 1);
  assert.deepEqual(alice.ghostParticipants(), []);
  for (const p of [alice, bob]) p.close();
});

test("a newcomer that claims to be answering still gets only the ratchet step", async () => {
  const alice = await page(1);
  alice.rosterChanged(roster(1));
  const before = alice.generation;
  // Bob was just admitted; his hello says reply: true, as if he had been there.
  alice.rosterChanged(roster(1, 2));
  await alice.receive(2, await forgedHello(2, { reply: true }));
  const given = keysSent(alice, 2);
  assert.equal(given.length, 1, "one key");
  assert.equal(e2ee.generationOfKid(given[0].kid), before + 1, "the next generation, not the current one");
  alice.close();
});

test("someone on the call when the key was made gets the current key", async () => {
  const alice = await page(1);
  alice.rosterChanged(roster(1, 2));
  await alice.receive(2, await forgedHello(2, { reply: true }));
  const given = keysSent(alice, 2);
  assert.equal(given.length, 1);
  assert.equal(e2ee.generationOfKid(given[0].kid), alice.generation);
  alice.close();
});

test("someone who left the roster is never given a key, even for a hello already queued", async () => {
  const { alice, bob } = await twoOnACall();
  const carol = await forgedHello(3);
  alice.rosterChanged(roster(1, 2, 3));
  const queued = alice.receive(3, carol);
  alice.rosterChanged(roster(1, 2));
  await queued;
  assert.deepEqual(keysSent(alice, 3), []);
  // And not later either, whatever the server sends.
  alice.rosterChanged(roster(1, 2, 3));
  await alice.receive(3, carol);
  assert.deepEqual(keysSent(alice, 3), []);
  for (const p of [alice, bob]) p.close();
});

test("a replayed key message does not bring an old key back", async () => {
  const { alice, bob } = await twoOnACall();
  const first = keysSent(alice, 2).at(-1);
  const replay = alice.sent.find((m) => m.to === 2 && decode(m.payload).kid === first.kid);
  // People leave four times: four fresh keys push the first one out of Bob's ring.
  for (let n = 0; n < 4; n += 1) {
    await alice.rotate();
    await settle(alice, bob);
  }
  const held = () => bob.ring.senders.get(1).keys.map((k) => k.kid);
  assert.ok(!held().includes(first.kid));
  const posted = bob.worker.posted.length;
  await bob.receive(1, replay.payload);
  assert.ok(!held().includes(first.kid), "the old generation is not taken back");
  assert.equal(bob.worker.posted.length, posted, "nor handed to the media worker");
  for (const p of [alice, bob]) p.close();
});

test("public keys that are not uncompressed points are refused", async () => {
  const alice = await page(1);
  alice.rosterChanged(roster(1, 2));
  const link = await e2ee.linkKeys(secret, LINK);
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const compressed = Uint8Array.of(0x02 | (point[64] & 1), ...point.subarray(1, 33));
  const mac = await e2ee.helloMac(link, CALL, 2, compressed);
  const hello = { t: "hello", pub: e2ee.toBase64(compressed), mac: e2ee.toBase64(mac), reply: false };
  await alice.receive(2, e2ee.toBase64(new TextEncoder().encode(JSON.stringify(hello))));
  assert.ok(!alice.peers.has(2));
  assert.deepEqual(keysSent(alice, 2), []);
  assert.match(alice.failed.get(2), /not valid/);
  alice.close();
});

test("each call gets a key pair of its own, even with the same participant number", async () => {
  const p = await page(1);
  const first = e2ee.toBase64(p.publicKey);
  await p.start(1, "TheNextCall00001");
  assert.notEqual(e2ee.toBase64(p.publicKey), first);
  p.close();
});

test("a hello from another call does not verify, though participant numbers repeat", async () => {
  const alice = await page(1);
  alice.rosterChanged(roster(1, 2));
  await alice.receive(2, await forgedHello(2, { call: "AnEarlierCall001" }));
  assert.ok(!alice.peers.has(2));
  assert.deepEqual(keysSent(alice, 2), []);
  assert.match(alice.failed.get(2), /different link secret/);
  alice.close();
});

test("a plugin message opens once, and only on the plugin's channel it was sent on", async () => {
  const { alice, bob } = await twoOnACall();
  const wave = new TextEncoder().encode("Alice waves");
  const sealed = await alice.seal(wave, "hello");
  const other = await alice.seal(wave, "hello");
  assert.equal(e2ee.dataHead(other).seq, e2ee.dataHead(sealed).seq + 1, "numbered under the key");

  assert.equal(await bob.open(other, "watch-together"), null, "moved to another plugin's channel");
  const opened = await bob.open(sealed, "hello");
  assert.deepEqual(opened, { bytes: wave, from: 1, encrypted: true });
  assert.equal(await bob.open(sealed, "hello"), null, "played again by the relay");
  assert.ok(await bob.open(other, "hello"), "the next message still opens");

  // What comes back to the sender (plugins that relay to everyone) opens once too.
  assert.ok(await alice.open(sealed, "hello"));
  assert.equal(await alice.open(sealed, "hello"), null);
  // What the plugin itself sends is passed on as it is, marked so.
  assert.deepEqual(await bob.open(Uint8Array.of(1, 2, 3), "hello"), {
    bytes: Uint8Array.of(1, 2, 3),
    encrypted: false,
  });
  for (const p of [alice, bob]) p.close();
});

/**
 * A server that knows the link secret and sits between the pages: to each page it
 * plays the other participant with a key pair of its own, and makes up all of
 * that participant's messages.
 */
async function impostor(participant) {
  const link = await e2ee.linkKeys(secret, LINK);
  const pair = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const mac = await e2ee.helloMac(link, CALL, participant, pub);
  const nonce = crypto.getRandomValues(new Uint8Array(e2ee.COMMIT_NONCE_BYTES));
  return {
    participant,
    pub,
    nonce,
    hello: encode({ t: "hello", pub: e2ee.toBase64(pub), mac: e2ee.toBase64(mac), reply: false }),
    async commit(round, attempt = 0) {
      const hash = await e2ee.commitHash(ROUND_SCOPE, CALL, round, attempt, participant, pub, this.nonce);
      return encode({ t: "commit", round, attempt, hash: e2ee.toBase64(hash) });
    },
    reveal(round, nonce = this.nonce, attempt = 0) {
      return encode({ t: "reveal", round, attempt, pub: e2ee.toBase64(pub), nonce: e2ee.toBase64(nonce) });
    },
  };
}

test("no page reveals its safety-code value before it holds everyone's commitment", async () => {
  const alice = await page(1);
  alice.rosterChanged(roster(1, 2, 3));
  await alice.inbox;
  assert.equal(sentOfType(alice, "commit", "1,2,3").length, 1);
  const bob = await impostor(2);
  await alice.receive(2, bob.hello);
  await alice.receive(2, await bob.commit("1,2,3"));
  assert.deepEqual(sentOfType(alice, "reveal", "1,2,3"), [], "participant 3 has not committed yet");
  const carol = await impostor(3);
  await alice.receive(3, carol.hello);
  await alice.receive(3, await carol.commit("1,2,3"));
  assert.equal(sentOfType(alice, "reveal", "1,2,3").length, 1);
  assert.equal(alice.code, "", "no code before everyone revealed");
  await alice.receive(2, bob.reveal("1,2,3"));
  await alice.receive(3, carol.reveal("1,2,3"));
  assert.match(alice.code, CODE);
  alice.close();
});

test("a server in the middle cannot make two codes match: the commitment stops the search", async () => {
  const alice = await page(1);
  const bob = await page(2);
  alice.rosterChanged(roster(1, 2));
  bob.rosterChanged(roster(1, 2));
  await Promise.all([alice.inbox, bob.inbox]);
  // The server drops what the pages send each other and plays each to the other.
  const asAlice = await impostor(1);
  const asBob = await impostor(2);
  for (const message of [asAlice.hello, await asAlice.commit("1,2")]) await bob.receive(1, message);
  assert.equal(sentOfType(bob, "reveal", "1,2").length, 1);
  await bob.receive(1, asAlice.reveal("1,2"));
  const bobsCode = bob.code;
  assert.match(bobsCode, CODE);

  // Knowing Bob's code, the server turns to Alice. It must commit before she
  // reveals her value, and cannot know her code before she does.
  await alice.receive(2, asBob.hello);
  assert.deepEqual(sentOfType(alice, "reveal", "1,2"), []);
  await alice.receive(2, await asBob.commit("1,2"));
  const [revealed] = sentOfType(alice, "reveal", "1,2");
  assert.ok(revealed);

  // Now it could search: a value that gives Alice a code starting like Bob's is
  // quickly found (two digits here, the whole code the same way at 10^12 tries)…
  const alicesValue = { participant: 1, pub: alice.publicKey, nonce: e2ee.fromBase64(revealed.nonce) };
  let ground = null;
  for (let tries = 0; tries < 3000 && !ground; tries += 1) {
    const nonce = crypto.getRandomValues(new Uint8Array(e2ee.COMMIT_NONCE_BYTES));
    const code = await e2ee.safetyCode(ROUND_SCOPE, CALL, [alicesValue, { participant: 2, pub: asBob.pub, nonce }]);
    if (code.slice(0, 2) === bobsCode.slice(0, 2)) ground = nonce;
  }
  assert.ok(ground, "the search works on the bare code");
  // …but it is not the value the server committed to, and Alice shows no code.
  await alice.receive(2, asBob.reveal("1,2", ground));
  assert.equal(alice.code, "");
  assert.match(alice.failed.get(2), /do not match/);

  // Keeping to its commitment, the server gets a code it could not choose.
  const fresh = await page(1);
  fresh.rosterChanged(roster(1, 2));
  for (const message of [asBob.hello, await asBob.commit("1,2"), asBob.reveal("1,2")]) await fresh.receive(2, message);
  assert.match(fresh.code, CODE);
  assert.notEqual(fresh.code, bobsCode);
  for (const p of [alice, bob, fresh]) p.close();
});

test("a late joiner starts a new round and everyone ends with the same new code", async () => {
  const { alice, bob } = await twoOnACall();
  const before = alice.code;
  const carol = await page(3);
  for (const p of [alice, bob, carol]) p.rosterChanged(roster(1, 2, 3));
  await settle(alice, bob, carol);
  assert.match(carol.code, CODE);
  assert.equal(alice.code, carol.code);
  assert.equal(bob.code, carol.code);
  assert.notEqual(alice.code, before);
  // Each started the round once, with a value of its own.
  for (const p of [alice, bob, carol]) {
    const commits = sentOfType(p, "commit", "1,2,3");
    assert.equal(commits.length, 1);
  }
  for (const p of [alice, bob, carol]) p.close();
});

test("after a reconnect or a reloaded page, the round starts over and the codes meet again", async () => {
  const { alice, bob } = await twoOnACall();
  const before = alice.code;
  // Alice's connection dropped and came back: same call, same number.
  await alice.start(1, CALL);
  await settle(alice, bob);
  assert.match(alice.code, CODE);
  assert.equal(alice.code, bob.code);
  assert.notEqual(alice.code, before);
  assert.equal(bob.attempt, 1);

  // Bob reloads: a new page, a new key pair, the same participant number.
  const reloaded = await page(2);
  reloaded.rosterChanged(roster(1, 2));
  await settle(alice, reloaded);
  assert.match(reloaded.code, CODE);
  assert.equal(alice.code, reloaded.code);
  for (const p of [alice, bob, reloaded]) p.close();
});

test("a call that came back on another server: new numbers, the roster read as the new call's, no old key kept", async () => {
  const { alice, bob } = await twoOnACall();
  // The server that held the call died; another one starts it again and numbers
  // everyone anew: Bob came back first (1), Alice second (2). As on the page, each
  // gets `joined` (start) and the new roster straight after, before its keys are ready.
  const NEXT = "TheCallCameBack1";
  const bobStarted = bob.start(1, NEXT);
  bob.rosterChanged(roster(1));
  await bobStarted;
  const aliceStarted = alice.start(2, NEXT);
  alice.rosterChanged(roster(1, 2));
  bob.rosterChanged(roster(1, 2));
  await aliceStarted;
  assert.deepEqual([...alice.onRoster], [1], "Alice's roster is the new call's, without herself");
  assert.deepEqual([...bob.onRoster], [2]);
  // Keys held under the old numbers were dropped, in the page and in its worker.
  for (const [p, old] of [[alice, 2], [bob, 1]]) {
    assert.ok(p.worker.posted.some((m) => m.op === "forget" && m.participant === old), "the old peer's keys are forgotten");
  }
  await settle(alice, bob);
  assert.deepEqual([...alice.peers.keys()], [1]);
  assert.deepEqual([...bob.peers.keys()], [2]);
  assert.ok(alice.ring.has(1) && bob.ring.has(2));
  assert.match(alice.code, CODE);
  assert.equal(alice.code, bob.code);
  for (const p of [alice, bob]) p.close();
});

test("round messages that are malformed or out of bounds are ignored", async () => {
  const alice = await page(1);
  alice.rosterChanged(roster(1, 2));
  await alice.inbox;
  const bob = await impostor(2);
  await alice.receive(2, bob.hello);
  for (const bad of [
    { t: "commit", round: "1,2", attempt: -1, hash: e2ee.toBase64(new Uint8Array(32)) },
    { t: "commit", round: "1,2", attempt: 2 ** 60, hash: e2ee.toBase64(new Uint8Array(32)) },
    { t: "commit", round: "1,2".repeat(500), attempt: 0, hash: e2ee.toBase64(new Uint8Array(32)) },
    { t: "commit", round: "1,2", attempt: 0, hash: "not base64!" },
    { t: "commit", round: "1,2", attempt: 0, hash: e2ee.toBase64(new Uint8Array(8)) },
    { t: "reveal", round: "1,2", attempt: 0, pub: "AA==", nonce: "AA==" },
  ]) {
    await alice.receive(2, encode(bad));
  }
  assert.deepEqual(sentOfType(alice, "reveal", "1,2"), [], "nothing counted as Bob's commitment");
  assert.equal(alice.attempt, 0);
  assert.equal(alice.code, "");
  alice.close();
});

test("a link rotated during the call keeps its secret, so newcomers through the new address agree with everyone", async () => {
  // Alice opened the link at its first address, Bob at the address it has after a
  // rotation: a new public id, the same secret. The pages are built as the call
  // page builds them, each told its own address's id.
  assert.notEqual(await e2ee.secretId(e2ee.newSecret()), LINK, "another link, another id");
  const at = async (me, publicId) => {
    const sent = [];
    const p = new CallCrypto({ secret, linkId: publicId, send: (m) => sent.push(m), onChange: () => {} });
    p.sent = sent;
    await p.start(me, CALL);
    return p;
  };
  const alice = await at(1, "FirstAddress1");
  alice.rosterChanged(roster(1));
  const bob = await at(2, "RotatedAddr22");
  alice.rosterChanged(roster(1, 2));
  bob.rosterChanged(roster(1, 2));
  await settle(alice, bob);
  assert.deepEqual([...alice.peers.keys()], [2]);
  assert.deepEqual([...bob.peers.keys()], [1]);
  assert.match(alice.code, CODE);
  assert.equal(alice.code, bob.code);
  for (const p of [alice, bob]) p.close();
});
