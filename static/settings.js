// The settings page: every setting grouped by namespace, with an editor where the user's role is
// in the entry's `write_roles`, and the value alone where it is not (observers see no editor).
// A save sends If-Match with the ETag the edit started from, so a change made meanwhile is never
// overwritten unseen: the 412 carries the stored entry (`current`), shown beside mine in a dialog.
// Changes arrive live on the `settings` channel, over the page's one socket (live.js): an editor
// without unsaved changes takes the new value, one with unsaved changes keeps them and is warned
// at once.
import { api } from "./api.js";
import { agoOrNever, h, liveState, say } from "./elements.js";
import { watch } from "./live.js";
import { clearFailure, showFailure } from "./messages.js";
import { ago, keepTimesCurrent, timeElement } from "./when.js";

const page = document.getElementById("settings");
const role = page.dataset.role;
const groups = document.getElementById("settings-groups");
const pageError = document.getElementById("settings-error");
const rows = new Map();

const NAMESPACES = {
  ui: "Interface",
  auth: "Sign-in and sessions",
  websocket: "WebSocket",
  budget: "Budget",
  notifications: "Notifications",
  server: "Server (config.yaml)",
};
const SOURCES = {
  default: ["default", "The built-in default"],
  config: ["config", "Set in config.yaml"],
  environment: ["env", "Set by an environment variable, SYNTHORG_SETTING_<NAMESPACE>_<KEY>"],
  database: ["database", "Saved through this page or the API"],
};

function text(entry, value = entry.value) {
  if (entry.sensitive) return value === "" ? "(empty)" : "(hidden)";
  if (entry.type === "bool") return value ? "on" : "off";
  if (entry.type === "json") return JSON.stringify(value, null, 2);
  return value === "" || value === null || value === undefined ? "(empty)" : String(value);
}

function quoted(entry) {
  if (entry.sensitive) return "a new hidden value";
  const shown = text(entry);
  return `“${shown.length > 80 ? shown.slice(0, 79) + "…" : shown}”`;
}

function valueNode(entry) {
  const shown = text(entry);
  if (entry.type === "json") return h("pre", { class: "value" }, h("code", {}, shown));
  const muted = entry.sensitive || shown === "(empty)";
  return h("span", { class: muted ? "value muted" : "value" }, shown);
}

function control(entry, id) {
  const limits = entry.constraints || {};
  const common = { id: `input-${id}`, name: "value" };
  if (entry.type === "bool") return h("input", { ...common, type: "checkbox", role: "switch" });
  if (limits.choices) {
    return h("select", common, limits.choices.map((choice) => h("option", { value: choice }, choice)));
  }
  if (entry.type === "int" || entry.type === "float") {
    const whole = entry.type === "int";
    const step = whole ? "1" : "any";
    const inputmode = whole ? "numeric" : "decimal";
    return h("input", { ...common, type: "number", step, min: limits.minimum, max: limits.maximum, inputmode });
  }
  if (entry.type === "json") return h("textarea", { ...common, rows: 4, spellcheck: "false", class: "json" });
  if (entry.sensitive) {
    const placeholder = "Type a new value to replace it";
    return h("input", { ...common, type: "password", autocomplete: "off", placeholder });
  }
  if ((limits.max_length || 0) > 200) return h("textarea", { ...common, rows: 2, maxlength: limits.max_length });
  return h("input", { ...common, type: "text", maxlength: limits.max_length, spellcheck: "false" });
}

function hint(entry) {
  const limits = entry.constraints || {};
  const sentences = [];
  if (entry.type === "int" || entry.type === "float") {
    let number = entry.type === "int" ? "A whole number" : "A number";
    if ("minimum" in limits && "maximum" in limits) number += ` from ${limits.minimum} to ${limits.maximum}`;
    else if ("minimum" in limits) number += ` of at least ${limits.minimum}`;
    else if ("maximum" in limits) number += ` of at most ${limits.maximum}`;
    sentences.push(number);
  }
  if ("max_length" in limits) sentences.push(`Up to ${limits.max_length} characters`);
  if (entry.type === "json") sentences.push("JSON, checked as you type");
  if (entry.sensitive) sentences.push("The stored value is never shown");
  return sentences.map((sentence) => sentence + ".").join(" ");
}

export class SettingRow {
  constructor(entry) {
    this.name = `${entry.namespace}.${entry.key}`;
    this.path = `api/v1/settings/${encodeURIComponent(entry.namespace)}/${encodeURIComponent(entry.key)}`;
    this.id = this.name.replace(/[^A-Za-z0-9_-]/g, "-");
    this.entry = entry; // what the server stores now, as far as this page knows
    this.base = entry; // what the editor's value was loaded from: its ETag goes in If-Match
    this.saving = false;
    this.queued = [];
    this.writable = entry.write_roles.includes(role);
    this.build();
    this.render();
  }

  build() {
    const entry = this.entry;
    const id = this.id;
    const marks = [];
    if (entry.restart_required) {
      marks.push(h("span", { class: "badge restart", title: "Takes effect after a restart" }, "restart required"));
    }
    if (entry.sensitive) marks.push(h("span", { class: "badge" }, "sensitive"));
    if (!entry.write_roles.length) marks.push(h("span", { class: "badge" }, "read-only"));
    // Each cell's content in a box of its own: on a phone it sits beside its label (style.css).
    const box = h("div");
    this.valueCell = h("td", { "data-label": "Value" }, box);
    this.sourceCell = h("td", { "data-label": "Source" });
    this.changedCell = h("td", { "data-label": "Last change" });
    const heading = h(
      "th",
      { scope: "row" },
      h("code", { class: "setting-name", id: `name-${id}` }, this.name),
      h("small", { class: "about", id: `about-${id}` }, entry.description),
      marks,
    );
    const cells = [heading, this.valueCell, this.sourceCell, this.changedCell];
    this.element = h("tr", { "data-setting": this.name, id: `setting-${id}` }, cells);
    if (!this.writable) {
      this.valueText = box;
      return;
    }
    const help = hint(entry);
    this.control = control(entry, id);
    this.control.setAttribute("aria-labelledby", `name-${id}`);
    const described = [`about-${id}`, help && `hint-${id}`, `error-${id}`, `warning-${id}`];
    this.control.setAttribute("aria-describedby", described.filter(Boolean).join(" "));
    this.control.addEventListener("input", () => this.edited());
    this.control.addEventListener("change", () => this.edited());
    this.fieldError = h("p", { class: "field-error", id: `error-${id}`, role: "alert", hidden: true });
    this.warning = h("p", { class: "warning", id: `warning-${id}`, role: "alert", hidden: true });
    this.status = h("span", { class: "saved", role: "status" });
    const which = h("span", { class: "visually-hidden" }, " " + this.name);
    this.saveButton = h("button", { type: "submit", class: "save", id: `save-${id}` }, "Save", which);
    const form = h(
      "form",
      { class: "editor", novalidate: true, onsubmit: (event) => (event.preventDefault(), this.save()) },
      this.control,
      help ? h("small", { id: `hint-${id}` }, help) : null,
      this.fieldError,
      this.warning,
      h("div", { class: "actions" }, this.saveButton, this.status),
    );
    box.append(form);
    this.load(entry);
  }

  render() {
    const entry = this.entry;
    const [label, title] = SOURCES[entry.source] || [entry.source, ""];
    const badge = h("span", { class: `badge source source-${entry.source}`, title }, label);
    this.sourceCell.replaceChildren(h("div", {}, badge));
    const who = entry.updated_by ? [h("span", { class: "who" }, entry.updated_by), " · "] : [];
    this.changedCell.replaceChildren(h("div", {}, ...who, agoOrNever(entry.updated_at)));
    if (this.valueText) this.valueText.replaceChildren(valueNode(entry));
  }

  // The editor shows `entry`'s value (a sensitive one is never sent to the page: the field is empty).
  load(entry) {
    const field = this.control;
    if (entry.type === "bool") field.checked = entry.value === true;
    else if (entry.type === "json") field.value = JSON.stringify(entry.value, null, 2);
    else if (entry.sensitive) field.value = "";
    else field.value = entry.value === null || entry.value === undefined ? "" : String(entry.value);
    field.removeAttribute("aria-invalid");
  }

  // The editor's value as the API takes it, or the reason it cannot be sent at all.
  parse() {
    const field = this.control;
    const type = this.entry.type;
    if (type === "bool") return { value: field.checked };
    if (type === "int" || type === "float") {
      const typed = field.value.trim();
      if (field.validity.badInput || typed === "") return { error: "Enter a number." };
      const number = Number(typed);
      if (type === "int" && !Number.isInteger(number)) return { error: "Enter a whole number." };
      return { value: number };
    }
    if (type === "json") {
      try {
        return { value: JSON.parse(field.value) };
      } catch (error) {
        return { error: `This is not valid JSON: ${error.message}` };
      }
    }
    return { value: field.value };
  }

  // Unsaved changes: the editor no longer holds the value it was loaded from.
  editing() {
    if (!this.writable) return false;
    if (this.entry.sensitive) return this.control.value !== "";
    const parsed = this.parse();
    return "error" in parsed || JSON.stringify(parsed.value) !== JSON.stringify(this.base.value);
  }

  edited() {
    say(this.status, "");
    const parsed = this.parse();
    if (this.entry.type === "json" && "error" in parsed) this.showError(parsed.error);
    else this.clearError();
  }

  showError(message, failure) {
    if (failure) showFailure(this.fieldError, failure);
    else say(this.fieldError, message);
    this.control.setAttribute("aria-invalid", "true");
  }

  clearError() {
    clearFailure(this.fieldError);
    this.control.removeAttribute("aria-invalid");
  }

  // A newer entry from the server: a live event, a re-read, or the `current` of a 412.
  update(entry, live) {
    if (this.saving) {
      this.queued.push([entry, live]);
      return;
    }
    if (entry.version < this.entry.version || entry.etag === this.entry.etag) return;
    this.entry = { ...this.entry, ...entry };
    this.render();
    if (!this.writable) return;
    if (this.editing()) {
      this.warn();
      return;
    }
    this.base = this.entry;
    this.load(this.base);
    this.hideWarning();
    if (live) {
      const when = entry.updated_at ? ago(entry.updated_at) : "just now";
      say(this.status, `Changed by ${entry.updated_by || "someone"} ${when}.`);
    }
  }

  warn(note) {
    const entry = this.entry;
    const who = entry.updated_by || "Someone";
    const when = entry.updated_at ? ` ${ago(entry.updated_at)}` : "";
    const warning =
      `${who} changed this to ${quoted(entry)}${when}, while you were editing. ` +
      "Your change is not saved yet: saving shows both values so that you can choose.";
    say(this.warning, note || warning);
    this.element.classList.add("changed-elsewhere");
  }

  hideWarning() {
    say(this.warning, "");
    this.element.classList.remove("changed-elsewhere");
  }

  async put(value, etag) {
    this.saving = true;
    this.saveButton.setAttribute("aria-busy", "true");
    this.saveButton.disabled = true;
    try {
      return await api("PUT", this.path, { body: { value }, headers: { "If-Match": etag } });
    } finally {
      this.saving = false;
      this.saveButton.removeAttribute("aria-busy");
      this.saveButton.disabled = false;
      setTimeout(() => this.queued.splice(0).forEach(([entry, live]) => this.update(entry, live)));
    }
  }

  async save() {
    const parsed = this.parse();
    if ("error" in parsed) {
      this.showError(parsed.error);
      this.control.focus();
      return;
    }
    this.clearError();
    say(this.status, "");
    try {
      this.saved(await this.put(parsed.value, this.base.etag));
    } catch (failure) {
      const current = failure.status === 412 && failure.problem.current;
      if (current) conflict.open(this, parsed.value, current);
      else this.showError(null, failure);
    }
  }

  saved(entry, message = "Saved.") {
    this.entry = this.base = entry;
    this.load(entry);
    this.render();
    this.hideWarning();
    this.clearError();
    say(this.status, message);
  }

  // After a conflict: what is stored now is shown, and the edit is kept.
  stored(current) {
    if (current.version >= this.entry.version) {
      this.entry = current;
      this.render();
    }
  }
}

// The 412 dialog: theirs (the `current` entry of the 412) beside mine (the value I tried to save).
const conflict = {
  dialog: document.getElementById("conflict"),
  error: document.getElementById("conflict-error"),
  row: null,
  mine: null,
  current: null,

  open(row, mine, current) {
    Object.assign(this, { row, mine, current });
    row.stored(current);
    const who = current.updated_by || "Someone";
    const at = current.updated_at;
    const when = at ? [` ${ago(at)} (`, timeElement(at, "date"), ")"] : [];
    const question = ", after you started editing it. Which value should it keep?";
    document.getElementById("conflict-who").replaceChildren(`${who} saved ${row.name}`, ...when, question);
    document.getElementById("conflict-theirs").textContent = text(current);
    document.getElementById("conflict-mine").textContent = text(current, mine);
    clearFailure(this.error);
    if (!this.dialog.open) this.dialog.showModal();
    document.getElementById("edit-mine").focus();
  },

  close() {
    this.dialog.close();
    this.row.control.focus();
  },

  keepTheirs() {
    // A change that arrived live while the dialog was open is newer than the 412's.
    const theirs = this.row.entry.version > this.current.version ? this.row.entry : this.current;
    this.row.saved(theirs, `Kept the value saved by ${theirs.updated_by || "someone"}.`);
    this.close();
  },

  editMine() {
    // The next save replaces what is stored now, which I have seen: it is sent with its ETag.
    this.row.base = this.current;
    const who = this.current.updated_by || "someone";
    this.row.warn(`Stored now: ${quoted(this.current)}, saved by ${who}. Saving replaces it with yours.`);
    this.close();
  },

  async overwrite() {
    const button = document.getElementById("overwrite");
    button.setAttribute("aria-busy", "true");
    try {
      this.row.saved(await this.row.put(this.mine, this.current.etag), "Saved over the other change.");
      this.close();
    } catch (failure) {
      const current = failure.status === 412 && failure.problem.current;
      if (current) this.open(this.row, this.mine, current);
      else showFailure(this.error, failure);
    } finally {
      button.removeAttribute("aria-busy");
    }
  },
};
document.getElementById("keep-theirs").addEventListener("click", () => conflict.keepTheirs());
document.getElementById("edit-mine").addEventListener("click", () => conflict.editMine());
document.getElementById("overwrite").addEventListener("click", () => conflict.overwrite());

function group(namespace) {
  let body = groups.querySelector(`tbody[data-namespace="${CSS.escape(namespace)}"]`);
  if (body) return body;
  const id = `group-${namespace.replace(/[^A-Za-z0-9_-]/g, "-")}`;
  const title = NAMESPACES[namespace] || namespace;
  body = h("tbody", { "data-namespace": namespace });
  const columns = ["Setting", "Value", "Source", "Last change"].map((name) => h("th", { scope: "col" }, name));
  const head = h("thead", {}, h("tr", {}, columns));
  groups.append(
    h(
      "section",
      { class: "settings-group", "aria-labelledby": id },
      h("h2", { id }, title, " ", h("code", { class: "namespace" }, namespace)),
      h("table", { class: "settings stack", "aria-labelledby": id }, head, body),
    ),
  );
  return body;
}

async function load() {
  try {
    const entries = await api("GET", "api/v1/settings");
    clearFailure(pageError);
    for (const entry of entries) {
      const known = rows.get(`${entry.namespace}.${entry.key}`);
      if (known) {
        known.update(entry, false);
        continue;
      }
      const row = new SettingRow(entry);
      rows.set(row.name, row);
      group(entry.namespace).append(row.element);
    }
    document.getElementById("read-only-note").hidden = [...rows.values()].some((row) => row.writable);
  } catch (failure) {
    showFailure(pageError, failure);
  } finally {
    groups.removeAttribute("aria-busy");
  }
}

function onEvent(event) {
  if (event.event_type !== "setting.updated") return;
  const { namespace, key } = event.payload;
  const row = rows.get(`${namespace}.${key}`);
  if (row) row.update({ ...event.payload, updated_at: event.timestamp }, true);
  else load();
}

load();
keepTimesCurrent();
// The settings channel is always followed. A (re)subscription that could not replay everything
// since the last event seen (or had none to resume from) means a change may have been missed,
// so the list is read again; a row the user is editing is warned rather than overwritten.
watch({
  onEvent,
  onState: liveState(document.getElementById("live-status")),
  onSubscribed: (reply) => reply.recovered !== true && load(),
});
