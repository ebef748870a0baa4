/*
 * The live view: the stream of snapshots (GET /api/v1/stream, Server-Sent Events read with
 * fetch() because EventSource cannot send headers), the watched event's figures, chart, rounds,
 * awards and activity, and the list of events with the new-event form.
 *
 * The chart and the activity come from the server (GET /api/v1/events/{id}/history): what
 * happened before this tab was opened, with the times it happened. Live snapshots add a chart
 * point a second; a change (status, round, award) fetches the activity again.
 */
import { Unauthorized, api, errorMessage, eventPath, getJson, session } from "./api.js";
import { drawEventChart } from "./charts.js";
import { $, badge, dateTime, debounce, el, fillBody, kw, num, price, stamp, time, when } from "./dom.js";

const STREAM_PATH = "/api/v1/stream";
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 10000;
const STALE_AFTER_MS = 5000;
const CHART_POINTS_MAX = 7200;
const HISTORY_REFETCH_MS = 800;
/** The activity is fetched again on every change, and at least this often while watched. */
const HISTORY_EVERY_MS = 5000;
export const LIVE_STATUSES = new Set(["draft", "negotiating", "committed", "active"]);

const state = {
  abort: null,
  reconnectMs: RECONNECT_MIN_MS,
  lastMessageAt: 0,
  staleTimer: null,
  events: [],
  liveKey: "",
  changeKey: "",
  watchedId: null,
  watched: null,
  points: [],
  pointsFor: null,
  loadingFor: null,
  fetchedAt: 0,
  ended: false,
  activity: [],
};
let hooks = { failed: () => {}, fleet: () => {} };

export function setHooks(next) {
  hooks = { ...hooks, ...next };
}

export function reset() {
  if (state.abort) state.abort.abort();
  state.abort = null;
  clearInterval(state.staleTimer);
  Object.assign(state, {
    lastMessageAt: 0, watchedId: null, watched: null, liveKey: "", changeKey: "", points: [], pointsFor: null,
    loadingFor: null, fetchedAt: 0, ended: false, activity: [],
  });
  $("activity").replaceChildren();
  setConnection("off", "offline");
}

export function start() {
  refreshEvents();
  connectStream();
  clearInterval(state.staleTimer);
  state.staleTimer = setInterval(() => {
    checkStale();
    pollHistory();
  }, 1000);
}

// --- the stream ------------------------------------------------------------------------------

function setConnection(kind, text) {
  const conn = $("conn");
  conn.className = `conn conn-${kind}`;
  conn.textContent = text;
}

function checkStale() {
  if (session.token && state.lastMessageAt && Date.now() - state.lastMessageAt > STALE_AFTER_MS) {
    setConnection("stale", "no data");
  }
}

async function connectStream() {
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  setConnection("wait", "connecting");
  try {
    const response = await api(STREAM_PATH, { headers: { Accept: "text/event-stream" }, signal: abort.signal });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    await readEvents(response.body, abort.signal);
    if (abort.signal.aborted) return;
    throw new Error("stream ended");
  } catch (error) {
    if (error instanceof Unauthorized) {
      hooks.failed(error, "Live stream");
      return;
    }
    if (abort.signal.aborted || !session.token) return;
    setConnection("wait", "reconnecting");
    const delay = state.reconnectMs;
    state.reconnectMs = Math.min(RECONNECT_MAX_MS, state.reconnectMs * 2);
    setTimeout(() => {
      if (state.abort === abort && session.token) connectStream();
    }, delay);
  }
}

async function readEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (!signal.aborted) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatchFrame(frame);
    }
  }
}

function dispatchFrame(frame) {
  let name = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join("\n"));
  state.lastMessageAt = Date.now();
  state.reconnectMs = RECONNECT_MIN_MS;
  setConnection("on", "live");
  if (name === "snapshot") onSnapshot(payload);
}

// --- snapshots -------------------------------------------------------------------------------

function onSnapshot(snapshot) {
  $("stat-homes").textContent = String(snapshot.homes_online);
  $("stat-flex").textContent = kw(snapshot.flexible_kw);
  hooks.fleet(snapshot);
  const live = snapshot.events;
  const liveKey = live.map((event) => `${event.id}:${event.status}`).join(",");
  if (liveKey !== state.liveKey) {
    state.liveKey = liveKey;
    refreshEvents();
  }
  let watched = live.find((event) => event.id === state.watchedId);
  if (!watched && (!state.watched || !LIVE_STATUSES.has(state.watched.status) || !state.watchedId)) {
    watched = live[0];
  }
  if (!watched) return;
  state.watchedId = watched.id;
  state.watched = watched;
  showEvent(watched);
  const changeKey = [
    watched.id,
    watched.status,
    ...watched.rounds.map((round) => `${round.round}${round.status}`),
    ...watched.awards.map((award) => `${award.award_id}${award.status}`),
  ].join("|");
  if (watched.id !== state.pointsFor && watched.id !== state.loadingFor) {
    // Another event: its own stored history replaces the chart (nothing of the last one stays).
    state.points = [];
    state.pointsFor = null;
    delete $("chart").dataset.points;
    loadHistory(watched.id);
  } else if (changeKey !== state.changeKey) {
    refetchHistory(watched.id);
  }
  state.changeKey = changeKey;
  addPoint(snapshot.ts, watched);
}

function addPoint(ts, event) {
  if (state.pointsFor !== event.id) return; // the stored history comes first
  const last = state.points[state.points.length - 1];
  if (last && Date.parse(last.ts) >= Date.parse(ts)) return;
  state.points.push({ ts, status: event.status, target_kw: event.target_kw, committed_kw: event.committed_kw, delivered_kw: event.delivered_kw });
  if (state.points.length > CHART_POINTS_MAX) state.points.splice(0, state.points.length - CHART_POINTS_MAX);
  drawChart();
}

async function loadHistory(eventId) {
  state.loadingFor = eventId;
  try {
    const story = await getJson(eventPath(eventId, "/history"));
    if (state.watchedId !== eventId || state.loadingFor !== eventId) return;
    state.pointsFor = eventId;
    state.points = story.points;
    showActivity(story);
    drawChart();
  } catch (error) {
    hooks.failed(error, "Loading the event's history");
  } finally {
    if (state.loadingFor === eventId) state.loadingFor = null;
  }
}

const refetchHistory = debounce(async (eventId) => {
  state.fetchedAt = Date.now();
  try {
    const story = await getJson(eventPath(eventId, "/history"));
    if (state.watchedId === eventId) showActivity(story);
  } catch (error) {
    hooks.failed(error, "Loading the event's activity");
  }
}, HISTORY_REFETCH_MS);

/** Until the stored story of the watched event says it ended, look again every few seconds. */
function pollHistory() {
  if (state.watchedId && !state.ended && Date.now() - state.fetchedAt >= HISTORY_EVERY_MS) {
    refetchHistory(state.watchedId);
  }
}

function showActivity(story) {
  const last = story.points[story.points.length - 1];
  state.ended = Boolean(last && !LIVE_STATUSES.has(last.status));
  state.activity = story.activity;
  const items = story.activity.map((item) =>
    el(
      "li",
      { class: `activity-${item.kind}` },
      el("time", { datetime: item.ts, title: dateTime(item.ts) }, stamp(item.ts)),
      " ",
      item.text,
    ),
  );
  $("activity").replaceChildren(...items);
  const more = story.activity_total - story.activity.length;
  $("activity-more").hidden = more <= 0;
  $("activity-more").textContent = `${more} earlier items not shown.`;
}

/** A message of the page itself (errors) at the top of the activity list, with its time. */
export function notice(text) {
  const now = new Date().toISOString();
  $("activity").prepend(el("li", { class: "error" }, el("time", { datetime: now }, stamp(now)), " ", text));
}

function drawChart() {
  if (!window.Chart || !state.points.length) return;
  $("chart-empty").hidden = true;
  $("chart-box").hidden = false;
  drawEventChart($("chart"), state.points);
}

function showEvent(event) {
  $("event-title").textContent = event.name;
  const status = $("event-status");
  status.hidden = false;
  status.className = `badge badge-${event.status}`;
  status.textContent = event.status;
  $("event-cancel").hidden = !LIVE_STATUSES.has(event.status);
  const details = $("event-details");
  details.hidden = false;
  details.href = `#/events/${encodeURIComponent(event.id)}`;
  $("event-meta").textContent =
    `${event.kind} · ${dateTime(event.start)} → ${time(event.end)} · ` +
    `cap ${price(event.price_cap, event.currency)}/kWh · round ${event.current_round || "–"}` +
    (event.pending_kw > 0 ? ` · ${kw(event.pending_kw)} awaiting acks` : "");
  $("stat-target").textContent = kw(event.target_kw);
  $("stat-committed").textContent = kw(event.committed_kw);
  $("stat-delivered").textContent = kw(event.delivered_kw);
  $("stat-price").textContent = event.clearing_price === null ? "–" : price(event.clearing_price, event.currency);
  showRounds(event);
  showAwards(event);
}

function showRounds(event) {
  const rows = [...event.rounds].reverse().map((round) =>
    el(
      "tr",
      {},
      el("td", {}, round.round),
      el("td", {}, badge(round.status)),
      el("td", { class: "num" }, num(round.target_kw, 1)),
      el("td", { class: "num wide" }, round.bids),
      el("td", { class: "num wide" }, num(round.offered_kw, 1)),
      el("td", { class: "num" }, num(round.accepted_kw, 1)),
      el("td", { class: "num" }, round.clearing_price === null ? "–" : num(round.clearing_price, 3)),
    ),
  );
  fillBody($("rounds"), rows, 7, "No round yet.");
}

function showAwards(event) {
  const awards = [...event.awards].sort((a, b) => b.committed_kw - a.committed_kw || a.round - b.round);
  const rows = awards.map((award) =>
    el(
      "tr",
      { dataset: { homeId: award.home_id } },
      el("td", {}, award.home_name || award.home_id),
      el("td", { class: "wide" }, award.round),
      el("td", {}, badge(award.status)),
      el("td", { class: "num" }, num(award.kw, 1)),
      el("td", { class: "num" }, num(award.committed_kw, 1)),
      el("td", { class: "num wide" }, award.price === null ? "–" : num(award.price, 3)),
      el("td", { class: "loads wide" }, (award.load_names || award.loads).join(", ") || "–"),
    ),
  );
  fillBody($("awards"), rows, 7, "No award yet.");
  const more = $("awards-more");
  more.hidden = event.awards_total <= event.awards.length;
  more.textContent = `Showing ${event.awards.length} of ${event.awards_total} awards (all of them under Details).`;
}

function noteFinished() {
  // An event leaves the stream when it ends: the list says how; keep its last picture.
  const watched = state.watched;
  const listed = watched && state.events.find((event) => event.id === watched.id);
  if (listed && !LIVE_STATUSES.has(listed.status) && LIVE_STATUSES.has(watched.status)) {
    state.watched = { ...watched, status: listed.status };
    showEvent(state.watched);
    refetchHistory(watched.id);
  }
}

// --- events: list, create, cancel ------------------------------------------------------------

export async function refreshEvents() {
  try {
    state.events = (await getJson("/api/v1/events?limit=50")).events;
    showEvents();
    noteFinished();
  } catch (error) {
    hooks.failed(error, "Loading events");
  }
}

function showEvents() {
  const rows = state.events.map((event) => {
    const actions = el("td", { class: "actions" });
    if (LIVE_STATUSES.has(event.status)) {
      actions.append(
        el("button", { type: "button", class: "btn btn-small", onclick: () => watch(event.id) }, "Watch"),
        el("button", { type: "button", class: "btn btn-small btn-danger", onclick: () => cancelEvent(event) }, "Cancel"),
      );
    } else {
      actions.append(
        el("a", { class: "btn btn-small", href: `#/events/${encodeURIComponent(event.id)}/settlement` }, "Settlement"),
      );
    }
    actions.append(el("a", { class: "btn btn-small", href: `#/events/${encodeURIComponent(event.id)}` }, "Details"));
    return el(
      "tr",
      { dataset: { eventId: event.id } },
      el("td", { class: "name" }, event.name),
      el("td", { class: "wide" }, event.kind),
      el("td", {}, badge(event.status)),
      el("td", { class: "num wide" }, num(event.target_kw, 1)),
      el("td", { title: dateTime(event.start) }, when(event.start)),
      el("td", { class: "wide", title: dateTime(event.end) }, when(event.end)),
      el("td", { class: "num wide" }, event.clearing_price === null ? "–" : price(event.clearing_price, event.currency)),
      actions,
    );
  });
  fillBody($("events"), rows, 8, "No event yet.");
}

function watch(eventId) {
  state.watchedId = eventId;
  state.watched = null;
  $("event-panel").scrollIntoView({ behavior: "smooth", block: "start" });
}

export async function cancelEvent(event) {
  if (!window.confirm(`Cancel “${event.name}”? Homes restore their loads.`)) return;
  try {
    const response = await api(eventPath(event.id, "/cancel"), { method: "POST", body: { reason: "cancelled by the operator" } });
    if (!response.ok) throw new Error(await errorMessage(response));
    await refreshEvents();
  } catch (error) {
    hooks.failed(error, "Cancel");
  }
}

function eventBody(form) {
  const data = new FormData(form);
  const now = Date.now();
  const startMs = now + Number(data.get("start_in")) * Number(data.get("start_unit")) * 1000;
  const endMs = startMs + Number(data.get("duration")) * Number(data.get("duration_unit")) * 1000;
  return {
    name: String(data.get("name")).trim() || "DR event",
    kind: data.get("kind"),
    target_kw: Number(data.get("target_kw")),
    price_cap: Number(data.get("price_cap")),
    start: new Date(startMs).toISOString(),
    end: new Date(endMs).toISOString(),
    bid_window_s: Number(data.get("bid_window_s")),
    restore_stagger_s: Number(data.get("restore_stagger_s")),
  };
}

async function createEvent(submit) {
  submit.preventDefault();
  const form = submit.currentTarget;
  const result = $("create-result");
  result.className = "form-result";
  result.textContent = "Creating…";
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const response = await api("/api/v1/events", { method: "POST", body: eventBody(form) });
    if (!response.ok) {
      result.className = "form-result form-error";
      result.textContent = await errorMessage(response);
      return;
    }
    const event = await response.json();
    result.textContent = `Created “${event.name}”.`;
    state.watchedId = event.id;
    state.watched = null;
    await refreshEvents();
  } catch (error) {
    result.textContent = "";
    hooks.failed(error, "Create");
  } finally {
    button.disabled = false;
  }
}

export function wire() {
  $("create-form").addEventListener("submit", createEvent);
  $("create-form").elements.kind.addEventListener("change", (change) => {
    $("price-label").textContent = change.target.value === "direct" ? "Incentive /kWh" : "Price cap /kWh";
  });
  $("event-cancel").addEventListener("click", () => {
    if (state.watched) cancelEvent(state.watched);
  });
}
