// The API tokens page: create one (its secret is in the reply of POST /api/v1/tokens only, so
// it is shown once, with a copy button, and dropped from the page when the user is done), list
// the live ones a page at a time, and revoke one after a confirmation.
import { api } from "./api.js";
import { cell } from "./elements.js";
import { clearFailure, showFailure } from "./messages.js";
import { keepTimesCurrent, timeElement } from "./when.js";

const PAGE = 50;

const form = document.getElementById("create-form");
const createButton = document.getElementById("create");
const createError = document.getElementById("create-error");
const fresh = document.getElementById("new-token");
const freshName = document.getElementById("new-token-name");
const freshValue = document.getElementById("new-token-value");
const copyButton = document.getElementById("copy");
const copyStatus = document.getElementById("copy-status");
const table = document.getElementById("tokens");
const body = table.tBodies[0];
const none = document.getElementById("no-tokens");
const more = document.getElementById("more");
const listError = document.getElementById("list-error");
const listDone = document.getElementById("list-done");
const dialog = document.getElementById("revoke-dialog");
const dialogName = document.getElementById("revoke-name");

let cursor = null;


function row(token) {
  const tr = document.createElement("tr");
  tr.dataset.tokenId = token.id;
  const prefix = document.createElement("code");
  prefix.textContent = token.prefix + "…";
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "secondary outline revoke";
  revoke.textContent = "Revoke";
  revoke.setAttribute("aria-label", `Revoke the token ${token.name}`);
  revoke.addEventListener("click", () => confirmRevoke(token, revoke));
  const actions = cell("", revoke);
  actions.className = "actions";
  tr.append(
    cell("Name", token.name),
    cell("Prefix", prefix),
    cell("Created", timeElement(token.created_at, "date")),
    cell("Last used", token.last_used_at ? timeElement(token.last_used_at, "ago") : "never"),
    cell("Expires", timeElement(token.expires_at, "date")),
    actions
  );
  return tr;
}

function showCount() {
  none.hidden = body.rows.length > 0;
  table.hidden = body.rows.length === 0;
}

// `again`: from the first page (after a change); otherwise the next page is added.
async function load(again = true) {
  table.setAttribute("aria-busy", "true");
  try {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (!again && cursor) query.set("cursor", cursor);
    const page = await api("GET", "api/v1/tokens?" + query);
    const rows = page.items.map(row);
    if (again) body.replaceChildren(...rows);
    else body.append(...rows);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    showCount();
    clearFailure(listError);
  } catch (failure) {
    showFailure(listError, failure);
  } finally {
    table.removeAttribute("aria-busy");
  }
}

function hideSecret() {
  freshValue.value = "";
  copyStatus.textContent = "";
  fresh.hidden = true;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFailure(createError);
  hideSecret();
  createButton.disabled = true;
  createButton.setAttribute("aria-busy", "true");
  try {
    const days = Number(form.elements.expires_days.value);
    const created = await api("POST", "api/v1/tokens", {
      body: { name: form.elements.name.value, expires_days: days },
    });
    freshName.textContent = created.name;
    freshValue.value = created.token;
    fresh.hidden = false;
    form.reset();
    freshValue.focus();
    freshValue.select();
    await load();
  } catch (failure) {
    showFailure(createError, failure);
  } finally {
    createButton.disabled = false;
    createButton.removeAttribute("aria-busy");
  }
});

copyButton.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(freshValue.value);
    copyStatus.textContent = "Copied to the clipboard.";
  } catch {
    freshValue.focus();
    freshValue.select();
    copyStatus.textContent = "The browser did not allow copying: the token is selected, press Ctrl+C (⌘C).";
  }
});

document.getElementById("new-token-done").addEventListener("click", () => {
  hideSecret();
  document.getElementById("token-name").focus();
});

function confirmRevoke(token, button) {
  dialogName.textContent = token.name;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "revoke") {
      button.focus();
      return;
    }
    try {
      await api("DELETE", "api/v1/tokens/" + encodeURIComponent(token.id));
      listDone.textContent = `Revoked “${token.name}”: it no longer works.`;
      listDone.hidden = false;
      await load();
      document.getElementById("list-heading").scrollIntoView({ block: "nearest" });
      (body.querySelector("button.revoke") || document.getElementById("token-name")).focus();
    } catch (failure) {
      showFailure(listError, failure);
      button.focus();
    }
  };
  dialog.showModal();
}

more.addEventListener("click", () => load(false));

load();
keepTimesCurrent(table);
