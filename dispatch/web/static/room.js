// What the control room's pages share (alarms, incidents, shift): the session, state changes
// with the CSRF token, refusals in words, and times in the estate's time zone.
"use strict";

const room = { session: null, timezone: "UTC" };

function esc(text) {
  return String(text ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                      '"': "&quot;", "'": "&#39;"})[c]);
}

// A time in the estate's zone: "04/12 16:05" (today: "16:05"), with the zone on hover.
function when(iso) {
  if (!iso) return "–";
  const t = new Date(iso);
  const day = d => d.toLocaleDateString("en-GB", {timeZone: room.timezone});
  const clock = t.toLocaleTimeString("en-GB", {timeZone: room.timezone, hour: "2-digit", minute: "2-digit"});
  return day(t) === day(new Date()) ? clock
    : `${t.toLocaleDateString("en-GB", {timeZone: room.timezone, day: "2-digit", month: "2-digit"})} ${clock}`;
}

function whenTag(iso) {
  return `<time datetime="${esc(iso)}" title="${esc(room.timezone)}">${esc(when(iso))}</time>`;
}

// How long ago (or, negative, how long until): "5 min", "2 h 10 min".
function span(seconds) {
  const s = Math.abs(Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min` : `${s} s`;
}

function ago(iso) {
  return span((Date.now() - new Date(iso).getTime()) / 1000);
}

function reason(body) {
  return typeof body.detail === "string" ? body.detail
    : Array.isArray(body.detail) ? body.detail.map(p => `${p.loc.slice(1).join(".")}: ${p.msg}`).join("; ")
    : "refused";
}

async function change(path, body) {
  const r = await fetch(path, {method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": room.session.csrf_token},
    body: JSON.stringify(body || {})});
  let answer = {};
  try { answer = await r.json(); } catch (e) { answer = {detail: `HTTP ${r.status}`}; }
  return {ok: r.ok, status: r.status, body: answer};
}

function canAct() {
  return room.session.user.role !== "viewer";
}

function say(id, text, ok) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.dataset.ok = ok ? "true" : "false";
}

// Logs in (or leads to the login), shows who and the time zone; the page's own start.
async function startRoom() {
  await Layout.ready;
  const session = await fetch("/api/session");
  if (session.status === 401) { location.assign("/login"); return false; }
  room.session = await session.json();
  const user = room.session.user;
  const estate = await fetch("/api/estate");
  if (estate.ok) room.timezone = (await estate.json()).timezone || "UTC";
  document.getElementById("scope").textContent =
    `${user.facility ? `facility ${user.facility} only` : "the whole estate"} · times in ${room.timezone}`;
  document.body.dataset.role = canAct() ? "operator" : "viewer";
  return true;
}
