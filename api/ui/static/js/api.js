// Every call to the API goes through here: same-origin fetch (the session cookie rides along by itself),
// JSON in and out, and one error type that carries the server's own message ({"error": {"message"}}),
// so every view can show what the server said instead of a status code.

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status; // 0: the server could not be reached at all
    this.code = code;
  }
}

/** Fired on window when the server answers 401 (no session, or it expired): app.js shows the login. */
export const UNAUTHORIZED = "tw:unauthorized";

export async function request(method, path, body, headers = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the server cannot be reached (${err.message})`, "network");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const message = data?.error?.message || `${method} ${path}: ${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, message, data?.error?.code);
    if (response.status === 401 && !headers.Authorization) {
      window.dispatchEvent(new CustomEvent(UNAUTHORIZED, { detail: message }));
    }
    throw error;
  }
  return data;
}

export const getJSON = (path) => request("GET", path);
export const postJSON = (path, body) => request("POST", path, body);
export const del = (path) => request("DELETE", path);

/** Who this browser is: {name, role, keys_required, ...}; an ApiError with status 401 when logged out. */
export function whoami() {
  return request("GET", "/v1/auth/whoami");
}

/** Trade an API key for an HttpOnly session cookie; the key itself is kept nowhere on the page. */
export function openSession(key) {
  return request("POST", "/v1/auth/session", undefined, { Authorization: `Bearer ${key}` });
}

export function closeSession() {
  return request("DELETE", "/v1/auth/session");
}

/**
 * Why an event stream cannot be opened, or null when it can. EventSource hides the HTTP status of a
 * refused connection (a 403 looks like a network error), so ask once with fetch, then hang up.
 */
export async function streamProblem(path) {
  const abort = new AbortController();
  try {
    const response = await fetch(path, { credentials: "same-origin", signal: abort.signal });
    if (response.ok) return null;
    const data = await response.json().catch(() => null);
    const message = data?.error?.message || `${path}: ${response.status} ${response.statusText}`;
    if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED, { detail: message }));
    return message;
  } catch (err) {
    return `the server cannot be reached (${err.message})`;
  } finally {
    abort.abort();
  }
}
