// The "Invite by email" form, for the dashboard (dashboard.js) and the call page
// (call-page.js): addresses, an optional note, Send. It posts the addresses and
// the note to /p/email-invites/invites; the page around the plugin's frame puts
// the link as the user shares it, `#k=` secret included, into the body's `url`
// (the caller's `fetch` asks for that), as the frame never sees the secret. It
// says under the form how it went: "Invitation sent to N people", who was not
// mailed and why (people who asked this server for no more invitations), or the
// server's reason for refusing.

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
export async function problem(response) {
  try {
    const body = await response.json();
    return { code: body.error.code, message: body.error.message, queued: body.queued || 0 };
  } catch {
    return { code: "http_" + response.status, message: `The server answered ${response.status}.`, queued: 0 };
  }
}

/** Says `text` (a line, or several: each on a line of its own) in the status area. */
function status(node, text, isError = false) {
  const lines = Array.isArray(text) ? text : [text];
  node.replaceChildren(...lines.flatMap((line, i) => (i ? [el("br"), line] : [line])));
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

/** The bare address of what was typed (`"Lima, Ana" <ana@example.org>`), to compare. */
function bareAddress(entry) {
  const angled = /<([^<>]*)>\s*$/.exec(entry);
  return (angled ? angled[1] : entry).trim().toLowerCase();
}

/**
 * "Not sent to bo@example.org: this person asked …": the server's reason after a
 * colon, so its first letter goes lower-case (unless it starts an abbreviation).
 */
function notSentLine({ email, code, reason }) {
  let why = typeof reason === "string" && reason.trim()
    ? reason.trim()
    : code === "suppressed" ? "This person asked not to get invitations." : "The server did not send it.";
  if (/^[A-Z](?![A-Z])/.test(why)) why = why[0].toLowerCase() + why.slice(1);
  return `Not sent to ${email}: ${why}`;
}

/**
 * What stays in the addresses field: the people not mailed, as they were typed
 * (with their names), so the user sees whom; the server's address when no typed
 * entry has it.
 */
function notSentEntries(addresses, notSent) {
  const kept = [];
  for (const { email } of notSent) {
    const typed = addresses.filter((entry) => bareAddress(entry) === String(email).toLowerCase());
    for (const entry of typed.length ? typed : [String(email)]) if (!kept.includes(entry)) kept.push(entry);
  }
  return kept;
}

let forms = 0;

/**
 * The form. `fetch` is the page handle's (`/p/email-invites` + path, as the
 * user), wrapped so that the page adds the full link to the body
 * (`{ withLink: "url" }`); `title` names the link for screen readers (none: "this
 * call"); `label` is the addresses' label; `close`, when given, adds a Close
 * button that calls it.
 */
export function inviteForm({ fetch, title, label = "Invite by email", close }) {
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
        // No link here: the page adds it, #fragment included, on the way out.
        body: JSON.stringify({ recipients: addresses, note: note.value || null }),
      });
      if (response.ok) {
        const body = await response.json();
        const queued = body.queued || 0;
        // People who unsubscribed are left out by the server, not refused: the others
        // were mailed. Older servers do not send the list.
        const notSent = (Array.isArray(body.not_sent) ? body.not_sent : []).filter((entry) => entry && entry.email);
        const sent = queued || !notSent.length
          ? `Invitation sent to ${people(queued)}${body.scheduled ? ", with a calendar invitation" : ""}.`
          : "No invitation was sent.";
        // Nothing went out at all: that is a failure for the user, however the
        // server counts it.
        status(result, [sent, ...notSent.map(notSentLine)], !queued && notSent.length > 0);
        recipients.value = notSentEntries(addresses, notSent).join("\n");
        // The note was used; it stays for another try when nobody got it.
        if (queued) note.value = "";
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
