// Building the page: every piece of data goes in as text (textContent / text nodes), never as
// markup: nothing in the UI parses data as HTML.

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A link inside the app: segments are URL-encoded, so names can never change the route.
export function link(text, ...segments) {
  return h("a", { href: href(...segments) }, text);
}

export function href(...segments) {
  return "#/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

// A timestamp in the viewer's time zone, the exact UTC instant in its tooltip.
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  return h("time", { datetime: date.toISOString(), title: date.toISOString() }, timeFormat.format(date));
}

export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

export function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function chip(text, kind = "") {
  return h("span", { class: `chip ${kind}`.trim() }, text);
}

export function number(value) {
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) < 1e-3 && value !== 0 ? value.toExponential(2) : value.toPrecision(4);
}

// {"a": 1, "b": "x"} as small "a = 1" items; nested values as compact JSON text.
export function pairs(object) {
  const entries = Object.entries(object || {});
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return h("span", { class: "numbers" }, entries.map(([k, v]) =>
    h("span", {}, h("span", { class: "muted" }, `${k} = `),
      typeof v === "object" && v !== null ? JSON.stringify(v) : number(v))));
}
