// What the settings, users and audit pages build their tables from: `h("td", {...}, ...)` makes
// an element, and text is always set as text, never parsed as HTML, so nothing the API returns
// (a banner, a username, an audit detail) can become markup. Times are shown relative ("3
// minutes ago") with the exact time in the element, and kept fresh while the page is open.

const PROPERTIES = new Set(["value", "checked", "selected", "disabled", "hidden"]);

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (PROPERTIES.has(name)) element[name] = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

const RELATIVE = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
const STEPS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [30, "day"],
  [12, "month"],
  [Infinity, "year"],
];

export function relative(date, now = Date.now()) {
  let amount = (date.getTime() - now) / 1000;
  if (Math.abs(amount) < 10) return "just now";
  for (const [size, unit] of STEPS) {
    if (Math.abs(amount) < size) return RELATIVE.format(Math.round(amount), unit);
    amount /= size;
  }
  return date.toLocaleString();
}

export function exactTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// A <time> that says "2 minutes ago", with the exact time as its title; `never` when there is none.
export function timeElement(iso, never = "never") {
  if (!iso) return h("span", { class: "muted" }, never);
  return h("time", { datetime: iso, title: exactTime(iso), "data-relative": "" }, relative(new Date(iso)));
}

setInterval(() => {
  for (const element of document.querySelectorAll("time[data-relative]")) {
    element.textContent = relative(new Date(element.dateTime));
  }
}, 15000);

// A short confirmation in a role="status" element, read out once by screen readers.
export function say(element, text) {
  element.textContent = text;
  element.hidden = !text;
}
