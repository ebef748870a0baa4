/*
 * Jeisson operator dashboard: sign-in, the live stream, the event chart and tables.
 *
 * The operator token lives in sessionStorage only (never in a URL, never logged) and goes out
 * in the Authorization header. The live stream (GET /api/v1/stream, Server-Sent Events) is read
 * with fetch() and a stream reader because EventSource cannot send headers. Every value from
 * the server is put on the page as text (textContent), never as HTML.
 */
"use strict";

(() => {
  const TOKEN_KEY = "jeisson.operatorToken";
  const STREAM_PATH = "/api/v1/stream";
  const RECONNECT_MIN_MS = 1000;
  const RECONNECT_MAX_MS = 10000;
  const STALE_AFTER_MS = 5000;
  const HOMES_REFRESH_MS = 5000;
  const ACTIVITY_MAX = 50;
  const HOMES_SHOWN = 200;
  const CHART_POINTS_MAX = 7200;
  const LIVE_STATUSES = new Set(["draft", "negotiating", "committed", "active"]);
  const COLORS = { target: "#6b7280", committed: "#2563eb", delivered: "#16a34a" };

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    abort: null,
    reconnectMs: RECONNECT_MIN_MS,
    lastMessageAt: 0,
    staleTimer: null,
    homes: new Map(),
    homesFetchedAt: 0,
    homesOnline: null,
    events: [],
    liveKey: "",
    watchedId: null,
    watched: null,
    chart: null,
    history: {},
    series: new Map(),
    seenRounds: new Map(),
    seenAwards: new Map(),
    seenStatus: new Map(),
    settlementEventId: null,
  };

  // --- small helpers ------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const num = (value, digits) =>
    value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
  const kw = (value) => (value === null || value === undefined ? "–" : `${num(value, 1)} kW`);
  const price = (value, currency) =>
    value === null || value === undefined ? "–" : `${num(value, 3)} ${currency || ""}`.trim();
  const time = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) : "–");
  const dateTime = (iso) =>
    iso
      ? new Date(iso).toLocaleString([], {
          month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
        })
      : "–";
  const sameDay = (a, b) => a.toDateString() === b.toDateString();
  const when = (iso) =>
    iso && sameDay(new Date(iso), new Date())
      ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false })
      : dateTime(iso);
  const homeName = (homeId) => state.homes.get(homeId)?.name || homeId;
  const words = (value) => (value ? String(value).replaceAll("_", " ") : "–");
  const badge = (status) => el("span", { class: `badge badge-${status}` }, words(status));

  function fillBody(table, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
  }

  function emptyRow(columns, text) {
    return el("tr", { class: "empty" }, el("td", { colspan: String(columns) }, text));
  }

  // --- sign-in and API calls ----------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method: options.method || "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) throw new Unauthorized("token refused");
    return response;
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      return body.message || body.error || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  function handleFailure(error, where) {
    if (error instanceof Unauthorized) {
      logout("The server refused the token: sign in again.");
      return;
    }
    addActivity(`${where}: ${error.message || error}`, "error");
  }

  async function login(token) {
    state.token = token;
    const response = await api("/api/v1/events?limit=1");
    if (!response.ok) throw new Error(await errorMessage(response));
    sessionStorage.setItem(TOKEN_KEY, token);
  }

  function logout(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    if (state.abort) state.abort.abort();
    state.abort = null;
    clearInterval(state.staleTimer);
    // Forget what this session saw: the next sign-in starts clean.
    Object.assign(state, { lastMessageAt: 0, watchedId: null, watched: null, liveKey: "", history: {} });
    for (const seen of [state.series, state.seenRounds, state.seenAwards, state.seenStatus]) seen.clear();
    $("activity").replaceChildren();
    setConnection("off", "offline");
    $("app-view").hidden = true;
    $("logout").hidden = true;
    $("login-view").hidden = false;
    $("token").value = "";
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
  }

  async function showApp() {
    $("login-view").hidden = true;
    $("login-error").hidden = true;
    $("app-view").hidden = false;
    $("logout").hidden = false;
    refreshEvents();
    await refreshHomes(); // names first, so the activity feed can name homes
    if (!state.token) return;
    connectStream();
    clearInterval(state.staleTimer);
    state.staleTimer = setInterval(checkStale, 1000);
  }

  // --- the live stream ----------------------------------------------------------------------

  function setConnection(kind, text) {
    const conn = $("conn");
    conn.className = `conn conn-${kind}`;
    conn.textContent = text;
  }

  function checkStale() {
    if (state.token && state.lastMessageAt && Date.now() - state.lastMessageAt > STALE_AFTER_MS) {
      setConnection("stale", "no data");
    }
  }

  async function connectStream() {
    if (state.abort) state.abort.abort();
    const abort = new AbortController();
    state.abort = abort;
    setConnection("wait", "connecting");
    try {
      const response = await fetch(STREAM_PATH, {
        headers: { Authorization: `Bearer ${state.token}`, Accept: "text/event-stream" },
        cache: "no-store",
        credentials: "omit",
        signal: abort.signal,
      });
      if (response.status === 401) {
        logout("The server refused the token: sign in again.");
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      await readEvents(response.body, abort.signal);
      if (abort.signal.aborted) return;
      throw new Error("stream ended");
    } catch (error) {
      if (abort.signal.aborted || !state.token) return;
      setConnection("wait", "reconnecting");
      const delay = state.reconnectMs;
      state.reconnectMs = Math.min(RECONNECT_MAX_MS, state.reconnectMs * 2);
      setTimeout(() => {
        if (state.abort === abort && state.token) connectStream();
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
    if (name === "history") state.history = payload;
    else if (name === "snapshot") onSnapshot(payload);
  }

  // --- snapshots ----------------------------------------------------------------------------

  function onSnapshot(snapshot) {
    $("stat-homes").textContent = String(snapshot.homes_online);
    $("stat-flex").textContent = kw(snapshot.flexible_kw);
    if (state.homesOnline !== snapshot.homes_online) {
      state.homesOnline = snapshot.homes_online;
      refreshHomes();
    }
    const live = snapshot.events;
    const liveKey = live.map((event) => `${event.id}:${event.status}`).join(",");
    if (liveKey !== state.liveKey) {
      state.liveKey = liveKey;
      refreshEvents();
    }
    for (const event of live) {
      trackChanges(event);
      recordPoint(snapshot.ts, event);
    }
    let watched = live.find((event) => event.id === state.watchedId);
    if (!watched && (!state.watched || !LIVE_STATUSES.has(state.watched.status) || !state.watchedId)) {
      watched = live[0];
    }
    if (watched) {
      state.watchedId = watched.id;
      state.watched = watched;
      showEvent(watched);
      drawChart(watched.id);
    }
    forgetFinished(live);
  }

  function noteStatus(event) {
    const previous = state.seenStatus.get(event.id);
    if (previous === event.status) return;
    state.seenStatus.set(event.id, event.status);
    if (previous !== undefined || LIVE_STATUSES.has(event.status)) {
      addActivity(`${event.name}: ${event.status}`);
    }
  }

  function noteFinished() {
    // An event leaves the stream when it ends: the list says how; keep its last picture.
    for (const event of state.events) {
      if (state.seenStatus.has(event.id)) noteStatus(event);
    }
    const watched = state.watched;
    const listed = watched && state.events.find((event) => event.id === watched.id);
    if (listed && !LIVE_STATUSES.has(listed.status) && LIVE_STATUSES.has(watched.status)) {
      state.watched = { ...watched, status: listed.status };
      showEvent(state.watched);
    }
  }

  function trackChanges(event) {
    noteStatus(event);
    for (const round of event.rounds) {
      const key = `${event.id}/${round.round}`;
      const before = state.seenRounds.get(key);
      if (before === round.status) continue;
      state.seenRounds.set(key, round.status);
      if (round.status === "open") {
        addActivity(`Round ${round.round} opened: ${kw(round.target_kw)} asked of ${round.offered_homes} homes`);
      } else if (round.status === "cleared") {
        addActivity(
          `Round ${round.round} cleared: ${kw(round.accepted_kw)} accepted` +
            (round.clearing_price === null ? "" : ` at ${price(round.clearing_price, event.currency)}/kWh`) +
            (round.shortfall_kw > 0 ? `, ${kw(round.shortfall_kw)} short` : ""),
        );
      } else {
        addActivity(`Round ${round.round} ${round.status}`);
      }
    }
    for (const award of event.awards) {
      const before = state.seenAwards.get(award.award_id);
      if (before === award.status) continue;
      state.seenAwards.set(award.award_id, award.status);
      if (award.status !== "sent") addActivity(`${homeName(award.home_id)}: award ${award.status} (${kw(award.kw)})`);
    }
  }

  function addActivity(text, kind) {
    const list = $("activity");
    const stamp = new Date().toLocaleTimeString([], { hour12: false });
    list.prepend(el("li", { class: kind === "error" ? "error" : "" }, el("time", {}, stamp), " ", text));
    while (list.children.length > ACTIVITY_MAX) list.lastElementChild.remove();
  }

  function showEvent(event) {
    $("event-title").textContent = event.name;
    const status = $("event-status");
    status.hidden = false;
    status.className = `badge badge-${event.status}`;
    status.textContent = event.status;
    $("event-cancel").hidden = !LIVE_STATUSES.has(event.status);
    $("event-meta").textContent =
      `${event.kind} · ${dateTime(event.start)} → ${time(event.end)} · ` +
      `cap ${price(event.price_cap, event.currency)}/kWh · round ${event.current_round || "–"}` +
      (event.pending_kw > 0 ? ` · ${kw(event.pending_kw)} awaiting acks` : "");
    $("stat-target").textContent = kw(event.target_kw);
    $("stat-committed").textContent = kw(event.committed_kw);
    $("stat-delivered").textContent = kw(event.delivered_kw);
    $("stat-price").textContent =
      event.clearing_price === null ? "–" : price(event.clearing_price, event.currency);
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
    fillBody($("rounds"), rows.length ? rows : [emptyRow(7, "No round yet.")]);
  }

  function showAwards(event) {
    const awards = [...event.awards].sort((a, b) => b.committed_kw - a.committed_kw || a.round - b.round);
    const rows = awards.map((award) =>
      el(
        "tr",
        {},
        el("td", {}, homeName(award.home_id)),
        el("td", { class: "wide" }, award.round),
        el("td", {}, badge(award.status)),
        el("td", { class: "num" }, num(award.kw, 1)),
        el("td", { class: "num" }, num(award.committed_kw, 1)),
        el("td", { class: "num wide" }, award.price === null ? "–" : num(award.price, 3)),
        el("td", { class: "loads wide" }, award.loads.join(", ") || "–"),
      ),
    );
    fillBody($("awards"), rows.length ? rows : [emptyRow(7, "No award yet.")]);
    const more = $("awards-more");
    more.hidden = event.awards_total <= event.awards.length;
    more.textContent = `Showing ${event.awards.length} of ${event.awards_total} awards.`;
  }

  // --- the chart ----------------------------------------------------------------------------

  function makeChart() {
    const line = (label, color, extra) => ({
      label,
      data: [],
      borderColor: color,
      backgroundColor: color,
      borderWidth: 2,
      pointRadius: 0,
      stepped: true,
      ...extra,
    });
    return new window.Chart($("chart"), {
      type: "line",
      data: {
        datasets: [
          line("Target", COLORS.target, { borderDash: [6, 4] }),
          line("Committed", COLORS.committed),
          line("Delivered", COLORS.delivered, { stepped: false, fill: { target: "origin" }, backgroundColor: "rgba(22,163,74,0.12)" }),
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: {
            type: "linear",
            ticks: { maxTicksLimit: 6, callback: (value) => new Date(value).toLocaleTimeString([], { hour12: false }) },
          },
          y: { beginAtZero: true, title: { display: true, text: "kW" } },
        },
        plugins: {
          legend: { position: "bottom", labels: { usePointStyle: true, pointStyle: "line", boxWidth: 28 } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? new Date(items[0].parsed.x).toLocaleTimeString([], { hour12: false }) : ""),
              label: (item) => `${item.dataset.label}: ${num(item.parsed.y, 2)} kW`,
            },
          },
        },
      },
    });
  }

  function recordPoint(ts, event) {
    let series = state.series.get(event.id);
    if (!series) {
      // First sight of this event: start from the chart the server kept since it began.
      series = (state.history[event.id] || []).map(([pointTs, t, c, d]) => ({ x: Date.parse(pointTs), t, c, d }));
      state.series.set(event.id, series);
    }
    const x = Date.parse(ts);
    if (!series.length || series[series.length - 1].x < x) {
      series.push({ x, t: event.target_kw, c: event.committed_kw, d: event.delivered_kw });
    }
    if (series.length > CHART_POINTS_MAX) series.splice(0, series.length - CHART_POINTS_MAX);
  }

  function forgetFinished(live) {
    const running = new Set(live.map((event) => event.id));
    for (const eventId of state.series.keys()) {
      if (!running.has(eventId) && eventId !== state.watchedId) state.series.delete(eventId);
    }
  }

  function drawChart(eventId) {
    const series = state.series.get(eventId) || [];
    if (!window.Chart || !series.length) return;
    $("chart-empty").hidden = true;
    $("chart-box").hidden = false;
    if (!state.chart) state.chart = makeChart();
    const [target, committed, delivered] = state.chart.data.datasets;
    target.data = series.map((point) => ({ x: point.x, y: point.t }));
    committed.data = series.map((point) => ({ x: point.x, y: point.c }));
    delivered.data = series.map((point) => ({ x: point.x, y: point.d }));
    $("chart").dataset.points = String(series.length);
    state.chart.update("none");
  }

  // --- events: list, create, cancel ---------------------------------------------------------

  async function refreshEvents() {
    try {
      const response = await api("/api/v1/events?limit=50");
      if (!response.ok) throw new Error(await errorMessage(response));
      state.events = (await response.json()).events;
      showEvents();
      noteFinished();
    } catch (error) {
      handleFailure(error, "Loading events");
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
          el("button", { type: "button", class: "btn btn-small", onclick: () => loadSettlement(event) }, "Settlement"),
        );
      }
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
    fillBody($("events"), rows.length ? rows : [emptyRow(8, "No event yet.")]);
  }

  function watch(eventId) {
    state.watchedId = eventId;
    state.watched = null;
    $("event-panel").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  async function cancelEvent(event) {
    if (!window.confirm(`Cancel “${event.name}”? Homes restore their loads.`)) return;
    try {
      const response = await api(`/api/v1/events/${encodeURIComponent(event.id)}/cancel`, {
        method: "POST",
        body: { reason: "cancelled by the operator" },
      });
      if (!response.ok) throw new Error(await errorMessage(response));
      addActivity(`${event.name}: cancel sent`);
      await refreshEvents();
    } catch (error) {
      handleFailure(error, "Cancel");
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
      handleFailure(error, "Create");
    } finally {
      button.disabled = false;
    }
  }

  // --- homes --------------------------------------------------------------------------------

  async function refreshHomes() {
    if (Date.now() - state.homesFetchedAt < HOMES_REFRESH_MS && state.homes.size) {
      return;
    }
    state.homesFetchedAt = Date.now();
    try {
      const response = await api("/api/v1/homes");
      if (!response.ok) throw new Error(await errorMessage(response));
      const homes = (await response.json()).homes;
      state.homes = new Map(homes.map((home) => [home.home_id, home]));
      showHomes(homes);
      if (state.watched) showAwards(state.watched);
    } catch (error) {
      handleFailure(error, "Loading homes");
    }
  }

  function showHomes(homes) {
    const sorted = [...homes].sort((a, b) => Number(b.connected) - Number(a.connected) || a.name.localeCompare(b.name));
    const rows = sorted.slice(0, HOMES_SHOWN).map((home) =>
      el(
        "tr",
        {},
        el("td", {}, home.name),
        el("td", {}, el("span", { class: home.connected ? "dot dot-on" : "dot" }, home.connected ? "online" : "offline")),
        el("td", { class: "wide" }, home.participating ? "yes" : "no"),
        el("td", { class: "num" }, num(home.flexible_kw, 1)),
        el("td", { class: "wide" }, dateTime(home.last_seen_at)),
      ),
    );
    fillBody($("homes"), rows.length ? rows : [emptyRow(5, "No home yet.")]);
    const more = $("homes-more");
    more.hidden = sorted.length <= HOMES_SHOWN;
    more.textContent = `Showing ${HOMES_SHOWN} of ${sorted.length} homes.`;
  }

  // --- settlement ---------------------------------------------------------------------------

  async function loadSettlement(event) {
    state.settlementEventId = event.id;
    const note = $("settlement-note");
    const table = $("settlement-table");
    const csv = $("settlement-csv");
    $("settlement-title").textContent = `Settlement — ${event.name}`;
    table.hidden = true;
    csv.hidden = true;
    note.className = "muted";
    note.textContent = "Loading…";
    $("settlement").scrollIntoView({ behavior: "smooth", block: "start" });
    try {
      const response = await api(`/api/v1/events/${encodeURIComponent(event.id)}/settlement`);
      if (state.settlementEventId !== event.id) return;
      if (response.status === 404) {
        note.className = "notice";
        note.textContent = "Settlement not available yet for this event.";
        return;
      }
      if (!response.ok) {
        note.className = "notice";
        note.textContent = `Settlement not available: ${await errorMessage(response)}`;
        return;
      }
      showSettlement(await response.json(), event);
    } catch (error) {
      note.textContent = "";
      handleFailure(error, "Settlement");
    }
  }

  function showSettlement(report, event) {
    const currency = report.currency || event.currency;
    const method = words(report.baseline_method || "");
    const money = (value) => (value === null || value === undefined ? "–" : `${num(value, 2)} ${currency}`);
    const rows = report.homes.map((home) =>
      el(
        "tr",
        { dataset: { homeId: home.home_id } },
        el("td", {}, homeName(home.home_id)),
        el(
          "td",
          { class: "wide baseline" },
          words(home.baseline_method || home.baseline_outcome),
          home.baseline_reason ? el("span", { class: "reason" }, home.baseline_reason) : null,
        ),
        el("td", { class: "num wide" }, num(home.baseline_kwh, 2)),
        el("td", { class: "num wide" }, num(home.measured_kwh, 2)),
        el("td", { class: "num" }, num(home.delivered_kwh, 2)),
        el("td", { class: "num wide" }, num(home.price ?? home.price_per_kwh, 3)),
        el("td", { class: "num" }, money(home.payment)),
        el("td", {}, home.status ? badge(home.status) : "–"),
      ),
    );
    const table = $("settlement-table");
    fillBody(table, rows.length ? rows : [emptyRow(8, "No home took part.")]);
    const totals = report.totals || {};
    table.tFoot.replaceChildren(
      el(
        "tr",
        {},
        el("th", {}, "Total"),
        el("td", { class: "wide" }, ""),
        el("td", { class: "num wide" }, num(totals.baseline_kwh, 2)),
        el("td", { class: "num wide" }, num(totals.measured_kwh, 2)),
        el("td", { class: "num" }, num(totals.delivered_kwh, 2)),
        el("td", { class: "wide" }, ""),
        el("td", { class: "num" }, money(totals.payment)),
        el("td", {}, totals.homes === undefined ? "" : `${totals.homes} homes`),
      ),
    );
    table.hidden = false;
    $("settlement-note").className = "muted";
    $("settlement-note").textContent = report.baseline_method ? `Baseline method: ${method}.` : "";
    $("settlement-csv").hidden = false;
  }

  async function downloadCsv() {
    const eventId = state.settlementEventId;
    if (!eventId) return;
    try {
      const response = await api(`/api/v1/events/${encodeURIComponent(eventId)}/settlement?format=csv`);
      if (!response.ok) throw new Error(await errorMessage(response));
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = el("a", { href: url, download: `settlement-${eventId}.csv`, hidden: "" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (error) {
      handleFailure(error, "CSV download");
    }
  }

  // --- wiring -------------------------------------------------------------------------------

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
        state.token = null;
        error.textContent =
          failure instanceof Unauthorized ? "This token is not a valid operator token." : `Cannot sign in: ${failure.message}`;
        error.hidden = false;
      }
    });
    $("logout").addEventListener("click", () => logout(""));
    $("create-form").addEventListener("submit", createEvent);
    $("create-form").elements.kind.addEventListener("change", (change) => {
      $("price-label").textContent = change.target.value === "direct" ? "Incentive /kWh" : "Price cap /kWh";
    });
    $("event-cancel").addEventListener("click", () => {
      if (state.watched) cancelEvent(state.watched);
    });
    $("settlement-csv").addEventListener("click", downloadCsv);

    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      state.token = saved;
      showApp();
    } else {
      $("login-view").hidden = false;
    }
  }

  start();
})();
