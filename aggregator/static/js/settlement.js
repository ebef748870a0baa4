/*
 * An event's settlement statement (GET /api/v1/events/{id}/settlement): what each home
 * delivered and earns, the totals, and the CSV export. An event not settled yet (409) can be
 * settled at once with "Settle now" (POST to the same address).
 */
import { api, errorMessage, eventPath } from "./api.js";
import { $, badge, el, fillBody, num, words } from "./dom.js";

let shownFor = null;
let names = () => null;
let failed = () => {};

export function wire(homeName, onFailure) {
  names = homeName;
  failed = onFailure;
  $("settlement-csv").addEventListener("click", downloadCsv);
  $("settlement-settle").addEventListener("click", settleNow);
}

let shownEvent = null;

async function settleNow() {
  const event = shownEvent;
  if (!event) return;
  const button = $("settlement-settle");
  button.disabled = true;
  try {
    const response = await api(eventPath(event.id, "/settlement"), { method: "POST" });
    if (!response.ok) {
      $("settlement-note").className = "notice";
      $("settlement-note").textContent = `Cannot settle: ${await errorMessage(response)}`;
      return;
    }
    button.hidden = true;
    show(await response.json(), event);
  } catch (error) {
    failed(error, "Settle");
  } finally {
    button.disabled = false;
  }
}

export async function load(event) {
  shownFor = event.id;
  shownEvent = event;
  $("settlement-settle").hidden = true;
  const note = $("settlement-note");
  const table = $("settlement-table");
  $("settlement-title").textContent = `Settlement — ${event.name}`;
  table.hidden = true;
  $("settlement-csv").hidden = true;
  note.className = "muted";
  note.textContent = "Loading…";
  try {
    const response = await api(eventPath(event.id, "/settlement"));
    if (shownFor !== event.id) return;
    if (!response.ok) {
      note.className = "notice";
      note.textContent = `Not settled yet: ${await errorMessage(response)}`;
      $("settlement-settle").hidden = response.status !== 409;
      return;
    }
    show(await response.json(), event);
  } catch (error) {
    note.textContent = "";
    failed(error, "Settlement");
  }
}

function show(report, event) {
  const currency = report.currency || event.currency;
  const money = (value) => (value === null || value === undefined ? "–" : `${num(value, 2)} ${currency}`);
  const rows = report.homes.map((home) =>
    el(
      "tr",
      { dataset: { homeId: home.home_id } },
      el("td", {}, names(home.home_id) || home.home_id),
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
  fillBody(table, rows, 8, "No home took part.");
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
  $("settlement-note").textContent = report.baseline_method ? `Baseline method: ${words(report.baseline_method)}.` : "";
  $("settlement-csv").hidden = false;
}

async function downloadCsv() {
  const eventId = shownFor;
  if (!eventId) return;
  try {
    const response = await api(eventPath(eventId, "/settlement?format=csv"));
    if (!response.ok) throw new Error(await errorMessage(response));
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `settlement-${eventId}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    failed(error, "CSV download");
  }
}
