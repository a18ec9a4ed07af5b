// Small DOM helpers. Everything the client shows is built here or through
// textContent: no string of markup is ever parsed, so nothing a user types
// can become HTML. The page's Content-Security-Policy forbids inline styles
// and scripts as a second line of defence.

const SVG_NS = "http://www.w3.org/2000/svg";

// Attributes that must never be set from data: markup injection and inline
// styles (which the CSP would refuse anyway).
const FORBIDDEN = new Set(["style", "innerHTML", "outerHTML", "srcdoc"]);

/**
 * Create an element.
 *
 * props: `class`, `text` (textContent), `dataset` (object), `on<event>`
 * (listener functions), booleans (true sets an empty attribute, false or
 * null leaves it out) and any other attribute as a string. Children may be
 * nodes, strings (added as text) or null (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [key, value] of Object.entries(props)) {
    if (FORBIDDEN.has(key) || (key.startsWith("on") && typeof value !== "function")) {
      throw new Error(`refusing to set ${key}`);
    }
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
}

/** Set an attribute only when it changes (keeps screen readers quiet). */
export function attr(el, name, value) {
  if (value === null || value === undefined || value === false) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
    return;
  }
  const text = value === true ? "" : String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

/** Set textContent only when it changes. */
export function text(el, value) {
  if (el.textContent !== value) el.textContent = value;
}

/**
 * Make `parent`'s children exactly `nodes`, in order, moving only what is
 * out of place. Nodes keep their identity, so focus and scroll anchors
 * survive re-rendering.
 */
export function reconcile(parent, nodes) {
  let cursor = parent.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
    } else {
      parent.insertBefore(node, cursor);
    }
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

// Line icons on a 24-unit grid, drawn for SerenChat. Each is a list of
// shapes: strings are path data, objects are circles or rectangles.
const ICONS = {
  hash: ["M5 9h14", "M5 15h14", "M10.5 4 8.5 20", "M15.5 4l-2 16"],
  lock: [{ rect: [5, 11, 14, 10, 2.5] }, "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"],
  plus: ["M12 5v14", "M5 12h14"],
  compass: [{ circle: [12, 12, 9] }, "M15.5 8.5 13.5 13.5 8.5 15.5 10.5 10.5z"],
  send: ["M4 11.5 20 4l-7.5 16-2.3-6.2z", "M10.2 13.8 20 4"],
  menu: ["M4 7h16", "M4 12h16", "M4 17h16"],
  users: [
    { circle: [9, 8, 3.5] },
    "M2.5 20a6.5 6.5 0 0 1 13 0",
    "M16 4.7a3.5 3.5 0 0 1 0 6.6",
    "M18 14.2a6.5 6.5 0 0 1 3.5 5.8",
  ],
  sun: [
    { circle: [12, 12, 4] },
    "M12 2.5v2",
    "M12 19.5v2",
    "M2.5 12h2",
    "M19.5 12h2",
    "M5.3 5.3l1.4 1.4",
    "M17.3 17.3l1.4 1.4",
    "M5.3 18.7l1.4-1.4",
    "M17.3 6.7l1.4-1.4",
  ],
  moon: ["M20 14.5A8.5 8.5 0 1 1 9.5 4 6.5 6.5 0 0 0 20 14.5z"],
  logout: ["M14 4h4a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-4", "M9 8l-4 4 4 4", "M5 12h10"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  checks: ["M2.5 12.5 7 17l9.5-9.5", "M11.5 16l1 1 9.5-9.5"],
  clock: [{ circle: [12, 12, 8.5] }, "M12 7.5V12l3 2"],
  pencil: ["M4 20h4L19 9l-4-4L4 16z", "M13 7l4 4"],
  trash: ["M4 7h16", "M9.5 7V4.5h5V7", "M6.5 7l1 13h9l1-13"],
  close: ["M6 6l12 12", "M18 6 6 18"],
  down: ["M12 5v14", "M6 13l6 6 6-6"],
  userPlus: [
    { circle: [10, 8, 3.8] },
    "M3 20a7 7 0 0 1 14 0",
    "M19.5 8v6",
    "M16.5 11h6",
  ],
  chat: ["M4 5.5h16v11H10l-6 4z"],
  alert: ["M12 3.5 2.5 20h19z", "M12 10v4.5", "M12 17.2v.3"],
  wifi: [
    "M2.5 9a14 14 0 0 1 19 0",
    "M5.5 12.5a9.5 9.5 0 0 1 13 0",
    "M8.7 16a5 5 0 0 1 6.6 0",
    "M12 19.5v.01",
  ],
};

/** An inline SVG icon, hidden from assistive technology. */
export function icon(name, className = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", className);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const shape of ICONS[name] ?? []) {
    let el;
    if (typeof shape === "string") {
      el = document.createElementNS(SVG_NS, "path");
      el.setAttribute("d", shape);
    } else if (shape.circle) {
      const [cx, cy, r] = shape.circle;
      el = document.createElementNS(SVG_NS, "circle");
      el.setAttribute("cx", cx);
      el.setAttribute("cy", cy);
      el.setAttribute("r", r);
    } else {
      const [x, y, width, height, rx] = shape.rect;
      el = document.createElementNS(SVG_NS, "rect");
      for (const [k, v] of Object.entries({ x, y, width, height, rx })) {
        el.setAttribute(k, v);
      }
    }
    svg.append(el);
  }
  return svg;
}

/** Put an icon into an (empty) button that is labelled by aria-label. */
export function iconButton(button, name) {
  button.replaceChildren(icon(name));
}

/** Six accent hues; a username always maps to the same one. */
export function hueOf(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 6;
}

/** A round avatar with the name's first letter, coloured by hueOf. */
export function avatar(name, size = "") {
  const first = [...name][0] ?? "?";
  return h("span", {
    class: `avatar hue-${hueOf(name)} ${size}`.trim(),
    "aria-hidden": "true",
    text: first.toUpperCase(),
  });
}
