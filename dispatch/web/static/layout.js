// The layout every page shares: the header with the estate's name, the navigation this user
// may follow (from /api/layout), the user and role, logout, the clock in the estate's time
// zone, and the status strip (the live feed, the store, the broker, supervised services).
// A page loads this script first, has <header id="layout"></header>, and waits for
// Layout.ready before it starts. Every time on a page is shown in the estate's time zone
// (Layout.time, Layout.dateTime, Layout.tzDate for charts), never the browser's.
"use strict";

const Layout = (() => {
  const HEALTH_EVERY_MS = 3000;   // a restart shows within a few seconds
  const HEALTH_TIMEOUT_MS = 2500; // a view that does not answer within a poll counts as down
  const FRESHNESS_EVERY_MS = 15000;  // the worker checks freshness about this often
  const SERVICE_STATES = { running: "ok", starting: "warn", restarting: "bad", stopped: "bad" };
  const UNIT_LABELS = { "Cel": "°C", "m3": "m³", "m3/h": "m³/h", "/": "pf" };
  const self = { layout: null, health: { store: null, broker: null },
                 feed: { stream: null, stale: false, age_s: null }, listeners: [] };

  function esc(text) {
    return String(text).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
                                                   '"': "&quot;", "'": "&#39;"})[c]);
  }
  function unitLabel(unit) { return UNIT_LABELS[unit] || unit || ""; }
  function num(value, digits) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
    const v = Number(value), abs = Math.abs(v);
    const d = digits !== undefined ? digits : abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
    return v.toLocaleString("en-GB", {maximumFractionDigits: d, minimumFractionDigits: d});
  }
  function zone() { return self.layout ? self.layout.estate.timezone : "UTC"; }
  function asDate(when) { return when instanceof Date ? when : new Date(when); }
  // Times in the estate's zone: "14:05:09", "4 Dec, 14:05", "Fri 4 Dec 2026".
  function time(when, seconds = true) {
    return asDate(when).toLocaleTimeString("en-GB", {timeZone: zone(), hour: "2-digit",
      minute: "2-digit", ...(seconds ? {second: "2-digit"} : {})});
  }
  function dateTime(when) {
    return asDate(when).toLocaleString("en-GB", {timeZone: zone(), day: "numeric",
      month: "short", hour: "2-digit", minute: "2-digit"});
  }
  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago`
      : `${Math.round(s / 3600)} h ago`;
  }
  // A wall-clock time typed in the estate's zone ("2026-12-04T17:00", as a datetime-local
  // input gives it) as a Date: the zone's offset at that instant, found in two passes
  // (once more across a change of offset).
  function fromZoned(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(text || "");
    if (!m) return new Date(NaN);
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    const offset = ms => {
      const p = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {timeZone: zone(), hourCycle: "h23",
        year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"})
        .formatToParts(new Date(ms)).map(x => [x.type, x.value]));
      return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute) - Math.floor(ms / 60000) * 60000;
    };
    let t = wall - offset(wall);
    t = wall - offset(t);
    return new Date(t);
  }
  // For uPlot's tzDate: a Date whose local fields read as the estate's wall clock.
  function tzDate(seconds) { return uPlot.tzDate(new Date(seconds * 1000), zone()); }

  function reason(body) {
    if (!body) return "no answer";
    return typeof body.detail === "string" ? body.detail
      : Array.isArray(body.detail) ? body.detail.map(p => `${p.loc.slice(1).join(".")}: ${p.msg}`).join("; ")
      : "refused";
  }
  async function getJson(path) {
    const r = await fetch(path, {cache: "no-store"});
    if (r.status === 401) { location.assign("/login"); throw new Error("logged out"); }
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error(reason(body));
    return body;
  }
  // A state change: the session's CSRF token proves the request is this page's.
  async function change(path, body, method = "POST") {
    const r = await fetch(path, {method, headers: {"Content-Type": "application/json",
      "X-CSRF-Token": self.layout.csrf_token || ""}, body: JSON.stringify(body || {})});
    return {ok: r.ok, status: r.status, body: await r.json().catch(() => null)};
  }

  function pill(attrs, state, text) {
    return `<span class="pill" ${attrs} data-state="${state}">${esc(text)}</span>`;
  }
  function serviceText(s) {
    let text = `${s.name}: ${s.state}`;
    if (s.restarts) text += `, restarted ${s.restarts}x`;
    if (s.last_exit) text += `, ${s.last_exit}${s.last_exit_ms ? ` at ${time(s.last_exit_ms)}` : ""}`;
    return text;
  }
  function healthPills(body) {
    if (!body) return pill('id="svc-view"', "bad", "web view: not answering");
    const pills = [
      pill('id="svc-store"', body.influxdb.ok ? "ok" : "bad",
           body.influxdb.ok ? "store: up" : "store: down (history and plans unavailable)"),
      pill('id="svc-broker"', body.mqtt.ok ? "ok" : "bad",
           body.mqtt.ok ? "broker: connected" : "broker: down (values stale)")];
    if (body.commands && !body.commands.ok) {
      const last = body.commands.last_refused;
      pills.push(pill('id="svc-commands"', "bad", `commands: refused by the broker${last && last.reason ? ` (${last.reason})` : ""}`));
    }
    const sup = body.supervisor;
    if (sup && sup.error) pills.push(pill('id="svc-supervisor"', "warn", sup.error));
    for (const s of (sup ? sup.services : [])) {
      pills.push(pill(`data-service="${esc(s.name)}" data-service-state="${esc(s.state)}" data-restarts="${s.restarts}"`,
                      SERVICE_STATES[s.state] || "warn", serviceText(s)));
    }
    return pills.join("");
  }

  // Live while the view holds the broker, the page's own stream (if it has one) is open
  // and the feed is not stale; values shown while not live are greyed with their age.
  function live() {
    return self.health.broker !== false && self.feed.stream !== false && !self.feed.stale;
  }
  function showFeed() {
    const el = document.getElementById("feed");
    if (!el) return;
    let state = "ok", text = "live feed: connected";
    if (self.health.broker === false) { state = "bad"; text = "live feed: broker down"; }
    else if (self.feed.stream === false) { state = "bad"; text = "live feed: reconnecting"; }
    else if (self.feed.stale) {
      state = "warn";
      text = `live feed: stale${self.feed.age_s !== null ? ` (newest ${Math.round(self.feed.age_s)} s old)` : ""}`;
    } else if (self.health.broker === null) { state = "unknown"; text = "live feed: connecting"; }
    el.dataset.state = state;
    el.textContent = text;
    document.body.dataset.live = String(live());
    for (const f of self.listeners) f();
  }
  // A page tells the layout what it knows of the feed: {stream: open?, stale, age_s}.
  function setFeed(part) { Object.assign(self.feed, part); showFeed(); }
  function onFeed(f) { self.listeners.push(f); }

  async function checkHealth() {
    let body = null;
    try {
      const r = await fetch("/api/health", {cache: "no-store", signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS)});
      body = await r.json();
      if (!body.influxdb || !body.mqtt) body = null;
    } catch (err) { body = null; }
    try {
      const f = await (await fetch("/api/feed", {cache: "no-store", signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS)})).json();
      Object.assign(self.feed, {stale: Boolean(f.stale), age_s: f.age_s});
    } catch (err) { /* the health's answer says the view is away */ }
    self.health.store = body ? body.influxdb.ok : false;
    self.health.broker = body ? body.mqtt.ok : false;
    document.getElementById("health").innerHTML = healthPills(body);
    showFeed();
  }

  // Which meters have gone quiet, as the worker's freshness check last saw them.
  async function freshness() {
    const el = document.getElementById("freshness");
    try {
      const r = await (await fetch("/api/freshness", {cache: "no-store"})).json();
      if (r.checked_ms === null) { el.dataset.state = "unknown"; el.textContent = "meters: not checked yet"; return; }
      el.dataset.state = r.stale.length ? "warn" : "ok";
      el.textContent = r.stale.length ? `stale: ${r.stale.join(", ")}` : `all ${r.expected} meters reporting`;
    } catch (err) { el.dataset.state = "bad"; el.textContent = "meters: check unavailable"; }
  }

  function header(l) {
    const here = location.pathname;
    const nav = l.pages.map(p => {
      const current = p.path === here ? ' aria-current="page"' : "";
      return `<a href="${esc(p.path)}"${current}>${esc(p.title)}</a>`;
    }).join("");
    const scope = l.user.facility ? ` · facility ${l.user.facility}` : "";
    return `
      <div class="top">
        <div class="brand"><a href="/" id="estate-name">${esc(l.estate.name)}</a>
          <span class="sub" id="estate-zone">${esc(l.estate.timezone)}</span></div>
        <nav id="nav" aria-label="pages">${nav}</nav>
        <div class="who">
          <span class="clock" id="clock"></span>
          <span class="pill" id="user">${esc(l.user.username)} (${esc(l.user.role)})</span>
          <span class="sub" id="scope-note">${esc(scope)}</span>
          <button id="logout" type="button">Log out</button>
        </div>
      </div>
      <div class="pills strip" id="strip" aria-live="polite">
        <span class="pill" id="feed" data-state="unknown">live feed: connecting</span>
        <span class="pill" id="freshness" data-state="unknown">meters: checking</span>
        <span class="pills" id="health"><span class="pill" data-state="unknown">services: checking</span></span>
      </div>`;
  }

  async function start() {
    const r = await fetch("/api/layout", {cache: "no-store"});
    if (r.status === 401) { location.assign("/login"); return new Promise(() => {}); }
    const l = await r.json();
    self.layout = l;
    const top = document.getElementById("layout");
    top.innerHTML = header(l);
    document.title = `${document.title.split(" · ")[0]} · ${l.estate.name}`;
    document.getElementById("logout").addEventListener("click", async () => {
      await change("/api/session", null, "DELETE");
      location.assign("/login");
    });
    const tick = () => { document.getElementById("clock").textContent = time(Date.now()); };
    tick(); setInterval(tick, 1000);
    checkHealth(); setInterval(checkHealth, HEALTH_EVERY_MS);
    freshness(); setInterval(freshness, FRESHNESS_EVERY_MS);
    return l;
  }

  return { ready: start(), esc, num, unitLabel, time, dateTime, ago, tzDate, fromZoned, reason, getJson,
           change, live, setFeed, onFeed, zone,
           get user() { return self.layout.user; }, get estate() { return self.layout.estate; },
           get health() { return self.health; } };
})();
