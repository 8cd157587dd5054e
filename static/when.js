// Times as the pages show them: "3 minutes ago" for what changes as one looks, and the exact
// local date and time in the element's tooltip and `datetime`. In the page's language (the
// layout's lang), so that the sentences around them read the same.
const lang = document.documentElement.lang || "en";
const relative = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
const exact = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
const clock = new Intl.DateTimeFormat(lang, { timeStyle: "medium" });
const STEPS = [
  ["year", 365 * 24 * 3600],
  ["month", 30 * 24 * 3600],
  ["week", 7 * 24 * 3600],
  ["day", 24 * 3600],
  ["hour", 3600],
  ["minute", 60],
];

export function ago(iso, now = Date.now()) {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  if (Math.abs(seconds) < 45) return seconds > 0 ? "in a moment" : "just now";
  for (const [unit, size] of STEPS) {
    if (Math.abs(seconds) >= size * 0.9 || unit === "minute") {
      return relative.format(Math.round(seconds / size), unit);
    }
  }
  return "just now";
}

// A <time> element: `style` "ago" (relative, kept current by refreshTimes), "date" or "clock".
export function timeElement(iso, style = "date") {
  const element = document.createElement("time");
  element.dateTime = iso;
  element.title = exact.format(new Date(iso));
  element.dataset.style = style;
  const texts = { ago: () => ago(iso), clock: () => clock.format(new Date(iso)), date: () => element.title };
  element.textContent = texts[style]();
  return element;
}

// The relative times of the page, brought up to date (from the clock alone: no request).
export function refreshTimes(root = document) {
  const now = Date.now();
  for (const element of root.querySelectorAll('time[data-style="ago"]')) {
    element.textContent = ago(element.dateTime, now);
  }
}

export function keepTimesCurrent(root = document) {
  setInterval(() => refreshTimes(root), 30000);
}
