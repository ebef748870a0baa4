/*
 * The fleet view: the fleet now (GET /api/v1/fleet) and over time (GET /api/v1/fleet/history):
 * homes online and taking part, flexible kW, and events started per day.
 */
import { getJson } from "./api.js";
import { drawEventsPerDay, drawFleetChart } from "./charts.js";
import { $, count, kw } from "./dom.js";

const HOUR_MS = 3600 * 1000;
let failed = () => {};
let rangeHours = 24;

export async function refresh() {
  try {
    const until = new Date();
    const since = new Date(until.getTime() - rangeHours * HOUR_MS);
    const params = new URLSearchParams({ since: since.toISOString() });
    const [now, history] = await Promise.all([
      getJson("/api/v1/fleet"),
      getJson(`/api/v1/fleet/history?${params}`),
    ]);
    $("fleet-total").textContent = count(now.homes_total);
    $("fleet-enrolled").textContent = count(now.homes_enrolled);
    $("fleet-online").textContent = count(now.homes_online);
    $("fleet-participating").textContent = count(now.homes_participating);
    $("fleet-flexible").textContent = kw(now.flexible_kw);
    $("fleet-running").textContent = count(now.events_running);
    if (!window.Chart) return;
    drawFleetChart($("fleet-chart"), history.points, history.since, history.until);
    drawEventsPerDay($("events-chart"), history.events_per_day);
    $("events-chart-empty").hidden = history.events_per_day.length > 0;
  } catch (error) {
    failed(error, "Loading the fleet");
  }
}

export function wire(onFailure) {
  failed = onFailure;
  for (const button of document.querySelectorAll("#fleet-range button")) {
    button.addEventListener("click", () => {
      rangeHours = Number(button.dataset.hours);
      for (const other of document.querySelectorAll("#fleet-range button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      refresh();
    });
  }
}
