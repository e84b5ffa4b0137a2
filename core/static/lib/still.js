// A still of a video: what the call page attaches to a report when the user agrees
// (plugins.js, `captureStill`). The frame is the one this browser shows, already
// decrypted; it is made small, as a report needs no more and it goes to the server.

/** Widest still, in pixels. */
export const MAX_STILL_WIDTH = 640;
/** JPEG quality of a still. */
const QUALITY = 0.8;

/**
 * The size of the still of a `width` × `height` video: as it is when at most
 * `maxWidth` wide, else scaled down to that width, whole pixels, at least 1. Null
 * when the video has no size (no frame decoded yet).
 */
export function stillSize(width, height, maxWidth = MAX_STILL_WIDTH) {
  if (!(width > 0 && height > 0) || !Number.isFinite(width) || !Number.isFinite(height)) return null;
  if (width <= maxWidth) return { width: Math.round(width), height: Math.round(height) };
  return { width: maxWidth, height: Math.max(1, Math.round((height * maxWidth) / width)) };
}

/**
 * `{ dataUrl, width, height }` of what `video` (a `<video>`, or null) shows now, as
 * a JPEG; null when there is no frame or the browser refuses to read it back.
 */
export function captureStill(video, doc = document) {
  const size = video ? stillSize(video.videoWidth, video.videoHeight) : null;
  if (!size) return null;
  const canvas = doc.createElement("canvas");
  canvas.width = size.width;
  canvas.height = size.height;
  const context = canvas.getContext("2d");
  if (!context) return null;
  try {
    context.drawImage(video, 0, 0, size.width, size.height);
    return { dataUrl: canvas.toDataURL("image/jpeg", QUALITY), ...size };
  } catch {
    // A canvas the page may not read (a tainted source): no still rather than an error.
    return null;
  }
}
