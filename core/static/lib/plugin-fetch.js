// What plugins' page modules get as `fetch` (plugins.js, dashboard.js).

/** `fetch(`/p/${plugin}${path}`)` as the signed-in user: with the session's CSRF token if there is one. */
export function pluginFetch(plugin, csrf, path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (csrf) headers.set("x-csrf-token", csrf);
  return fetch(`/p/${plugin}${path}`, { ...init, headers, credentials: "same-origin" });
}
