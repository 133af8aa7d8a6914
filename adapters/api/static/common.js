// What every page shares: the header and its navigation, the API token (kept in this tab's sessionStorage,
// taken from the form or the URL fragment #token=..., never the query string), API calls with that token,
// the caller's role (which shapes the page), the message line and the time formats. Data is only ever
// written with textContent (el() appends text nodes, never markup).

const TOKEN_KEY = "dma-upgrade.token";
const NOTICE_KEY = "dma-upgrade.notice";
const ROLES = { viewer: 1, operator: 2, admin: 3 };
const PAGES = [
  { path: "agents", label: "Agents" },
  { path: "upgrade", label: "Upgrade", needs: "operator" },
  { path: "./", label: "Progress" },
  { path: "packages", label: "Packages" },
  { path: "settings", label: "Settings", needs: "admin" },
  { path: "audit", label: "Audit" },
];

// The failover policies and upgrade options as System Center names them (keys: the API's values).
export const POLICIES = {
  simultaneous: "Upgrade main and backup Agent simultaneously",
  "backup-first": "Upgrade backup Agent first, switch over and upgrade main",
  "backup-first-switch-back": "Upgrade backup Agent first, switch over, upgrade main, then switch back again",
};
export const OPTIONS = {
  "extract-all": "Extract All Files",
  "delayed-start": "Delayed Start",
  "auto-start": "Automatically start DMA after startup",
  "stop-snmp": "Stop SNMP",
  reboot: "Reboot After Upgrade",
};

let caller = null; // { name, role } once the token is known good

export const $ = (id) => document.getElementById(id);

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === true) node.setAttribute(name, "");
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function clock(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "";
}

// A moment in the browser's time zone: 2026-12-05 14:03:07.
export function when(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${clock(iso)}`;
}

export const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

// A refusal or failure of the API, its message one line: "403 forbidden: vera is a viewer: ...".
class ApiError extends Error {
  constructor(status, kind, detail) {
    super(`${status} ${kind}: ${detail}`);
    this.status = status;
  }
}

async function failure(response) {
  let kind = response.statusText || "error";
  let detail = "no details";
  try {
    const body = await response.json();
    kind = body.error || kind;
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    // not JSON: the status says it all
  }
  return new ApiError(response.status, kind, detail);
}

// Call /api/v1/PATH with the tab's token: the parsed JSON, or the Response itself with raw; ApiError otherwise.
// A 401 sends the person back to the token form.
export async function api(path, { method = "GET", json, form, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(`api/v1/${path}`, { method, headers, body, cache: "no-store" });
  } catch {
    throw new ApiError(0, "unreachable", `cannot reach the server at ${clock(new Date().toISOString())}`);
  }
  if (!response.ok) {
    const error = await failure(response);
    if (response.status === 401) askForToken(`The server refused the token (${error.message}).`);
    throw error;
  }
  return raw ? response : response.json();
}

// Whether the caller's role is at least `role` (viewer < operator < admin).
export function can(role) {
  return caller !== null && ROLES[caller.role] >= ROLES[role];
}

// Show `text` on the page's one message line (kind: error, info or ok); an empty text hides it.
export function say(text, kind = "error") {
  const line = $("message");
  line.textContent = text;
  line.className = `message ${kind}`;
  line.hidden = !text;
}

// Run `work` (an action on the API) with `button` disabled; a refusal shows the API's one-line error.
export async function act(button, work) {
  button.disabled = true;
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) say(error.message);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

export function status(text, live = false) {
  $("status").textContent = text;
  $("status").classList.toggle("live", live);
}

// A message for the next page this tab opens (e.g. the confirmation of a started rollout).
export function leaveNotice(text) {
  sessionStorage.setItem(NOTICE_KEY, text);
}

function header(current) {
  const links = PAGES.map((page) => {
    const link = el("a", { href: page.path, "data-needs": page.needs }, page.label);
    if (page.path === current) link.setAttribute("aria-current", "page");
    return link;
  });
  return [
    el("a", { class: "product", href: "./" }, "dma-upgrade"),
    el("nav", { "aria-label": "Pages" }, links),
    el("span", { id: "status", class: "status", role: "status", "aria-live": "polite" }),
    el("span", { id: "caller", class: "caller" }),
    el("button", { id: "forget", type: "button", hidden: true }, "Forget token"),
  ];
}

function tokenForm() {
  return el("form", { id: "token-form", class: "token-form", hidden: true },
    el("label", { for: "token" }, "API token"),
    el("input", { id: "token", type: "password", autocomplete: "off", spellcheck: "false", required: true }),
    el("button", { type: "submit" }, "Use token"),
    el("p", { class: "hint" }, "Make one with ", el("code", {}, "dma-upgrade tokens add NAME --role ROLE"),
       " (viewer, operator or admin). It is kept for this tab only; a link may also carry it as ",
       el("code", {}, "#token=…"), "."));
}

// Hide what the caller's role may not do (elements marked data-needs="operator|admin"), and show what is
// said instead to a lower role (data-unless="operator|admin").
function shapeByRole() {
  for (const node of document.querySelectorAll("[data-needs]")) node.hidden = !can(node.dataset.needs);
  for (const node of document.querySelectorAll("[data-unless]")) node.hidden = can(node.dataset.unless);
}

function askForToken(why, kind = "error") {
  sessionStorage.removeItem(TOKEN_KEY);
  caller = null;
  $("page").hidden = true;
  $("forget").hidden = true;
  $("caller").textContent = "";
  status("");
  say(why, kind);
  $("token-form").hidden = false;
  $("token").value = "";
  $("token").focus();
}

// A token in the URL fragment (#token=...) is kept, then removed from the address bar and history.
function takeFragmentToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    sessionStorage.setItem(TOKEN_KEY, token);
  }
  return token;
}

// Set the page up: header, token form, then `ready(caller)` once the token is known good. `current` is the
// page's path as the navigation names it.
export async function startPage(current, ready) {
  document.querySelector("header").replaceChildren(...header(current));
  $("page").before(tokenForm());
  for (const zone of document.querySelectorAll(".zone")) zone.textContent = timeZone();
  $("page").hidden = true;
  takeFragmentToken();
  window.addEventListener("hashchange", () => {
    if (takeFragmentToken()) location.reload();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      location.reload();
    }
  });
  $("forget").addEventListener("click", () => askForToken("Token forgotten.", "info"));
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    askForToken("Enter an API token to use this page.", "info");
    return;
  }
  try {
    caller = await api("whoami");
  } catch (error) {
    if (error.status !== 401) say(`The server could not say whose token this is (${error.message}); reload to retry.`);
    return;
  }
  document.body.dataset.role = caller.role;
  $("caller").textContent = `${caller.name} (${caller.role})`;
  $("forget").hidden = false;
  $("page").hidden = false;
  shapeByRole();
  const notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  say(notice || "", "ok");
  try {
    await ready(caller);
  } catch (error) {
    if (error.status !== 401) say(error.message); // a refused token has its form back already
  }
  document.body.dataset.ready = "yes"; // drawn (the browser tests wait for it)
}
