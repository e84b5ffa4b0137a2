// The administrators' review queue on the dashboard: reports grouped by the caller
// they are about, newest first, with the stills people attached (fetched only when
// asked for), and blocking on the whole server, unblocking, dismissing and keeping
// reports for an investigation. Everyone else gets a 403 and sees nothing.

import { el, readJson, sendJson, showText } from "./dom.js";
import { describeReport, problemMessage, summariseGroup } from "./logic.js";

export default function setup(dashboard) {
  const error = el("p", { class: "status error spam-guard-error", role: "alert", hidden: true });
  const list = el("div", { class: "stack spam-guard-groups" });
  // Object URLs of the stills shown, let go when the list is drawn again.
  let stills = [];

  async function load() {
    let response;
    try {
      response = await dashboard.fetch("/reports");
    } catch (failure) {
      showText(error, `The reports could not be loaded: ${failure.message || failure}`);
      return;
    }
    if (response.status === 403) {
      dashboard.element.hidden = true;
      return;
    }
    const body = await readJson(response);
    if (!response.ok) {
      showText(error, problemMessage(body, response.status));
      return;
    }
    showText(error, "");
    render(Array.isArray(body?.groups) ? body.groups : []);
  }

  function render(groups) {
    for (const url of stills) URL.revokeObjectURL(url);
    stills = [];
    if (!groups.length) {
      list.replaceChildren(el("p", { class: "empty", text: "No reports." }));
      return;
    }
    list.replaceChildren(...groups.map(groupEntry));
  }

  /**
   * Runs an action's requests, one after the other until one fails, then draws
   * the list again (some may have gone through) and says what failed.
   */
  async function act(button, requests) {
    button.disabled = true;
    let problem = null;
    try {
      for (const request of requests) {
        const response = await request();
        if (!response.ok) {
          problem = problemMessage(await readJson(response), response.status);
          break;
        }
      }
    } catch (failure) {
      problem = `That did not go through: ${failure.message || failure}`;
    }
    await load();
    if (problem) showText(error, problem);
    button.disabled = false;
  }

  const post = (path, body) => () => sendJson((p, init) => dashboard.fetch(p, init), path, "POST", body);
  const reportPath = (id) => `/reports/${encodeURIComponent(id)}`;

  function actionButton(label, action, className, requests) {
    const button = el("button", { class: `button ${className}`.trim(), type: "button", "data-action": action, text: label });
    button.addEventListener("click", () => act(button, requests()));
    return button;
  }

  function groupEntry(group) {
    const summary = summariseGroup(group);
    const actions = el("div", { class: "row" });
    if (summary.first && group.blocked?.scope !== "instance") {
      actions.append(actionButton("Block on this server", "block", "danger", () => [
        post("/blocks", { report: summary.first, scope: "instance" }),
      ]));
    }
    if (group.blocked) {
      actions.append(actionButton("Unblock", "unblock", "", () => [
        () => dashboard.fetch(`/blocks/${encodeURIComponent(group.blocked.id)}`, { method: "DELETE" }),
      ]));
    }
    if (summary.fresh.length) {
      actions.append(actionButton("Dismiss", "dismiss", "quiet", () => summary.fresh.map((id) => post(reportPath(id), { status: "dismissed" }))));
    }
    return el(
      "article",
      { class: "stack spam-guard-group", "data-identity": group.identity },
      el("div", {}, el("h3", { class: "title", text: summary.title }), el("p", { class: "meta", text: summary.status })),
      el("p", { class: "meta", text: summary.details.join(" · ") }),
      el("ul", { class: "stack spam-guard-reports" }, ...(group.reports ?? []).map(reportEntry)),
      actions,
    );
  }

  function reportEntry(report) {
    const about = describeReport(report);
    const item = el(
      "li",
      { class: "stack", "data-report": report.id },
      el("strong", { text: about.category }),
      el("span", { class: "meta", text: about.by }),
      about.note && el("p", { class: "description", text: about.note }),
      about.kept && el("p", { class: "hint", text: about.kept }),
    );
    const buttons = el("div", { class: "row" });
    if (report.evidence) buttons.append(evidenceButton(report, item));
    if (!report.keep_until) {
      buttons.append(actionButton("Keep for investigation", "keep", "quiet", () => [post(reportPath(report.id), { keep: true })]));
    }
    if (buttons.children.length) item.append(buttons);
    return item;
  }

  /** "Show still": the picture is fetched, and put in the page, only on this click. */
  function evidenceButton(report, item) {
    const button = el("button", { class: "button quiet", type: "button", "data-action": "evidence", text: "Show still" });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const response = await dashboard.fetch(`${reportPath(report.id)}/evidence`);
        if (!response.ok) {
          showText(error, problemMessage(await readJson(response), response.status));
          button.disabled = false;
          return;
        }
        const url = URL.createObjectURL(await response.blob());
        stills.push(url);
        const image = el("img", { class: "spam-guard-still", src: url, alt: `The still attached to the report by ${report.reporter}` });
        image.style.maxWidth = "100%";
        item.append(image);
        button.remove();
      } catch (failure) {
        showText(error, `The still could not be loaded: ${failure.message || failure}`);
        button.disabled = false;
      }
    });
    return button;
  }

  dashboard.element.append(el("h2", { text: "Reports" }), error, list);
  return load();
}
