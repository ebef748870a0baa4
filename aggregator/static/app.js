/*
 * Jeisson operator dashboard: sign-in and the views, one per address fragment:
 *   #/ (live)   #/homes   #/fleet   #/tokens   #/events/<id>   #/events/<id>/settlement
 * Each view is a module under /static/js; this one signs in, routes and reports failures.
 */
import { Unauthorized, getJson, session } from "./js/api.js";
import { $ } from "./js/dom.js";
import * as eventView from "./js/event.js";
import * as fleet from "./js/fleet.js";
import * as homes from "./js/homes.js";
import * as live from "./js/live.js";
import * as tokens from "./js/tokens.js";

const VIEWS = ["live", "homes", "fleet", "tokens", "event"];
const FLEET_REFRESH_MS = 30000;
let fleetTimer = null;

function handleFailure(error, where) {
  if (error instanceof Unauthorized) {
    logout("The server refused the token: sign in again.");
    return;
  }
  live.notice(`${where}: ${error.message || error}`);
}

async function login(token) {
  session.token = token;
  await getJson("/api/v1/events?limit=1");
  session.save(token);
}

function logout(message) {
  session.forget();
  live.reset();
  eventView.close();
  tokens.close();
  clearInterval(fleetTimer);
  $("app-view").hidden = true;
  $("logout").hidden = true;
  $("nav").hidden = true;
  $("login-view").hidden = false;
  $("token").value = "";
  const error = $("login-error");
  error.textContent = message || "";
  error.hidden = !message;
}

function showApp() {
  $("login-view").hidden = true;
  $("login-error").hidden = true;
  $("app-view").hidden = false;
  $("logout").hidden = false;
  $("nav").hidden = false;
  live.start();
  route();
}

function route() {
  if (!session.token) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  let view = "live";
  if (parts[0] === "homes") view = "homes";
  else if (parts[0] === "fleet") view = "fleet";
  else if (parts[0] === "tokens") view = "tokens";
  else if (parts[0] === "events" && parts[1]) view = "event";
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    link.setAttribute("aria-current", link.dataset.view === view ? "page" : "false");
  }
  clearInterval(fleetTimer);
  if (view !== "event") eventView.close();
  if (view !== "tokens") tokens.close();
  if (view === "homes") homes.refresh();
  else if (view === "tokens") tokens.refresh();
  else if (view === "fleet") {
    fleet.refresh();
    fleetTimer = setInterval(fleet.refresh, FLEET_REFRESH_MS);
  } else if (view === "event") eventView.open(parts[1], parts[2] === "settlement");
  window.scrollTo(0, 0);
}

function start() {
  $("login-form").addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const token = $("token").value.trim();
    const error = $("login-error");
    if (!token) {
      error.textContent = "Enter the operator token.";
      error.hidden = false;
      return;
    }
    try {
      await login(token);
      $("token").value = "";
      showApp();
    } catch (failure) {
      session.token = null;
      error.textContent =
        failure instanceof Unauthorized ? "This token is not a valid operator token." : `Cannot sign in: ${failure.message}`;
      error.hidden = false;
    }
  });
  $("logout").addEventListener("click", () => logout(""));
  live.setHooks({ failed: handleFailure });
  live.wire();
  homes.wire(handleFailure);
  fleet.wire(handleFailure);
  tokens.wire(handleFailure, logout);
  eventView.wire(handleFailure);
  window.addEventListener("hashchange", route);
  if (session.load()) showApp();
  else $("login-view").hidden = false;
}

start();
