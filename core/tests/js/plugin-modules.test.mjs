// Starting plugins' page modules (core/static/lib/plugin-modules.js), as the call
// page and the dashboard do, with a fake `import()` and a fake DOM: a module that
// fails is reported and leaves no section, and the others start all the same;
// then the call page's use of it (core/static/plugins.js).
// Run with `node --test core/tests/js/`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { register } from "node:module";

// plugins.js imports `/static/lib/…`, as the browser does.
register("./static-paths.mjs", import.meta.url);

// What the loader needs from a browser: sections it can put in an area and take out.
globalThis.document = {
  createElement(tag) {
    return {
      tag,
      className: "",
      dataset: {},
      parent: null,
      remove() {
        if (this.parent) this.parent.children.splice(this.parent.children.indexOf(this), 1);
        this.parent = null;
      },
    };
  },
};

const { loadPluginModules } = await import("../../static/lib/plugin-modules.js");
const { CallPagePlugins } = await import("../../static/plugins.js");

function area() {
  return {
    children: [],
    append(element) {
      this.children.push(element);
      element.parent = this;
    },
  };
}

/** Loads `modules` with `importModule`; records handles made, reports and logged errors. */
async function load(t, modules, importModule) {
  const logged = t.mock.method(console, "error", () => {});
  const page = { area: area(), handles: [], reports: [] };
  const loading = loadPluginModules(modules, {
    area: page.area,
    className: "card plugin-card",
    page: "dashboard",
    handle: (plugin, element) => {
      const handle = { plugin, element, started: false };
      page.handles.push(handle);
      return handle;
    },
    report: (message) => page.reports.push(message),
    importModule,
  });
  // The handles exist before any module is imported (the call page delivers to them).
  page.handlesBeforeImport = page.handles.length;
  await loading;
  page.logged = logged.mock.calls.map((call) => call.arguments[0]);
  return page;
}

const starts = (handle) => {
  handle.started = true;
};

test("a failing module is reported and the others start", async (t) => {
  const modules = {
    "/p/first/static/a.js": async () => ({ default: starts }),
    "/p/broken/static/a.js": async () => {
      throw new Error("404");
    },
    "/p/nodefault/static/a.js": async () => ({ setup: starts }),
    "/p/throws/static/a.js": async () => ({
      default() {
        throw new Error("setup failed");
      },
    }),
    "/p/rejects/static/a.js": async () => ({ default: async () => Promise.reject(new Error("late")) }),
    // Slower than every failure above: it still starts.
    "/p/last/static/a.js": () => new Promise((resolve) => setTimeout(() => resolve({ default: starts }), 20)),
  };
  const list = Object.keys(modules).map((url) => ({ plugin: url.split("/")[2], url }));
  const page = await load(t, list, (url) => modules[url]());

  assert.equal(page.handlesBeforeImport, list.length);
  assert.deepEqual(
    page.handles.map((h) => [h.plugin, h.element.dataset.plugin, h.element.className, h.element.tag]),
    list.map(({ plugin }) => [plugin, plugin, "card plugin-card", "section"]),
  );
  const started = page.handles.filter((h) => h.started).map((h) => h.plugin);
  assert.deepEqual(started, ["first", "last"]);
  assert.deepEqual(page.area.children.map((e) => e.dataset.plugin).sort(), ["first", "last"]);
  assert.deepEqual(page.reports.sort(), [
    "The broken plugin could not start on this page.",
    "The nodefault plugin could not start on this page.",
    "The rejects plugin could not start on this page.",
    "The throws plugin could not start on this page.",
  ]);
  assert.deepEqual(page.logged.sort(), [
    "the broken plugin's dashboard module failed",
    "the nodefault plugin's dashboard module failed",
    "the rejects plugin's dashboard module failed",
    "the throws plugin's dashboard module failed",
  ]);
});

test("a module's section is in the area while its setup runs", async (t) => {
  let inArea = null;
  const setup = (handle) => {
    inArea = handle.element.parent !== null;
  };
  const page = await load(t, [{ plugin: "p", url: "/p/p/static/a.js" }], async () => ({ default: setup }));
  assert.equal(inArea, true);
  assert.deepEqual(page.reports, []);
});

test("no modules: nothing happens", async (t) => {
  const page = await load(t, [], () => assert.fail("nothing to import"));
  assert.deepEqual([page.handles, page.reports, page.area.children], [[], [], []]);
});

test("without importModule the loader uses import()", async (t) => {
  const good = `data:text/javascript,${encodeURIComponent("export default (h) => { h.started = true; };")}`;
  const broken = `data:text/javascript,${encodeURIComponent("export default (")}`;
  const page = await load(t, [{ plugin: "broken", url: broken }, { plugin: "good", url: good }], undefined);
  assert.deepEqual(page.handles.map((h) => [h.plugin, h.started]), [["broken", false], ["good", true]]);
  assert.deepEqual(page.reports, ["The broken plugin could not start on this page."]);
});

test("the call page keeps a handle for every plugin and reports the one that failed", async (t) => {
  t.mock.method(console, "error", () => {});
  const module = (source) => `data:text/javascript,${encodeURIComponent(source)}`;
  const good = module("export default (p) => { p.element.textContent = p.name; };");
  const noDefault = module("export const x = 1;");
  const reports = [];
  const plugins = new CallPagePlugins({
    modules: [{ plugin: "broken", url: noDefault }, { plugin: "good", url: good }],
    area: area(),
    report: (message) => reports.push(message),
  });
  await plugins.load();
  assert.equal(plugins.load(), plugins.load(), "loaded once per page");
  assert.deepEqual([...plugins.handles.keys()], ["broken", "good"]);
  assert.deepEqual(
    plugins.area.children.map((e) => [e.className, e.dataset.plugin, e.textContent]),
    [["plugin-area", "good", "good"]],
  );
  assert.deepEqual(reports, ["The broken plugin could not start on this page."]);
});
