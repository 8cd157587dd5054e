// What the settings, users and audit pages build their tables from: `h("td", {...}, ...)` makes
// an element, and text is always set as text, never parsed as HTML, so nothing the API returns
// (a banner, a username, an audit detail) can become markup.
import { timeElement } from "./when.js";

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

// One value in a box of its own, labelled: on a phone it sits beside its label (style.css).
export function cell(label, ...content) {
  return h("td", { "data-label": label }, h("div", {}, ...content));
}

// "3 minutes ago" (when.js), or `never` when there is no time.
export function agoOrNever(iso, never = "never") {
  return iso ? timeElement(iso, "ago") : h("span", { class: "muted" }, never);
}

// A short message in a role="status" or role="alert" element; hidden when there is none.
export function say(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

const STATES = {
  connecting: "Connecting for live updates…",
  connected: "Live updates are on.",
  reconnecting: "Live updates paused; reconnecting",
  offline: "Offline: changes made elsewhere show once the network is back.",
};

// An `onState` handler for live.js's `watch()`: the page says whether what it shows is live.
export function liveState(element) {
  let countdown = null;
  return ({ name, retryAt }) => {
    clearInterval(countdown);
    element.dataset.state = name;
    element.textContent = STATES[name] || "";
    if (name !== "reconnecting") return;
    const tick = () => {
      const left = Math.ceil((retryAt - Date.now()) / 1000);
      element.textContent = `${STATES.reconnecting}${retryAt && left > 0 ? ` in ${left} s` : ""}…`;
    };
    tick();
    countdown = setInterval(tick, 1000);
  };
}
