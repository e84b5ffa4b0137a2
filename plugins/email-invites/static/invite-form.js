// The "Invite by email" form, for the dashboard (dashboard.js) and the call page
// (call.js): addresses, an optional note, Send. It posts to
// /p/email-invites/invites with the link as the user shares it, fragment included,
// and says under the form how it went: "Invitation sent to N people", or the
// server's reason.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

/** The server's `{"error": {code, message}}`, or what to say when there is none. */
async function problem(response) {
  try {
    const body = await response.json();
    return { code: body.error.code, message: body.error.message, queued: body.queued || 0 };
  } catch {
    return { code: "http_" + response.status, message: `The server answered ${response.status}.`, queued: 0 };
  }
}

function status(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

/**
 * Splits what was typed into addresses: at commas, semicolons and line breaks,
 * but not inside quotes or angle brackets (`"Lima, Ana" <ana@example.org>`).
 */
export function splitAddresses(text) {
  const out = [];
  let current = "";
  let quoted = false;
  let angled = false;
  for (const c of text) {
    if (c === '"') quoted = !quoted;
    else if (c === "<") angled = true;
    else if (c === ">") angled = false;
    else if ((c === "," || c === ";" || c === "\n" || c === "\r") && !quoted && !angled) {
      if (current.trim()) out.push(current.trim());
      current = "";
      continue;
    }
    current += c;
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

function people(n) {
  return n === 1 ? "1 person" : `${n} people`;
}

let forms = 0;

/**
 * The form. `fetch` is the page handle's (`/p/email-invites` + path, with the
 * session's CSRF token); `url()` gives the link as the user shares it when Send is
 * pressed; `title` names the link for screen readers (none: "this call"); `label`
 * is the addresses' label; `close`, when given, adds a Close button that calls it.
 */
export function inviteForm({ fetch, url, title, label = "Invite by email", close }) {
  const id = `email-invites-${++forms}`;
  const result = el("p", { class: "status", role: "status", "aria-live": "polite", id: `${id}-status` });
  const recipients = el("textarea", {
    id: `${id}-to`,
    name: "recipients",
    rows: 3,
    required: true,
    spellcheck: "false",
    autocomplete: "email",
    placeholder: "ana@example.org, Bo Ek <bo@example.org>",
    "aria-describedby": `${id}-hint`,
  });
  const note = el("textarea", { id: `${id}-note`, name: "note", rows: 2, maxlength: 2000 });
  const send = el("button", { class: "button primary", type: "submit", text: "Send" });
  const buttons = el("div", { class: "row" }, send);
  if (close) {
    const button = el("button", { class: "button quiet", type: "button", text: "Close" });
    button.addEventListener("click", close);
    buttons.append(button);
  }
  const form = el(
    "form",
    { class: "stack", "aria-label": `Invite people to ${title ? `“${title}”` : "this call"} by email` },
    el("label", { for: recipients.id }, label),
    el("span", { class: "hint", id: `${id}-hint`, text: "Addresses, separated by commas or one per line. Each person gets their own email with the link." }),
    recipients,
    el("label", { for: note.id }, "Note ", el("span", { class: "hint", text: "optional" })),
    note,
    buttons,
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const addresses = splitAddresses(recipients.value);
    if (!addresses.length) {
      status(result, "Add at least one address.", true);
      recipients.focus();
      return;
    }
    send.disabled = true;
    status(result, "Sending…");
    try {
      const response = await fetch("/invites", {
        method: "POST",
        headers: { "content-type": "application/json" },
        // With its #fragment, which the server never sees otherwise.
        body: JSON.stringify({ url: url(), recipients: addresses, note: note.value || null }),
      });
      if (response.ok) {
        const { queued, scheduled } = await response.json();
        status(result, `Invitation sent to ${people(queued)}${scheduled ? ", with a calendar invitation" : ""}.`);
        recipients.value = "";
        note.value = "";
        return;
      }
      const { message } = await problem(response);
      status(result, message, true);
    } catch (error) {
      status(result, `The invitation did not go out: ${error.message || error}`, true);
    } finally {
      send.disabled = false;
    }
  });
  return form;
}
