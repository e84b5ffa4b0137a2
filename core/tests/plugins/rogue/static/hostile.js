// What a hostile plugin's web code would try, from its frame on the call page or
// the dashboard, or from its own page under /p/rogue/ (hostile-page.js): read the
// viewer's cookies, Confab's storage and the page's address (the link secret),
// call the API or post a form as the viewer, and ask the page's bridge for what
// the plugin was not granted. Each attempt's outcome goes into `#results` as
// JSON, for the sandbox tests to read: "blocked" when the browser refused,
// "access-denied" when the page did, anything else is a leak.

async function attempt(action) {
  try {
    const value = await action();
    return `got ${JSON.stringify(String(value ?? "")).slice(0, 60)}`;
  } catch (error) {
    return error?.code === "access-denied" ? "access-denied" : "blocked";
  }
}

/** A raw bridge call the kit would not make; resolves with the page's error code. */
function rawBridgeCall(call) {
  const id = 900_000 + Math.floor(Math.random() * 1000);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("no answer"), 3000);
    addEventListener("message", (event) => {
      const message = event.data;
      if (event.source !== parent || message?.re !== id) return;
      clearTimeout(timer);
      resolve(message.ok ? `allowed ${JSON.stringify(message.value)}` : message.error?.code);
    });
    parent.postMessage({ bridge: "confab", v: 1, id, call, args: { label: "Steal", index: 0, data: new Uint8Array(1) } }, "*");
  });
}

/** Posts a form that would make a link as the viewer, in a frame of its own. */
function postForm() {
  const sink = document.createElement("iframe");
  sink.name = `sink-${Math.random()}`;
  sink.hidden = true;
  document.body.append(sink);
  const form = document.createElement("form");
  form.method = "post";
  form.action = new URL("/dashboard/links", document.baseURI).href;
  form.target = sink.name;
  const title = document.createElement("input");
  title.name = "title";
  title.value = "hostile";
  form.append(title);
  document.body.append(form);
  form.submit();
  return "sent";
}

export async function probe(handle) {
  const origin = new URL(document.baseURI).origin;
  const results = {
    cookie: await attempt(() => document.cookie),
    storage: await attempt(() => localStorage.getItem("confab.secret.probe") ?? Object.keys(localStorage).join(",")),
    session: await attempt(() => Object.keys(sessionStorage).join(",")),
    hash: await attempt(() => parent.location.hash || top.location.href),
    top: await attempt(() => top.document.cookie),
    api: await attempt(async () => {
      const response = await fetch(`${origin}/api/v1/links`, {
        method: "POST",
        credentials: "include",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ title: "hostile" }),
      });
      return `${response.status} ${await response.text()}`;
    }),
    form: await attempt(postForm),
  };
  if (handle) {
    results.escape = await attempt(() => handle.fetch("/../../api/v1/links").then((r) => r.status));
    results.link = await attempt(() => handle.fetch("/echo", { method: "POST", body: "{}" }, { withLink: "url" }).then((r) => r.status));
    results.raw = await rawBridgeCall(handle.page === "call-page" ? "addLinkAction" : "send");
    results.secretInLink = handle.link ? (String(handle.link()).includes("#") ? "leaked" : "no secret") : "no link";
    if (typeof handle.addLinkAction === "function") {
      // A frame that would crowd every link with buttons: the page takes 4.
      const added = [];
      for (let i = 0; i < 5; i += 1) {
        added.push(await handle.addLinkAction(`Grab ${i}`, () => {}).then(() => "added", (error) => error?.code));
      }
      results.actions = added.join(",");
    }
  }
  return results;
}

export default async function setup(handle) {
  const out = document.createElement("pre");
  out.id = "results";
  out.textContent = "probing";
  handle.element.append(out);
  out.textContent = JSON.stringify(await probe(handle));
}
