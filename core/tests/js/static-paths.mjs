// Module hooks for the node tests: the page's modules import each other by the
// paths the server gives them (`/static/…`, http/pages.rs); in Node these are the
// files under core/static/. A test registers them before importing such a module:
//
//   import { register } from "node:module";
//   register("./static-paths.mjs", import.meta.url);
//   const { reduce } = await import("../../static/call/state.js");

const STATIC = new URL("../../static/", import.meta.url);

export async function resolve(specifier, context, nextResolve) {
  if (specifier.startsWith("/static/")) {
    return nextResolve(new URL(specifier.slice("/static/".length), STATIC).href, context);
  }
  return nextResolve(specifier, context);
}
