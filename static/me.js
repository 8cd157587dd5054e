// The account page: the display name (PATCH /api/v1/me), shown at once in the navigation bar,
// and the password (POST /api/v1/me/password), whose repeat is checked here before anything is
// sent. A wrong current password is the server's 403, counted under the login limits, so its
// wait counts down like the login page's.
import { api } from "./api.js";
import { clearFailure, showFailure } from "./messages.js";

function busy(button, on) {
  button.disabled = on;
  if (on) button.setAttribute("aria-busy", "true");
  else button.removeAttribute("aria-busy");
}

function reveal(element, text) {
  element.textContent = text;
  element.hidden = false;
}

const nameForm = document.getElementById("name-form");
const nameError = document.getElementById("name-error");
const nameDone = document.getElementById("name-done");
const saveName = document.getElementById("save-name");

nameForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFailure(nameError);
  nameDone.hidden = true;
  busy(saveName, true);
  try {
    const me = await api("PATCH", "api/v1/me", { body: { display_name: nameForm.elements.display_name.value } });
    nameForm.elements.display_name.value = me.display_name;
    document.getElementById("nav-user").textContent = me.display_name || me.username;
    const seen = me.display_name ? `you as “${me.display_name}”` : `your username, “${me.username}”`;
    reveal(nameDone, `Saved: others now see ${seen}.`);
  } catch (failure) {
    showFailure(nameError, failure);
  } finally {
    busy(saveName, false);
  }
});

const passwordForm = document.getElementById("password-form");
const passwordError = document.getElementById("password-error");
const passwordDone = document.getElementById("password-done");
const changePassword = document.getElementById("change-password");
const current = passwordForm.elements.current_password;
const fresh = passwordForm.elements.new_password;
const repeat = passwordForm.elements.repeat_password;

repeat.addEventListener("input", () => {
  if (repeat.value === fresh.value) repeat.removeAttribute("aria-invalid");
});

passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFailure(passwordError);
  passwordDone.hidden = true;
  if (repeat.value !== fresh.value) {
    reveal(passwordError, repeat.dataset.mismatch);
    repeat.setAttribute("aria-invalid", "true");
    repeat.focus();
    return;
  }
  busy(changePassword, true);
  try {
    await api("POST", "api/v1/me/password", {
      body: { current_password: current.value, new_password: fresh.value },
    });
    passwordForm.reset();
    reveal(passwordDone, "Password changed. Your other sessions were signed out; this one stays.");
  } catch (failure) {
    showFailure(passwordError, failure);
    // Which field to fix: the current password when it was refused, the new one otherwise.
    const wrongCurrent = failure.status === 403 || failure.status === 429;
    if (wrongCurrent) current.value = "";
    (wrongCurrent ? current : fresh).focus();
  } finally {
    busy(changePassword, false);
  }
});
