// The base64 helpers the pages share (core/static/lib/base64.js): plugin and e2ee
// payloads as standard padded base64, link secrets as unpadded base64url. Checked
// against Node's own encoder. Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { fromBase64, fromBase64Url, toBase64, toBase64Url } from "../../static/lib/base64.js";
import { randomToken } from "../../static/lib/random.js";
import * as e2ee from "../../static/e2ee.js";

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);

test("empty input round-trips to the empty string and back", () => {
  const empty = new Uint8Array(0);
  assert.equal(toBase64(empty), "");
  assert.equal(toBase64Url(empty), "");
  assert.deepEqual(fromBase64(""), empty);
  assert.deepEqual(fromBase64Url(""), empty);
});

test("every byte value round-trips, standard and url-safe", () => {
  assert.equal(toBase64(allBytes), Buffer.from(allBytes).toString("base64"));
  assert.equal(toBase64Url(allBytes), Buffer.from(allBytes).toString("base64url"));
  assert.deepEqual(fromBase64(toBase64(allBytes)), allBytes);
  assert.deepEqual(fromBase64Url(toBase64Url(allBytes)), allBytes);
  for (let b = 0; b < 256; b += 1) {
    const one = Uint8Array.of(b);
    assert.deepEqual(fromBase64(toBase64(one)), one);
    assert.deepEqual(fromBase64Url(toBase64Url(one)), one);
  }
});

test("standard base64 is padded with + and /; base64url is unpadded with - and _", () => {
  assert.equal(toBase64(Uint8Array.of(0xfb, 0xff)), "+/8=");
  assert.equal(toBase64Url(Uint8Array.of(0xfb, 0xff)), "-_8");
  assert.equal(toBase64(Uint8Array.of(0xfb)), "+w==");
  assert.equal(toBase64Url(Uint8Array.of(0xfb)), "-w");
  for (let length = 0; length <= 9; length += 1) {
    const bytes = allBytes.subarray(250 - length, 250);
    const standard = toBase64(bytes);
    const url = toBase64Url(bytes);
    assert.equal(standard.length % 4, 0, `length ${length}`);
    assert.equal(standard, Buffer.from(bytes).toString("base64"));
    assert.match(url, /^[A-Za-z0-9_-]*$/);
    assert.equal(url, standard.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""));
    assert.deepEqual(fromBase64Url(url), bytes);
    // Padded base64url decodes as well.
    assert.deepEqual(fromBase64Url(url + "=".repeat((4 - (url.length % 4)) % 4)), bytes);
  }
});

test("large inputs are encoded in chunks, with the same result", () => {
  const big = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 31 + 7) & 0xff);
  assert.equal(toBase64(big), Buffer.from(big).toString("base64"));
  assert.deepEqual(fromBase64(toBase64(big)), big);
  assert.deepEqual(fromBase64Url(toBase64Url(big)), big);
  // A view into a larger buffer encodes only its own bytes.
  assert.equal(toBase64(big.subarray(1, 4)), Buffer.from(big.subarray(1, 4)).toString("base64"));
});

test("what is not base64 throws", () => {
  assert.throws(() => fromBase64("not base64!"));
  assert.throws(() => fromBase64("A"));
  assert.throws(() => fromBase64Url("a+b*"));
});

test("randomToken is unpadded base64url of that many bytes", () => {
  const token = randomToken(16);
  assert.match(token, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(fromBase64Url(token).length, 16);
  assert.equal(fromBase64Url(randomToken(33)).length, 33);
});

test("e2ee.js exports the same helpers", () => {
  assert.equal(e2ee.toBase64, toBase64);
  assert.equal(e2ee.fromBase64, fromBase64);
  assert.equal(e2ee.toBase64Url, toBase64Url);
  assert.equal(e2ee.fromBase64Url, fromBase64Url);
});
