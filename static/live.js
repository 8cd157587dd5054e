// The one live connection of a signed-in page. Every page follows the settings channel for the
// message of the day (ui.banner) and the lab name; a page that wants more (the dashboard) asks
// with `watch()`, and the same socket carries it.
//
// The socket is opened with a single-use ticket, so the session cookie never has to
// authenticate a WebSocket from script. Lost, it is opened again with a fresh ticket after a
// backoff with jitter (so that a restarted server is not met by every tab at once), and the
// subscription resumes from the last event seen (`since`, docs/api.md "Resuming after a
// reconnect"): the server replays what was missed, in order, and no event is shown twice.
// Closed with 4001 (session revoked, user disabled), the page asks the API who it is: the 401
// that follows sends the browser to the login page with the server's reason.
import { api, base } from "./api.js";

const RETRY_FIRST_MS = 1000;
const RETRY_CAP_MS = 30000;
const CLOSE_REVOKED = 4001;

const wanted = new Set(["settings"]);
const watchers = [];
let socket = null;
let fetchingTicket = false;
let failures = 0;
let retryTimer = null;
// The lab's event log position of the last event seen (ids are positions in one lab-wide log,
// delivered in order on a socket), or null until one is known. One log message may become
// events on two channels (a budget change: `settings` and `budget`) with the same id, so the
// channels already seen at that position are kept too; null: all of them (the page's own).
let position = null;
let seenAtPosition = null;
let ownChannel = null;
let awaitingReply = false;
let resuming = false;
let everSubscribed = false;
let state = { name: "connecting", retryAt: null };

// Once the page is being left (the logout form, a link), the socket's end is no news: the
// logout itself closes it with 4001, and must not be taken for a revocation elsewhere.
let leaving = false;
addEventListener("beforeunload", () => {
  leaving = true;
});

function notify(method, ...values) {
  for (const watcher of watchers) {
    if (watcher[method]) watcher[method](...values);
  }
}

function setState(name, retryAt = null) {
  state = { name, retryAt };
  notify("onState", state);
}

// `channels`: what the page shows besides the settings; `position`: the log position the page
// was rendered at (its first subscription resumes from there); handlers `onEvent(event)`,
// `onState({name, retryAt})` (connecting, connected, reconnecting, offline) and
// `onSubscribed(reply)`: the server's reply, whose `recovered` is false when a resume found
// events missing (pruned from the log), and absent when there was nothing to resume from.
export function watch({ channels = [], position: from = null, ...handlers }) {
  watchers.push(handlers);
  for (const channel of channels) {
    wanted.add(channel);
    if (channel.startsWith("user:")) ownChannel = channel;
  }
  if (Number.isInteger(from) && position == null) position = from;
  if (handlers.onState) handlers.onState(state);
  if (socket && socket.readyState === WebSocket.OPEN && !awaitingReply) subscribe();
}

function show(id, text) {
  const element = document.getElementById(id);
  if (!element) return;
  element.textContent = text || "";
  element.hidden = !text;
}

function showLabName(name) {
  for (const element of document.querySelectorAll("[data-lab-name]")) element.textContent = name;
  document.title = document.title.replace(/ · .*$/, " · " + name);
}

function applySetting({ namespace, key, value }) {
  if (namespace === "ui" && key === "banner") show("banner", value);
  if (namespace === "ui" && key === "lab_name") showLabName(value);
}

// After a gap the server could not fill, what the layout shows is read again.
async function rereadLayout() {
  for (const key of ["banner", "lab_name"]) {
    try {
      applySetting(await api("GET", "api/v1/settings/ui/" + key));
    } catch {
      // shown as it was; the next change comes live
    }
  }
}

// Every `since` stays at the position itself (the server reads its log from the lowest one),
// one below it for a channel whose event at the position may still be to come.
function resumeFrom(channel) {
  const seen = seenAtPosition === null || seenAtPosition.has(channel);
  return seen ? position : Math.max(0, position - 1);
}

function subscribe() {
  const channels = [...wanted];
  if (ownChannel && !wanted.has(ownChannel)) channels.push(ownChannel);
  const message = { action: "subscribe", channels };
  resuming = position != null;
  if (resuming) message.since = Object.fromEntries(channels.map((channel) => [channel, resumeFrom(channel)]));
  awaitingReply = true;
  socket.send(JSON.stringify(message));
}

function onSubscribed(reply) {
  awaitingReply = false;
  const again = everSubscribed;
  everSubscribed = true;
  failures = 0;
  for (const channel of reply.denied || []) wanted.delete(channel);
  ownChannel = ownChannel || (reply.channels || []).find((channel) => channel.startsWith("user:")) || null;
  setState("connected");
  if (again && !(resuming && reply.recovered === true)) rereadLayout();
  notify("onSubscribed", reply);
}

function onEvent(event) {
  // While a resume is answered, the own channel's live events are replayed after the reply
  // anyway (it is in `since`); taking them now would skip the older ones replayed after them.
  if (awaitingReply && resuming) return;
  if (position != null) {
    if (event.id < position) return; // already shown
    if (event.id === position && (seenAtPosition === null || seenAtPosition.has(event.channel))) return;
  }
  if (event.id !== position) {
    position = event.id;
    seenAtPosition = new Set();
  }
  seenAtPosition.add(event.channel);
  if (event.event_type === "setting.updated") applySetting(event.payload);
  notify("onEvent", event);
}

function retryLater() {
  clearTimeout(retryTimer);
  if (!navigator.onLine) {
    setState("offline");
    return; // the "online" event reconnects
  }
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_FIRST_MS * 2 ** failures);
  const delay = ceiling / 2 + Math.random() * (ceiling / 2);
  failures += 1;
  setState("reconnecting", Date.now() + delay);
  retryTimer = setTimeout(connect, delay);
}

async function signedOut() {
  try {
    await api("GET", "api/v1/me");
  } catch {
    return; // the 401 has already sent the browser to the login page
  }
  location.reload();
}

async function connect() {
  clearTimeout(retryTimer);
  if (socket || fetchingTicket) return; // one connection, however many reasons to reconnect
  if (!navigator.onLine) return setState("offline");
  setState(everSubscribed ? "reconnecting" : "connecting");
  let ticket;
  fetchingTicket = true;
  try {
    ticket = (await api("POST", "api/v1/auth/ws-ticket")).ticket;
  } catch (failure) {
    if (failure.status !== 401) retryLater();
    return;
  } finally {
    fetchingTicket = false;
  }
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const opened = new WebSocket(scheme + location.host + base + "api/v1/ws?ticket=" + encodeURIComponent(ticket));
  socket = opened;
  opened.onopen = subscribe;
  opened.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.action === "subscribed") onSubscribed(data);
    else if (data.event_type) onEvent(data);
  };
  opened.onclose = (event) => {
    if (socket === opened) socket = null;
    awaitingReply = false;
    if (leaving) return;
    if (event.code === CLOSE_REVOKED) return signedOut();
    retryLater();
  };
}

addEventListener("offline", () => {
  // The socket may take minutes to notice; the page says so now and resumes once back.
  clearTimeout(retryTimer);
  setState("offline");
  if (socket) socket.close();
});
addEventListener("online", () => {
  failures = 0;
  connect();
});

connect();
