// The calendar on the dashboard, in the plugin's sandboxed frame: add a call link
// to an event from an .ics file, schedule a call, "Add to calendar" on every link,
// and the private subscription address. Everything goes to /p/calendar/… through
// the handle's fetch, so a refused file shows its reason here. A calendar that
// holds one of the user's existing links needs the link's secret, which this frame
// never sees: the page adds the full link to the request (`withLink`) and saves
// the answer as a download itself (`download`). Other calendars come back here and
// are saved from the frame.

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

function fileName(response, fallback) {
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  return match ? match[1] : fallback;
}

/**
 * Saves `blob` as the download `name`, and keeps it on `node` (`node.calendarFile`,
 * `data-download` = the name) for whoever wants to look at it again.
 */
function save(blob, name, node) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  node.calendarFile = blob;
  node.dataset.download = name;
}

async function problem(response) {
  try {
    const body = await response.json();
    return { code: body.error.code, message: body.error.message };
  } catch {
    return { code: "http_" + response.status, message: `The server answered ${response.status}.` };
  }
}

function status(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}

/** What this card says when the page lacks a link's secret (the page's `no-secret`). */
const NO_SECRET = "This browser does not have the link's secret: open the link's full address once, then try again.";

/** A file name for a calendar about `title`: letters, digits, spaces, dots and dashes. */
function safeName(title, fallback) {
  const name = String(title ?? "")
    .replace(/[^\p{L}\p{N} ._-]+/gu, " ")
    .replace(/\s+/g, " ")
    .replace(/^[ .]+/, "")
    .slice(0, 80)
    .trim();
  return name || fallback;
}

/**
 * After links were made or scheduled: the page's list of links is not this
 * frame's to reload (it has no way to the page's address), so the card says how
 * to see them there.
 */
function offerRefresh(node) {
  node.append(" ", el("span", { class: "hint", text: "Reload the page to see the change in your links." }));
}

function timeZones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return [];
  }
}

const REPEATS = [
  ["", "Does not repeat"],
  ["FREQ=DAILY", "Every day"],
  ["FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "Every weekday"],
  ["FREQ=WEEKLY", "Every week"],
  ["FREQ=WEEKLY;INTERVAL=2", "Every two weeks"],
  ["FREQ=MONTHLY", "Every month"],
];

/** The next full hour, as a datetime-local value. */
function nextHour() {
  const d = new Date(Date.now() + 3600_000);
  d.setMinutes(0, 0, 0);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:00`;
}

function addLinkForm(dashboard, maxKib) {
  const result = el("p", { class: "status", role: "status" });
  const file = el("input", { type: "file", name: "file", accept: ".ics,text/calendar" });
  const pasted = el("textarea", { name: "ics", rows: 4, spellcheck: "false", placeholder: "BEGIN:VCALENDAR …" });
  const form = el(
    "form",
    { class: "stack", "data-calendar": "add-link" },
    el("h3", { text: "Add call link to an event" }),
    el("p", {
      class: "hint",
      text: `Export the event (or a calendar) as an .ics file from Google Calendar, Outlook, Apple Calendar or Thunderbird, `
        + `upload or paste it, and import the file you get back. Each event keeps its one call link however often you do this. Up to ${maxKib} KiB.`,
    }),
    el("label", {}, "Calendar file", file),
    el("label", {}, "or paste it", pasted),
    el("div", { class: "row" }, el("button", { class: "button primary", type: "submit", text: "Add call link" })),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length && !pasted.value.trim()) {
      status(result, "Choose an .ics file or paste a calendar.", true);
      return;
    }
    status(result, "Adding the link…");
    const body = new FormData();
    if (file.files.length) body.append("file", file.files[0], file.files[0].name);
    else body.append("ics", pasted.value);
    const response = await dashboard.fetch("/add-link", { method: "POST", body });
    if (!response.ok) {
      status(result, (await problem(response)).message, true);
      return;
    }
    const events = response.headers.get("x-confab-events") || "the";
    save(await response.blob(), fileName(response, "calendar.ics"), result);
    status(result, `Added a call link to ${events} event${events === "1" ? "" : "s"}: open the downloaded file with your calendar.`);
    offerRefresh(result);
  });
  return form;
}

function scheduleForm(dashboard) {
  const result = el("p", { class: "status", role: "status" });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = el("datalist", { id: "calendar-time-zones" }, ...timeZones().map((z) => el("option", { value: z })));
  const linkField = el("input", { type: "hidden", name: "link" });
  const forLink = el("p", { class: "notice", hidden: true });
  const title = el("input", { name: "title", required: true, maxlength: 200, placeholder: "Weekly design review" });
  const repeat = el("select", { name: "rrule" }, ...REPEATS.map(([value, label]) => el("option", { value, text: label })));
  const form = el(
    "form",
    { class: "stack", "data-calendar": "schedule" },
    el("h3", { text: "Schedule a call" }),
    forLink,
    linkField,
    el("label", {}, "Title", title),
    el(
      "div",
      { class: "row" },
      el("label", {}, "Starts", el("input", { type: "datetime-local", name: "start", required: true, value: nextHour() })),
      el("label", { class: "small" }, "Minutes", el("input", { type: "number", name: "duration", min: 1, max: 44640, value: 30, required: true })),
    ),
    el("label", {}, "Time zone", el("input", { name: "time_zone", value: zone, list: zones.id, required: true, autocomplete: "off" }), zones),
    el("label", {}, "Repeats", repeat),
    el("label", {}, "Invite ", el("span", { class: "hint", text: "optional: addresses, one per line" }), el("textarea", { name: "attendees", rows: 2, placeholder: "Ana <ana@example.org>" })),
    el("label", {}, "Description ", el("span", { class: "hint", text: "optional" }), el("textarea", { name: "description", rows: 2, maxlength: 2000 })),
    el("div", { class: "row" }, el("button", { class: "button primary", type: "submit", text: "Schedule and download .ics" })),
    result,
  );
  form.forLink = (link) => {
    linkField.value = link.id;
    title.value = link.title;
    forLink.hidden = false;
    forLink.textContent = `Pick a time for “${link.title}”: the call keeps this link.`;
    form.scrollIntoView?.({ behavior: "smooth", block: "center" });
    title.focus();
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status(result, "Scheduling…");
    const data = new URLSearchParams(new FormData(form));
    // An invitation when there is someone to invite.
    data.set("method", data.get("attendees")?.trim() ? "request" : "publish");
    const link = data.get("link");
    let response;
    try {
      if (link) {
        // An existing link: the page adds it with its secret (JSON, which the page
        // can add a field to) and saves the calendar, which holds the secret.
        response = await dashboard.fetch(
          "/schedule",
          { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(Object.fromEntries(data)) },
          { withLink: "url", link, download: `${safeName(data.get("title"), link)}.ics` },
        );
      } else {
        data.delete("link");
        response = await dashboard.fetch("/schedule", { method: "POST", body: data });
      }
    } catch (failure) {
      status(result, failure?.code === "no-secret" ? NO_SECRET : `The call was not scheduled: ${failure?.message || failure}`, true);
      return;
    }
    if (!response.ok) {
      status(result, (await problem(response)).message, true);
      return;
    }
    const id = response.headers.get("x-confab-link-id");
    // The page saved the calendar of an existing link; a new link's comes here.
    if (!link) save(await response.blob(), fileName(response, "call.ics"), result);
    result.dataset.linkId = id || "";
    status(result, "Scheduled: open the downloaded file with your calendar.");
    linkField.value = "";
    forLink.hidden = true;
    offerRefresh(result);
  });
  return form;
}

function feedSection(dashboard) {
  const shown = el("div", { class: "stack", "data-calendar": "feed-address" });
  const result = el("p", { class: "status", role: "status" });
  const make = el("button", { class: "button", type: "button", text: "Make an address" });
  const stop = el("button", { class: "button quiet", type: "button", text: "Stop the subscription", hidden: true });
  const show = (feed) => {
    shown.textContent = "";
    stop.hidden = !feed.exists;
    make.textContent = feed.exists ? "Make a new address" : "Make an address";
    if (feed.url) {
      const input = el("input", { class: "url", readonly: true, value: feed.url, "aria-label": "Subscription address" });
      shown.append(
        el("p", { class: "notice", text: "Copy this address into your calendar app now: it is shown only once." }),
        input,
      );
      if (feed.webcal) shown.append(el("a", { href: feed.webcal, text: "Subscribe with your calendar app" }));
    } else if (feed.exists) {
      shown.append(el("p", { class: "hint", text: `Your calendar app is subscribed with an address made on ${feed.created}. Make a new one to see it again (the old one stops working).` }));
    } else {
      shown.append(el("p", { class: "hint", text: "No subscription address yet." }));
    }
  };
  make.addEventListener("click", async () => {
    const response = await dashboard.fetch("/feed", { method: "POST" });
    if (response.ok) show({ exists: true, ...(await response.json()) });
    else status(result, (await problem(response)).message, true);
  });
  stop.addEventListener("click", async () => {
    const response = await dashboard.fetch("/feed", { method: "DELETE" });
    if (response.ok) show({ exists: false });
    else status(result, (await problem(response)).message, true);
  });
  dashboard.fetch("/feed").then(async (response) => {
    if (response.ok) show(await response.json());
  });
  return el(
    "section",
    { class: "stack" },
    el("h3", { text: "Subscribe" }),
    el("p", { class: "hint", text: "A private address your calendar app subscribes to: it lists the calls you schedule here. Anyone with the address can read it." }),
    shown,
    el("div", { class: "row" }, make, stop),
    result,
  );
}

export default function setup(dashboard, { maxKib = 1024 } = {}) {
  const schedule = scheduleForm(dashboard);
  // What "Add to calendar" did, for whoever looks at the card.
  const saved = el("p", { class: "status", role: "status", "data-calendar": "link-file" });
  dashboard.element.append(
    el("h2", { text: "Calendar" }),
    saved,
    el("div", { class: "stack" }, addLinkForm(dashboard, maxKib), schedule, feedSection(dashboard)),
  );
  dashboard.addLinkAction?.("Add to calendar", async (link) => {
    const name = `${safeName(link.title, link.id)}.ics`;
    let response;
    try {
      // The page puts the link, secret included, into `url` and saves the answer as
      // `name`: the file holds the secret, so it never comes into this frame.
      response = await dashboard.fetch(
        `/links/${encodeURIComponent(link.id)}.ics`,
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({}) },
        { withLink: "url", link: link.id, download: name },
      );
    } catch (failure) {
      // Links whose secret this browser lacks are sent too: the page says no.
      if (failure?.code === "no-secret") {
        await dashboard.report(NO_SECRET);
        return;
      }
      throw failure;
    }
    if (response.ok) {
      status(saved, `Saved ${name}: open it with your calendar.`);
      return;
    }
    const { code, message } = await problem(response);
    if (code === "no_schedule") schedule.forLink(link);
    else await dashboard.report(message);
  });
}
