// Building DOM without innerHTML: the page's CSP forbids inline script and style, and text from the model
// or the server must never be parsed as markup. Styles set here go through CSSOM, which the CSP allows.

/** An element: h("a", {href: "/ui/", class: "x", dataset: {id: 1}, onclick}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

/** The element with this id; a missing one is a bug in index.html, so say which. */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`index.html has no #${id}`);
  return node;
}

/** Put these children in place of the node's current ones. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

/** Show a message in an element (an empty message clears it; the element keeps its line). */
export function say(node, message) {
  node.textContent = message || "";
}

/** True when a scroll box is at (or within a few pixels of) its bottom. */
export function isAtBottom(box, slackPx = 24) {
  return box.scrollHeight - box.scrollTop - box.clientHeight <= slackPx;
}
