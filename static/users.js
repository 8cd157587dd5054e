// The users page (admins): the list with a search, who is online now (GET /api/v1/presence,
// kept current from the `presence` channel), and every change the users API offers: create,
// change role, disable and enable, reset the password, delete after a confirmation.
// An admin's own row offers no way to disable, demote or delete that account (the API refuses
// all three with 409).
import { api } from "./api.js";
import { agoOrNever, h, liveState, say } from "./elements.js";
import { watch } from "./live.js";
import { clearFailure, showFailure } from "./messages.js";
import { keepTimesCurrent } from "./when.js";

const page = document.getElementById("users");
const myId = page.dataset.me;
const ROLES = [...document.getElementById("new-role").options].map((option) => option.value);
const body = document.getElementById("users-body");
const search = document.getElementById("user-search");
const count = document.getElementById("user-count");
const status = document.getElementById("users-status");
const failure = document.getElementById("users-error");
const users = new Map(); // id -> {user, row}
let online = new Map(); // user id -> connections

function report(text) {
  clearFailure(failure);
  say(status, text);
}

function fail(error) {
  say(status, "");
  showFailure(failure, error);
}

function hidden(text) {
  return h("span", { class: "visually-hidden" }, text);
}

function statusCell(user) {
  const connections = online.get(user.id) || 0;
  const state = user.disabled ? h("span", { class: "badge off" }, "disabled") : h("span", { class: "badge" }, "active");
  const presence = connections
    ? h("span", { class: "badge on" }, `online now · ${connections} ${connections === 1 ? "tab" : "tabs"}`)
    : h("span", { class: "muted" }, "offline");
  return [h("div", {}, state, " ", presence)];
}

function roleCell(user) {
  if (user.id === myId) return h("div", {}, user.role, " ", h("span", { class: "muted" }, "(you)"));
  const select = h(
    "select",
    { "aria-label": `Role of ${user.username}`, class: "role" },
    ROLES.map((role) => h("option", { value: role, selected: role === user.role }, role)),
  );
  const which = hidden(` the role of ${user.username}`);
  const apply = h("button", { type: "button", class: "secondary outline change-role" }, "Change", which);
  apply.addEventListener("click", () => {
    const role = select.value;
    act(apply, { role }, `${user.username} is now ${role === "admin" ? "an" : "a"} ${role}.`, user);
  });
  return h("div", { class: "row-actions" }, select, apply);
}

function actions(user) {
  const buttons = [];
  if (user.id !== myId) {
    const verb = user.disabled ? "Enable" : "Disable";
    const toggle = h("button", { type: "button", class: "secondary toggle" }, verb, hidden(` ${user.username}`));
    const changes = { disabled: !user.disabled };
    const done = user.disabled
      ? `${user.username} is enabled again.`
      : `${user.username} is disabled; their sessions have ended.`;
    toggle.addEventListener("click", () => act(toggle, changes, done, user));
    buttons.push(toggle);
  }
  const of = hidden(` of ${user.username}`);
  const reset = h("button", { type: "button", class: "secondary outline reset" }, "Reset password", of);
  reset.addEventListener("click", () => passwordDialog.open(user));
  buttons.push(reset);
  if (user.id !== myId) {
    const which = hidden(` ${user.username}`);
    const remove = h("button", { type: "button", class: "secondary outline delete" }, "Delete", which);
    remove.addEventListener("click", () => deleteDialog.open(user));
    buttons.push(remove);
  }
  return h("div", { class: "row-actions" }, buttons);
}

function render(user) {
  const known = users.get(user.id);
  const who = [h("strong", { class: "username" }, user.username)];
  if (user.display_name) who.push(h("br"), h("span", { class: "muted display-name" }, user.display_name));
  const row = h(
    "tr",
    { "data-user": user.username, "data-id": user.id },
    h("th", { scope: "row" }, who),
    h("td", { "data-label": "Role" }, roleCell(user)),
    h("td", { "data-label": "Status", class: "status" }, statusCell(user)),
    h("td", { "data-label": "Last login" }, h("div", {}, agoOrNever(user.last_login_at))),
    h("td", { "data-label": "Actions" }, actions(user)),
  );
  // A keyboard user keeps their place: the same control of the new row takes the focus.
  const focused = known && known.row.contains(document.activeElement) && document.activeElement.classList;
  const control = focused && [...focused].find((token) => !["secondary", "outline"].includes(token));
  if (known) known.row.replaceWith(row);
  else body.append(row);
  users.set(user.id, { user, row });
  filter();
  if (control) focusIn(user.id, control);
}

function focusIn(id, name) {
  const control = users.get(id)?.row.querySelector(`.${name}`) || search;
  control.focus();
}

function filter() {
  const wanted = search.value.trim().toLowerCase();
  let shown = 0;
  for (const { user, row } of users.values()) {
    const names = `${user.username}\n${user.display_name || ""}`.toLowerCase();
    const match = !wanted || names.includes(wanted);
    row.hidden = !match;
    if (match) shown += 1;
  }
  const total = `${users.size} ${users.size === 1 ? "user" : "users"}`;
  count.textContent = wanted ? `${shown} of ${total} match.` : `${total}.`;
}
search.addEventListener("input", filter);

// A PATCH from one of a row's buttons; the row is drawn again from the user the API returns.
async function act(button, changes, done, user) {
  button.setAttribute("aria-busy", "true");
  try {
    render(await api("PATCH", `api/v1/users/${user.id}`, { body: changes }));
    report(done);
  } catch (error) {
    fail(error);
  } finally {
    button.removeAttribute("aria-busy");
  }
}

async function loadUsers() {
  try {
    const list = await api("GET", "api/v1/users");
    for (const user of list) render(user);
    for (const id of [...users.keys()]) {
      if (!list.some((user) => user.id === id)) forget(id);
    }
  } catch (error) {
    fail(error);
  } finally {
    body.removeAttribute("aria-busy");
  }
}

async function loadPresence() {
  try {
    online = new Map((await api("GET", "api/v1/presence")).map((entry) => [entry.user_id, entry.connections]));
  } catch (error) {
    fail(error);
    return;
  }
  for (const { user, row } of users.values()) row.querySelector(".status").replaceChildren(...statusCell(user));
}

function forget(id) {
  const known = users.get(id);
  if (!known) return;
  known.row.remove();
  users.delete(id);
  filter();
}

const createForm = document.getElementById("create-form");
const createError = document.getElementById("create-error");
createForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields = createForm.elements;
  const button = document.getElementById("create");
  clearFailure(createError);
  button.setAttribute("aria-busy", "true");
  try {
    const user = await api("POST", "api/v1/users", {
      body: {
        username: fields.username.value.trim(),
        display_name: fields.display_name.value.trim(),
        password: fields.password.value,
        role: fields.role.value,
      },
    });
    render(user);
    report(`${user.username} was created as ${user.role === "admin" ? "an" : "a"} ${user.role}.`);
    createForm.reset();
    fields.username.focus();
  } catch (error) {
    showFailure(createError, error);
  } finally {
    button.removeAttribute("aria-busy");
  }
});

// A dialog that acts on one user; its error paragraph shows what the API refused.
function dialog(id, errorId) {
  const element = document.getElementById(id);
  const error = document.getElementById(errorId);
  return {
    element,
    error,
    user: null,
    show(user) {
      this.user = user;
      clearFailure(error);
      element.showModal();
    },
    close() {
      element.close();
    },
  };
}

const passwordDialog = dialog("password-dialog", "password-error");
const passwordForm = document.getElementById("password-form");
passwordDialog.open = function (user) {
  passwordForm.reset();
  document.getElementById("password-user").textContent = user.username;
  this.show(user);
  document.getElementById("reset-password").focus();
};
document.getElementById("password-cancel").addEventListener("click", () => passwordDialog.close());
passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = document.getElementById("reset-password").value;
  if (password !== document.getElementById("reset-repeat").value) {
    say(passwordDialog.error, "The two passwords differ: type the same password twice.");
    return;
  }
  const button = document.getElementById("password-save");
  button.setAttribute("aria-busy", "true");
  try {
    const user = passwordDialog.user;
    render(await api("PATCH", `api/v1/users/${user.id}`, { body: { password } }));
    passwordDialog.close();
    focusIn(user.id, "reset");
    const ended = user.id === myId ? "your other sessions have ended" : "their sessions have ended";
    report(`The password of ${user.username} was reset; ${ended}.`);
  } catch (error) {
    showFailure(passwordDialog.error, error);
  } finally {
    button.removeAttribute("aria-busy");
  }
});

const deleteDialog = dialog("delete-dialog", "delete-error");
deleteDialog.open = function (user) {
  document.getElementById("delete-user").textContent = user.username;
  this.show(user);
  document.getElementById("delete-cancel").focus();
};
document.getElementById("delete-cancel").addEventListener("click", () => deleteDialog.close());
document.getElementById("delete-confirm").addEventListener("click", async () => {
  const button = document.getElementById("delete-confirm");
  const user = deleteDialog.user;
  button.setAttribute("aria-busy", "true");
  try {
    await api("DELETE", `api/v1/users/${user.id}`);
    forget(user.id);
    deleteDialog.close();
    report(`${user.username} was deleted.`);
    search.focus();
  } catch (error) {
    showFailure(deleteDialog.error, error);
  } finally {
    button.removeAttribute("aria-busy");
  }
});

loadUsers();
keepTimesCurrent();
// Who is online is state, not history: it is read again on every presence event and after every
// (re)subscription, which is when events may have been missed.
watch({
  channels: ["presence"],
  onEvent: (event) => event.channel === "presence" && loadPresence(),
  onState: liveState(document.getElementById("live-status")),
  onSubscribed: loadPresence,
});
