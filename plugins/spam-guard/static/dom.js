// Small DOM helpers of spam-guard's page modules (call-page.js, dashboard.js). The
// page's own helpers live under /static/, which plugins' modules do not import.

/** A `<tag>` with `attributes` (`text`: its text; false or null: left out) and `children`. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== false && child !== undefined));
  return node;
}

/** Shows `text` in `node`; no text hides it. */
export function showText(node, text) {
  node.textContent = text;
  node.hidden = !text;
}

/** The JSON body of `response`, or null when it has none. */
export async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** `fetch` (a handle's) with a JSON body. */
export function sendJson(fetch, path, method, body) {
  return fetch(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}
