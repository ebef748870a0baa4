/*
 * The dashboard's charts (Chart.js, vendored under /static/vendor): an event's kW over time,
 * a round's bid curve in merit order, committed vs delivered per home, the fleet over time and
 * events per day. Each function creates the chart once and updates it in place afterwards.
 */
import { num, time } from "./dom.js";

export const COLORS = {
  target: "#6b7280",
  committed: "#2563eb",
  delivered: "#16a34a",
  accepted: "#16a34a",
  rejected: "#9ca3af",
  price: "#dc2626",
  online: "#2563eb",
  participating: "#7c3aed",
  flexible: "#16a34a",
};
const STATUS_COLORS = {
  completed: "#6366f1",
  cancelled: "#ef4444",
  active: "#16a34a",
  committed: "#2563eb",
  negotiating: "#d97706",
  draft: "#9ca3af",
};

const legend = { position: "bottom", labels: { usePointStyle: true, pointStyle: "line", boxWidth: 28 } };
const base = { animation: false, responsive: true, maintainAspectRatio: false };
const clock = (value) => time(new Date(value).toISOString());
const dayAndTime = (value) =>
  new Date(value).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });

function line(label, color, extra) {
  return { label, data: [], borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 0, ...extra };
}

function upsert(canvas, make) {
  return window.Chart.getChart(canvas) || new window.Chart(canvas, make());
}

/** Target, committed and delivered kW of an event; points are {ts, target_kw, committed_kw, delivered_kw}. */
export function drawEventChart(canvas, points) {
  const chart = upsert(canvas, () => ({
    type: "line",
    data: {
      datasets: [
        line("Target", COLORS.target, { borderDash: [6, 4], stepped: true }),
        line("Committed", COLORS.committed, { stepped: true }),
        line("Delivered", COLORS.delivered, { fill: { target: "origin" }, backgroundColor: "rgba(22,163,74,0.12)" }),
      ],
    },
    options: {
      ...base,
      parsing: false,
      normalized: true,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { type: "linear", ticks: { maxTicksLimit: 6, callback: clock } },
        y: { beginAtZero: true, title: { display: true, text: "kW" } },
      },
      plugins: {
        legend,
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? clock(items[0].parsed.x) : ""),
            label: (item) => `${item.dataset.label}: ${num(item.parsed.y, 2)} kW`,
          },
        },
      },
    },
  }));
  const [target, committed, delivered] = chart.data.datasets;
  const xs = points.map((point) => Date.parse(point.ts));
  target.data = points.map((point, index) => ({ x: xs[index], y: point.target_kw }));
  committed.data = points.map((point, index) => ({ x: xs[index], y: point.committed_kw }));
  delivered.data = points.map((point, index) => ({ x: xs[index], y: point.delivered_kw }));
  canvas.dataset.points = String(points.length);
  chart.update("none");
  return chart;
}

/** A round's supply curve: each step as a flat segment at its price, cheapest first. */
export function drawBidCurve(canvas, curve) {
  const accepted = [];
  const rejected = [];
  let start = 0;
  for (const step of curve.steps) {
    const segment = step.accepted ? accepted : rejected;
    segment.push({ x: start, y: step.price, step }, { x: step.cumulative_kw, y: step.price, step }, { x: null, y: null });
    start = step.cumulative_kw;
  }
  const maxPrice = Math.max(curve.clearing_price || 0, ...curve.steps.map((step) => step.price), 0.01);
  const clearing =
    curve.clearing_price === null ? [] : [{ x: 0, y: curve.clearing_price }, { x: Math.max(start, curve.target_kw), y: curve.clearing_price }];
  const target = [{ x: curve.target_kw, y: 0 }, { x: curve.target_kw, y: maxPrice * 1.1 }];
  const chart = upsert(canvas, () => ({
    type: "line",
    data: {
      datasets: [
        line("Accepted steps", COLORS.accepted, { borderWidth: 4, spanGaps: false }),
        line("Steps not accepted", COLORS.rejected, { borderWidth: 4, spanGaps: false }),
        line("Clearing price", COLORS.price, { borderDash: [6, 4] }),
        line("Target", COLORS.target, { borderDash: [2, 3] }),
      ],
    },
    options: {
      ...base,
      parsing: false,
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", beginAtZero: true, title: { display: true, text: "kW offered, cheapest first" } },
        y: { beginAtZero: true, title: { display: true, text: `price per kWh (${curve.currency})` } },
      },
      plugins: {
        legend,
        tooltip: {
          filter: (item) => item.raw && item.raw.step,
          callbacks: {
            title: (items) => (items.length ? items[0].raw.step.home_name : ""),
            label: (item) => {
              const step = item.raw.step;
              return `${num(step.kw, 1)} kW at ${num(step.price, 3)} (${step.loads.map((load) => load.name).join(", ")})`;
            },
          },
        },
      },
    },
  }));
  const [acceptedSet, rejectedSet, clearingSet, targetSet] = chart.data.datasets;
  acceptedSet.data = accepted;
  rejectedSet.data = rejected;
  clearingSet.data = clearing;
  targetSet.data = target;
  canvas.dataset.steps = String(curve.steps.length);
  chart.update("none");
  return chart;
}

/** Committed vs delivered kW of the homes shown (one pair of bars per home). */
export function drawHomesBars(canvas, homes) {
  const chart = upsert(canvas, () => ({
    type: "bar",
    data: {
      labels: [],
      datasets: [
        { label: "Committed", data: [], backgroundColor: COLORS.committed },
        { label: "Delivered (average)", data: [], backgroundColor: COLORS.delivered },
      ],
    },
    options: {
      ...base,
      indexAxis: "y",
      scales: { x: { beginAtZero: true, title: { display: true, text: "kW" } } },
      plugins: { legend: { position: "bottom" } },
    },
  }));
  chart.data.labels = homes.map((home) => home.home_name);
  chart.data.datasets[0].data = homes.map((home) => home.committed_kw);
  chart.data.datasets[1].data = homes.map((home) => home.delivered_kw ?? 0);
  chart.update("none");
  return chart;
}

/** Homes online and taking part (left axis) and flexible kW (right axis) from since to until. */
export function drawFleetChart(canvas, points, since, until) {
  const chart = upsert(canvas, () => ({
    type: "line",
    data: {
      datasets: [
        line("Homes online", COLORS.online, { yAxisID: "homes", stepped: true }),
        line("Taking part", COLORS.participating, { yAxisID: "homes", stepped: true, borderDash: [5, 3] }),
        line("Flexible kW", COLORS.flexible, { yAxisID: "kw" }),
      ],
    },
    options: {
      ...base,
      parsing: false,
      normalized: true,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { type: "linear", ticks: { maxTicksLimit: 6, callback: dayAndTime } },
        homes: { position: "left", beginAtZero: true, title: { display: true, text: "homes" } },
        kw: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "kW" } },
      },
      plugins: { legend, tooltip: { callbacks: { title: (items) => (items.length ? dayAndTime(items[0].parsed.x) : "") } } },
    },
  }));
  const [online, participating, flexible] = chart.data.datasets;
  const xs = points.map((point) => Date.parse(point.ts));
  online.data = points.map((point, index) => ({ x: xs[index], y: point.homes_online }));
  participating.data = points.map((point, index) => ({ x: xs[index], y: point.homes_participating }));
  flexible.data = points.map((point, index) => ({ x: xs[index], y: point.flexible_kw }));
  chart.options.scales.x.min = Date.parse(since);
  chart.options.scales.x.max = Date.parse(until);
  canvas.dataset.points = String(points.length);
  chart.update("none");
  return chart;
}

/** Events started per day, stacked by how they ended. */
export function drawEventsPerDay(canvas, days) {
  const statuses = [...new Set(days.flatMap((day) => Object.keys(day.by_status)))].sort();
  const chart = upsert(canvas, () => ({
    type: "bar",
    data: { labels: [], datasets: [] },
    options: {
      ...base,
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "events" } } },
      plugins: { legend: { position: "bottom" } },
    },
  }));
  chart.data.labels = days.map((day) => day.day);
  chart.data.datasets = statuses.map((status) => ({
    label: status,
    data: days.map((day) => day.by_status[status] || 0),
    backgroundColor: STATUS_COLORS[status] || "#9ca3af",
    maxBarThickness: 48,
  }));
  canvas.dataset.days = String(days.length);
  chart.update("none");
  return chart;
}
