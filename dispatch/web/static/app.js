// The operators' live view: layout from /api/estate, values from the SSE stream.
"use strict";

const state = { estate: null, values: new Map(), status: new Map(), lastEvent: 0 };
const STALE_MS = 30000;  // a value older than this is flagged on the page

function key(f, d, q, c) { return `${f}/${d}/${q}/${c || ""}`; }

// SenML unit names as an operator reads them.
const UNIT_LABELS = { "Cel": "°C", "m3": "m³", "m3/h": "m³/h", "/": "pf" };
function unitLabel(unit) { return UNIT_LABELS[unit] || unit; }

const esc = Layout.esc;

function fmt(value, unit) {
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
  return `${value.toLocaleString("en-GB", {maximumFractionDigits: digits,
                                             minimumFractionDigits: digits})}`;
}

function age(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 90 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

function render() {
  const root = document.getElementById("facilities");
  root.innerHTML = "";
  for (const f of state.estate.facilities) {
    const card = document.createElement("section");
    card.className = "card facility";
    card.dataset.facility = f.id;
    card.innerHTML = `<h2><a href="/facility/${esc(f.id)}">${esc(f.name)}</a></h2><div class="sub">${esc(f.sector)} · ${esc(f.id)}</div>`;
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>Meter</th><th>Latest values</th><th>Updated</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const m of f.meters) {
      const row = document.createElement("tr");
      row.dataset.meter = `${f.id}/${m.id}`;
      const values = m.measures.map(x =>
        `<span class="value" data-key="${key(f.id, m.id, x.quantity, x.channel)}"
               data-quantity="${x.quantity}" title="${esc(x.label)}${x.channel ? " " + esc(x.channel) : ""}">
           <b>–</b> <small>${esc(unitLabel(x.unit))}</small></span>`).join(" ");
      row.innerHTML = `<td>${esc(m.name)}<div class="sub">${esc(m.id)} · ${m.kind}
                         <span class="status"></span></div></td>
                       <td>${values}</td><td class="age" data-meter-age>–</td>`;
      body.appendChild(row);
    }
    table.appendChild(body);
    card.appendChild(table);
    root.appendChild(card);
  }
}

function update() {
  let newest = 0, reporting = 0, total = 0, powerKw = 0;
  const live = Layout.live();
  for (const [k, v] of state.values) {
    const el = document.querySelector(`[data-key="${CSS.escape(k)}"]`);
    if (el) { el.querySelector("b").textContent = fmt(v.value, v.unit); el.dataset.stale = String(!live); }
    newest = Math.max(newest, v.time_ms);
  }
  for (const row of document.querySelectorAll("tr[data-meter]")) {
    total += 1;
    const [f, d] = row.dataset.meter.split("/");
    let last = 0;
    for (const [k, v] of state.values) {
      if (v.facility === f && v.device === d) last = Math.max(last, v.time_ms);
    }
    const cell = row.querySelector("[data-meter-age]");
    if (last) {
      cell.textContent = age(last);
      const stale = !live || Date.now() - last > STALE_MS;
      cell.dataset.stale = String(stale);
      if (!stale) reporting += 1;
    }
    const st = state.status.get(`${f}/${d}`);
    const stEl = row.querySelector(".status");
    stEl.textContent = st ? `· ${st}` : "";
    stEl.className = `status status-${st || "unknown"}`;
  }
  for (const v of state.values.values()) {
    if (v.quantity === "power" && v.device === "main") powerKw += v.value;
  }
  const cap = state.estate.contracted_capacity_kw;
  document.getElementById("summary").innerHTML = `
    <div class="card"><div class="label">Tenant incomers, total</div>
      <div class="big" id="total-power">${fmt(powerKw)} kW</div>
      <div class="sub">${Math.round(100 * powerKw / cap)}% of ${cap.toLocaleString()} kW contracted</div></div>
    <div class="card"><div class="label">Meters reporting</div>
      <div class="big" id="reporting">${reporting} / ${total}</div>
      <div class="sub">${live ? `within the last ${STALE_MS / 1000} s` : "values stale: no live feed"}</div></div>
    <div class="card"><div class="label">Newest reading</div>
      <div class="big">${newest ? Layout.time(newest) : "–"}</div>
      <div class="sub">${newest ? age(newest) : "waiting for meters"}</div></div>`;
}

function apply(snapshot) {
  for (const v of snapshot.values) state.values.set(key(v.facility, v.device, v.quantity, v.channel), v);
  for (const s of snapshot.status) state.status.set(`${s.facility}/${s.device}`, s.state);
  state.lastEvent = Date.now();
  update();
}

function connect() {
  const source = new EventSource("/api/live/stream");
  source.addEventListener("live", e => {
    Layout.setFeed({stream: true});
    apply(JSON.parse(e.data));
  });
  source.onerror = () => { Layout.setFeed({stream: false}); update(); };
}

// The newest plan, in a line: its state and what it saves; the plans page has the rest.
async function newestPlan() {
  const box = document.getElementById("newest-plan");
  let newest;
  try { newest = (await Layout.getJson("/api/plans?limit=1")).plans[0]; }
  catch (err) { box.hidden = true; return; }
  if (!newest) { box.innerHTML = '<span class="muted">No plan yet: the dispatch worker plans before each quarter-hour.</span>'; return; }
  box.dataset.state = newest.status;
  box.innerHTML = `<a href="/plans?plan=${newest.id}">Plan #${newest.id}</a>
    from ${esc(Layout.dateTime(newest.horizon_start))}: <b>${esc(newest.status)}</b>
    <span class="sub">saves ${newest.cost_saved === null ? "–" : fmt(newest.cost_saved)} ${esc(newest.currency || "")}
    against doing nothing</span>`;
}

async function main() {
  await Layout.ready;
  state.estate = await Layout.getJson("/api/estate");
  render(); update(); connect();
  Layout.onFeed(update);
  setInterval(update, 1000);
  if (Layout.user.facility === null) { newestPlan(); setInterval(newestPlan, 30000); }
  else document.getElementById("newest-plan").hidden = true;
}

main();
