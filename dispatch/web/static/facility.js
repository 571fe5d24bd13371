// One facility: its meters' live values (the live stream), a 24-hour trend of one series
// (/api/trend: min, mean and max per bucket), and its demand forecast against what was
// measured and what the newest plan asks of its own assets, on one chart.
"use strict";

const STALE_MS = 30000;        // a value older than this is greyed with its age
const TREND_EVERY_MS = 60000;  // the trend's newest bucket fills within a minute
const DAY_MS = 86400000;
const QUARTER_MS = 900000;
const { esc, num, unitLabel } = Layout;
const facility = { id: location.pathname.split("/").pop(), spec: null, values: new Map() };

function key(d, q, c) { return `${d}/${q}/${c || ""}`; }

function renderMeters() {
  document.querySelector("#meters tbody").innerHTML = facility.spec.meters.map(m => `
    <tr data-meter="${esc(m.id)}"><td>${esc(m.name)}<div class="sub">${esc(m.id)} · ${esc(m.kind)}</div></td>
      <td>${m.measures.map(x => `<span class="value" data-key="${esc(key(m.id, x.quantity, x.channel))}"
        title="${esc(x.label)}"><b>–</b> <small>${esc(unitLabel(x.unit))}</small></span>`).join(" ")}</td>
      <td class="age" data-meter-age>–</td></tr>`).join("");
}

function update() {
  const live = Layout.live();
  for (const [k, v] of facility.values) {
    const el = document.querySelector(`[data-key="${CSS.escape(k)}"]`);
    if (!el) continue;
    const stale = !live || Date.now() - v.time_ms > STALE_MS;
    el.querySelector("b").textContent = num(v.value);
    el.dataset.stale = String(stale);
    el.title = `${v.quantity} at ${Layout.time(v.time_ms)}`;
  }
  for (const row of document.querySelectorAll("#meters tr[data-meter]")) {
    let last = 0;
    for (const v of facility.values.values()) if (v.device === row.dataset.meter) last = Math.max(last, v.time_ms);
    const cell = row.querySelector("[data-meter-age]");
    if (!last) continue;
    cell.textContent = Layout.ago(last);
    cell.dataset.stale = String(!live || Date.now() - last > STALE_MS);
  }
}

function connect() {
  const source = new EventSource("/api/live/stream");
  source.addEventListener("live", e => {
    Layout.setFeed({stream: true});
    for (const v of JSON.parse(e.data).values) {
      if (v.facility === facility.id) facility.values.set(key(v.device, v.quantity, v.channel), v);
    }
    update();
  });
  source.onerror = () => { Layout.setFeed({stream: false}); update(); };
}

function seriesChoices() {
  const select = document.getElementById("series");
  const options = [];
  for (const m of facility.spec.meters) {
    for (const x of m.measures) {
      options.push(`<option value="${esc(`${m.id}|${x.quantity}`)}">${esc(m.name)}: ${esc(x.label)} (${esc(unitLabel(x.unit))})</option>`);
    }
  }
  select.innerHTML = options.join("");
  const power = facility.spec.meters.flatMap(m => m.measures.filter(x => x.quantity === "power").map(() => `${m.id}|power`));
  if (power.length) select.value = power[0];
}

async function loadTrend() {
  const [meter, quantity] = document.getElementById("series").value.split("|");
  const note = document.getElementById("trend-note");
  const end = Date.now(), start = end - DAY_MS;
  const q = new URLSearchParams({facility: facility.id, meter, quantity,
    start: new Date(start).toISOString(), end: new Date(end).toISOString()});
  let t;
  try { t = await Layout.getJson(`/api/trend?${q}`); }
  catch (err) { note.textContent = `trend unavailable: ${err.message}`; return; }
  const pts = t.points || [];
  note.textContent = `${t.resolution || ""}, ${t.step_s || "–"} s steps` +
    (pts.length ? `, newest ${Layout.ago(Date.parse(pts[pts.length - 1].t))}` : ", no data in the last 24 h");
  document.getElementById("trend-title").textContent =
    `Last 24 h to ${Layout.time(end, false)} (${Layout.zone()}), ${unitLabel(t.unit)}: mean, min and max per step`;
  Charts.line(document.getElementById("trend-chart"), pts.map(p => Date.parse(p.t)), [
    {label: "mean", values: pts.map(p => p.mean)},
    {label: "min", values: pts.map(p => p.min), dash: [3, 3], colour: "#8ba0b5"},
    {label: "max", values: pts.map(p => p.max), dash: [3, 3], colour: "#8ba0b5"}],
    {unit: ` ${unitLabel(t.unit)}`});
}

async function loadPlan() {
  const note = document.getElementById("plan-note");
  const now = Date.now();
  const start = Math.floor((now - DAY_MS) / QUARTER_MS) * QUARTER_MS, end = start + 2 * DAY_MS;
  const q = new URLSearchParams({facility: facility.id, start: new Date(start).toISOString(),
                                 end: new Date(end).toISOString()});
  let fc, plan;
  try {
    [fc, plan] = await Promise.all([Layout.getJson(`/api/forecast?${q}`),
                                    Layout.getJson(`/api/facilities/${facility.id}/plan`)]);
  } catch (err) { note.textContent = `unavailable: ${err.message}`; return; }
  const times = fc.steps.map(s => s.time_ms);
  const at = new Map(times.map((t, i) => [t, i]));
  const series = [
    {label: "forecast", values: fc.steps.map(s => s.forecast_kw), dash: [6, 4]},
    {label: "measured", values: fc.steps.map(s => s.actual_kw), colour: "#e0e0e0"}];
  for (const a of plan.assets) {
    const values = times.map(() => null);
    plan.times.forEach((t, k) => { const i = at.get(Date.parse(t)); if (i !== undefined) values[i] = a.values[k]; });
    series.push({label: `plan: ${a.name}`, values, step: true});
  }
  Charts.line(document.getElementById("plan-chart"), times, series);
  note.textContent = plan.plan === null ? "No plan yet."
    : plan.assets.length ? `Plan #${plan.plan} (${plan.status}): setpoints of this facility's own assets.`
    : `Plan #${plan.plan} (${plan.status}) commands no asset of this facility.`;
}

async function main() {
  await Layout.ready;
  const estate = await Layout.getJson("/api/estate");
  facility.spec = estate.facilities.find(f => f.id === facility.id);
  document.getElementById("facility-name").textContent = facility.spec.name;
  document.getElementById("facility-sub").textContent = `${facility.spec.sector} · ${facility.spec.id}`;
  document.title = `${facility.spec.name} · ${estate.name}`;
  renderMeters(); seriesChoices(); connect();
  Layout.onFeed(update);
  setInterval(update, 1000);
  document.getElementById("series").addEventListener("change", loadTrend);
  loadTrend(); loadPlan();
  setInterval(loadTrend, TREND_EVERY_MS);
  setInterval(loadPlan, 5 * TREND_EVERY_MS);
}

main();
