// The operators' live view: layout from /api/estate, values from the SSE stream.
"use strict";

const state = { estate: null, values: new Map(), status: new Map(), lastEvent: 0,
                feedOpen: false };
const STALE_MS = 30000;  // a value older than this is flagged on the page

function key(f, d, q, c) { return `${f}/${d}/${q}/${c || ""}`; }

// SenML unit names as an operator reads them.
const UNIT_LABELS = { "Cel": "°C", "m3": "m³", "m3/h": "m³/h", "/": "pf" };
function unitLabel(unit) { return UNIT_LABELS[unit] || unit; }

function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                 '"': "&quot;", "'": "&#39;"})[c]);
}

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
    card.innerHTML = `<h2>${esc(f.name)}</h2><div class="sub">${esc(f.sector)} · ${esc(f.id)}</div>`;
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>Meter</th><th>Latest values</th><th>Updated</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const m of f.meters) {
      const row = document.createElement("tr");
      row.dataset.meter = `${f.id}/${m.id}`;
      const values = m.measures.map(x =>
        `<span class="value" data-key="${key(f.id, m.id, x.quantity, x.channel)}"
               data-quantity="${x.quantity}" title="${esc(x.label)}${x.channel ? " " + esc(x.channel) : ""}">
           <b>–</b> <small>${esc(unitLabel(x.unit))}</small></span>`).join("");
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
  const live = valuesLive();
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
      <div class="big">${newest ? new Date(newest).toLocaleTimeString("en-GB") : "–"}</div>
      <div class="sub">${newest ? age(newest) : "waiting for meters"}</div></div>`;
}

function apply(snapshot) {
  for (const v of snapshot.values) state.values.set(key(v.facility, v.device, v.quantity, v.channel), v);
  for (const s of snapshot.status) state.status.set(`${s.facility}/${s.device}`, s.state);
  state.lastEvent = Date.now();
  update();
}

// The feed is live only while the page's stream is open and the view holds the broker.
function showFeed() {
  const feed = document.getElementById("feed");
  if (!state.feedOpen) { feed.dataset.state = "bad"; feed.textContent = "live feed: reconnecting"; }
  else if (health.broker === false) { feed.dataset.state = "bad"; feed.textContent = "live feed: broker down"; }
  else { feed.dataset.state = "ok"; feed.textContent = "live feed: connected"; }
}

function connect() {
  const source = new EventSource("/api/live/stream");
  source.addEventListener("live", e => {
    state.feedOpen = true; showFeed();
    apply(JSON.parse(e.data));
  });
  source.onerror = () => { state.feedOpen = false; showFeed(); update(); };
}

// What the page depends on, from /api/health: the store, the broker and, where the view is
// given the supervisor's status, each supervised service.
const HEALTH_EVERY_MS = 3000;   // a restart shows within a few seconds
const HEALTH_TIMEOUT_MS = 2500; // a view that does not answer within a poll counts as down
const health = { store: null, broker: null };  // null: not known yet
const SERVICE_STATES = { running: "ok", starting: "warn", restarting: "bad", stopped: "bad" };

function valuesLive() { return state.feedOpen && health.broker !== false; }

function clockTime(ms) { return new Date(ms).toLocaleTimeString("en-GB"); }

function serviceText(s) {
  let text = `${s.name}: ${s.state}`;
  if (s.restarts) text += `, restarted ${s.restarts}x`;
  if (s.last_exit) text += `, ${s.last_exit}${s.last_exit_ms ? ` at ${clockTime(s.last_exit_ms)}` : ""}`;
  return text;
}

function pill(attrs, state, text) {
  return `<span class="pill" ${attrs} data-state="${state}">${esc(text)}</span>`;
}

function healthPills(body) {
  if (!body) return pill('id="svc-view"', "bad", "web view: not answering");
  const pills = [
    pill('id="svc-store"', body.influxdb.ok ? "ok" : "bad",
         body.influxdb.ok ? "store: up" : "store: down (history and plans unavailable)"),
    pill('id="svc-broker"', body.mqtt.ok ? "ok" : "bad",
         body.mqtt.ok ? "broker: connected" : "broker: down (values stale)")];
  const sup = body.supervisor;
  if (sup && sup.error) pills.push(pill('id="svc-supervisor"', "warn", sup.error));
  for (const s of (sup ? sup.services : [])) {
    pills.push(pill(`data-service="${esc(s.name)}" data-service-state="${esc(s.state)}" data-restarts="${s.restarts}"`,
                    SERVICE_STATES[s.state] || "warn", serviceText(s)));
  }
  return pills.join("");
}

async function checkHealth() {
  let body = null;
  try {
    const r = await fetch("/api/health", {cache: "no-store", signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS)});
    body = await r.json();
    if (!body.influxdb || !body.mqtt) body = null;
  } catch (err) { body = null; }
  health.store = body ? body.influxdb.ok : false;
  health.broker = body ? body.mqtt.ok : false;
  document.getElementById("health").innerHTML = healthPills(body);
  showFeed(); update();
}

async function freshness() {
  const pill = document.getElementById("freshness");
  try {
    const r = await (await fetch("/api/freshness")).json();
    if (r.checked_ms === null) { pill.dataset.state = "unknown"; pill.textContent = "meters: not checked yet"; return; }
    pill.dataset.state = r.stale.length ? "warn" : "ok";
    pill.textContent = r.stale.length ? `stale: ${r.stale.join(", ")}` : `all ${r.expected} meters reporting`;
  } catch (err) { pill.dataset.state = "bad"; pill.textContent = "meters: check unavailable"; }
}

// The newest plan: its figures against the do-nothing baseline, approval, and commands.
const plan = { id: null, revision: null, status: null, commandsTimer: null };
const FINAL = new Set(["done", "rejected", "failed", "timed_out"]);

function money(value, currency) {
  return value === null ? "–" : `${value.toLocaleString("en-GB", {maximumFractionDigits: 0})} ${esc(currency || "")}`;
}

async function loadPlan() {
  let newest;
  try { newest = (await (await fetch("/api/plans?limit=1")).json()).plans[0]; }
  catch (err) { return; }
  if (!newest) return;
  const detail = await (await fetch(`/api/plans/${newest.id}`)).json();
  Object.assign(plan, { id: detail.id, revision: detail.revision, status: detail.status });
  const box = document.getElementById("plan");
  box.dataset.state = detail.status;
  box.dataset.plan = String(detail.id);
  const start = new Date(detail.horizon_start).toLocaleTimeString("en-GB", {hour: "2-digit", minute: "2-digit"});
  document.getElementById("plan-body").innerHTML = `
    <div class="figures">
      <div><div class="sub">Plan ${detail.id} · from ${start} · revision ${detail.revision}</div>
           <b id="plan-status">${esc(detail.status)}</b></div>
      <div><div class="sub">Cost (baseline)</div><b id="plan-cost">${money(detail.cost, detail.currency)}</b>
           <span class="sub">(${money(detail.baseline_cost, detail.currency)})</span></div>
      <div><div class="sub">Saved</div><b id="plan-saved">${money(detail.cost_saved, detail.currency)}</b></div>
      <div><div class="sub">Peak (baseline)</div><b id="plan-peak">${detail.peak_kw === null ? "–" : fmt(detail.peak_kw)} kW</b>
           <span class="sub">(${detail.baseline_peak_kw === null ? "–" : fmt(detail.baseline_peak_kw)} kW)</span></div>
      <div><div class="sub">Solver</div><b>${esc(detail.solver_status || "–")}</b></div>
    </div>
    <ul class="explain">${detail.explanation.slice(0, 4).map(x => `<li>${esc(x)}</li>`).join("")}</ul>`;
  document.getElementById("approve-form").hidden = detail.status !== "draft";
  if (detail.status === "approved") showCommands();
}

async function showCommands() {
  const table = document.getElementById("plan-commands");
  const r = await (await fetch(`/api/plans/${plan.id}/commands`)).json();
  table.hidden = r.commands.length === 0;
  table.querySelector("tbody").innerHTML = r.commands.map(c => `
    <tr data-asset="${esc(c.asset || "")}"><td>${esc(c.asset || c.device)}</td>
      <td>${esc(c.action)} ${esc(Object.entries(c.params).map(([k, v]) => `${k}=${v}`).join(" "))}</td>
      <td data-status="${esc(c.status)}">${esc(c.status.replace("_", " "))}${c.reason ? ` (${esc(c.reason)})` : ""}</td></tr>`).join("");
  clearTimeout(plan.commandsTimer);
  if (r.commands.some(c => !FINAL.has(c.status))) plan.commandsTimer = setTimeout(showCommands, 2000);
}

async function approve(event) {
  event.preventDefault();
  const result = document.getElementById("approve-result");
  // Who approves is the session's user; the CSRF token proves the request is this page's.
  const r = await fetch(`/api/plans/${plan.id}/approve`, {method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": state.session.csrf_token},
    body: JSON.stringify({revision: plan.revision})});
  const body = await r.json();
  result.textContent = r.ok ? `approved: ${body.commands.length} commands sent`
                            : `not approved: ${typeof body.detail === "string" ? body.detail : "refused"}`;
  await loadPlan();
}

async function main() {
  const session = await fetch("/api/session");
  if (session.status === 401) { location.assign("/login"); return; }
  state.session = await session.json();
  document.getElementById("user").textContent =
    `${state.session.user.username} (${state.session.user.role})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/api/session", {method: "DELETE",
                                 headers: {"X-CSRF-Token": state.session.csrf_token}});
    location.assign("/login");
  });
  state.estate = await (await fetch("/api/estate")).json();
  document.getElementById("estate-name").textContent = state.estate.name;
  document.getElementById("estate-sub").textContent =
    `${state.estate.facilities.length} facilities · ${state.estate.id} · ${state.estate.timezone}`;
  render(); update(); connect(); freshness(); loadPlan(); checkHealth();
  document.getElementById("approve-form").addEventListener("submit", approve);
  setInterval(update, 1000);
  setInterval(checkHealth, HEALTH_EVERY_MS);
  setInterval(freshness, 15000);
  setInterval(loadPlan, 30000);
  setInterval(() => { document.getElementById("clock").textContent = new Date().toLocaleTimeString("en-GB"); }, 1000);
}

main();
