// The password form, sent to the API so that every error gets its sentence from messages.js
// and a rate limit its countdown. Without this script the form still posts to /login.
import { api, base } from "./api.js";
import { clearFailure, showFailure } from "./messages.js";

const form = document.getElementById("password-form");
const error = document.getElementById("error");
const button = document.getElementById("login");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = form.elements.username.value;
  const password = form.elements.password;
  clearFailure(error);
  button.setAttribute("aria-busy", "true");
  button.disabled = true;
  try {
    await api("POST", "api/v1/auth/login", { body: { username, password: password.value }, signIn: false });
    // `next` was made safe by the server (same site, under base_url) when it rendered the page.
    location.replace(form.elements.next.value || base);
    return;
  } catch (failure) {
    showFailure(error, failure);
    password.value = "";
    password.focus();
  } finally {
    button.removeAttribute("aria-busy");
    button.disabled = false;
  }
});
