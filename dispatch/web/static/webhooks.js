// Webhooks for admins: the subscriptions with their state, the delivery log with each
// attempt (status, latency, outcome, next try), and redelivery.
"use strict";

const page = { session: null };

function esc(text) {
  return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                 '"': "&quot;", "'": "&#39;"})[c]);
}

function when(iso) {
  return iso ? `${Layout.dateTime(iso)}:${Layout.time(iso).slice(-2)}` : "–";
}

function reason(body) {
  return typeof body.detail === "string" ? body.detail : "refused";
}

// A state change as the live view makes them: the session's CSRF token in its header.
async function change(path) {
  const r = await fetch(path, {method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": page.session.csrf_token},
    body: "{}"});
  return {ok: r.ok, body: await r.json()};
}

async function loadSubscriptions() {
  const r = await fetch("/api/webhooks");
  const body = await r.json();
  const rows = r.ok ? body.subscriptions.map(s => `<tr><td>${s.id}</td><td>${esc(s.name)}</td>
    <td>${esc(new URL(s.url).origin)}</td><td>${esc(s.facility || "estate")}</td>
    <td>${esc(s.payload_format)}</td><td>${s.enabled ? "on" : "off"}</td></tr>`) : [];
  document.querySelector("#subscriptions tbody").innerHTML = rows.join("") ||
    `<tr><td colspan="6" class="muted">${r.ok ? "No subscription" : esc(reason(body))}</td></tr>`;
}

function attempts(d) {
  return d.attempt_log.map(a => `<div class="attempt">${when(a.at)} ${esc(a.outcome)}
    ${a.status_code === null ? "" : a.status_code} ${a.latency_ms === null ? "" : Math.round(a.latency_ms) + " ms"}
    ${a.error ? esc(a.error) : ""}</div>`).join("");
}

async function loadDeliveries() {
  const r = await fetch("/api/webhooks/deliveries?limit=50");
  const body = await r.json();
  const rows = r.ok ? body.deliveries.map(d => `<tr data-delivery="${d.id}"><td>${d.id}</td>
    <td>${d.subscription_id}</td><td>${esc(d.event_type)}</td><td>${esc(d.state)}</td>
    <td>${attempts(d)}</td><td>${d.state === "pending" ? when(d.next_attempt_at) : "–"}</td>
    <td><button type="button" data-redeliver="${d.id}">Redeliver</button></td></tr>`) : [];
  document.querySelector("#deliveries tbody").innerHTML = rows.join("") ||
    `<tr><td colspan="7" class="muted">${r.ok ? "No delivery yet" : esc(reason(body))}</td></tr>`;
  for (const b of document.querySelectorAll("[data-redeliver]")) {
    b.addEventListener("click", () => redeliver(b.dataset.redeliver));
  }
}

async function redeliver(id) {
  const answer = await change(`/api/webhooks/deliveries/${id}/redeliver`);
  document.getElementById("result").textContent = answer.ok
    ? `delivery ${id} queued again` : reason(answer.body);
  await loadDeliveries();
}

async function main() {
  await Layout.ready;
  const session = await fetch("/api/session");
  page.session = await session.json();
  const user = page.session.user;
  document.getElementById("scope").textContent = user.facility
    ? `facility ${user.facility} only` : "the whole estate";
  await loadSubscriptions();
  await loadDeliveries();
  setInterval(loadDeliveries, 2000);
}

main();
