// The plugin's own page (/p/calendar/): the same calendar tools as on the
// dashboard, without the per-link buttons.
import setup from "./dashboard.js";

const main = document.querySelector("[data-calendar-tools]");
if (main) {
  setup(
    {
      name: "calendar",
      element: main,
      links: () => [],
      fetch: (path, init = {}) => fetch(`/p/calendar${path}`, { ...init, credentials: "same-origin" }),
      report: (message) => {
        const alert = document.createElement("p");
        alert.className = "status error";
        alert.setAttribute("role", "alert");
        alert.textContent = message;
        main.prepend(alert);
      },
    },
    { maxKib: Number(main.dataset.maxKib) || 1024 },
  );
}
