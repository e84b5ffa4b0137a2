// Times the pages show. `now` is the server's time in milliseconds (the call page
// adds its clock skew): the times it sends come from its clock, not this browser's.

/** Whole seconds until `until` (an RFC 3339 time), never below 0. */
export function secondsLeft(until, now) {
  return Math.max(0, Math.ceil((Date.parse(until) - now) / 1000));
}

/** How long since `since` (an RFC 3339 time), as minutes:seconds. */
export function waited(since, now) {
  const s = Math.max(0, Math.floor((now - Date.parse(since)) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
