// Live updates for the settings and users pages: one WebSocket per page, opened with a fresh
// single-use ticket (POST /api/v1/auth/ws-ticket) each time, so a ticket never has to outlive
// its few seconds. A lost connection is retried with backoff (1 s, 2 s, 4 s ... 30 s), and the
// page says so. On reconnecting it subscribes with `since` (the last event id seen on each
// channel); when the server cannot replay everything missed (`recovered` is not true, or
// nothing was seen yet) the page is told to re-read its state over HTTP instead.
// A close with 4001 (session revoked, user disabled) ends it for good. Sending the browser to the
// login page is the layout's live.js's job, on every signed-in page: a second redirect from here
// would only abort the first one mid-way.
import { api, base } from "./api.js";

const RETRY_CAP_MS = 30000;
// `presence` is state, not history: the server replays none of it, so it is always re-read.
const NOT_REPLAYED = new Set(["presence"]);

// Once the page is being left (the logout form, a link), the socket's end is no news.
let leaving = false;
addEventListener("beforeunload", () => {
  leaving = true;
});

// `onEvent(event)` for every event; `onResync()` when the page must re-read its state;
// `status` a role="status" element that says whether updates are live.
export function follow(channels, { onEvent, onResync, status }) {
  const lastIds = {};
  let attempt = 0;
  let countdown = null;

  const show = (text, state) => {
    if (!status) return;
    status.textContent = text;
    status.dataset.state = state;
  };

  const retry = () => {
    const delay = Math.min(RETRY_CAP_MS, 1000 * 2 ** attempt);
    attempt += 1;
    const due = Date.now() + delay;
    clearInterval(countdown);
    const tick = () => {
      const left = Math.ceil((due - Date.now()) / 1000);
      if (left > 0) show(`Live updates paused; reconnecting in ${left} s.`, "reconnecting");
      else clearInterval(countdown);
    };
    tick();
    countdown = setInterval(tick, 1000);
    setTimeout(connect, delay);
  };

  async function connect() {
    let ticket;
    try {
      ticket = (await api("POST", "api/v1/auth/ws-ticket")).ticket;
    } catch (failure) {
      if (failure.status !== 401) retry();
      return;
    }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(`${scheme}${location.host}${base}api/v1/ws?ticket=${encodeURIComponent(ticket)}`);
    let resumed = false;
    socket.onopen = () => {
      const since = {};
      for (const channel of channels) {
        if (channel in lastIds && !NOT_REPLAYED.has(channel)) since[channel] = lastIds[channel];
      }
      resumed = channels.every((channel) => channel in since);
      const message = { action: "subscribe", channels };
      if (Object.keys(since).length) message.since = since;
      socket.send(JSON.stringify(message));
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.action === "subscribed") {
        attempt = 0;
        clearInterval(countdown);
        show("Live updates are on.", "live");
        if (!(resumed && data.recovered === true) && onResync) onResync();
        return;
      }
      if (data.event_type && channels.includes(data.channel)) {
        lastIds[data.channel] = data.id;
        onEvent(data);
      }
    };
    socket.onclose = (event) => {
      if (leaving) return;
      if (event.code === 4001) show("Signed out.", "closed");
      else retry();
    };
  }

  connect();
}
