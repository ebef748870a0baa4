/*
 * The event view (#/events/<id>): the event's figures, its chart and activity from the server,
 * each round's bid curve in merit order with the clearing price, committed vs delivered per
 * home (a page at a time), and its settlement (#/events/<id>/settlement).
 */
import { eventPath, getJson } from "./api.js";
import { drawBidCurve, drawEventChart, drawHomesBars } from "./charts.js";
import { $, badge, count, dateTime, el, fillBody, kw, num, price, stamp, time, words } from "./dom.js";
import { LIVE_STATUSES, cancelEvent } from "./live.js";
import * as settlement from "./settlement.js";

const PAGE = 20;
const NAMES_PAGE = 500;
const REFRESH_MS = 5000;

const state = { eventId: null, event: null, round: null, offset: 0, total: 0, names: new Map(), timer: null };
let failed = () => {};

export const homeName = (homeId) => state.names.get(homeId) || null;

export function wire(onFailure) {
  failed = onFailure;
  $("detail-round").addEventListener("change", (change) => showRound(Number(change.target.value)));
  $("detail-prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    loadHomes();
  });
  $("detail-next").addEventListener("click", () => {
    if (state.offset + PAGE < state.total) state.offset += PAGE;
    loadHomes();
  });
  $("detail-cancel").addEventListener("click", async () => {
    if (state.event) {
      await cancelEvent(state.event);
      refresh();
    }
  });
  settlement.wire(homeName, onFailure);
}

/** Show an event (and its settlement when asked); refresh it every few seconds while it runs. */
export async function open(eventId, withSettlement) {
  if (state.eventId !== eventId) {
    Object.assign(state, { eventId, event: null, round: null, offset: 0, total: 0, names: new Map() });
    $("detail-title").textContent = "Loading…";
    $("settlement-table").hidden = true;
    $("settlement-csv").hidden = true;
    $("settlement-note").className = "muted";
    $("settlement-note").textContent = "Choose “Settlement” above to see what each home delivered and earns.";
  }
  await refresh();
  if (withSettlement && state.event) {
    await loadNames();
    await settlement.load(state.event);
    $("settlement").scrollIntoView({ block: "start" });
  }
}

export function close() {
  clearTimeout(state.timer);
  state.timer = null;
  state.eventId = null;
}

async function refresh() {
  clearTimeout(state.timer);
  const eventId = state.eventId;
  if (!eventId) return;
  try {
    const [event, story] = await Promise.all([getJson(eventPath(eventId)), getJson(eventPath(eventId, "/history"))]);
    if (state.eventId !== eventId) return;
    state.event = event;
    showFigures(event);
    showStory(story);
    showRounds(event);
    await loadHomes();
    if (LIVE_STATUSES.has(event.status)) state.timer = setTimeout(refresh, REFRESH_MS);
  } catch (error) {
    failed(error, "Loading the event");
  }
}

function showFigures(event) {
  $("detail-title").textContent = event.name;
  const status = $("detail-status");
  status.className = `badge badge-${event.status}`;
  status.textContent = words(event.status);
  $("detail-cancel").hidden = !LIVE_STATUSES.has(event.status);
  $("detail-settlement").href = `#/events/${encodeURIComponent(event.id)}/settlement`;
  $("detail-meta").textContent =
    `${event.id} · ${event.kind} · ${dateTime(event.start)} → ${time(event.end)} · ` +
    `cap ${price(event.price_cap, event.currency)}/kWh · baseline ${words(event.baseline_method)}`;
  $("detail-target").textContent = kw(event.target_kw);
  $("detail-committed").textContent = kw(event.committed_kw);
  $("detail-delivered").textContent = kw(event.delivered_kw);
  $("detail-price").textContent = event.clearing_price === null ? "–" : price(event.clearing_price, event.currency);
}

function showStory(story) {
  const hasPoints = story.points.length > 0;
  $("detail-chart-empty").hidden = hasPoints;
  $("detail-chart-box").hidden = !hasPoints;
  if (hasPoints && window.Chart) drawEventChart($("detail-chart"), story.points);
  $("detail-activity").replaceChildren(
    ...story.activity.map((item) =>
      el("li", {}, el("time", { datetime: item.ts, title: dateTime(item.ts) }, stamp(item.ts)), " ", item.text),
    ),
  );
}

function showRounds(event) {
  const select = $("detail-round");
  const numbers = event.rounds.map((round) => round.round);
  const chosen = numbers.includes(state.round) ? state.round : numbers[numbers.length - 1] ?? null;
  select.replaceChildren(
    ...event.rounds.map((round) =>
      el("option", { value: String(round.round), selected: round.round === chosen }, `Round ${round.round} (${words(round.status)})`),
    ),
  );
  $("detail-curve-panel").hidden = chosen === null;
  $("detail-no-round").hidden = chosen !== null;
  if (chosen !== null) showRound(chosen);
}

async function showRound(number) {
  state.round = number;
  const eventId = state.eventId;
  try {
    const curve = await getJson(eventPath(eventId, `/rounds/${number}/bids`));
    if (state.eventId !== eventId || state.round !== number) return;
    const accepted = curve.steps.filter((step) => step.accepted);
    $("detail-curve-note").textContent =
      `${count(curve.steps.length)} steps offered ${kw(curve.offered_kw)} for a target of ${kw(curve.target_kw)}; ` +
      `${count(accepted.length)} accepted (${kw(curve.accepted_kw)})` +
      (curve.clearing_price === null ? "; not cleared yet." : ` at ${price(curve.clearing_price, curve.currency)}/kWh.`);
    const empty = curve.steps.length === 0;
    $("detail-curve-box").hidden = empty;
    $("detail-curve-empty").hidden = !empty;
    if (!empty && window.Chart) drawBidCurve($("detail-curve"), curve);
  } catch (error) {
    failed(error, "Loading the bid curve");
  }
}

async function loadNames() {
  try {
    const page = await getJson(eventPath(state.eventId, `/homes?limit=${NAMES_PAGE}`));
    for (const home of page.homes) state.names.set(home.home_id, home.home_name);
  } catch (error) {
    failed(error, "Loading the event's homes");
  }
}

async function loadHomes() {
  const eventId = state.eventId;
  const page = await getJson(eventPath(eventId, `/homes?offset=${state.offset}&limit=${PAGE}`));
  if (state.eventId !== eventId) return;
  state.total = page.total;
  for (const home of page.homes) state.names.set(home.home_id, home.home_name);
  const rows = page.homes.map((home) =>
    el(
      "tr",
      { dataset: { homeId: home.home_id } },
      el("td", { class: "name" }, home.home_name),
      el("td", { class: "wide" }, badge(home.status)),
      el("td", { class: "num wide" }, num(home.awarded_kw, 1)),
      el("td", { class: "num" }, num(home.committed_kw, 1)),
      el("td", { class: "num" }, num(home.delivered_kw, 1)),
      el("td", { class: "loads wide" }, home.loads.map((load) => load.name).join(", ") || "–"),
    ),
  );
  fillBody($("detail-homes"), rows, 6, "No home was awarded anything.");
  const last = page.offset + page.homes.length;
  $("detail-homes-range").textContent = page.total ? `${page.offset + 1}–${last} of ${count(page.total)} homes` : "";
  $("detail-prev").disabled = page.offset === 0;
  $("detail-next").disabled = last >= page.total;
  $("detail-homes-totals").textContent =
    `${kw(page.committed_kw)} committed by all homes; the homes on this page delivered ` +
    `${page.delivered_kw === null ? "–" : kw(page.delivered_kw)} on average over the event.`;
  const hasHomes = page.homes.length > 0;
  $("detail-bars-box").hidden = !hasHomes;
  if (hasHomes && window.Chart) drawHomesBars($("detail-bars"), page.homes);
}
