// The audit log page (admins): filters for actor, action and a time range, and cursor paging.
// The API pages forward only (`next_cursor`), so the page keeps the cursor of every page it came
// through: "Previous" goes back to the cursor before, and the first page has none. The filters
// live in the address, so a filtered view can be reloaded or shared; times are typed in the
// browser's own time zone and sent in UTC.
import { api } from "./api.js";
import { cell, h } from "./elements.js";
import { clearFailure, showFailure } from "./messages.js";
import { ago } from "./when.js";

const form = document.getElementById("audit-filters");
const body = document.getElementById("audit-body");
const error = document.getElementById("audit-error");
const summary = document.getElementById("audit-summary");
const previous = document.getElementById("previous-page");
const next = document.getElementById("next-page");
const pageNumber = document.getElementById("page-number");
const FILTERS = ["actor", "action", "since", "until", "limit"];
// An audit trail is read to the second (when.js shows minutes): entries of one minute differ.
const lang = document.documentElement.lang || "en";
const exact = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "medium" });

let cursors = [null]; // cursors[i] opens page i + 1
let index = 0;
let nextCursor = null;
let loading = false;

const offset = -new Date().getTimezoneOffset();
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
const two = (number) => String(number).padStart(2, "0");
const utc = `UTC${offset >= 0 ? "+" : "-"}${two(Math.floor(Math.abs(offset) / 60))}:${two(Math.abs(offset) % 60)}`;
document.getElementById("time-zone").textContent = `Times are in your browser's time zone, ${zone} (${utc}).`;

function query(cursor) {
  const fields = form.elements;
  const params = new URLSearchParams({ limit: fields.limit.value });
  for (const name of ["actor", "action"]) {
    if (fields[name].value.trim()) params.set(name, fields[name].value.trim());
  }
  for (const name of ["since", "until"]) {
    if (fields[name].value) params.set(name, new Date(fields[name].value).toISOString());
  }
  if (cursor) params.set("cursor", cursor);
  return params;
}

function remember() {
  const fields = form.elements;
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    if (fields[name].value && !(name === "limit" && fields[name].value === "50")) params.set(name, fields[name].value);
  }
  const search = params.toString();
  history.replaceState(null, "", location.pathname + (search ? "?" + search : ""));
}

function restore() {
  const params = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    if (params.has(name)) form.elements[name].value = params.get(name);
  }
}

function detailText(detail) {
  if (!detail || !Object.keys(detail).length) return "";
  return Object.entries(detail)
    .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(", ");
}

function row(entry) {
  const outcome = entry.outcome === "success" ? "badge" : "badge off";
  const none = () => h("span", { class: "muted" }, "none");
  const at = entry.at;
  return h(
    "tr",
    { "data-action": entry.action, "data-target": entry.target },
    cell("When", h("time", { datetime: at, title: ago(at) }, exact.format(new Date(at)))),
    cell("Actor", entry.actor),
    cell("Action", h("code", {}, entry.action)),
    cell("Target", entry.target || none()),
    cell("IP address", entry.ip_address || none()),
    cell("Outcome", h("span", { class: outcome }, entry.outcome)),
    cell("Detail", detailText(entry.detail)),
  );
}

async function show(at) {
  if (loading) return;
  loading = true;
  body.setAttribute("aria-busy", "true");
  try {
    const reply = await api("GET", "api/v1/audit?" + query(cursors[at]));
    clearFailure(error);
    index = at;
    nextCursor = reply.next_cursor;
    cursors = cursors.slice(0, index + 1);
    body.replaceChildren(...reply.items.map(row));
    if (!reply.items.length) {
      const none = index ? "No more entries." : "No entries match these filters.";
      body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, none)));
    }
    const size = Number(form.elements.limit.value);
    const first = index * size + 1;
    const last = first + reply.items.length - 1;
    summary.textContent = reply.items.length ? `Entries ${first} to ${last}${nextCursor ? "" : ", the last"}.` : "";
    pageNumber.textContent = `Page ${index + 1}`;
  } catch (failure) {
    showFailure(error, failure);
  } finally {
    loading = false;
    body.removeAttribute("aria-busy");
    // A keyboard user who paged to either end keeps the focus on the pager.
    const focused = document.activeElement;
    previous.disabled = index === 0;
    next.disabled = !nextCursor;
    if (focused === next && next.disabled && !previous.disabled) previous.focus();
    if (focused === previous && previous.disabled && !next.disabled) next.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  remember();
  cursors = [null];
  show(0);
});
document.getElementById("clear-filters").addEventListener("click", () => {
  form.reset();
  remember();
  cursors = [null];
  show(0);
});
next.addEventListener("click", () => {
  if (!nextCursor) return;
  cursors[index + 1] = nextCursor;
  show(index + 1);
});
previous.addEventListener("click", () => {
  if (index > 0) show(index - 1);
});

restore();
show(0);
