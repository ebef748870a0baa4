/*
 * Small DOM and formatting helpers shared by every view. Every value from the server goes on
 * the page as text (textContent through el()), never as HTML.
 */

export const $ = (id) => document.getElementById(id);

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const DASH = "\u2013";
const missing = (value) => value === null || value === undefined || Number.isNaN(value);

export const num = (value, digits) => (missing(value) ? DASH : Number(value).toFixed(digits));
export const kw = (value) => (missing(value) ? DASH : `${num(value, 1)} kW`);
export const price = (value, currency) =>
  missing(value) ? DASH : `${num(value, 3)} ${currency || ""}`.trim();
export const percent = (value) => (missing(value) ? DASH : `${Math.round(Number(value) * 100)}%`);
export const count = (value) => (missing(value) ? DASH : Number(value).toLocaleString("en"));
export const words = (value) => (value ? String(value).replaceAll("_", " ") : DASH);

export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : DASH);
export const dateTime = (iso) =>
  iso
    ? new Date(iso).toLocaleString([], {
        month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
      })
    : DASH;
const sameDay = (a, b) => a.toDateString() === b.toDateString();
/** A time of today as 18:05, another day's as "Dec 4, 18:05:00". */
export const when = (iso) =>
  iso && sameDay(new Date(iso), new Date())
    ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false })
    : dateTime(iso);
/** A moment of an activity list: the time today, else the date and time. */
export const stamp = (iso) => (iso && sameDay(new Date(iso), new Date()) ? time(iso) : dateTime(iso));

export const badge = (status) => el("span", { class: `badge badge-${status}` }, words(status));

export function fillBody(table, rows, columns, emptyText) {
  table.tBodies[0].replaceChildren(
    ...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: String(columns) }, emptyText))]),
  );
}

/** Call fn at most once per delay ms, with the latest arguments (trailing). */
export function debounce(fn, delay) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), delay);
  };
}
