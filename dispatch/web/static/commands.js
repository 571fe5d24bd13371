// The command and audit log: who approved or rejected which plan, and every command with
// its state, the device's answer and its audit trail; refused and timed-out commands are
// shown as such. Refreshed every few seconds.
"use strict";

const REFRESH_MS = 3000;  // an answer shows within a few seconds of the device giving it
const WORDS = { pending: "pending", sent: "sent, no answer yet", accepted: "accepted",
                done: "done", rejected: "refused by the device", failed: "failed",
                timed_out: "timed out: no answer", refused: "refused by the broker: never sent" };
const { esc } = Layout;

function commandText(c) {
  const params = Object.entries(c.params || {}).map(([k, v]) => `${k}=${v}`).join(" ");
  return `${c.action}${params ? " " + params : ""}`;
}

function answer(c) {
  const why = [c.reason === "timed-out" ? null : c.reason, c.detail].filter(Boolean).join(": ");
  const at = c.answered_at ? ` at ${Layout.time(c.answered_at)}` : "";
  return `${WORDS[c.status] || c.status}${at}${why ? ` (${why})` : ""}`;
}

function trail(c) {
  return `<details><summary>${c.audit.length} step${c.audit.length === 1 ? "" : "s"}</summary><ol class="trail">${
    c.audit.map(a => `<li>${esc(Layout.time(a.at))} ${esc(a.action.replace("command.", ""))} · ${esc(a.actor)}</li>`).join("")
  }</ol></details>`;
}

function decisionDetail(d) {
  if (d.action === "plan.rejected") return d.detail.reason ? `reason: ${d.detail.reason}` : "no reason given";
  const n = d.detail.commands;
  return n === undefined ? "" : `step ${Number(d.detail.step || 0) + 1}, ${n} command${n === 1 ? "" : "s"}`;
}

async function refresh() {
  const status = document.getElementById("status").value;
  let log;
  try { log = await Layout.getJson(`/api/commands?limit=200${status ? `&status=${status}` : ""}`); }
  catch (err) {
    document.querySelector("#commands tbody").innerHTML =
      `<tr><td colspan="7" class="bad">${esc(err.message)}</td></tr>`;
    return;
  }
  document.querySelector("#decisions tbody").innerHTML = log.decisions.length ? log.decisions.map(d => `
    <tr data-plan="${d.plan}" data-decision="${esc(d.action)}"><td>${esc(Layout.dateTime(d.at))}</td>
      <td>${esc(d.actor)}</td><td><a href="/plans?plan=${d.plan}">#${d.plan}</a></td>
      <td>${esc(d.action.replace("plan.", ""))}</td><td>${esc(decisionDetail(d))}</td></tr>`).join("")
    : '<tr><td colspan="5" class="muted">No plan approved or rejected yet.</td></tr>';
  // A trail the operator opened stays open across refreshes.
  const open = new Set([...document.querySelectorAll("#commands tr[data-command] details[open]")]
    .map(d => d.closest("tr").dataset.command));
  document.querySelector("#commands tbody").innerHTML = log.commands.length ? log.commands.map(c => `
    <tr data-command="${esc(c.id)}" data-asset="${esc(c.asset || "")}">
      <td>${esc(Layout.dateTime(c.created_at))}</td>
      <td>${c.plan ? `<a href="/plans?plan=${c.plan}">#${c.plan}</a>` : "–"}</td>
      <td>${esc(c.asset || "–")}<div class="sub">${esc(c.device)}</div></td>
      <td>${esc(commandText(c))}</td>
      <td data-status="${esc(c.status)}">${esc(answer(c))}</td>
      <td>${esc(c.requested_by)}</td><td>${trail(c)}</td></tr>`).join("")
    : '<tr><td colspan="7" class="muted">No command.</td></tr>';
  for (const row of document.querySelectorAll("#commands tr[data-command]")) {
    if (open.has(row.dataset.command)) row.querySelector("details").open = true;
  }
  document.getElementById("counted").textContent = `${log.commands.length} shown`;
}

async function main() {
  await Layout.ready;
  document.getElementById("status").addEventListener("change", refresh);
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

main();
