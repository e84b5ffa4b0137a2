// The frame encryption of the call page (core/static/e2ee.js), run in Node against
// what a server that relays the frames could do to them: replay them, play them as
// another participant's or another stream's, keep playing old keys' frames, or
// make up key ids. Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as e2ee from "../../static/e2ee.js";

const ALICE = 3;
const key = (n) => new Uint8Array(32).fill(n);
const frame = (n) => Uint8Array.from({ length: 60 }, (_, i) => (i * 7 + n) & 0xff);
const camera = { kind: "video", index: 0 };
const aliceCamera = { ...camera, participant: ALICE };

function clock() {
  let t = 0;
  const now = () => t;
  now.advance = (ms) => {
    t += ms;
  };
  return now;
}

/** Alice seals with her key of generation 0; Bob holds it. */
async function call({ counterLimit, now } = {}) {
  const alice = new e2ee.FrameCrypto({ counterLimit });
  const bob = new e2ee.FrameCrypto({ now });
  await alice.setSendKey(ALICE, 0, key(1));
  await bob.ring.add(ALICE, 0, key(1));
  return { alice, bob };
}

async function sealed(alice, n, stream = camera) {
  const { sealed: bytes, error } = await alice.seal(frame(n), stream, false);
  assert.equal(error, undefined);
  return bytes;
}

test("a frame opens only as its sender's, on the stream and kind it was sealed for", async () => {
  const { alice, bob } = await call();
  const bytes = await sealed(alice, 1);

  assert.equal((await bob.open(bytes, { ...camera, participant: 4 })).error, "relabelled", "played as someone else's");
  assert.equal((await bob.open(bytes, { kind: "video", participant: ALICE, index: 1 })).error, "wrong key", "as her screen");
  assert.equal((await bob.open(bytes, { kind: "audio", participant: ALICE, index: 0 })).error, "wrong key", "as audio");
  assert.equal((await bob.open(bytes, { kind: "video", participant: ALICE })).error, "relabelled", "a stream of no known index");
  const opened = await bob.open(bytes, aliceCamera);
  assert.deepEqual(opened.plain, frame(1));
  assert.equal(opened.participant, ALICE);
  assert.equal(bob.stats.relabelled, 2);
  assert.equal(bob.stats.wrongKey, 2);
  assert.equal(bob.stats.opened, 1);

  const screen = await sealed(alice, 2, { kind: "video", index: 1 });
  assert.equal((await bob.open(screen, aliceCamera)).error, "wrong key", "her screen in her camera's tile");
  assert.deepEqual((await bob.open(screen, { kind: "video", participant: ALICE, index: 1 })).plain, frame(2));
});

test("a replayed frame is dropped; a late one within the window opens", async () => {
  const { alice, bob } = await call();
  const first = await sealed(alice, 1);
  const second = await sealed(alice, 2);
  const third = await sealed(alice, 3);

  assert.ok((await bob.open(third, aliceCamera)).plain);
  assert.ok((await bob.open(first, aliceCamera)).plain, "a frame that arrives late still opens");
  assert.equal((await bob.open(first, aliceCamera)).error, "replayed");
  assert.equal((await bob.open(third, aliceCamera)).error, "replayed");

  let last = null;
  for (let n = 0; n < e2ee.REPLAY_WINDOW; n += 1) last = await sealed(alice, n);
  assert.ok((await bob.open(last, aliceCamera)).plain);
  assert.equal((await bob.open(second, aliceCamera)).error, "replayed", "older than the window: never seen is not provable");
  assert.equal(bob.stats.replayed, 3);
});

test("the same key handed over again keeps its replay window", async () => {
  const { alice, bob } = await call();
  const bytes = await sealed(alice, 1);
  assert.ok((await bob.open(bytes, aliceCamera)).plain);
  await bob.ring.add(ALICE, 0, key(1));
  assert.equal((await bob.open(bytes, aliceCamera)).error, "replayed");
});

test("an older key retires a few seconds after a newer one opened a frame", async () => {
  const now = clock();
  const { alice, bob } = await call({ now });
  const early = await sealed(alice, 1);
  const late = await sealed(alice, 2);
  const forged = await sealed(alice, 3);
  // Someone left: Alice hands out a fresh key and switches to it.
  await bob.ring.add(ALICE, 1, key(2), { onlyNewer: true });
  await alice.setSendKey(ALICE, 1, key(2));
  assert.ok((await bob.open(await sealed(alice, 4), aliceCamera)).plain);

  now.advance(1000);
  assert.ok((await bob.open(early, aliceCamera)).plain, "frames already on their way still open");
  now.advance(e2ee.RETIRE_MS);
  assert.ok((await bob.open(late, aliceCamera)).error === "retired", "the old key opens nothing any more");
  assert.equal((await bob.open(forged, aliceCamera)).error, "retired", "whoever kept the old key cannot pose as Alice");
  assert.ok((await bob.open(await sealed(alice, 5), aliceCamera)).plain, "the new key goes on");
  assert.equal(bob.stats.retired, 2);
});

test("a key message that is not newer than the latest is not taken back", async () => {
  const ring = new e2ee.KeyRing();
  assert.ok(await ring.add(ALICE, 1, key(2), { onlyNewer: true }), "the first key of a sender");
  assert.equal(await ring.add(ALICE, 0, key(1), { onlyNewer: true }), null, "an older generation");
  assert.equal(await ring.add(ALICE, 1, key(9), { onlyNewer: true }), null, "the same generation, other bytes");
  assert.ok(await ring.add(ALICE, 2, key(3), { onlyNewer: true }), "a newer one");
  // Generations are 8 bits and wrap: 0 comes after 255.
  assert.ok(e2ee.newerGeneration(0, 255));
  assert.ok(!e2ee.newerGeneration(255, 0));
});

test("a newcomer's ratchet step is followed, and a made-up key id costs its derivation once", async () => {
  const { alice, bob } = await call();
  // Someone joined: Alice ratchets one step, and Bob follows on his own.
  await alice.setSendKey(ALICE, 1, await e2ee.ratchet(key(1)));
  assert.ok((await bob.open(await sealed(alice, 1), aliceCamera)).plain);
  assert.equal(bob.ring.steps, 1);

  // Frames claiming generation 1 + MAX_RATCHET_STEPS, with a valid trailer but
  // sealed with a key Bob cannot derive: each one costs one AES-GCM attempt.
  const far = 1 + e2ee.MAX_RATCHET_STEPS;
  const forger = new e2ee.FrameCrypto();
  await forger.setSendKey(ALICE, far, key(66));
  for (let n = 0; n < 20; n += 1) {
    assert.equal((await bob.open(await sealed(forger, n), aliceCamera)).error, "wrong key");
  }
  assert.equal(bob.ring.steps, 1 + e2ee.MAX_RATCHET_STEPS, "the ratchet was followed once for that key id");

  // Further than the ratchet may be followed: no derivation at all.
  await forger.setSendKey(ALICE, far + 1, key(67));
  assert.equal((await bob.open(await sealed(forger, 1), aliceCamera)).error, "no key");
  assert.equal(bob.ring.steps, 1 + e2ee.MAX_RATCHET_STEPS);
});

test("a sender key seals a bounded number of frames and never reuses a counter", async () => {
  const { alice, bob } = await call({ counterLimit: 3 });
  const counters = [];
  for (let n = 0; n < 3; n += 1) counters.push(e2ee.frameTrailer(await sealed(alice, n)).counter);
  assert.deepEqual(counters, [1, 2, 3]);
  assert.equal((await alice.seal(frame(4), camera, false)).error, "exhausted");
  // The same key set again does not start its counter over (that would reuse nonces).
  await alice.setSendKey(ALICE, 0, key(1));
  assert.equal((await alice.seal(frame(4), camera, false)).error, "exhausted");
  assert.equal(alice.stats.dropped, 2);

  await bob.ring.add(ALICE, 1, key(2));
  await alice.setSendKey(ALICE, 1, key(2));
  const next = await sealed(alice, 5);
  assert.equal(e2ee.frameTrailer(next).counter, 1);
  assert.deepEqual((await bob.open(next, aliceCamera)).plain, frame(5));
  assert.equal(e2ee.COUNTER_LIMIT, 2 ** 31, "far below the 32-bit counter's wrap");
});

test("nothing is sent in clear, and nothing unsealed is shown", async () => {
  const nobody = new e2ee.FrameCrypto();
  assert.equal((await nobody.seal(frame(1), camera, false)).error, "no key");
  const { bob } = await call();
  assert.equal((await bob.open(frame(1), aliceCamera)).error, "not encrypted");
  assert.equal(bob.stats.unsealed, 1);
});

test("only uncompressed P-256 points are accepted as public keys", async () => {
  const link = await e2ee.linkKeys(e2ee.newSecret(), "Link1");
  const mine = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  const theirs = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
  const myPub = new Uint8Array(await crypto.subtle.exportKey("raw", mine.publicKey));
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", theirs.publicKey));
  assert.ok(e2ee.isUncompressedPoint(point));
  assert.ok(await e2ee.pairKey(link, "Call1", mine.privateKey, point, 1, 2, myPub));

  const compressed = Uint8Array.of(0x02 | (point[64] & 1), ...point.subarray(1, 33));
  assert.ok(!e2ee.isUncompressedPoint(compressed));
  await assert.rejects(e2ee.pairKey(link, "Call1", mine.privateKey, compressed, 1, 2, myPub));
});
