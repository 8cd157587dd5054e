// The first admin's form: both passwords must match before anything is sent, then the form goes
// to the API. A refused link (403) reloads the page, which says whether setup is complete or
// the link is not current. Without this script the form still posts to /setup.
import { api, base } from "./api.js";
import { clearFailure, showFailure } from "./messages.js";

const form = document.getElementById("setup-form");
const error = document.getElementById("error");
const button = document.getElementById("create");
const repeat = form.elements.password_repeat;

function differ() {
  return repeat.value !== form.elements.password.value;
}

repeat.addEventListener("input", () => {
  if (repeat.getAttribute("aria-invalid") === "true" && !differ()) repeat.removeAttribute("aria-invalid");
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFailure(error);
  if (differ()) {
    error.hidden = false;
    error.textContent = repeat.dataset.mismatch;
    repeat.setAttribute("aria-invalid", "true");
    repeat.focus();
    return;
  }
  button.setAttribute("aria-busy", "true");
  button.disabled = true;
  try {
    await api("POST", "api/v1/auth/setup", {
      body: {
        token: form.elements.token.value,
        username: form.elements.username.value,
        password: form.elements.password.value,
      },
      signIn: false,
    });
    location.replace(base);
    return;
  } catch (failure) {
    if (failure.status === 403) {
      location.reload();
      return;
    }
    showFailure(error, failure);
  } finally {
    button.removeAttribute("aria-busy");
    button.disabled = false;
  }
});
