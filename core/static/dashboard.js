// Dashboard behaviour: copy buttons and confirmation before revoking.
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

// Dashboard extensions: ES modules that plugins ship (their manifest's
// `web.dashboard`). Each module's default export is called once with a handle:
//
//   export default function setup(dashboard) {
//     dashboard.name;                  // the plugin's name
//     dashboard.element;               // a card of the dashboard the module may fill
//     dashboard.links();               // [{ id, title, url, status, when }] on this page
//     dashboard.addLinkAction(label, (link, button) => …);  // a button on each active link
//     dashboard.fetch(path, init);     // fetch(`/p/${name}${path}`) as the signed-in user
//     dashboard.report(message);       // show a problem on the page
//   }
//
// `url` is the link as the user shares it.

function pageLinks() {
  return [...document.querySelectorAll("li[data-link-id]")].map((item) => ({
    id: item.dataset.linkId,
    title: item.dataset.linkTitle,
    url: item.dataset.linkUrl,
    status: item.dataset.linkStatus,
    when: item.dataset.linkWhen || null,
    element: item,
  }));
}

function report(message) {
  const area = document.getElementById("plugin-cards");
  const alert = document.createElement("p");
  alert.className = "alert";
  alert.setAttribute("role", "alert");
  alert.textContent = message;
  area?.prepend(alert);
}

class DashboardHandle {
  constructor(name, element, csrf) {
    this.name = name;
    this.element = element;
    this.csrf = csrf;
  }

  links() {
    return pageLinks().map(({ element, ...link }) => link);
  }

  addLinkAction(label, handler) {
    for (const link of pageLinks()) {
      if (link.status !== "active") continue;
      const slot = link.element.querySelector(".plugin-actions");
      if (!slot) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button";
      button.dataset.plugin = this.name;
      button.textContent = label;
      const { element, ...plain } = link;
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          await handler(plain, button);
        } catch (error) {
          console.error(`the ${this.name} plugin's “${label}” failed`, error);
          report(`${label} did not work: ${error.message || error}`);
        } finally {
          button.disabled = false;
        }
      });
      slot.append(button);
    }
  }

  fetch(path, init = {}) {
    const headers = new Headers(init.headers || {});
    if (this.csrf) headers.set("x-csrf-token", this.csrf);
    return fetch(`/p/${this.name}${path}`, { ...init, headers, credentials: "same-origin" });
  }

  report(message) {
    report(message);
  }
}

const dashboard = document.getElementById("dashboard");
const area = document.getElementById("plugin-cards");
let modules = [];
try {
  modules = JSON.parse(dashboard?.dataset.pluginModules || "[]");
} catch {
  modules = [];
}
for (const { plugin, url } of modules) {
  const element = document.createElement("section");
  element.className = "card plugin-card";
  element.dataset.plugin = plugin;
  const handle = new DashboardHandle(plugin, element, dashboard.dataset.csrf);
  import(url)
    .then(async (module) => {
      if (typeof module.default !== "function") throw new TypeError("the module has no default export function");
      area.append(element);
      await module.default(handle);
    })
    .catch((error) => {
      console.error(`the ${plugin} plugin's dashboard module failed`, error);
      element.remove();
      report(`The ${plugin} plugin could not start on this page.`);
    });
}
