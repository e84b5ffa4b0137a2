// The calendar page: forms are sent with fetch so a refused file shows its reason
// next to the form, and a calendar that comes back is saved as a download.

function fileName(response, fallback) {
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  return match ? match[1] : fallback;
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error.message;
  } catch {
    return `The server answered ${response.status}.`;
  }
}

for (const form of document.querySelectorAll(".js-calendar-form")) {
  const result = form.querySelector(".js-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.textContent = "…";
    result.classList.remove("error");
    const multipart = form.enctype === "multipart/form-data";
    const data = new FormData(form);
    const body = multipart ? data : new URLSearchParams(data);
    const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
    if (!response.ok) {
      result.textContent = await errorText(response);
      result.classList.add("error");
      return;
    }
    save(await response.blob(), fileName(response, "calendar.ics"));
    result.textContent = "Done: open the downloaded file with your calendar.";
  });
}

const zone = document.querySelector(".js-time-zone");
if (zone) {
  zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

const feed = document.querySelector(".js-feed");
function showFeed(path) {
  feed.dataset.path = path || "";
  feed.textContent = "";
  if (!path) {
    feed.textContent = "No subscription address yet.";
    return;
  }
  const webcal = `webcal://${location.host}${path}`;
  const link = document.createElement("a");
  link.href = webcal;
  link.textContent = webcal;
  const https = document.createElement("code");
  https.textContent = `${location.origin}${path}`;
  feed.append(link, document.createElement("br"), https);
}
if (feed) {
  showFeed(feed.dataset.path);
  document.querySelector(".js-feed-new")?.addEventListener("click", async () => {
    const response = await fetch("/p/calendar/feed", { method: "POST", credentials: "same-origin" });
    if (response.ok) showFeed((await response.json()).path);
    else feed.textContent = await errorText(response);
  });
  document.querySelector(".js-feed-revoke")?.addEventListener("click", async () => {
    const response = await fetch("/p/calendar/feed", { method: "DELETE", credentials: "same-origin" });
    if (response.ok) showFeed("");
    else feed.textContent = await errorText(response);
  });
}
