// The media worker of the call page: seals every frame this browser sends and opens
// every frame it receives (FrameCrypto in e2ee.js does both; e2ee.js has the
// format). Frames come from RTCRtpScriptTransform (`rtctransform` events) or,
// where only the older API exists, as streams from `createEncodedStreams` posted
// by the page.
//
// The page tells it: `send` (my current sender key), `key` (a key someone gave me),
// `forget` (someone left). It tells the page: `decrypted` the first time frames
// of a participant open (and again after failing), `failed` when they do not
// (at most once a second per participant), `exhausted` when my key has sealed
// all the frames it may (the page hands out a new one), and `probe` (tests only:
// copies of the first plain frames this browser sent).

import { FrameCrypto } from "./e2ee.js";

const frames = new FrameCrypto();
let probe = 0;
let exhausted = false;
const status = new Map();
const failedAt = new Map();

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
  const data = new Uint8Array(frame.data);
  if (data.length === 0) {
    controller.enqueue(frame);
    return;
  }
  if (probe > 0 && options.kind === "video" && frames.sending) {
    probe -= 1;
    self.postMessage({ op: "probe", kind: options.kind, stream: options.stream ?? null, bytes: data.slice() });
  }
  const { sealed, error } = await frames.seal(data, options, frame.type === "key");
  // Nothing leaves this browser in clear: no key yet, no frame.
  if (!sealed) {
    if (error === "exhausted" && !exhausted) {
      exhausted = true;
      self.postMessage({ op: "exhausted" });
    }
    return;
  }
  frame.data = sealed.buffer;
  controller.enqueue(frame);
}

async function open(frame, controller, options) {
  const data = new Uint8Array(frame.data);
  if (data.length === 0) return;
  const { plain, participant, error } = await frames.open(data, options);
  if (!plain) {
    report(participant, options.kind, false, error);
    return;
  }
  frame.data = plain.buffer;
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
      await frames.setSendKey(message.participant, message.generation, message.raw);
      exhausted = false;
      break;
    case "key":
      await frames.ring.add(message.participant, message.generation, message.raw);
      // A participant whose frames failed gets another "decrypted" when they open.
      for (const key of status.keys()) if (key.startsWith(`${message.participant}:`)) status.delete(key);
      break;
    case "forget":
      frames.ring.forget(message.participant);
      break;
    case "probe":
      probe = message.frames;
      break;
    case "stats":
      self.postMessage({ op: "stats", id: message.id, stats: { ...frames.stats } });
      break;
    default:
      break;
  }
});
