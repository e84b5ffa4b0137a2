// The hostile probe on the plugin's own page (/p/rogue/page), opened directly.
import { probe } from "./hostile.js";

const out = document.getElementById("results");
probe(null).then((results) => {
  out.textContent = JSON.stringify(results);
});
