// The estate per utility (/api/overview, every few seconds): the import against the
// contracted capacity, and every facility's state, draw, age and active alarms. A value
// older than the stale time, or any value while the feed is stale, is greyed with its age.
"use strict";

const Overview = (() => {
  const EVERY_MS = 2000;  // as fresh as the meters (they report every 2 s in the demo)
  const NAMES = { electricity: "Electricity", water: "Water", gas: "Gas" };
  const STATES = { ok: "ok", stale: "stale", offline: "offline", alarm: "alarm" };
  const { esc, num, unitLabel } = Layout;
  let last = null;

  function when(at) { return at ? `${Layout.time(at)} · ${Layout.ago(Date.parse(at))}` : "no value yet"; }

  function importCard(u, feedStale) {
    if (!u.import) {
      return `<div class="big muted" data-import>–</div><div class="sub">${
        u.contracted ? `of ${num(u.contracted.value, 0)} ${esc(unitLabel(u.contracted.unit))} contracted; ` : ""
      }no import measured yet</div>`;
    }
    const share = u.contracted ? 100 * u.import.value / u.contracted.value : null;
    const level = share === null ? "ok" : share >= 100 ? "bad" : share >= 90 ? "warn" : "ok";
    const bar = share === null ? "" : `<div class="bar" data-level="${level}"><span style="width:${Math.min(100, share).toFixed(1)}%"></span></div>`;
    return `<div class="big" data-import data-stale="${feedStale}">${num(u.import.value, 0)} <small>${esc(unitLabel(u.import.unit))}</small></div>
      <div class="sub">${u.contracted ? `${Math.round(share)}% of ${num(u.contracted.value, 0)} ${esc(unitLabel(u.contracted.unit))} contracted · ` : "import · "}${esc(when(u.import.at))}</div>${bar}`;
  }

  function row(f, feedStale) {
    const greyed = feedStale || f.state === "stale" || f.state === "offline";
    const alarms = f.active_alarms ? `<span class="alarms" data-severity="${esc(f.worst_severity || "")}">${f.active_alarms}${f.worst_severity ? ` · ${esc(f.worst_severity)}` : ""}</span>` : "";
    return `<tr data-facility="${esc(f.id)}" data-state="${esc(f.state)}">
      <td><a href="/facility/${esc(f.id)}">${esc(f.name)}</a></td>
      <td><span class="state" data-state="${esc(f.state)}">${esc(STATES[f.state] || f.state)}</span></td>
      <td class="value" data-stale="${greyed}"><b>${f.value === null ? "–" : num(f.value)}</b> <small>${esc(unitLabel(f.unit))}</small></td>
      <td class="age" data-stale="${greyed}">${f.at ? esc(Layout.ago(Date.parse(f.at))) : "–"}</td>
      <td>${alarms}</td></tr>`;
  }

  function render(o) {
    const feedStale = o.feed.stale || !Layout.live();
    document.getElementById("utilities").innerHTML = o.utilities.map(u => `
      <section class="card utility" data-utility="${esc(u.utility)}">
        <div class="label">${esc(NAMES[u.utility] || u.utility)}</div>
        ${importCard(u, feedStale)}
        <table><thead><tr><th>Facility</th><th>State</th><th>Draw</th><th>Updated</th><th>Alarms</th></tr></thead>
          <tbody>${u.facilities.map(f => row(f, feedStale)).join("")}</tbody></table>
      </section>`).join("") || '<p class="muted">No utility measured.</p>';
  }

  async function refresh() {
    try { last = await Layout.getJson("/api/overview"); }
    catch (err) {
      Layout.setFeed({stale: true, age_s: null});
      document.getElementById("utilities").dataset.error = err.message;
      if (last) render({...last, feed: {...last.feed, stale: true}});
      return;
    }
    delete document.getElementById("utilities").dataset.error;
    Layout.setFeed({stale: last.feed.stale, age_s: last.feed.age_s});
    render(last);
  }

  async function start() {
    await Layout.ready;
    await refresh();
    setInterval(refresh, EVERY_MS);
  }

  start();
  return { refresh };
})();
