// A still of a participant's video for a report (core/static/lib/still.js): how
// big it is, and that it is a JPEG of the frame shown, or nothing without a frame.
// Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_STILL_WIDTH, captureStill, stillSize } from "../../static/lib/still.js";

test("stillSize: at most 640 pixels wide, the video's shape kept", () => {
  assert.equal(MAX_STILL_WIDTH, 640);
  assert.deepEqual(stillSize(1280, 720), { width: 640, height: 360 });
  assert.deepEqual(stillSize(1920, 1080), { width: 640, height: 360 });
  assert.deepEqual(stillSize(720, 1280), { width: 640, height: 1138 });
  assert.deepEqual(stillSize(641, 481), { width: 640, height: 480 });
  assert.deepEqual(stillSize(640, 480), { width: 640, height: 480 }, "as it is at exactly the limit");
  assert.deepEqual(stillSize(320, 240), { width: 320, height: 240 }, "never scaled up");
  assert.deepEqual(stillSize(4000, 2), { width: 640, height: 1 }, "at least a pixel high");
  assert.deepEqual(stillSize(1000, 500, 100), { width: 100, height: 50 });
});

test("stillSize: no frame, no size", () => {
  for (const [w, h] of [[0, 0], [0, 480], [640, 0], [-1, 5], [NaN, 5], [Infinity, 5], [undefined, undefined]]) {
    assert.equal(stillSize(w, h), null, `${w} × ${h}`);
  }
});

/** A document whose canvases record what is drawn on them. */
function canvasDocument({ context = true } = {}) {
  const made = [];
  return {
    made,
    createElement(tag) {
      const canvas = {
        tag,
        drawn: [],
        getContext: (kind) => (context ? { kind, drawImage: (...args) => canvas.drawn.push(args) } : null),
        toDataURL: (type, quality) => `data:${type};q=${quality}`,
      };
      made.push(canvas);
      return canvas;
    },
  };
}

test("captureStill: the frame shown, scaled into a JPEG", () => {
  const doc = canvasDocument();
  const video = { videoWidth: 1280, videoHeight: 720 };
  assert.deepEqual(captureStill(video, doc), { dataUrl: "data:image/jpeg;q=0.8", width: 640, height: 360 });
  const [canvas] = doc.made;
  assert.deepEqual([canvas.tag, canvas.width, canvas.height], ["canvas", 640, 360]);
  assert.deepEqual(canvas.drawn, [[video, 0, 0, 640, 360]]);
});

test("captureStill: no video, no frame decoded, or no canvas: null", () => {
  const doc = canvasDocument();
  assert.equal(captureStill(null, doc), null);
  assert.equal(captureStill({ videoWidth: 0, videoHeight: 0 }, doc), null);
  assert.equal(doc.made.length, 0, "no canvas without a frame");
  assert.equal(captureStill({ videoWidth: 640, videoHeight: 480 }, canvasDocument({ context: false })), null);
  const refusing = canvasDocument();
  refusing.createElement = ((make) => (tag) => ({
    ...make(tag),
    toDataURL: () => {
      throw new Error("SecurityError");
    },
  }))(refusing.createElement);
  assert.equal(captureStill({ videoWidth: 640, videoHeight: 480 }, refusing), null);
});
