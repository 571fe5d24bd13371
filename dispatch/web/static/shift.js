// The shift log (entries, open items resolved) and the handover: the outgoing operator
// prepares it; the incoming one acknowledges each alarm and incident, then accepts.
"use strict";

const shift = { waiting: null };

function entryRow(e) {
  return `<tr data-entry="${e.id}" data-kind="${esc(e.kind)}">
    <td data-label="Time">${whenTag(e.at)}</td><td data-label="By">${esc(e.by)}</td>
    <td data-label="Kind">${esc(e.kind.replace("_", " "))}${e.open ? ' <span class="late">still open</span>' : ""}</td>
    <td data-label="Entry" class="msg">${esc(e.text)}${e.resolved_at
      ? `<div class="sub">resolved by ${esc(e.resolved_by)} ${whenTag(e.resolved_at)}</div>` : ""}</td>
    <td class="operator-only">${e.open ? `<button type="button" data-resolve="${e.id}">Resolve</button>` : ""}</td></tr>`;
}

async function loadLog() {
  const r = await fetch("/api/shift/log?limit=200");
  const body = await r.json();
  const tbody = document.querySelector("#log tbody");
  tbody.innerHTML = !r.ok ? `<tr><td colspan="5" class="muted">${esc(reason(body))}</td></tr>`
    : body.entries.length ? body.entries.map(entryRow).join("")
    : `<tr><td colspan="5" class="muted">Nothing written this shift yet.</td></tr>`;
}

function item(x, kind, mine) {
  const what = kind === "alarm"
    ? `<span class="sev" data-severity="${esc(x.severity)}">${esc(x.severity)}</span> alarm ${esc(x.rule_id)} at ${esc(x.source)}: ${esc(x.message)} <span class="sub">(${esc(x.state)}, since ${whenTag(x.raised_at)})</span>`
    : `<span class="sev" data-severity="${esc(x.severity)}">${esc(x.severity)}</span> incident ${x.id}: ${esc(x.title)} <span class="sub">(${esc(x.status)}, crew ${esc(x.crew || "none")})</span>`;
  return `<li><label><input type="checkbox" data-item="${esc(x.key)}" ${x.acknowledged ? "checked" : ""}
    ${mine ? "" : "disabled"} aria-label="acknowledge ${esc(x.key)}"> <span>${what}</span></label></li>`;
}

function renderWaiting(h) {
  const me = room.session.user.username;
  const mine = h.incoming === me && !h.accepted;
  document.getElementById("waiting-what").innerHTML =
    `<b>${esc(h.outgoing)}</b> hands the shift to <b>${esc(h.incoming)}</b>, prepared ${whenTag(h.prepared_at)}` +
    (mine ? " — acknowledge each item, then accept." : ` — waiting for ${esc(h.incoming)} to accept.`);
  document.getElementById("waiting-note").textContent = h.note ? `Note: ${h.note}` : "";
  document.getElementById("waiting-entries").innerHTML = h.entries.length
    ? `<div class="sub">${h.entries.length} log ${h.entries.length === 1 ? "entry" : "entries"}: ${h.entries.map(e => esc(e.text)).slice(0, 5).join(" · ")}${h.entries.length > 5 ? " …" : ""}</div>` : "";
  document.getElementById("waiting-items").innerHTML =
    h.alarms.map(a => item(a, "alarm", mine)).join("") + h.incidents.map(i => item(i, "incident", mine)).join("")
    || `<li class="muted">No active alarm and no open incident to hand over.</li>`;
  document.getElementById("accept-bar").hidden = !mine;
  countLeft();
}

function countLeft() {
  const boxes = [...document.querySelectorAll("#waiting-items [data-item]")];
  const left = boxes.filter(b => !b.checked).length;
  document.getElementById("accept").disabled = left > 0;
  document.getElementById("accept-left").textContent = left ? `${left} of ${boxes.length} still to acknowledge` : "all acknowledged";
}

async function loadHandover() {
  const r = await fetch("/api/shift/handover");
  const body = await r.json();
  if (!r.ok) { say("handover-result", reason(body), false); return; }
  shift.waiting = body.waiting;
  document.getElementById("waiting").hidden = !body.waiting;
  document.getElementById("prepare-form").hidden = Boolean(body.waiting) || !canAct();
  if (body.waiting) renderWaiting(body.waiting);
  document.querySelector("#recent tbody").innerHTML = body.recent.map(h => `
    <tr data-handover="${h.id}"><td data-label="Handed over">${whenTag(h.prepared_at)}</td>
      <td data-label="From">${esc(h.outgoing)}</td><td data-label="To">${esc(h.incoming)}</td>
      <td data-label="Accepted">${h.accepted_at ? whenTag(h.accepted_at) : "<b>waiting</b>"}</td>
      <td data-label="Acknowledged">${h.acknowledged} of ${h.items}</td></tr>`).join("")
    || `<tr><td colspan="5" class="muted">No handover yet.</td></tr>`;
}

async function writeEntry(event) {
  event.preventDefault();
  const text = document.getElementById("entry-text").value;
  const r = await change("/api/shift/log", {kind: document.getElementById("entry-kind").value, text});
  say("entry-result", r.ok ? `entry ${r.body.id} written` : `not written: ${reason(r.body)}`, r.ok);
  if (r.ok) document.getElementById("entry-text").value = "";
  await loadLog();
}

async function prepare(event) {
  event.preventDefault();
  const r = await change("/api/shift/handover", {incoming: document.getElementById("incoming").value.trim(),
    note: document.getElementById("handover-note").value});
  say("handover-result", r.ok ? `handover ${r.body.id} prepared for ${r.body.incoming}` : `not prepared: ${reason(r.body)}`, r.ok);
  await loadHandover();
}

async function accept() {
  const keys = [...document.querySelectorAll("#waiting-items [data-item]:checked")].map(b => b.dataset.item);
  const r = await change(`/api/shift/handover/${shift.waiting.id}/accept`, {acknowledged: keys});
  say("handover-result", r.ok ? `shift accepted by ${r.body.incoming} at ${when(r.body.accepted_at)}`
                              : `not accepted: ${reason(r.body)}`, r.ok);
  await Promise.all([loadHandover(), loadLog()]);
}

async function main() {
  if (!await startRoom()) return;
  if (room.session.user.facility) {
    say("handover-result", "The shift log is the estate control room's: not for an account of one facility.", false);
    document.querySelector("#log tbody").innerHTML = "";
    document.getElementById("entry-form").hidden = true;
    return;
  }
  document.getElementById("entry-form").addEventListener("submit", writeEntry);
  document.querySelector("#entry-form button[type=submit]").disabled = false;  // handled from now on
  document.getElementById("prepare-form").addEventListener("submit", prepare);
  document.querySelector("#prepare-form button[type=submit]").disabled = false;  // handled from now on
  document.getElementById("accept").addEventListener("click", accept);
  document.getElementById("waiting-items").addEventListener("change", countLeft);
  document.getElementById("check-all").addEventListener("click", () => {
    for (const b of document.querySelectorAll("#waiting-items [data-item]")) b.checked = true;
    countLeft();
  });
  document.querySelector("#log tbody").addEventListener("click", async event => {
    const b = event.target.closest("[data-resolve]");
    if (!b) return;
    const r = await change(`/api/shift/log/${b.dataset.resolve}/resolve`);
    say("entry-result", r.ok ? `item ${b.dataset.resolve} resolved` : `refused: ${reason(r.body)}`, r.ok);
    await loadLog();
  });
  await Promise.all([loadLog(), loadHandover()]);
}

main();
