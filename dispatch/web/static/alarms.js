// The alarm board: active alarms by severity then age, polled every few seconds; operators
// acknowledge, shelve (for a while, with a reason), take off the shelf and comment.
"use strict";

const board = { alarms: [], seen: null, limit: 100, target: null, audio: null };
const POLL_MS = 5000;

function stateText(a) {
  if (a.state === "shelved") return `shelved by ${esc(a.shelved_by)} until ${whenTag(a.shelved_until)}`;
  if (a.state === "acknowledged") return `acknowledged by ${esc(a.acknowledged_by)} ${whenTag(a.acknowledged_at)}`;
  return "<b>unacknowledged</b>";
}

function actions(a) {
  const id = a.id;
  const buttons = [];
  if (a.state === "raised") buttons.push(`<button type="button" data-ack="${id}">Acknowledge</button>`);
  if (a.state === "shelved") buttons.push(`<button type="button" data-unshelve="${id}">Unshelve</button>`);
  else buttons.push(`<button type="button" data-shelve="${id}">Shelve</button>`);
  buttons.push(`<button type="button" data-comment="${id}">Comment</button>`);
  return buttons.join("");
}

function row(a) {
  return `<tr data-alarm="${a.id}" data-state="${esc(a.state)}" data-severity="${esc(a.severity)}">
    <td data-label="Severity"><span class="sev" data-severity="${esc(a.severity)}">${esc(a.severity)}</span></td>
    <td data-label="Since">${whenTag(a.raised_at)} <span class="sub">(${esc(ago(a.raised_at))})</span></td>
    <td data-label="Where">${esc(a.source)}</td>
    <td data-label="Alarm" class="msg"><b>${esc(a.rule_id)}</b> ${esc(a.message)}</td>
    <td data-label="State" class="state">${stateText(a)}</td>
    <td class="actions operator-only">${actions(a)}</td></tr>`;
}

function beep() {
  try {
    board.audio = board.audio || new AudioContext();
    const osc = board.audio.createOscillator(), gain = board.audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.08;
    osc.connect(gain).connect(board.audio.destination);
    osc.start();
    osc.stop(board.audio.currentTime + 0.35);
  } catch (e) { /* no sound on this browser: the board still shows it */ }
}

function announce(alarms) {
  const ids = new Set(alarms.map(a => a.id));
  if (board.seen !== null && document.getElementById("sound").checked) {
    const fresh = alarms.filter(a => !board.seen.has(a.id) && (a.severity === "critical" || a.severity === "high"));
    if (fresh.length) beep();
  }
  board.seen = ids;
}

async function load() {
  const state = document.getElementById("state-filter").value;
  const query = new URLSearchParams({limit: String(board.limit)});
  if (state) query.set("state", state);
  const r = await fetch(`/api/alarms?${query}`);
  const body = await r.json();
  const tbody = document.querySelector("#alarms tbody");
  if (!r.ok) {
    tbody.innerHTML = `<tr><td colspan="6" class="muted">${esc(reason(body))}</td></tr>`;
    return;
  }
  board.alarms = body.alarms;
  if (!state) announce(body.alarms);
  const unacked = body.alarms.filter(a => a.state === "raised").length;
  document.getElementById("counts").textContent =
    `${body.total} active${state ? ` (${state})` : `, ${unacked} unacknowledged`}`;
  document.getElementById("updated").textContent = `updated ${when(new Date().toISOString())}`;
  tbody.innerHTML = body.alarms.length ? body.alarms.map(row).join("")
    : `<tr><td colspan="6" class="muted">No active alarms.</td></tr>`;
  document.getElementById("pager").hidden = body.next_offset === null;
}

async function act(path, body, done) {
  const r = await change(path, body);
  say("result", r.ok ? done : `refused: ${reason(r.body)}`, r.ok);
  await load();
  return r.ok;
}

function alarmById(id) {
  return board.alarms.find(a => a.id === id);
}

function openShelve(id) {
  const a = alarmById(id);
  board.target = id;
  document.getElementById("shelve-id").textContent = String(id);
  document.getElementById("shelve-what").textContent = a ? `${a.rule_id} at ${a.source}` : "";
  document.getElementById("shelve-reason").value = "";
  document.getElementById("shelve-dialog").showModal();
}

function openComment(id) {
  board.target = id;
  document.getElementById("comment-id").textContent = String(id);
  document.getElementById("comment-text").value = "";
  document.getElementById("comment-dialog").showModal();
}

function onClick(event) {
  const b = event.target.closest("button");
  if (!b) return;
  const d = b.dataset;
  if (d.ack) act(`/api/alarms/${d.ack}/acknowledge`, {}, `alarm ${d.ack} acknowledged`);
  else if (d.unshelve) act(`/api/alarms/${d.unshelve}/unshelve`, {}, `alarm ${d.unshelve} back on the board`);
  else if (d.shelve) openShelve(Number(d.shelve));
  else if (d.comment) openComment(Number(d.comment));
}

async function main() {
  if (!await startRoom()) return;
  document.getElementById("alarms").addEventListener("click", onClick);
  document.getElementById("state-filter").addEventListener("change", load);
  document.getElementById("more").addEventListener("click", () => { board.limit = Math.min(board.limit + 100, 200); load(); });
  for (const b of document.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  document.getElementById("shelve-form").addEventListener("submit", event => {
    const id = board.target;
    const minutes = Number(document.getElementById("shelve-minutes").value);
    const text = document.getElementById("shelve-reason").value;
    if (!text.trim()) { event.preventDefault(); return; }
    act(`/api/alarms/${id}/shelve`, {minutes, reason: text}, `alarm ${id} shelved for ${span(minutes * 60)}`);
  });
  document.getElementById("comment-form").addEventListener("submit", event => {
    const id = board.target;
    const text = document.getElementById("comment-text").value;
    if (!text.trim()) { event.preventDefault(); return; }
    act(`/api/alarms/${id}/comment`, {text}, `comment added to alarm ${id}`);
  });
  await load();
  setInterval(load, POLL_MS);
}

main();
