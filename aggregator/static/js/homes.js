/*
 * The homes view: thousands of homes a page at a time. Search, filters and order go to the
 * server (GET /api/v1/homes?q=&online=&participating=&min_reliability=&max_reliability=&sort=
 * &offset=&limit=); the page shows one page and where it is in the whole. Each home can be
 * suspended or resumed, its token revoked, or removed (POST /api/v1/homes/ID/suspend|resume|
 * revoke, DELETE /api/v1/homes/ID); what cuts a home off asks for confirmation first.
 */
import { api, errorMessage, getJson } from "./api.js";
import { $, count, debounce, el, fillBody, num, percent, when } from "./dom.js";

const PAGE = 50;
const SEARCH_DELAY_MS = 300;
const RELIABILITY = {
  "": {},
  high: { min_reliability: "0.9" },
  mixed: { min_reliability: "0.5", max_reliability: "0.9" },
  low: { max_reliability: "0.5" },
};

const ACTIONS = {
  suspend: { method: "POST", tail: "/suspend", label: "Suspend", ask: "Suspend {name}? Its connection closes and it cannot connect until resumed." },
  resume: { method: "POST", tail: "/resume", label: "Resume", ask: "" },
  revoke: { method: "POST", tail: "/revoke", label: "Revoke token", ask: "Revoke the token of {name}? Its connection closes; it must enrol again with a new code." },
  remove: { method: "DELETE", tail: "", label: "Remove", ask: "Remove {name}? Its token and codes stop working at once; its history is kept." },
};

const state = { offset: 0, total: 0, loaded: false, request: 0 };
let failed = () => {};

function query() {
  const form = $("homes-form").elements;
  const params = new URLSearchParams({ sort: form.sort.value, limit: String(PAGE), offset: String(state.offset) });
  if (form.q.value.trim()) params.set("q", form.q.value.trim());
  if (form.online.value) params.set("online", form.online.value);
  if (form.participating.value) params.set("participating", form.participating.value);
  for (const [key, value] of Object.entries(RELIABILITY[form.reliability.value] || {})) params.set(key, value);
  return params;
}

export async function refresh() {
  const request = ++state.request;
  try {
    const page = await getJson(`/api/v1/homes?${query()}`);
    if (request !== state.request) return; // a newer query is on its way
    state.total = page.total;
    state.loaded = true;
    show(page);
  } catch (error) {
    failed(error, "Loading homes");
  }
}

async function act(home, action) {
  const spec = ACTIONS[action];
  if (spec.ask && !window.confirm(spec.ask.replace("{name}", home.name))) return;
  try {
    const response = await api(`/api/v1/homes/${encodeURIComponent(home.home_id)}${spec.tail}`, { method: spec.method });
    if (!response.ok) throw new Error(await errorMessage(response));
    await refresh();
  } catch (error) {
    failed(error, `${spec.label} ${home.name}`);
  }
}

function actions(home) {
  const names = [home.suspended ? "resume" : "suspend", "revoke", "remove"];
  return names.map((name) =>
    el("button", { type: "button", class: "btn btn-small", dataset: { action: name }, onclick: () => act(home, name) }, ACTIONS[name].label),
  );
}

function show(page) {
  const rows = page.homes.map((home) =>
    el(
      "tr",
      { dataset: { homeId: home.home_id } },
      el("td", { class: "name" }, home.name, el("span", { class: "sub" }, home.home_id)),
      el(
        "td",
        {},
        home.suspended
          ? el("span", { class: "badge badge-suspended" }, "suspended")
          : el("span", { class: home.connected ? "dot dot-on" : "dot" }, home.connected ? "online" : "offline"),
      ),
      el("td", { class: "wide" }, home.participating ? "yes" : "no"),
      el("td", { class: "num" }, num(home.flexible_kw, 1)),
      el("td", { class: "num wide" }, home.loads.length),
      el("td", { class: "num", title: `${home.finished_awards} finished awards` }, percent(home.reliability)),
      el("td", { class: "wide", title: home.last_seen_at || "" }, home.connected ? "now" : when(home.last_seen_at)),
      el("td", { class: "actions" }, actions(home)),
    ),
  );
  fillBody($("homes"), rows, 8, page.total ? "No home on this page." : "No home matches.");
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.homes.length;
  $("homes-range").textContent = page.total ? `${count(first)}–${count(last)} of ${count(page.total)} homes` : "0 homes";
  $("homes-prev").disabled = page.offset === 0;
  $("homes-next").disabled = last >= page.total;
}

export function wire(onFailure) {
  failed = onFailure;
  const form = $("homes-form");
  const again = () => {
    state.offset = 0;
    refresh();
  };
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    again();
  });
  form.elements.q.addEventListener("input", debounce(again, SEARCH_DELAY_MS));
  for (const name of ["online", "participating", "reliability", "sort"]) form.elements[name].addEventListener("change", again);
  $("homes-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    refresh();
  });
  $("homes-next").addEventListener("click", () => {
    if (state.offset + PAGE < state.total) state.offset += PAGE;
    refresh();
  });
}
