// The sessions page: my sessions (or, for an admin who asks, everyone's, by user), each with its
// device as the server parsed it from the user agent; revoke one, or every one but this.
// A revoked browser is signed out by the server within a second (its socket is closed with
// 4001), so nothing here has to reach the other device.
import { api } from "./api.js";
import { cell } from "./elements.js";
import { clearFailure, showFailure } from "./messages.js";
import { keepTimesCurrent, timeElement } from "./when.js";

const table = document.getElementById("sessions");
const body = table.tBodies[0];
const userColumn = table.querySelector(".user-column");
const summary = document.getElementById("sessions-summary");
const error = document.getElementById("error");
const done = document.getElementById("done");
const revokeOthers = document.getElementById("revoke-others");
const scopeAll = document.getElementById("scope-all"); // admins only
const userFilter = document.getElementById("user-filter");

function say(text) {
  clearFailure(error);
  done.textContent = text;
  done.hidden = false;
}

function fail(failure) {
  done.hidden = true;
  showFailure(error, failure);
}

// A browser by its major version (its minor ones change weekly), a system by its whole one.
function versioned(name, version, major = false) {
  if (!name) return null;
  const shown = version && major ? version.split(".")[0] : version;
  return shown ? `${name} ${shown}` : name;
}

// "Firefox 133" / "Ubuntu · mobile": what the parser knew, never a guess.
function deviceLines({ device, user_agent: agent }) {
  const parts = device || {};
  const browser = versioned(parts.browser, parts.browser_version, true);
  const system = [versioned(parts.os, parts.os_version)];
  if (parts.device && parts.device !== "Other") system.push(parts.device);
  if (parts.mobile) system.push("mobile");
  const detail = system.filter(Boolean).join(" · ");
  if (!browser && !detail) return [agent ? "Unknown browser" : "No user agent", ""];
  return [browser || "Unknown browser", detail];
}

function row(session, showUser) {
  const [browser, detail] = deviceLines(session);
  const tr = document.createElement("tr");
  tr.dataset.sessionId = session.session_id;
  tr.dataset.username = session.username;
  if (session.is_current) tr.classList.add("current");
  const cells = [];
  if (showUser) cells.push(cell("User", session.username));
  const device = document.createElement("strong");
  device.textContent = browser;
  const shown = [device];
  if (detail) {
    const small = document.createElement("small");
    small.className = "muted device-detail";
    small.textContent = detail;
    shown.push(small);
  }
  const deviceCell = cell("Device", ...shown);
  deviceCell.title = session.user_agent;
  cells.push(deviceCell);
  cells.push(cell("IP address", session.ip_address || "unknown"));
  cells.push(cell("Signed in", timeElement(session.created_at, "date")));
  cells.push(cell("Last active", timeElement(session.last_active_at, "ago")));
  const actions = cell("");
  actions.className = "actions";
  if (session.is_current) {
    const mark = document.createElement("span");
    mark.className = "badge this-device";
    mark.textContent = "This device";
    actions.append(mark);
  } else {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary outline revoke";
    button.textContent = "Revoke";
    const whose = showUser ? `${session.username}'s` : "the";
    const from = session.ip_address || "an unknown address";
    button.setAttribute("aria-label", `Revoke ${whose} session on ${browser} from ${from}`);
    button.addEventListener("click", () => revoke(session, button));
    actions.append(button);
  }
  cells.push(actions);
  tr.append(...cells);
  return tr;
}

function query() {
  if (!scopeAll || !scopeAll.checked) return "";
  return userFilter.value ? `?scope=all&user_id=${encodeURIComponent(userFilter.value)}` : "?scope=all";
}

async function load() {
  table.setAttribute("aria-busy", "true");
  const everyone = Boolean(scopeAll && scopeAll.checked);
  try {
    const sessions = await api("GET", "api/v1/auth/sessions" + query());
    userColumn.hidden = !everyone;
    body.replaceChildren(...sessions.map((session) => row(session, everyone)));
    const others = sessions.filter((session) => !session.is_current).length;
    const besides = everyone ? "" : `, ${others} besides this one`;
    summary.textContent = sessions.length === 1 ? "1 session." : `${sessions.length} sessions${besides}.`;
    revokeOthers.disabled = !everyone && others === 0;
    clearFailure(error);
  } catch (failure) {
    fail(failure);
  } finally {
    table.removeAttribute("aria-busy");
  }
}

async function revoke(session, button) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await api("DELETE", "api/v1/auth/sessions/" + encodeURIComponent(session.session_id));
    const where = `${deviceLines(session)[0]}, ${session.ip_address || "unknown address"}`;
    say(`Session revoked: that browser (${where}) is signed out.`);
    await load();
    revokeOthers.focus();
  } catch (failure) {
    fail(failure);
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

revokeOthers.addEventListener("click", async () => {
  revokeOthers.disabled = true;
  revokeOthers.setAttribute("aria-busy", "true");
  try {
    const { revoked } = await api("POST", "api/v1/auth/sessions/revoke-others");
    say(revoked === 1 ? "Signed out 1 other session." : `Signed out ${revoked} other sessions.`);
  } catch (failure) {
    fail(failure);
  } finally {
    revokeOthers.removeAttribute("aria-busy");
    await load();
  }
});

async function loadUsers() {
  try {
    const users = await api("GET", "api/v1/users");
    const options = users.map((user) => {
      const option = document.createElement("option");
      option.value = user.id;
      option.textContent = user.display_name ? `${user.display_name} (${user.username})` : user.username;
      return option;
    });
    userFilter.append(...options);
  } catch (failure) {
    fail(failure);
  }
}

if (scopeAll) {
  scopeAll.addEventListener("change", () => {
    userFilter.disabled = !scopeAll.checked;
    if (scopeAll.checked && userFilter.options.length === 1) loadUsers();
    load();
  });
  userFilter.addEventListener("change", load);
}

load();
keepTimesCurrent(table);
