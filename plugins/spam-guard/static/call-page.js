// "Report or block" on the call page, for a signed-in user: a report about anyone
// else on the call or waiting in the lobby, optionally removing (or denying) and
// blocking them at once, with a still of their video if the user agrees. It also
// shows the server side's warning that the link leaked, with a way to lock the
// lobby or give the call a new link, which the page shows with the call's secret
// (this frame never sees it).

import { el, readJson, sendJson, showText } from "./dom.js";
import {
  ACTIONS,
  CATEGORIES,
  isLinkId,
  leakedNumbers,
  linkIdOf,
  parseNotice,
  problemMessage,
  reportBody,
  reportTargets,
  resultSentence,
} from "./logic.js";

const GONE = { participant: "left the call", request: "no longer waiting" };

export default function setup(plugin) {
  // Guests can neither remove nor block, and reports need an account.
  if (!plugin.signedIn || typeof plugin.fetch !== "function") {
    plugin.element.hidden = true;
    return;
  }
  // The frame's own address is not the call's: the handle says which call this is.
  const pageLink = linkIdOf(typeof plugin.link === "function" ? plugin.link() : null);
  if (!pageLink) {
    plugin.element.hidden = true;
    return;
  }
  // The id the server knows the call's link by: a new one after "Rotate link".
  let link = pageLink;
  const links = [pageLink];
  const post = (path, body) => sendJson((p, init) => plugin.fetch(p, init), path, "POST", body);

  const result = el("p", { class: "status spam-guard-result", role: "status", hidden: true });
  const onCall = el("ul", { class: "people", "aria-label": "On the call" });
  const waiting = el("ul", { class: "people", "aria-label": "Waiting to join" });
  const waitingTitle = el("h3", { text: "Waiting to join", hidden: true });
  const nobody = el("p", { class: "empty", text: "Nobody else is on the call." });
  plugin.element.append(el(
    "details",
    { class: "spam-guard" },
    el("summary", { text: "Report or block" }),
    el("p", { class: "hint", text: "Reports go to this server's administrators." }),
    onCall,
    nobody,
    waitingTitle,
    waiting,
    result,
  ));

  // One row per person, kept across updates: a list rebuilt at each lobby change
  // would take the form being filled in away.
  const rows = new Map();
  let participants = plugin.participants();
  let lobby = typeof plugin.lobby === "function" ? plugin.lobby() : [];

  function update() {
    const targets = reportTargets(participants, plugin.me(), lobby);
    const present = new Set(targets.map((t) => t.key));
    for (const [key, row] of rows) {
      if (present.has(key)) continue;
      // Someone who leaves while being reported stays until the form is done.
      if (row.form) markGone(row, true);
      else drop(row);
    }
    for (const target of targets) {
      const row = rows.get(target.key);
      if (row) {
        row.name.textContent = target.name;
        markGone(row, false);
      } else {
        addRow(target);
      }
    }
    nobody.hidden = [...rows.values()].some((r) => r.target.kind === "participant");
    waitingTitle.hidden = waiting.children.length === 0;
  }

  function addRow(target) {
    const name = el("span", { class: "name", text: target.name });
    const gone = el("span", { class: "tag", text: GONE[target.kind], hidden: true });
    const open = el("button", { class: "button quiet", type: "button", text: "Report…", "aria-expanded": "false" });
    const li = el("li", { [`data-${target.kind}`]: target.id }, name, gone, open);
    const row = { target, li, name, gone, open, form: null, isGone: false };
    open.addEventListener("click", () => (row.form ? closeForm(row) : openForm(row)));
    rows.set(target.key, row);
    (target.kind === "participant" ? onCall : waiting).append(li);
  }

  function drop(row) {
    row.li.remove();
    rows.delete(row.target.key);
    waitingTitle.hidden = waiting.children.length === 0;
  }

  function markGone(row, isGone) {
    row.isGone = isGone;
    row.gone.hidden = !isGone;
  }

  function openForm(row) {
    row.form = reportForm(row);
    row.li.append(row.form);
    row.open.setAttribute("aria-expanded", "true");
    row.form.querySelector("select").focus();
  }

  function closeForm(row) {
    row.form?.remove();
    row.form = null;
    row.open.setAttribute("aria-expanded", "false");
    if (row.isGone) drop(row);
  }

  function reportForm(row) {
    const { target } = row;
    const category = el("select", { name: "category" }, ...CATEGORIES.map(([value, text]) => el("option", { value, text })));
    const note = el("textarea", { name: "note", maxlength: 1000, rows: 2 });
    // A still only of someone whose video this page shows, and only if the page can take one.
    const still = target.kind === "participant" && typeof plugin.captureStill === "function"
      ? el("input", { type: "checkbox", name: "still" })
      : null;
    const buttons = ACTIONS[target.kind].map(([action, text], i) => el("button", {
      class: i === 0 ? "button primary" : "button danger",
      type: "submit",
      "data-action": action,
      text,
    }));
    const cancel = el("button", { class: "button quiet", type: "button", text: "Cancel" });
    cancel.addEventListener("click", () => closeForm(row));
    const error = el("p", { class: "status error spam-guard-error", role: "alert", hidden: true });
    const form = el(
      "form",
      { class: "stack spam-guard-form", "aria-label": `Report ${target.name}` },
      el("label", {}, "Reason", category),
      el("label", {}, "Note ", el("span", { class: "hint", text: "optional" }), note),
      still && el("label", { class: "check" }, still, "Attach a still of their video"),
      el("div", { class: "row" }, ...buttons, cancel),
      error,
    );
    // Below the name, across the row's whole width.
    form.style.flexBasis = "100%";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const action = event.submitter?.dataset.action ?? "report";
      for (const button of buttons) button.disabled = true;
      showText(error, "");
      try {
        let evidence = null;
        // The page asks the user first; without a picture the report goes anyway.
        if (still?.checked) evidence = (await plugin.captureStill(target.id))?.dataUrl ?? null;
        const response = await post("/reports", reportBody({
          link,
          target,
          category: category.value,
          note: note.value,
          evidence,
          action,
        }));
        const body = await readJson(response);
        if (!response.ok) {
          showText(error, problemMessage(body, response.status));
          return;
        }
        showText(result, resultSentence(body));
        closeForm(row);
      } catch (failure) {
        showText(error, `The report did not go through: ${failure.message || failure}`);
      } finally {
        for (const button of buttons) button.disabled = false;
      }
    });
    return form;
  }

  let alarm = null;

  /** The box that says the link leaked: made once, its numbers brought up to date. */
  function showLeaked(notice) {
    alarm ??= leakedBox();
    alarm.numbers.textContent = leakedNumbers(notice);
    alarm.box.hidden = false;
  }

  function leakedBox() {
    const numbers = el("p", { class: "spam-guard-numbers" });
    const status = el("p", { class: "status", role: "status", hidden: true });
    const error = el("p", { class: "status error spam-guard-error", hidden: true });
    const lock = el("button", { class: "button", type: "button", "data-action": "lock", text: "Lock lobby" });
    const rotate = el("button", { class: "button primary", type: "button", "data-action": "rotate", text: "Rotate link" });
    const dismiss = el("button", { class: "button quiet", type: "button", text: "Dismiss" });
    // The new link itself is the page's to show: only the page has the call's secret.
    const rotated = el("p", {
      class: "spam-guard-rotated",
      hidden: true,
      text: "The old link no longer works, and new guests now wait for approval. Share the new link shown above "
        + "with the people you invited: it works for this call and later ones.",
    });
    const box = el(
      "div",
      { class: "notice stack spam-guard-leaked", role: "alert" },
      el("p", {}, el("strong", { text: "This link may have been shared beyond the people you invited." })),
      numbers,
      el("div", { class: "row" }, lock, rotate, dismiss),
      status,
      error,
      rotated,
    );
    dismiss.addEventListener("click", () => {
      box.hidden = true;
    });

    /** Posts with `button` held down; the answer's body, or null after showing the problem. */
    async function act(button, path, body) {
      button.disabled = true;
      showText(error, "");
      try {
        const response = await post(path, body);
        const answer = await readJson(response);
        if (response.ok) return answer ?? {};
        showText(error, problemMessage(answer, response.status));
      } catch (failure) {
        showText(error, `That did not go through: ${failure.message || failure}`);
      } finally {
        button.disabled = false;
      }
      return null;
    }

    lock.addEventListener("click", async () => {
      if (await act(lock, "/lobby-lock", { link, locked: true })) {
        showText(status, "The lobby is locked: nobody new can ask to join.");
      }
    });
    rotate.addEventListener("click", async () => {
      const answer = await act(rotate, "/rotate", { link });
      if (!answer) return;
      if (!isLinkId(answer.id)) {
        showText(error, "The server did not say what the new link is.");
        return;
      }
      // The server knows the call by its new id from now on, whatever the page does.
      link = answer.id;
      links.push(link);
      try {
        // The new id with the call's secret, which the server never had to put in a link.
        await plugin.showLink(answer.id, "New link");
      } catch (failure) {
        showText(error, `The link was changed, but the page could not show the new one: ${failure.message || failure}`);
        return;
      }
      rotated.hidden = false;
    });
    plugin.element.prepend(box);
    return { box, numbers };
  }

  plugin.onParticipants((list) => {
    participants = list;
    update();
  });
  plugin.onLobby?.((list) => {
    lobby = list;
    update();
  });
  plugin.onMessage((bytes, meta) => {
    // Only what the server side sends, never what a participant does.
    const notice = parseNotice(bytes, { encrypted: meta?.encrypted, links });
    if (notice?.type === "leaked") showLeaked(notice);
  });
  update();
}
