// Starting plugins' page modules (their manifest's `web.call-page` and
// `web.dashboard`): what the call page (plugins.js) and the dashboard
// (dashboard.js) do alike. Each page makes its own handle and shows its own errors.

/**
 * Imports each of `modules` (`[{ plugin, url }]`, as the server lists them) and
 * calls its default export with `handle(plugin, element)`: the page's handle for
 * the plugin and its `<section>` (class `className`, `data-plugin`), put in `area`
 * once the module has loaded. A module that fails to load, has no default export
 * function or whose setup throws loses its section, is logged (`page` names the
 * page's kind of module) and `report`ed as not started; the others start
 * regardless. Resolves once every module has started or failed. `importModule`
 * stands in for `import()` in tests.
 */
export function loadPluginModules(
  modules,
  { area, className, page, handle, report, importModule = (url) => import(url) },
) {
  return Promise.all(modules.map(async ({ plugin, url }) => {
    const element = document.createElement("section");
    element.className = className;
    element.dataset.plugin = plugin;
    const pluginHandle = handle(plugin, element);
    try {
      const module = await importModule(url);
      if (typeof module.default !== "function") throw new TypeError("the module has no default export function");
      area.append(element);
      await module.default(pluginHandle);
    } catch (error) {
      console.error(`the ${plugin} plugin's ${page} module failed`, error);
      element.remove();
      report(`The ${plugin} plugin could not start on this page.`);
    }
  }));
}
