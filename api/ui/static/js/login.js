// The login form, shown when the server needs keys and this browser has no session (whoami answers 401).
// The pasted key goes out once, in an Authorization header, to POST /v1/auth/session, which answers with
// an HttpOnly cookie; from then on fetch, EventSource and WebSocket are authenticated by the cookie alone.

import { openSession } from "./api.js";
import { byId, say } from "./dom.js";

let onLoggedIn = null;

/** Show the form; `then(who)` runs once a key has opened a session. */
export function showLogin(then, message = "") {
  onLoggedIn = then;
  byId("login").hidden = false;
  say(byId("login-error"), message);
  byId("login-key").focus();
}

export function hideLogin() {
  byId("login").hidden = true;
}

export function wireLogin() {
  byId("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = byId("login-key");
    const key = input.value.trim();
    if (!key) return;
    try {
      const who = await openSession(key);
      input.value = ""; // the cookie holds the session now; the key itself is not kept
      hideLogin();
      onLoggedIn?.(who);
    } catch (err) {
      say(byId("login-error"), err.message);
      input.select();
    }
  });
}
