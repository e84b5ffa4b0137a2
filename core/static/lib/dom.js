// Small DOM helpers the page scripts share.

/** A `<button type="button">` with the site's `button` class and `className`. */
export function button(label, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `button ${className}`;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

/** Shows `text` in `element`; no text hides it. */
export function showText(element, text) {
  element.textContent = text;
  element.hidden = !text;
}
