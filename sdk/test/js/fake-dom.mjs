// Just enough of a browser's DOM to test a plugin's page modules in Node (the
// bundled plugins' `tests/js/` use it): elements with attributes, children, text,
// events, forms (`requestSubmit()`) and simple selectors (a tag, `.class`,
// `[attr]`, `[attr=value]`, joined without spaces). Not a test file: tests import
// it (`installDom()` puts `document` in the global scope). Only the tests import
// it; the modules under test import nothing from outside their plugin.

const kebab = (key) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

class Text {
  constructor(text) {
    this.data = String(text);
    this.parent = null;
  }
  get textContent() {
    return this.data;
  }
}

export class Element {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.attributes = new Map();
    this.nodes = [];
    this.parent = null;
    this.listeners = {};
    this.style = {};
    this.disabled = false;
    this.checked = false;
    this.focused = false;
    this.ownValue = undefined;
    this.dataset = new Proxy({}, {
      get: (_, key) => this.getAttribute(`data-${kebab(String(key))}`) ?? undefined,
      set: (_, key, value) => {
        this.setAttribute(`data-${kebab(String(key))}`, value);
        return true;
      },
    });
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }
  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }
  removeAttribute(name) {
    this.attributes.delete(name);
  }
  hasAttribute(name) {
    return this.attributes.has(name);
  }

  get hidden() {
    return this.attributes.has("hidden");
  }
  set hidden(on) {
    if (on) this.setAttribute("hidden", "");
    else this.removeAttribute("hidden");
  }
  get className() {
    return this.getAttribute("class") ?? "";
  }
  set className(value) {
    this.setAttribute("class", value);
  }
  get classList() {
    const classes = () => this.className.split(/\s+/).filter(Boolean);
    const set = (list) => { this.className = list.join(" "); };
    return {
      contains: (c) => classes().includes(c),
      add: (c) => set([...new Set([...classes(), c])]),
      remove: (c) => set(classes().filter((x) => x !== c)),
      toggle: (c, on = !classes().includes(c)) => (on ? set([...new Set([...classes(), c])]) : set(classes().filter((x) => x !== c))),
    };
  }
  get value() {
    if (this.ownValue !== undefined) return this.ownValue;
    if (this.tagName === "SELECT") return this.children[0]?.getAttribute("value") ?? "";
    return this.getAttribute("value") ?? "";
  }
  set value(value) {
    this.ownValue = String(value);
  }
  get src() {
    return this.getAttribute("src") ?? "";
  }
  // The form's labels point at their fields by `id`.
  get id() {
    return this.getAttribute("id") ?? "";
  }
  set id(value) {
    this.setAttribute("id", value);
  }

  get parentElement() {
    return this.parent instanceof Element ? this.parent : null;
  }
  get children() {
    return this.nodes.filter((n) => n instanceof Element);
  }
  get isConnected() {
    let node = this;
    while (node.parent) node = node.parent;
    return node === document.body;
  }
  get textContent() {
    return this.nodes.map((n) => n.textContent).join("");
  }
  set textContent(text) {
    this.replaceChildren(...(text === "" ? [] : [String(text)]));
  }

  adopt(node) {
    const child = node instanceof Element || node instanceof Text ? node : new Text(node);
    child.parent?.removeChild(child);
    child.parent = this;
    return child;
  }
  append(...nodes) {
    for (const node of nodes) this.nodes.push(this.adopt(node));
  }
  prepend(...nodes) {
    this.nodes.unshift(...nodes.map((n) => this.adopt(n)));
  }
  replaceChildren(...nodes) {
    for (const node of this.nodes) node.parent = null;
    this.nodes = [];
    this.append(...nodes);
  }
  /** Puts `nodes` just before this element, under its parent. */
  before(...nodes) {
    const parent = this.parent;
    if (!parent) return;
    const adopted = nodes.map((n) => parent.adopt(n));
    parent.nodes.splice(parent.nodes.indexOf(this), 0, ...adopted);
  }
  removeChild(node) {
    this.nodes = this.nodes.filter((n) => n !== node);
    node.parent = null;
  }
  remove() {
    this.parent?.removeChild(this);
  }

  addEventListener(type, listener) {
    (this.listeners[type] ??= []).push(listener);
  }
  /** Calls the `type` listeners with `event`; gives back what they return (promises). */
  dispatch(type, event = {}) {
    const full = { type, target: this, preventDefault() {}, ...event };
    return Promise.all((this.listeners[type] ?? []).map((listener) => listener(full)));
  }
  click() {
    if (this.disabled) return Promise.resolve([]);
    return this.dispatch("click");
  }
  focus() {
    this.focused = true;
    return this.dispatch("focus");
  }
  select() {}
  /**
   * Pressing a form's submit button: the `submit` listeners (awaited), then whether
   * one of them called `preventDefault` (else the browser would leave the page).
   */
  async requestSubmit() {
    let prevented = false;
    await this.dispatch("submit", { preventDefault: () => { prevented = true; } });
    return { defaultPrevented: prevented };
  }

  matches(selector) {
    const parts = selector.match(/^[a-z0-9]+|\.[\w-]+|\[[^\]]+\]/gi) ?? [];
    return parts.join("") === selector && parts.every((part) => {
      if (part.startsWith(".")) return this.classList.contains(part.slice(1));
      if (part.startsWith("[")) {
        const [, name, value] = /^\[([\w-]+)(?:="?([^"\]]*)"?)?\]$/.exec(part);
        return value === undefined ? this.hasAttribute(name) : this.getAttribute(name) === value;
      }
      return this.tagName === part.toUpperCase();
    });
  }
  closest(selector) {
    for (let node = this; node instanceof Element; node = node.parent) if (node.matches(selector)) return node;
    return null;
  }
  querySelectorAll(selector) {
    const found = [];
    const walk = (node) => {
      for (const child of node.children) {
        if (child.matches(selector)) found.push(child);
        walk(child);
      }
    };
    walk(this);
    return found;
  }
  querySelector(selector) {
    return this.querySelectorAll(selector)[0] ?? null;
  }
}

/** A fresh `document` (with a body) in the global scope. */
export function installDom() {
  globalThis.document = {
    body: new Element("body"),
    createElement: (tag) => new Element(tag),
  };
  return globalThis.document;
}

/** Whether `element` is shown: neither it nor anything around it is hidden. */
export function shown(element) {
  for (let node = element; node; node = node.parent) if (node.hidden) return false;
  return true;
}

/** Lets pending promises (a click's requests) run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A fake `fetch` of a page handle: records requests, answers from
 * `answer(path, init, options)`. A request made with the handle's third argument
 * (`{ withLink, link, download }`, what the page does around the request) records
 * it as `options`; one made without has no `options`.
 */
export function recordingFetch(answer) {
  const requests = [];
  const fetch = async (path, init = {}, ...rest) => {
    const request = {
      path,
      method: init.method ?? "GET",
      headers: init.headers ?? {},
      body: init.body === undefined ? undefined : JSON.parse(init.body),
    };
    if (rest.length) request.options = rest[0];
    requests.push(request);
    return answer(path, init, ...rest);
  };
  return { fetch, requests };
}

/** A JSON answer with `status`. */
export function json(body, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}
