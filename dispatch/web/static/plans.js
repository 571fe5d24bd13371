// Plans: the newest plans; one plan's setpoints per asset per step as charts and a table,
// its grid import against the do-nothing baseline; approval after a confirmation that names
// every command it will send, rejection with a reason; then each command's answer.
"use strict";

const plan = { id: null, detail: null, preview: null, timer: null };
const FINAL = new Set(["done", "rejected", "failed", "timed_out", "refused"]);
const STATUS_WORDS = { pending: "pending", sent: "sent, no answer yet", accepted: "accepted",
                       done: "done", rejected: "refused by the device", failed: "failed",
                       timed_out: "timed out: no answer", refused: "refused by the broker: never sent" };
const { esc, num } = Layout;

function money(value, currency) {
  return value === null || value === undefined ? "–"
    : `${Number(value).toLocaleString("en-GB", {maximumFractionDigits: 0})} ${esc(currency || "")}`;
}
function commandText(c) {
  const params = Object.entries(c.params || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  return `${c.action}${params ? " " + params : ""}`;
}
function answerText(c) {
  const words = STATUS_WORDS[c.status] || c.status;
  const why = [c.reason === "timed-out" ? null : c.reason, c.detail].filter(Boolean).join(": ");
  return why ? `${words} (${why})` : words;
}

async function loadList() {
  const body = document.querySelector("#plans tbody");
  let list;
  try { list = (await Layout.getJson("/api/plans?limit=30")).plans; }
  catch (err) { body.innerHTML = `<tr><td colspan="4" class="bad">${esc(err.message)}</td></tr>`; return []; }
  body.innerHTML = list.length ? list.map(p => `
    <tr data-plan="${p.id}" data-status="${esc(p.status)}" ${p.id === plan.id ? 'aria-selected="true"' : ""}>
      <td><a href="/plans?plan=${p.id}">#${p.id}</a></td>
      <td>${esc(Layout.dateTime(p.horizon_start))}</td>
      <td class="status" data-status="${esc(p.status)}">${esc(p.status)}${p.approved_by ? ` by ${esc(p.approved_by)}` : ""}</td>
      <td>${money(p.cost_saved, p.currency)}</td></tr>`).join("")
    : '<tr><td colspan="4" class="muted">No plan yet.</td></tr>';
  return list;
}

function figures(d) {
  return `
    <div class="figures">
      <div><div class="sub">From ${esc(Layout.dateTime(d.horizon_start))} · revision ${d.revision ?? "–"}</div>
           <b id="plan-status">${esc(d.status)}</b>${d.approved_by ? ` <span class="sub">by ${esc(d.approved_by)}</span>` : ""}</div>
      <div><div class="sub">Cost (baseline)</div><b id="plan-cost">${money(d.cost, d.currency)}</b>
           <span class="sub">(${money(d.baseline_cost, d.currency)})</span></div>
      <div><div class="sub">Saved</div><b id="plan-saved">${money(d.cost_saved, d.currency)}</b></div>
      <div><div class="sub">Peak (baseline)</div><b id="plan-peak">${num(d.peak_kw, 0)} kW</b>
           <span class="sub">(${num(d.baseline_peak_kw, 0)} kW)</span></div>
      <div><div class="sub">Solver</div><b>${esc(d.solver_status || "–")}</b></div>
    </div>
    <ul class="explain">${d.explanation.slice(0, 4).map(x => `<li>${esc(x)}</li>`).join("")}</ul>`;
}

function assetName(d, id) { return (d.setpoints[id] && d.setpoints[id].name) || id; }

function charts(d) {
  const times = d.times.map(t => Date.parse(t));
  const assets = Object.keys(d.setpoints);
  Charts.line(document.getElementById("setpoint-chart"), times,
              assets.map(a => ({label: assetName(d, a), values: d.setpoints[a].values, step: true})),
              {unit: ""});
  const s = d.summary || {};
  Charts.line(document.getElementById("import-chart"), times, [
    {label: "plan", values: s.grid_import_kw || [], step: true},
    {label: "baseline", values: s.baseline_import_kw || [], dash: [6, 4], step: true, colour: "#8ba0b5"}]);
  const head = `<thead><tr><th>Step</th>${assets.map(a => `<th>${esc(assetName(d, a))}</th>`).join("")}
                <th>Import</th><th>Baseline</th></tr></thead>`;
  const rows = d.times.map((t, k) => `<tr><td>${esc(Layout.time(t, false))}</td>${
    assets.map(a => `<td>${num(d.setpoints[a].values[k], 1)}</td>`).join("")}<td>${
    num((s.grid_import_kw || [])[k], 0)}</td><td>${num((s.baseline_import_kw || [])[k], 0)}</td></tr>`).join("");
  document.getElementById("steps").innerHTML = `${head}<tbody>${rows}</tbody>`;
}

async function open(id) {
  let d;
  try { d = await Layout.getJson(`/api/plans/${id}`); }
  catch (err) { document.getElementById("plan-body").textContent = err.message; return; }
  Object.assign(plan, {id: d.id, detail: d});
  const box = document.getElementById("plan");
  box.dataset.state = d.status;
  box.dataset.plan = String(d.id);
  document.getElementById("plan-id").textContent = `#${d.id}`;
  document.getElementById("plan-body").innerHTML = figures(d);
  const operator = ["operator", "supervisor", "admin"].includes(Layout.user.role);
  document.getElementById("decide").hidden = !(operator && d.status === "draft");
  for (const row of document.querySelectorAll("#plans tbody tr")) {
    row.setAttribute("aria-selected", String(row.dataset.plan === String(d.id)));
  }
  charts(d);
  await showCommands();
}

async function showCommands() {
  const table = document.getElementById("plan-commands");
  if (plan.detail.status !== "approved") { table.hidden = true; return; }
  let r;
  try { r = await Layout.getJson(`/api/plans/${plan.id}/commands`); } catch (err) { return; }
  table.hidden = r.commands.length === 0;
  table.querySelector("tbody").innerHTML = r.commands.map(c => `
    <tr data-asset="${esc(c.asset || "")}" data-command="${esc(c.id)}"><td>${esc(c.asset || c.device)}</td>
      <td>${esc(commandText(c))}</td>
      <td data-status="${esc(c.status)}">${esc(answerText(c))}</td></tr>`).join("");
  clearTimeout(plan.timer);
  if (r.commands.some(c => !FINAL.has(c.status))) plan.timer = setTimeout(showCommands, 1500);
}

async function askApproval() {
  const result = document.getElementById("decision");
  let p;
  try { p = await Layout.getJson(`/api/plans/${plan.id}/preview`); }
  catch (err) { result.textContent = `cannot list what would be sent: ${err.message}`; return; }
  plan.preview = p;
  document.getElementById("confirm-plan").textContent = `#${plan.id}`;
  document.getElementById("confirm-step").textContent =
    `Step ${p.step + 1}, ${Layout.dateTime(p.step_start)} to ${Layout.time(p.step_end, false)} ` +
    `(${Layout.zone()}): ${p.commands.length} command${p.commands.length === 1 ? "" : "s"} will be sent.`;
  document.querySelector("#confirm-commands tbody").innerHTML = p.commands.map(c => `
    <tr data-asset="${esc(c.asset)}"><td>${esc(assetName(plan.detail, c.asset))}</td><td>${esc(c.device)}</td>
      <td>${esc(commandText(c))}</td><td>${num(c.setpoint_kw, 1)} kW</td></tr>`).join("");
  document.getElementById("confirm-none").textContent = p.not_commanded.length
    ? `Not commanded: ${p.not_commanded.map(a => assetName(plan.detail, a)).join(", ")}.` : "";
  document.getElementById("confirm-send").textContent =
    `Approve and send ${p.commands.length} command${p.commands.length === 1 ? "" : "s"}`;
  document.getElementById("confirm-approve").showModal();
}

async function approved(dialog) {
  if (dialog.returnValue !== "send") return;
  const result = document.getElementById("decision");
  const r = await Layout.change(`/api/plans/${plan.id}/approve`, {revision: plan.detail.revision});
  result.dataset.outcome = r.ok ? "approved" : "refused";
  result.textContent = r.ok
    ? `approved: ${r.body.commands.length} commands sent for step ${r.body.step + 1}` +
      (plan.preview && r.body.step !== plan.preview.step ? " (the step changed since the confirmation)" : "")
    : `not approved: ${Layout.reason(r.body)}`;
  await open(plan.id); await loadList();
}

async function rejected(dialog) {
  if (dialog.returnValue !== "reject") return;
  const reason = document.getElementById("reject-reason").value.trim();
  const result = document.getElementById("decision");
  const r = await Layout.change(`/api/plans/${plan.id}/reject`, {reason});
  result.dataset.outcome = r.ok ? "rejected" : "refused";
  result.textContent = r.ok ? `rejected: ${reason}` : `not rejected: ${Layout.reason(r.body)}`;
  await open(plan.id); await loadList();
}

async function main() {
  await Layout.ready;
  const approveDialog = document.getElementById("confirm-approve");
  const rejectDialog = document.getElementById("confirm-reject");
  document.getElementById("approve").addEventListener("click", askApproval);
  document.getElementById("reject").addEventListener("click", () => {
    document.getElementById("reject-plan").textContent = `#${plan.id}`;
    document.getElementById("reject-reason").value = "";
    rejectDialog.showModal();
  });
  approveDialog.addEventListener("close", () => approved(approveDialog));
  rejectDialog.addEventListener("close", () => rejected(rejectDialog));
  // A rejection needs its reason: the dialog stays open until one is given.
  document.getElementById("reject-send").addEventListener("click", e => {
    const reason = document.getElementById("reject-reason");
    reason.required = true;
    if (!reason.value.trim()) { e.preventDefault(); reason.value = ""; reason.reportValidity(); }
  });
  const list = await loadList();
  const asked = Number(new URLSearchParams(location.search).get("plan"));
  const first = asked || (list[0] && list[0].id);
  if (first) await open(first);
  setInterval(loadList, 30000);
}

main();
