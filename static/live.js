// Live updates on every signed-in page: the message of the day (ui.banner) and the lab name
// follow the settings channel. The socket is opened with a single-use ticket, so the session
// cookie never has to authenticate a WebSocket from script. Closed with 4001 (session revoked,
// user disabled), the page asks the API who it is: the 401 that follows sends the browser to the
// login page with the server's reason.
import { api, base } from "./api.js";

const RETRY_CAP_MS = 30000;
// Once the page is being left (the logout form, a link), the socket's end is no news: the
// logout itself closes it with 4001, and must not be taken for a revocation elsewhere.
let leaving = false;
addEventListener("beforeunload", () => {
  leaving = true;
});

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

function later(attempt) {
  setTimeout(() => connect(attempt + 1), Math.min(RETRY_CAP_MS, 1000 * 2 ** attempt));
}

async function signedOut() {
  try {
    await api("GET", "api/v1/me");
  } catch {
    return; // the 401 has already sent the browser to the login page
  }
  location.reload();
}

async function connect(attempt) {
  let ticket;
  try {
    ticket = (await api("POST", "api/v1/auth/ws-ticket")).ticket;
  } catch (failure) {
    if (failure.status !== 401) later(attempt);
    return;
  }
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + base + "api/v1/ws?ticket=" + encodeURIComponent(ticket));
  socket.onopen = () => {
    attempt = 0;
    socket.send(JSON.stringify({ action: "subscribe", channels: ["settings"] }));
  };
  socket.onmessage = (message) => {
    const data = JSON.parse(message.data);
    if (data.event_type !== "setting.updated") return;
    const { namespace, key, value } = data.payload;
    if (namespace === "ui" && key === "banner") show("banner", value);
    if (namespace === "ui" && key === "lab_name") showLabName(value);
  };
  socket.onclose = (event) => {
    if (leaving) return;
    if (event.code === 4001) signedOut();
    else if (event.code !== 1000) later(attempt);
  };
}

connect(0);
