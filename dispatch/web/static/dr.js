// Demand response and statements: orders with each tenant's share, the plan's shortfall and
// the settlement; a supervisor enters orders, opts and settles; the month's statements.
"use strict";

const page = { session: null, order: null };

function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                 '"': "&quot;", "'": "&#39;"})[c]);
}

function num(value, digits) {
  return value === null || value === undefined ? "–"
    : (Number(value) || 0).toLocaleString("en-GB", {maximumFractionDigits: digits, minimumFractionDigits: digits});
}

function when(iso) {
  return Layout.dateTime(iso);
}

function reason(body) {
  return typeof body.detail === "string" ? body.detail
    : Array.isArray(body.detail) ? body.detail.map(p => `${p.loc.slice(1).join(".")}: ${p.msg}`).join("; ")
    : "refused";
}

// A state change as the live view makes them: the session's CSRF token in its header.
async function change(path, body) {
  const r = await fetch(path, {method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": page.session.csrf_token},
    body: JSON.stringify(body || {})});
  return {ok: r.ok, body: await r.json()};
}

function supervisor() {
  return page.session.user.role === "supervisor" || page.session.user.role === "admin";
}

async function loadOrders() {
  const r = await fetch("/api/dr/orders?limit=50");
  const body = await r.json();
  const rows = r.ok ? body.orders : [];
  document.querySelector("#orders tbody").innerHTML = rows.length ? rows.map(o => `
    <tr data-order="${o.id}"><td>${o.id} · ${esc(o.kind)} ${num(o.kw, 0)} kW<div class="sub">${esc(o.programme)} · ${esc(o.source)}</div></td>
      <td>${when(o.start)} – ${when(o.end)}</td>
      <td data-status="${esc(o.status)}">${esc(o.status)}, opted ${esc(o.opt)}</td>
      <td class="shares">${o.shares.map(s => `<span class="value" data-facility="${esc(s.facility)}">${esc(s.facility)}
          <b>${num(s.requested_kwh, 1)}</b> <small>kWh</small></span>`).join("") || "–"}</td>
      <td><button type="button" data-show="${o.id}">Show</button></td></tr>`).join("")
    : `<tr><td colspan="5" class="muted">${r.ok ? "No orders yet." : esc(reason(body))}</td></tr>`;
  for (const b of document.querySelectorAll("[data-show]")) {
    b.addEventListener("click", () => showOrder(Number(b.dataset.show)));
  }
}

function shortfallText(s) {
  const parts = [];
  if (s.unassigned_kw_max !== null) parts.push(`split left up to ${num(s.unassigned_kw_max, 1)} kW unassigned`);
  parts.push(!s.planned ? "no plan under it yet (the worker plans after the split)"
    : s.steps.length ? `the plan falls short by up to ${num(s.short_kw_max, 1)} kW in ${s.steps.length} quarter-hours`
    : "the plan meets the order (no shortfall)");
  return parts.join("; ");
}

async function showOrder(id) {
  const r = await fetch(`/api/dr/orders/${id}`);
  const o = await r.json();
  if (!r.ok) { document.getElementById("detail-result").textContent = reason(o); return; }
  page.order = o;
  document.getElementById("order-detail").hidden = false;
  document.getElementById("detail-id").textContent = String(o.id);
  document.getElementById("detail-what").textContent = `${o.description}; ${o.status}, opted ${o.opt}`;
  document.getElementById("detail-actions").hidden = !supervisor() || o.facility !== null;
  document.querySelector("#parts tbody").innerHTML = o.parts.map(p => {
    const s = p.settlement;
    return `<tr data-facility="${esc(p.facility)}"><td>${esc(p.facility)}</td><td>${esc(p.priority)}</td>
      <td>${num(p.requested_kwh, 1)} kWh</td><td>${num(p.peak_kw, 1)} kW</td>
      <td>${s ? num(s.delivered_kwh, 1) + " kWh" : "–"}</td><td>${s ? num(s.payment, 2) : "–"}</td>
      <td>${s ? num(s.penalty, 2) : "–"}</td>
      <td data-short="${s ? String(s.fell_short) : ""}">${s ? (s.fell_short ? "short" : "yes") : "not settled"}</td></tr>`;
  }).join("");
  document.getElementById("shortfall").textContent = shortfallText(o.shortfall);
}

async function addOrder(event) {
  event.preventDefault();
  const value = id => document.getElementById(id).value;
  const result = document.getElementById("order-result");
  // The window is typed on the estate's clock, whatever the browser's.
  const start = Layout.fromZoned(value("order-start")), end = Layout.fromZoned(value("order-end"));
  if (isNaN(start) || isNaN(end)) { result.textContent = "give the window's start and end"; return; }
  const r = await change("/api/dr/orders", {kind: value("order-kind"), kw: Number(value("order-kw")),
    start: start.toISOString(), end: end.toISOString(), payment_per_kwh: Number(value("order-payment")),
    penalty_per_kwh: Number(value("order-penalty")), opt: "in"});
  result.textContent = r.ok ? `entered: ${r.body.description}, split among ${r.body.parts.length} tenants`
                            : `not entered: ${reason(r.body)}`;
  await loadOrders();
  if (r.ok) await showOrder(r.body.id);
}

async function act(path, body) {
  const r = await change(path, body);
  document.getElementById("detail-result").textContent = r.ok ? "done" : `refused: ${reason(r.body)}`;
  await loadOrders();
  await showOrder(page.order.id);
}

async function loadMonth(event) {
  if (event) event.preventDefault();
  const month = document.getElementById("month").value;
  if (!month) return;
  const body = document.querySelector("#statements tbody");
  body.innerHTML = `<tr><td colspan="3" class="muted">Computing ${esc(month)}…</td></tr>`;
  const r = await fetch(`/api/statements/${encodeURIComponent(month)}`);
  const m = await r.json();
  if (!r.ok) {
    body.innerHTML = `<tr><td colspan="3" class="muted">${esc(reason(m))}</td></tr>`;
    document.getElementById("files").innerHTML = "";
    return;
  }
  document.getElementById("files").innerHTML =
    `<a id="csv" href="${esc(m.files.csv)}">CSV</a> · <a id="pdf" href="${esc(m.files.pdf)}">PDF</a>`;
  body.innerHTML = m.statements.map(s => `
    <tr data-statement="${esc(s.facility)}"><td>${esc(s.name)}<div class="sub">${esc(s.facility)}</div></td>
      <td class="total">${num(s.total, 2)} ${esc(s.currency)}</td>
      <td class="sub">${s.lines.map(x => `${esc(x.label)}: ${num(x.amount, 2)}`).join("; ")}</td></tr>`).join("");
  const bill = m.estate_bill;
  document.getElementById("bill").textContent = bill
    ? `tenants ${num(m.tenants_total, 2)}; the estate's bill from its meters ${num(bill.total, 2)}` : "";
}

async function main() {
  await Layout.ready;
  const session = await fetch("/api/session");
  if (session.status === 401) { location.assign("/login"); return; }
  page.session = await session.json();
  const user = page.session.user;
  document.getElementById("scope").textContent = user.facility
    ? `facility ${user.facility} only` : "the whole estate";
  document.getElementById("new-order").hidden = !supervisor() || Boolean(user.facility);
  document.getElementById("order-form").addEventListener("submit", addOrder);
  document.querySelector("#order-form button[type=submit]").disabled = false;  // handled from now on
  for (const b of document.querySelectorAll("[data-opt]")) {
    b.addEventListener("click", () => act(`/api/dr/orders/${page.order.id}/opt`, {opt: b.dataset.opt}));
  }
  document.getElementById("settle").addEventListener("click",
    () => act(`/api/dr/orders/${page.order.id}/settle`));
  const last = new Date(); last.setDate(0);
  document.getElementById("month").value =
    `${last.getFullYear()}-${String(last.getMonth() + 1).padStart(2, "0")}`;
  document.getElementById("month-form").addEventListener("submit", loadMonth);
  document.querySelector("#month-form button[type=submit]").disabled = false;  // handled from now on
  await loadOrders();
}

main();
