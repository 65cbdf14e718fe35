// The single-page app: which view the URL path selects (history.pushState between views), the theme
// toggle, and the start: ask who we are, show the login form when the server wants a key, else the view.
// Each view module has show(params) and hide(); views keep their DOM while hidden, so a chat answer keeps
// streaming while another page is open.

import { UNAUTHORIZED, closeSession, whoami } from "./api.js";
import * as chat from "./chat.js";
import { byId, say } from "./dom.js";
import { hideLogin, showLogin, wireLogin } from "./login.js";
import * as models from "./models.js";
import * as monitor from "./monitor.js";
import * as timeline from "./timeline.js";

const VIEWS = { chat, timeline, models, monitor };
const TITLES = { chat: "Chat", timeline: "Request timeline", models: "Models", monitor: "Monitor" };
const THEME_KEY = "torchweave.theme";
let current = null;
let isLoggedIn = false; // until whoami answers, no view shows (a keyed server may want the login first)

/** The view and its parameters for a path under /ui/. */
function match(path) {
  const request = path.match(/^\/ui\/requests\/([^/]+)\/?$/);
  if (request) return ["timeline", { id: decodeURIComponent(request[1]) }];
  if (/^\/ui\/models\/?$/.test(path)) return ["models", {}];
  if (/^\/ui\/monitor\/?$/.test(path)) return ["monitor", {}];
  return ["chat", {}];
}

function route(moveFocus = false) {
  if (!isLoggedIn) return;
  const [name, params] = match(location.pathname);
  if (current && current !== name) VIEWS[current].hide();
  for (const key of Object.keys(VIEWS)) byId(`view-${key}`).hidden = key !== name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${TITLES[name]} · TorchWeave`;
  current = name;
  VIEWS[name].show(params);
  // After a click, put keyboard and screen-reader focus at the new view's heading.
  if (moveFocus) byId(`view-${name}`).querySelector("h1")?.focus();
}

export function navigate(path) {
  if (path !== location.pathname) history.pushState(null, "", path);
  route(true);
}

function interceptLinks() {
  document.addEventListener("click", (e) => {
    const link = e.target.closest?.("a[href]");
    if (!link || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(link.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui/") || url.pathname.startsWith("/ui/static/")) {
      return;
    }
    e.preventDefault();
    navigate(url.pathname);
  });
  window.addEventListener("popstate", () => route());
}

function storedTheme() {
  try {
    return localStorage.getItem(THEME_KEY);
  } catch {
    return null; // storage blocked: follow the system
  }
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  // The button names what a click does, not the theme that is on ("Dark theme" on a dark page misled).
  byId("theme").textContent = theme === "dark" ? "Switch to light theme" : "Switch to dark theme";
  window.dispatchEvent(new CustomEvent("tw:theme")); // charts read their colours again
}

function wireTheme() {
  const system = matchMedia("(prefers-color-scheme: dark)");
  applyTheme(storedTheme() || (system.matches ? "dark" : "light"));
  byId("theme").addEventListener("click", () => {
    const theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    try {
      localStorage.setItem(THEME_KEY, theme);
    } catch {
      // not remembered, still applied
    }
    applyTheme(theme);
  });
  system.addEventListener("change", (e) => storedTheme() || applyTheme(e.matches ? "dark" : "light"));
}

function showWho(who) {
  const logout = byId("logout");
  logout.hidden = !who.keys_required;
  say(byId("who"), who.keys_required ? `${who.name} (${who.role})` : "keys off: everyone is an admin");
}

function loggedOut(message) {
  isLoggedIn = false;
  byId("nav").hidden = true;
  if (current) VIEWS[current].hide();
  current = null;
  for (const key of Object.keys(VIEWS)) byId(`view-${key}`).hidden = true;
  say(byId("who"), "");
  byId("logout").hidden = true;
  showLogin(start, message);
}

async function start() {
  let who;
  try {
    who = await whoami();
  } catch (err) {
    if (err.status === 401) return loggedOut("");
    const fatal = byId("fatal");
    fatal.hidden = false;
    say(fatal, `The API did not answer: ${err.message}`);
    return;
  }
  hideLogin();
  showWho(who);
  isLoggedIn = true;
  byId("nav").hidden = false;
  route();
}

wireTheme();
wireLogin();
interceptLinks();
byId("logout").addEventListener("click", async () => {
  await closeSession().catch(() => null);
  loggedOut("Logged out.");
});
window.addEventListener(UNAUTHORIZED, (e) => {
  if (current) loggedOut(e.detail);
});
start();
