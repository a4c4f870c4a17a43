// The shipyard web UI: a single page routed by the URL fragment. Pages live in models.js and
// deployments.js, monitoring.js, ...; they read and act only through the /api/v1 endpoints (api.js).
import { ApiError, api, explain, onSignedOut } from "./api.js";
import { h, append } from "./dom.js";
import { modelsPage, modelPage, versionPage } from "./models.js";
import { deploymentsPage, deploymentPage } from "./deployments.js";
import { retrainingPage, runPage } from "./retraining.js";
import { monitoringPage, deploymentMonitoringPage } from "./monitoring.js";

const main = document.getElementById("main");
const flashBox = document.getElementById("flash");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

let session = null; // GET /api/v1/session: {id, name, principal, scopes}
let pending = null; // a message to show after the next navigation
let navigation = 0;
let watchTimer = null;

// While something is in progress (a rollout), redraw the page every `ms` — but never under
// the person's hands: not while the dialog is open or they are typing.
function watch(ms) {
  clearTimeout(watchTimer);
  const hash = location.hash;
  watchTimer = setTimeout(() => {
    const typing = document.activeElement && ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (location.hash !== hash) return;
    if (document.getElementById("confirm").open || typing) watch(ms);
    else render({ quiet: true });
  }, ms);
}

function parse(hash) {
  const [path, query = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map((s) => {
    try { return decodeURIComponent(s); } catch { return null; }
  });
  return { parts, params: new URLSearchParams(query) };
}

const routes = [
  [["models"], (r) => modelsPage(ctx, r.params.get("q") || "")],
  [["models", "*"], (r) => modelPage(ctx, r.parts[1])],
  [["models", "*", "versions", "*"], (r) => versionPage(ctx, r.parts[1], r.parts[3])],
  [["deployments"], () => deploymentsPage(ctx)],
  [["deployments", "*"], (r) => deploymentPage(ctx, r.parts[1])],
  [["monitoring"], () => monitoringPage(ctx)],
  [["monitoring", "*"], (r) => deploymentMonitoringPage(ctx, r.parts[1], r.params)],
  [["retraining"], () => retrainingPage(ctx)],
  [["retraining", "runs", "*"], (r) => runPage(ctx, r.parts[2])],
];

function match(parts) {
  if (parts.includes(null)) return null;
  for (const [pattern, page] of routes) {
    if (pattern.length === parts.length && pattern.every((p, i) => p === "*" || p === parts[i])) return page;
  }
  return null;
}

export function flash(message, kind = "ok") {
  flashBox.hidden = !message;
  flashBox.className = `flash ${kind}`;
  flashBox.textContent = message || "";
}

function confirmAction({ title, body, confirmLabel = "Confirm", danger = false }) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-body").textContent = body;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = confirmLabel;
  ok.className = danger ? "danger" : "primary";
  const reason = document.getElementById("confirm-reason");
  reason.value = "";
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? { reason: reason.value.trim() || null } : null);
    }, { once: true });
    dialog.showModal();
    reason.focus();
  });
}

const ctx = {
  get session() { return session; },
  get canDeploy() {
    return !!session && session.scopes.some((s) => s === "deploy" || s === "admin");
  },
  flash,
  watch,
  confirm: confirmAction,
  // Run an action through the API; report its outcome and redraw the page either way.
  async act(run, success) {
    try {
      await run();
      pending = [success, "ok"];
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) return; // onSignedOut has sent the browser to sign in
      pending = [explain(error), "error"];
    }
    await render();
  },
};

function signInPage(message) {
  const input = h("input", {
    type: "password", id: "key", name: "key", autocomplete: "off", required: true,
    placeholder: "sy_…", "aria-label": "API key",
  });
  const error = h("p", { class: "flash error", id: "signin-error", hidden: !message }, message || "");
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        session = await api("POST", "/session", { key: input.value.trim() });
        input.value = "";
        const next = sessionStorage.getItem("shipyard-next") || "#/models";
        sessionStorage.removeItem("shipyard-next");
        if (location.hash === next) await render(); else location.hash = next;
      } catch (err) {
        error.hidden = false;
        error.textContent = err.status === 401 || err.status === 403
          ? `Sign-in refused: ${err.message}.` : err.message;
      }
    },
  },
  h("label", { for: "key" }, "API key"), input,
  h("button", { type: "submit", class: "primary", id: "signin" }, "Sign in"));
  return h("section", { class: "card signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "sub" }, "Use an API key with the read scope (deploy or admin to act). ",
      "The first ", h("code", {}, "shipyard server"), " prints an admin key; ",
      h("code", {}, "shipyard keys create"), " makes more."),
    error, form);
}

function notFound(message) {
  return h("section", { class: "notfound card", id: "not-found" },
    h("h1", {}, "404 — not found"),
    h("p", { class: "muted" }, message || "There is no page at this address."),
    h("p", {}, h("a", { href: "#/models" }, "Models"), " · ", h("a", { href: "#/deployments" }, "Deployments"), " · ", h("a", { href: "#/monitoring" }, "Monitoring")));
}

function showChrome(parts) {
  nav.hidden = !session;
  who.hidden = !session;
  for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.dataset.section === parts[0]);
  if (!session) return;
  const readOnly = !ctx.canDeploy;
  who.replaceChildren();
  append(who, [
    h("span", { id: "who-name" }, `${session.name} (${session.scopes.join(", ")})`),
    readOnly ? h("span", { class: "chip", id: "read-only" }, "read-only") : null,
    h("button", { type: "button", id: "signout", onclick: signOut }, "Sign out")]);
}

async function signOut() {
  try { await api("DELETE", "/session"); } catch { /* the cookies may be gone already */ }
  session = null;
  location.hash = "#/signin";
}

async function endSession(message) {
  session = null;
  try { await api("DELETE", "/session"); } catch { /* nothing more to do */ }
  if (!location.hash.startsWith("#/signin")) sessionStorage.setItem("shipyard-next", location.hash);
  pending = [message, "error"];
  if (location.hash === "#/signin") await render(); else location.hash = "#/signin";
}

onSignedOut((error) => endSession(`Your session ended (${error.message}). Sign in again.`));

async function render({ quiet = false } = {}) {
  const turn = ++navigation;
  clearTimeout(watchTimer);
  const route = parse(location.hash || "#/models");
  const shown = pending;
  pending = null;
  if (!quiet) flash(null); // a quiet redraw keeps the message on screen
  if (route.parts[0] === "signin") {
    showChrome(route.parts);
    main.replaceChildren(signInPage(shown && shown[0]));
    return;
  }
  if (!session) {
    try {
      session = await api("GET", "/session");
    } catch (error) {
      sessionStorage.setItem("shipyard-next", location.hash || "#/models");
      if (error.status !== 401) pending = [error.message, "error"];
      if (!location.hash.startsWith("#/signin")) location.hash = "#/signin";
      return;
    }
  }
  showChrome(route.parts);
  const page = route.parts.length ? match(route.parts) : routes[0][1];
  try {
    const view = page ? await page(route) : notFound();
    if (turn !== navigation) return; // a newer navigation draws the page
    main.replaceChildren(view);
  } catch (error) {
    if (turn !== navigation) return;
    if (error instanceof ApiError && error.status === 404) main.replaceChildren(notFound(error.message));
    else if (error instanceof ApiError && error.status === 401) return; // endSession took over
    else main.replaceChildren(append(h("section", { class: "card" }, h("h1", {}, "Something went wrong")),
      [h("p", { id: "page-error" }, error.message || String(error))]));
  }
  // The outcome of an action appears with the page that shows its result, not before.
  if (turn === navigation && shown) flash(...shown);
}

ctx.refresh = () => render();
window.addEventListener("hashchange", () => render());
render();
