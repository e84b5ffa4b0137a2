// The call's audio lowered while a plugin plays something (core/static/call/ducking.js):
// what the page sets and says, and that the person's choice wins over the plugins'.
// Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";

import { Element, installDom } from "../../../sdk/test/js/fake-dom.mjs";

installDom();
const { DUCKED_VOLUME, Ducking } = await import("../../static/call/ducking.js");

function page() {
  const volumes = [];
  const area = new Element("section");
  document.body.append(area);
  const ducking = new Ducking({ setVolume: (v) => volumes.push(v), before: area });
  const line = () => document.body.querySelector(".ducking");
  return { ducking, volumes, line };
}

test("a plugin lowers the call's audio while it plays, and the page says which", () => {
  const { ducking, volumes, line } = page();
  ducking.ask("watch-together", true);
  assert.equal(volumes.at(-1), DUCKED_VOLUME);
  assert.ok(DUCKED_VOLUME > 0, "never silence");
  assert.match(line().textContent, /Call audio lowered while watch-together plays/);
  ducking.ask("watch-together", false);
  assert.equal(volumes.at(-1), 1);
  assert.equal(line(), null, "nothing to say once nobody asks");
  line()?.remove();
});

test("the person's Restore wins over later requests, until they lower it again", () => {
  const { ducking, volumes, line } = page();
  ducking.ask("watch-together", true);
  line().querySelector("button").click();
  assert.equal(volumes.at(-1), 1);
  assert.match(line().textContent, /call audio at full volume/);
  ducking.ask("watch-together", false);
  ducking.ask("watch-together", true);
  ducking.ask("other", true);
  assert.equal(volumes.at(-1), 1, "still restored");
  line().querySelector("button").click();
  assert.equal(volumes.at(-1), DUCKED_VOLUME);
  ducking.forget("watch-together");
  ducking.forget("other");
  assert.equal(volumes.at(-1), 1);
});
