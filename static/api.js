// The one way a page calls the API: same-origin cookies, a JSON body always sent with its
// Content-Type (the server answers 415 otherwise), and the _xsrf value in the X-XSRFToken header
// only (the server refuses it in the query string). A 401 sends the browser to the login page,
// with the reason the server gave, and back here afterwards.

export const base = document.body.dataset.baseUrl || "/";

const SIGN_IN_REASONS = { 1002: "revoked", 1003: "expired" };

export function cookie(name) {
  const match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
  return match ? decodeURIComponent(match[1]) : "";
}

// What went wrong, as the API said it: the HTTP status (0 when the server could not be
// reached), the problem+json body (RFC 9457) when there is one, and the wait from Retry-After.
export class ApiError extends Error {
  constructor(method, status, problem, retryAfter) {
    super((problem && problem.detail) || "HTTP " + status);
    this.method = method;
    this.status = status;
    this.problem = problem || {};
    this.code = this.problem.error_code || null;
    this.retryAfter = retryAfter;
  }
}

function retryAfter(reply, problem) {
  const header = Number.parseInt(reply.headers.get("Retry-After") || "", 10);
  if (Number.isFinite(header)) return header;
  return problem && Number.isFinite(problem.retry_after) ? problem.retry_after : null;
}

export function loginUrl(reason) {
  const query = new URLSearchParams({ next: location.pathname + location.search });
  if (reason) query.set("reason", reason);
  return base + "login?" + query;
}

// `path` is relative to base_url ("api/v1/me"). Options: `body` (sent as JSON), `headers`,
// and `signIn: false` where a 401 is an answer for the page itself (the login form).
export async function api(method, path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") headers["X-XSRFToken"] = cookie("_xsrf");
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  let reply;
  try {
    reply = await fetch(base + path, init);
  } catch {
    throw new ApiError(method, 0, null, null);
  }
  const text = await reply.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (reply.ok) return data;
  const failure = new ApiError(method, reply.status, data, retryAfter(reply, data));
  if (reply.status === 401 && options.signIn !== false) {
    location.assign(loginUrl(SIGN_IN_REASONS[failure.code]));
  }
  throw failure;
}
