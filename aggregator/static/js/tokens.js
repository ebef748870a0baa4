/*
 * The operator-tokens view: every token (never a secret), issuing one (a name and an optional
 * expiry in days; its secret is shown once, here, until "Done" or leaving the view) and revoking
 * a live one after a confirmation. GET|POST /api/v1/operator-tokens, DELETE /api/v1/operator-tokens/ID;
 * the list names the token this tab is signed in with (current_token_id): revoking that one
 * warns first and then signs the tab out.
 */
import { api, errorMessage, getJson } from "./api.js";
import { $, DASH, badge, dateTime, el, fillBody } from "./dom.js";

const PATH = "/api/v1/operator-tokens";
const COPIED_MS = 2000;
const ASK_REVOKE = "Revoke the operator token “{name}”? Whoever uses it is refused at once; this cannot be undone.";
const ASK_REVOKE_OWN =
  "“{name}” is the token THIS DASHBOARD IS SIGNED IN WITH. Revoking it signs you out at once, and you " +
  "need another operator token to sign in again. Revoke it anyway?";
const SIGNED_OUT = "You revoked the token this dashboard was signed in with: sign in with another operator token.";

const state = { request: 0, current: null };
let failed = () => {};
let signedOut = () => {};

export async function refresh() {
  const request = ++state.request;
  try {
    const list = await getJson(PATH);
    if (request !== state.request) return; // a newer request is on its way
    state.current = list.current_token_id;
    show(list.tokens);
  } catch (error) {
    failed(error, "Loading operator tokens");
  }
}

/** Forget the secret on the page (leaving the view, signing out). */
export function close() {
  $("token-secret").value = "";
  $("token-issued").hidden = true;
  $("token-copied").textContent = "";
}

async function revoke(token) {
  const own = token.token_id === state.current;
  if (!window.confirm((own ? ASK_REVOKE_OWN : ASK_REVOKE).replace("{name}", token.name))) return;
  try {
    const response = await api(`${PATH}/${encodeURIComponent(token.token_id)}`, { method: "DELETE" });
    if (!response.ok) throw new Error(await errorMessage(response));
  } catch (error) {
    failed(error, `Revoke ${token.name}`);
    return;
  }
  if (own) signedOut(SIGNED_OUT);
  else await refresh();
}

function statusCell(token) {
  const own = token.token_id === state.current;
  return el("td", { class: "status" }, badge(token.status), own ? el("span", { class: "badge badge-own" }, "this session") : null);
}

function show(tokens) {
  const rows = tokens.map((token) =>
    el(
      "tr",
      { dataset: { tokenId: token.token_id }, class: token.status === "live" ? null : "gone" },
      el("td", { class: "name" }, token.name, el("span", { class: "sub" }, token.token_id)),
      statusCell(token),
      el("td", { class: "wide", title: token.created_at }, dateTime(token.created_at)),
      el("td", { class: "expires", title: token.expires_at || "" }, token.expires_at ? dateTime(token.expires_at) : "never"),
      el("td", { class: "wide", title: token.revoked_at || "" }, token.revoked_at ? dateTime(token.revoked_at) : DASH),
      el(
        "td",
        { class: "actions" },
        token.status !== "live"
          ? null
          : el(
              "button",
              { type: "button", class: "btn btn-small btn-danger", dataset: { action: "revoke" }, onclick: () => revoke(token) },
              "Revoke",
            ),
      ),
    ),
  );
  fillBody($("tokens"), rows, 6, "No operator token.");
}

async function issue(submit) {
  submit.preventDefault();
  const form = $("token-form");
  const error = $("token-form-error");
  const name = form.elements.name.value.trim();
  const days = form.elements.expires_in_days.value.trim();
  const body = { name };
  if (days) body.expires_in_days = Number(days);
  error.hidden = true;
  if (!name) {
    error.textContent = "Give the token a name (who or what will use it).";
    error.hidden = false;
    return;
  }
  if (days && !(Number.isInteger(body.expires_in_days) && body.expires_in_days >= 1 && body.expires_in_days <= 3650)) {
    error.textContent = "Expiry: whole days from 1 to 3650, or empty for never.";
    error.hidden = false;
    return;
  }
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const response = await api(PATH, { method: "POST", body });
    if (!response.ok) throw new Error(await errorMessage(response));
    const issued = await response.json();
    form.reset();
    $("token-issued-name").textContent = issued.name;
    $("token-issued-expiry").textContent = issued.expires_at ? `expires ${dateTime(issued.expires_at)}` : "never expires";
    $("token-secret").value = issued.token;
    $("token-copied").textContent = "";
    $("token-issued").hidden = false;
    $("token-secret").select();
    await refresh();
  } catch (failure) {
    failed(failure, "Issue a token");
  } finally {
    button.disabled = false;
  }
}

async function copy() {
  const secret = $("token-secret");
  secret.select();
  let done = false;
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(secret.value);
      done = true;
    }
  } catch {
    done = false;
  }
  const note = $("token-copied");
  note.textContent = done ? "Copied." : "Selected: copy it with Ctrl+C (⌘C).";
  setTimeout(() => {
    if (note.textContent) note.textContent = "";
  }, COPIED_MS);
}

export function wire(onFailure, onSignedOut) {
  failed = onFailure;
  signedOut = onSignedOut;
  $("token-form").addEventListener("submit", issue);
  $("token-copy").addEventListener("click", copy);
  $("token-done").addEventListener("click", close);
}
