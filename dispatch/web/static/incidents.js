// Incidents by location with their crew and SLA; operators open, assign, reassign, take the
// crew off and close (with a reason); the crews with skills, shifts, position and load.
"use strict";

const desk = { incidents: [], crews: [], names: {}, target: null };
const POLL_MS = 10000;

function slaText(i) {
  const s = i.sla;
  const respond = i.on_site_at ? `on site ${whenTag(i.on_site_at)}`
    : `on site by ${whenTag(s.respond_by)}` + (s.response_breached ? ` <span class="late">late ${esc(span(s.respond_left_s))}</span>`
      : ` <span class="sub">(${esc(span(s.respond_left_s))} left)</span>`);
  const resolve = `closed by ${whenTag(s.resolve_by)}` + (s.resolution_breached
    ? ` <span class="late">late ${esc(span(s.resolve_left_s))}</span>` : "");
  const told = i.sla_breaches.map(b => `<span class="breach" data-breach="${esc(b.sla)}"
      title="incident.sla_breached, seen ${esc(when(b.seen_at))}">${esc(b.sla)} SLA breached</span>`).join("");
  return `${respond}<br>${resolve}${told ? `<div>${told}</div>` : ""}`;
}

function crewChoice(i) {
  // The crews with the skill first; the others too, for an operator who knows better.
  const option = c => `<option value="${esc(c.id)}" ${c.id === i.crew ? "selected" : ""}>${esc(c.name)}${c.on_shift ? "" : " (off shift)"}</option>`;
  const able = desk.crews.filter(c => c.skills.includes(i.skill));
  const other = desk.crews.filter(c => !c.skills.includes(i.skill));
  return `<select data-crew-for="${i.id}" aria-label="crew for incident ${i.id}">
    <optgroup label="with ${esc(i.skill)}">${able.map(option).join("")}</optgroup>
    ${other.length ? `<optgroup label="other crews">${other.map(option).join("")}</optgroup>` : ""}</select>`;
}

function actions(i) {
  const assign = i.status === "open" || i.status === "assigned";
  return `${assign ? `${crewChoice(i)} <button type="button" data-assign="${i.id}">${i.crew ? "Reassign" : "Assign"}</button>` : ""}
    ${i.status === "assigned" ? `<button type="button" data-unassign="${i.id}">Take crew off</button>` : ""}
    <button type="button" data-close-incident="${i.id}">Close…</button>`;
}

function row(i) {
  return `<tr data-incident="${i.id}" data-status="${esc(i.status)}">
    <td data-label="Severity"><span class="sev" data-severity="${esc(i.severity)}">${esc(i.severity)}</span></td>
    <td data-label="Incident" class="msg"><b>${i.id}</b> ${esc(i.title)}
      <div class="sub">${esc(i.skill)} · opened ${whenTag(i.opened_at)} by ${esc(i.opened_by)}</div></td>
    <td data-label="Crew" class="crew-cell">${i.crew ? `${esc(i.crew)}${i.pinned ? " <span class=\"tag\">by hand</span>" : ""}` : "<b>none</b>"}
      <div class="sub">${esc(i.status.replace("_", " "))}</div></td>
    <td data-label="SLA" class="sla">${slaText(i)}</td>
    <td class="actions operator-only">${actions(i)}</td></tr>`;
}

function renderLocations() {
  const groups = new Map();
  for (const i of desk.incidents) {
    const key = i.facility ?? "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(i);
  }
  const html = [...groups.entries()].map(([facility, list]) => `
    <div class="location" data-location="${esc(facility || "estate")}">
      <h2>${facility ? `${esc(desk.names[facility] || facility)} <span class="sub">${esc(facility)}</span>` : "The estate's shared networks"}</h2>
      <table class="stack"><thead><tr><th>Severity</th><th>Incident</th><th>Crew</th><th>SLA</th>
        <th class="operator-only">Actions</th></tr></thead><tbody>${list.map(row).join("")}</tbody></table></div>`);
  document.getElementById("locations").innerHTML = html.join("") || `<p class="muted">No open incidents.</p>`;
}

function renderCrews() {
  document.getElementById("crews").innerHTML = desk.crews.map(c => `
    <div class="crew" data-crew="${esc(c.id)}" data-on-shift="${c.on_shift}">
      <b>${esc(c.name)}</b> <span class="sub">${esc(c.id)}</span>
      <div>${c.on_shift ? "on shift" : c.available ? "off shift" : "stood down"} · ${c.load} of ${c.capacity} incidents</div>
      <div>${c.skills.map(s => `<span class="tag">${esc(s)}</span>`).join("")}</div>
      <div class="sub">${c.shifts.map(esc).join("; ")}</div>
      <div class="sub">starts from (${c.position.map(v => Math.round(v)).join(", ")}) m</div>
    </div>`).join("");
}

async function load() {
  const [r, c] = await Promise.all([fetch("/api/incidents?limit=200"), fetch("/api/crews")]);
  const body = await r.json(), crews = await c.json();
  if (!r.ok) { say("result", reason(body), false); return; }
  desk.incidents = body.incidents;
  desk.names = body.facility_names;
  desk.crews = c.ok ? crews.crews : [];
  const late = body.incidents.filter(i => i.sla.response_breached || i.sla.resolution_breached).length;
  document.getElementById("counts").textContent = `${body.total} open${late ? `, ${late} late` : ""}`;
  document.getElementById("updated").textContent = `updated ${when(new Date().toISOString())}`;
  renderLocations();
  renderCrews();
  fillForm();
}

function fillForm() {
  const skills = [...new Set(desk.crews.flatMap(c => c.skills))].sort();
  const skill = document.getElementById("open-skill");
  if (!skill.options.length) skill.innerHTML = skills.map(s => `<option>${esc(s)}</option>`).join("");
  const facility = document.getElementById("open-facility");
  if (!facility.options.length) {
    const own = room.session.user.facility;
    const ids = own ? [own] : Object.keys(desk.names);
    facility.innerHTML = (own ? "" : `<option value="">the estate</option>`)
      + ids.map(f => `<option value="${esc(f)}">${esc(desk.names[f] || f)}</option>`).join("");
  }
}

async function act(path, body, done) {
  const r = await change(path, body);
  say("result", r.ok ? done : `refused: ${reason(r.body)}`, r.ok);
  await load();
}

function onClick(event) {
  const b = event.target.closest("button");
  if (!b) return;
  const d = b.dataset;
  if (d.assign) {
    const crew = document.querySelector(`[data-crew-for="${d.assign}"]`).value;
    act(`/api/incidents/${d.assign}/assign`, {crew}, `incident ${d.assign} given to ${crew}`);
  } else if (d.unassign) {
    act(`/api/incidents/${d.unassign}/unassign`, {}, `crew taken off incident ${d.unassign}`);
  } else if (d.closeIncident) {
    const i = desk.incidents.find(x => x.id === Number(d.closeIncident));
    desk.target = Number(d.closeIncident);
    document.getElementById("close-id").textContent = d.closeIncident;
    document.getElementById("close-what").textContent = i ? i.title : "";
    document.getElementById("close-reason").value = "";
    document.getElementById("close-dialog").showModal();
  }
}

async function openIncident(event) {
  event.preventDefault();
  const value = id => document.getElementById(id).value;
  const key = `page-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  const r = await change("/api/incidents", {key, title: value("open-title"), severity: value("open-severity"),
    skill: value("open-skill"), facility: value("open-facility") || null});
  say("open-result", r.ok ? `incident ${r.body.id} opened` : `not opened: ${reason(r.body)}`, r.ok);
  if (r.ok) document.getElementById("open-title").value = "";
  await load();
}

async function main() {
  if (!await startRoom()) return;
  document.getElementById("locations").addEventListener("click", onClick);
  document.getElementById("open-form").addEventListener("submit", openIncident);
  document.querySelector("#open-form button[type=submit]").disabled = false;  // handled from now on
  for (const b of document.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => b.closest("dialog").close());
  }
  document.getElementById("close-form").addEventListener("submit", event => {
    const text = document.getElementById("close-reason").value;
    if (!text.trim()) { event.preventDefault(); return; }
    act(`/api/incidents/${desk.target}/close`, {reason: text}, `incident ${desk.target} closed`);
  });
  await load();
  // Not while a crew is being chosen: a redraw would drop the choice.
  setInterval(() => { if (!document.activeElement?.matches("select, input, textarea")) load(); }, POLL_MS);
}

main();
