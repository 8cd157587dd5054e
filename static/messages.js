// A human sentence for every API error, shared by every page: the status and error_code of the
// problem+json body decide (SPEC section 9). Where the server's `detail` is written for people
// (validation, permissions, wrong password) it is used; server errors never show their detail.
// Rate limits count their wait down, from the Retry-After the server sent.

const WAITS = {
  1004: (s) => `Too many failed logins for this account; try again in ${s} s`,
  5000: (s) => `Too many attempts; try again in ${s} s`,
};

const BY_CODE = {
  1002: "You were signed out from another device.",
  1003: "Your session expired.",
  2002: "The server does not allow this action here.",
  3002: "This server does not offer that yet; it may need an upgrade.",
  4002: "Someone else changed this since you opened it.",
  4003: "The change was sent without the version it was made from; reload the page and try again.",
};

const BY_STATUS = {
  0: "The lab's server could not be reached; check the connection and try again.",
  400: "The server did not understand the request.",
  401: "Please log in again.",
  403: "You are not allowed to do this.",
  404: "It does not exist, or no longer does.",
  409: "This conflicts with what is stored now; reload the page and try again.",
  412: "Someone else changed this since you opened it.",
  413: "That is too large to send.",
  415: "The page sent its request in a form the server does not take; reload the page.",
  422: "The value is not valid.",
  502: "The lab's server is not answering; try again in a moment.",
  504: "The lab's server is not answering; try again in a moment.",
};

function unsaved(failure, sentence) {
  return failure.method && failure.method !== "GET" ? sentence + "; your change was not saved." : sentence + "; try again in a moment.";
}

// `secondsLeft` overrides the failure's own Retry-After (the countdown passes it).
export function describe(failure, secondsLeft) {
  const status = failure.status || 0;
  const code = failure.code;
  if (WAITS[code] || status === 429) {
    const wait = secondsLeft ?? failure.retryAfter;
    const say = WAITS[code] || WAITS[5000];
    return wait == null ? "Too many attempts; wait a minute and try again." : say(wait) + ".";
  }
  if (code === 8002) return unsaved(failure, "The lab could not store this");
  if (status === 503 || code === 8001) return unsaved(failure, "The lab's database is unavailable");
  if (status >= 500) return unsaved(failure, "The server hit an unexpected error (it has been logged)");
  if (BY_CODE[code]) return BY_CODE[code];
  const detail = failure.problem && failure.problem.detail;
  if (detail && status >= 400 && status < 500) return detail;
  return BY_STATUS[status] || `The request failed (HTTP ${status}).`;
}

const timers = new WeakMap();

export function clearFailure(element) {
  clearInterval(timers.get(element));
  timers.delete(element);
  element.textContent = "";
  element.hidden = true;
}

// Shows the failure in `element` (a role="alert" paragraph). A wait is counted down each second
// in a part of it that screen readers do not announce again and again.
export function showFailure(element, failure) {
  clearFailure(element);
  element.hidden = false;
  const wait = failure.retryAfter;
  const counted = wait != null && (failure.status === 429 || WAITS[failure.code]);
  if (!counted) {
    element.textContent = describe(failure);
    return;
  }
  const deadline = Date.now() + wait * 1000;
  const text = document.createElement("span");
  text.setAttribute("aria-live", "off");
  text.className = "countdown";
  element.append(text);
  const tick = () => {
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left > 0) {
      text.textContent = describe(failure, left);
      return;
    }
    clearInterval(timers.get(element));
    text.textContent = "You can try again now.";
  };
  tick();
  timers.set(element, setInterval(tick, 250));
}
