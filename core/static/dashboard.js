// Dashboard behaviour: link secrets, copy buttons and confirmation before revoking.

import { BridgeError, PluginFrames, clip, frameLimits } from "/static/lib/plugin-frames.js";
import { randomToken } from "/static/lib/random.js";

// The link secret (docs/security.md, "The link secret"): the full link is
// `/j/{id}#k={secret}`, and browsers never send the part after `#`. A link made
// with the form below gets its secret here, in the browser: 16 random bytes as
// unpadded base64url, never sent to the server. It is kept on this device
// (`localStorage["confab.secret." + id]`, where the call page finds it too) only
// if the user ticks "Remember the link's secret on this device"; otherwise the
// full link is shown on this page once, and signing out clears what was kept
// (the server answers /logout with `Clear-Site-Data: "storage"`).
const PENDING_SECRET = "confab.pending-secret";
const PENDING_MAX_AGE_MS = 10 * 60 * 1000;
const SECRET_PATTERN = /^[A-Za-z0-9_-]{22}$/;

const secretKey = (id) => `confab.secret.${id}`;
// Secrets of links made just now without "remember": for this page view only.
const shownOnce = new Map();

function newSecret() {
  return randomToken(16);
}

function knownSecret(id) {
  if (shownOnce.has(id)) return shownOnce.get(id);
  try {
    const secret = localStorage.getItem(secretKey(id));
    return secret && SECRET_PATTERN.test(secret) ? secret : null;
  } catch {
    return null; // storage turned off: this browser knows no secrets
  }
}

// On submit the secret waits in this tab's sessionStorage; the server redirects to
// `/dashboard?created={id}` and marks that link `data-link-created`.
document.querySelector("form[data-new-link]")?.addEventListener("submit", (event) => {
  const remember = Boolean(event.target.querySelector("[data-remember-secret]")?.checked);
  try {
    sessionStorage.setItem(PENDING_SECRET, JSON.stringify({ secret: newSecret(), at: Date.now(), remember }));
  } catch {
    // No storage: the link is made, and the dashboard says this browser lacks its secret.
  }
});

function adoptPendingSecret() {
  const created = document.querySelector("li[data-link-id][data-link-created]");
  if (!created) return;
  const address = new URL(window.location.href);
  address.searchParams.delete("created");
  window.history.replaceState(window.history.state, "", address);
  try {
    const pending = JSON.parse(sessionStorage.getItem(PENDING_SECRET) || "null");
    sessionStorage.removeItem(PENDING_SECRET);
    const fresh = pending && SECRET_PATTERN.test(pending.secret) && Date.now() - pending.at < PENDING_MAX_AGE_MS;
    // Never replace a secret this browser already has for a link.
    if (fresh && !knownSecret(created.dataset.linkId)) {
      if (pending.remember) localStorage.setItem(secretKey(created.dataset.linkId), pending.secret);
      else shownOnce.set(created.dataset.linkId, pending.secret);
    }
  } catch {
    // No storage, or not JSON: nothing to adopt.
  }
}

// Before anything reads the links (copy buttons, plugins' modules): the full link
// where this browser has the secret, a hint where it does not.
function showFullLinks() {
  for (const item of document.querySelectorAll("li[data-link-id]")) {
    const secret = knownSecret(item.dataset.linkId);
    if (!secret) {
      item.querySelector("[data-secret-missing]")?.removeAttribute("hidden");
      continue;
    }
    if (shownOnce.has(item.dataset.linkId)) item.querySelector("[data-secret-once]")?.removeAttribute("hidden");
    const full = `${item.dataset.linkUrl.split("#")[0]}#k=${secret}`;
    item.dataset.linkUrl = full;
    for (const input of item.querySelectorAll("input.url")) input.value = full;
    for (const button of item.querySelectorAll("[data-copy]")) button.dataset.copy = full;
  }
}

adoptPendingSecret();
showFullLinks();
for (const button of document.querySelectorAll("[data-copy]")) {
  button.addEventListener("click", async () => {
    const text = button.dataset.copy;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // Clipboard API unavailable (insecure origin): select the text for manual copy.
      const input = button.closest("li, .notice")?.querySelector("input.url");
      input?.select();
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
}

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// Dashboard extensions: each plugin's `web.dashboard` module (and, for
// administrators, its `web.admin` module) runs in a sandboxed frame of its own
// (lib/plugin-frames.js): it never sees a link's secret, the session cookie or
// the CSRF token. plugin-kit.js gives the module its handle (sdk/README.md, "Web
// code"): `links()` lists this page's links without their secrets (`secret` says
// whether this browser has it), `addLinkAction(label, handler)` puts a button on
// each active link here and runs `handler(link)` in the frame, `fetch` reaches
// the plugin's own routes as the user, and `report` shows a problem on the page.

/** Buttons one plugin may put on each link, and the longest label. */
const MAX_LINK_ACTIONS = 4;
const MAX_LABEL_CHARS = 40;

function pageLinks() {
  return [...document.querySelectorAll("li[data-link-id]")].map((item) => ({
    id: item.dataset.linkId,
    title: item.dataset.linkTitle,
    url: item.dataset.linkUrl.split("#")[0],
    status: item.dataset.linkStatus,
    when: item.dataset.linkWhen || null,
    secret: item.dataset.linkUrl.includes("#k="),
    element: item,
  }));
}

/** The full link `id`, secret included, where this browser has the secret. */
function fullLink(id) {
  const item = [...document.querySelectorAll("li[data-link-id]")].find((li) => li.dataset.linkId === id);
  return item && item.dataset.linkUrl.includes("#k=") ? item.dataset.linkUrl : null;
}

function report(message) {
  const area = document.getElementById("plugin-cards");
  const alert = document.createElement("p");
  alert.className = "alert";
  alert.setAttribute("role", "alert");
  alert.textContent = message;
  area?.prepend(alert);
}

/** What a dashboard frame may ask of this page. */
function dashboardCalls(plugin) {
  let actions = 0;
  let tickets = 0;
  const running = new Map();
  return {
    report: ({ message }) => {
      report(clip(message));
      return null;
    },
    addLinkAction: ({ label, index }, frame) => {
      if (actions >= MAX_LINK_ACTIONS) throw new BridgeError("too-many", `at most ${MAX_LINK_ACTIONS} buttons per link`);
      const text = clip(label, MAX_LABEL_CHARS).trim();
      if (!text) throw new BridgeError("bad-request", "a button needs a label");
      actions += 1;
      for (const link of pageLinks()) {
        if (link.status !== "active") continue;
        const slot = link.element.querySelector(".plugin-actions");
        if (!slot) continue;
        const button = document.createElement("button");
        button.type = "button";
        button.className = "button";
        button.dataset.plugin = plugin;
        button.textContent = text;
        const { element, ...plain } = link;
        button.addEventListener("click", () => {
          button.disabled = true;
          tickets += 1;
          running.set(tickets, { button, text });
          frame.emit("linkAction", { index, ticket: tickets, link: plain });
        });
        slot.append(button);
      }
      return null;
    },
    linkActionDone: ({ ticket, error }) => {
      const action = running.get(ticket);
      if (!action) return null;
      running.delete(ticket);
      action.button.disabled = false;
      if (error) report(`${action.text} did not work: ${clip(error, 200)}`);
      return null;
    },
  };
}

const dashboard = document.getElementById("dashboard");
const area = document.getElementById("plugin-cards");
let modules = [];
try {
  modules = JSON.parse(dashboard?.dataset.pluginModules || "[]");
} catch {
  modules = [];
}
if (area && modules.length > 0) {
  const frames = new PluginFrames();
  const limits = frameLimits(dashboard.dataset.pluginLimits);
  const plainLinks = () => pageLinks().map(({ element, ...link }) => link);
  for (const { plugin, frame: src, link_secret: linkSecret } of modules) {
    const admin = src.endsWith("/admin");
    frames.add({
      plugin,
      src,
      kind: admin ? "admin" : "dashboard",
      area,
      className: "card plugin-card",
      csrf: dashboard.dataset.csrf,
      linkSecret,
      fullLink: (id) => (typeof id === "string" ? fullLink(id) : null),
      limits,
      report,
      init: () => ({ admin, links: plainLinks() }),
      calls: dashboardCalls(plugin),
    });
  }
}
