// The media worker of the call page: seals every frame this browser sends and opens
// every frame it receives (e2ee.js has the format). Frames come from
// RTCRtpScriptTransform (`rtctransform` events) or, where only the older API exists,
// as streams from `createEncodedStreams` posted by the page.
//
// The page tells it: `send` (my current sender key), `key` (a key someone gave me),
// `forget` (someone left). It tells the page: `decrypted` the first time frames
// of a participant open (and again after failing), `failed` when they do not
// (at most once a second per participant), and `probe` (tests only: copies of the
// first plain frames this browser sent).

import { KeyRing, clearBytes, frameTrailer, kidOf, openFrame, participantOfKid, sealFrame, senderKey } from "./e2ee.js";

const ring = new KeyRing();
let sending = null;
let counter = 0;
let probe = 0;
const status = new Map();
const failedAt = new Map();
const stats = { sealed: 0, opened: 0, failed: 0, dropped: 0, unsealed: 0, unknownKey: 0, wrongKey: 0 };

function report(participant, kind, ok, reason) {
  const key = `${participant}:${kind}`;
  const now = performance.now();
  if (ok) {
    if (status.get(key) === true) return;
    status.set(key, true);
    self.postMessage({ op: "decrypted", participant, kind });
    return;
  }
  status.set(key, false);
  if (now - (failedAt.get(participant) ?? -Infinity) < 1000) return;
  failedAt.set(participant, now);
  self.postMessage({ op: "failed", participant, kind, reason });
}

async function seal(frame, controller, options) {
  const key = sending;
  const data = new Uint8Array(frame.data);
  if (data.length === 0) {
    controller.enqueue(frame);
    return;
  }
  // Nothing leaves this browser in clear: no key yet, no frame.
  if (!key) {
    stats.dropped += 1;
    return;
  }
  if (probe > 0 && options.kind === "video") {
    probe -= 1;
    self.postMessage({ op: "probe", kind: options.kind, stream: options.stream ?? null, bytes: data.slice() });
  }
  counter = (counter + 1) >>> 0;
  const clear = clearBytes(options.kind, frame.type === "key", data.length);
  frame.data = (await sealFrame(key, counter, data, clear)).buffer;
  stats.sealed += 1;
  controller.enqueue(frame);
}

async function open(frame, controller, options) {
  const data = new Uint8Array(frame.data);
  if (data.length === 0) return;
  const trailer = frameTrailer(data);
  if (!trailer) {
    // A frame that is not sealed never reaches the decoder: a server could make one up.
    stats.failed += 1;
    stats.unsealed += 1;
    report(options.participant ?? -1, options.kind, false, "not encrypted");
    return;
  }
  const participant = participantOfKid(trailer.kid);
  let plain = null;
  const key = await ring.find(trailer.kid, async (candidate) => (plain = await openFrame(candidate, data)) !== null);
  if (key && !plain) plain = await openFrame(key, data);
  if (!plain) {
    stats.failed += 1;
    if (key) stats.wrongKey += 1;
    else stats.unknownKey += 1;
    report(participant, options.kind, false, key ? "wrong key" : "no key");
    return;
  }
  frame.data = plain.buffer;
  stats.opened += 1;
  report(participant, options.kind, true);
  controller.enqueue(frame);
}

function pipe(readable, writable, options) {
  const step = options.side === "send" ? seal : open;
  readable
    .pipeThrough(new TransformStream({ transform: (frame, controller) => step(frame, controller, options) }))
    .pipeTo(writable)
    .catch(() => {});
}

self.addEventListener("rtctransform", (event) => {
  const { readable, writable, options } = event.transformer;
  pipe(readable, writable, options);
});

self.addEventListener("message", async ({ data: message }) => {
  switch (message.op) {
    case "streams":
      pipe(message.readable, message.writable, message.options);
      break;
    case "send":
      sending = await senderKey(message.raw, kidOf(message.participant, message.generation));
      break;
    case "key":
      await ring.add(message.participant, message.generation, message.raw);
      // A participant whose frames failed gets another "decrypted" when they open.
      for (const key of status.keys()) if (key.startsWith(`${message.participant}:`)) status.delete(key);
      break;
    case "forget":
      ring.forget(message.participant);
      break;
    case "probe":
      probe = message.frames;
      break;
    case "stats":
      self.postMessage({ op: "stats", id: message.id, stats: { ...stats } });
      break;
    default:
      break;
  }
});
