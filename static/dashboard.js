// The dashboard: who is online, the live feed of the channels this user may see, and the state of
// the connection. The socket is the page's one live connection (live.js), which reconnects and
// resumes by itself; this script shows what it carries.
//
// Presence is state, not history: the list is read from GET /api/v1/presence after every
// (re)subscription and after a user's first tab opens or last tab closes (presence.online and
// .offline, which the feed shows); presence.updated carries a new number of tabs in between,
// and only changes the list.
import { api } from "./api.js";
import { watch } from "./live.js";
import { clearFailure, showFailure } from "./messages.js";
import { timeElement } from "./when.js";

const FEED_LIMIT = 100;
const SUMMARY_LIMIT = 160;
const AVATAR_COLOURS = 6;

const root = document.getElementById("dashboard");
const presenceList = document.getElementById("presence");
const presenceError = document.getElementById("presence-error");
const onlineCount = document.getElementById("online-count");
const feed = document.getElementById("feed");
const feedEmpty = document.getElementById("feed-empty");
const connection = document.getElementById("connection");
const connectionState = document.getElementById("connection-state");
const connectionWait = document.getElementById("connection-wait");
const myId = root.dataset.userId;

// -- who is online ---------------------------------------------------------------------

let people = new Map();
let reads = 0;

function nameOf(person) {
  return person.display_name || person.username;
}

// "Ada Lovelace" -> "AL", "ada.lovelace" -> "AL", "ada" -> "AD".
function initials(person) {
  const words = nameOf(person).split(/[\s._-]+/u).filter(Boolean);
  const chars = words.length > 1 ? [[...words[0]][0], [...words.at(-1)][0]] : [...(words[0] || "?")].slice(0, 2);
  return chars.join("").toUpperCase();
}

function colourOf(person) {
  let hash = 0;
  for (const char of person.username) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % AVATAR_COLOURS;
}

function renderPeople() {
  const sorted = [...people.values()].sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
  const items = sorted.map((person) => {
    const item = document.createElement("li");
    item.dataset.userId = person.user_id;
    item.dataset.username = person.username;
    const avatar = document.createElement("span");
    avatar.className = "avatar avatar-" + colourOf(person);
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initials(person);
    const name = document.createElement("span");
    name.className = "person-name";
    name.textContent = nameOf(person) + (person.user_id === myId ? " (you)" : "");
    const detail = document.createElement("small");
    detail.className = "muted person-detail";
    const tabs = person.connections;
    const parts = [];
    if (person.display_name && person.display_name !== person.username) parts.push(person.username);
    if (tabs) parts.push(tabs === 1 ? "1 tab" : `${tabs} tabs`);
    detail.textContent = parts.join(" · ");
    item.append(avatar, name, detail);
    return item;
  });
  presenceList.replaceChildren(...items);
  presenceList.removeAttribute("aria-busy");
  onlineCount.textContent = `(${items.length})`;
}

// Every read is newer than the events before it; an answer overtaken by a later read is dropped.
async function readPresence() {
  const asked = ++reads;
  try {
    const online = await api("GET", "api/v1/presence");
    if (asked !== reads) return;
    people = new Map(online.map((person) => [person.user_id, person]));
    renderPeople();
    clearFailure(presenceError);
  } catch (failure) {
    if (asked === reads) showFailure(presenceError, failure);
  }
}

function onPresence(event) {
  const person = event.payload;
  if (event.event_type === "presence.online") people.set(person.user_id, { ...person, connections: 0 });
  if (event.event_type === "presence.offline") people.delete(person.user_id);
  if (event.event_type === "presence.updated") {
    const known = people.get(person.user_id);
    if (known) known.connections = person.connections;
    else people.set(person.user_id, person);
    renderPeople();
    return;
  }
  renderPeople();
  readPresence();
}

// -- the feed --------------------------------------------------------------------------

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > SUMMARY_LIMIT ? text.slice(0, SUMMARY_LIMIT - 1) + "…" : text;
}

function describe(event) {
  const payload = event.payload || {};
  switch (event.event_type) {
    case "presence.online":
      return `${nameOf(payload)} came online`;
    case "presence.offline":
      return `${nameOf(payload)} went offline`;
    case "setting.updated": {
      const name = `${payload.namespace}.${payload.key}`;
      const who = payload.updated_by || "Someone";
      return payload.value === "" ? `${who} cleared ${name}` : `${who} set ${name} to ${short(payload.value)}`;
    }
    case "budget.updated":
      return `The monthly budget limit is now ${payload.monthly_limit}`;
    default: {
      const empty = payload && typeof payload === "object" && Object.keys(payload).length === 0;
      return empty ? event.event_type : `${event.event_type}: ${short(payload)}`;
    }
  }
}

function addToFeed(item) {
  feed.prepend(item);
  feedEmpty.hidden = true;
  while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
}

function showEvent(event) {
  const item = document.createElement("li");
  item.dataset.eventId = event.id;
  item.dataset.channel = event.channel;
  item.dataset.eventType = event.event_type;
  const channel = document.createElement("span");
  channel.className = "channel";
  channel.textContent = event.channel.startsWith("user:") ? "for you" : event.channel;
  const text = document.createElement("span");
  text.className = "what";
  text.textContent = describe(event);
  item.append(timeElement(event.timestamp, "clock"), channel, text);
  addToFeed(item);
}

function showNotice(text) {
  const item = document.createElement("li");
  item.className = "feed-notice";
  item.textContent = text;
  addToFeed(item);
}

// -- the connection --------------------------------------------------------------------

const STATES = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting",
  offline: "Offline: the browser has no network; reconnecting when it is back",
};
let countdown = null;

function showState({ name, retryAt }) {
  clearInterval(countdown);
  connection.dataset.state = name;
  connectionState.textContent = STATES[name];
  connectionWait.textContent = "";
  if (name !== "reconnecting") return;
  const tick = () => {
    const left = Math.ceil((retryAt - Date.now()) / 1000);
    connectionWait.textContent = retryAt && left > 0 ? ` in ${left} s` : "…";
  };
  tick();
  countdown = setInterval(tick, 250);
}

function onSubscribed(reply) {
  if (reply.recovered === false) {
    showNotice(
      "Some events from while the connection was down are no longer kept by the lab, so they are " +
        "missing here. Who is online was read again."
    );
  }
  readPresence();
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") readPresence();
});

watch({
  channels: ["system", "settings", "presence", "lab", "budget", "user:" + myId],
  position: Number.parseInt(root.dataset.eventPosition, 10),
  onEvent(event) {
    if (event.channel === "presence") onPresence(event);
    if (event.event_type !== "presence.updated") showEvent(event);
  },
  onState: showState,
  onSubscribed,
});
