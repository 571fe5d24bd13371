// The live probe page (live-probe.html): shows one meter's value from /api/live/stream and
// keeps, for bench/web.py, when each value was shown (ms since the epoch, this machine's
// clock). At most MAX_SEEN values are kept.
"use strict";
const MAX_SEEN = 10000;
const params = new URLSearchParams(location.search);
const [facility, device] = (params.get("meter") || "").split("/");
const quantity = params.get("quantity") || "power";
window.probeSeen = new Map();
window.probeEvents = 0;
document.getElementById("probe-name").textContent = `${facility}/${device} ${quantity}`;

function show(data) {
  window.probeEvents += 1;
  for (const v of data.values) {
    if (v.facility !== facility || v.device !== device || v.quantity !== quantity) continue;
    document.getElementById("probe-value").textContent = String(v.value);
    if (window.probeSeen.size < MAX_SEEN) {
      window.probeSeen.set(v.value, performance.timeOrigin + performance.now());
    }
  }
}

const source = new EventSource("/api/live/stream");
source.addEventListener("live", e => {
  document.getElementById("probe-state").textContent = "live";
  show(JSON.parse(e.data));
});
source.addEventListener("dropped", () => {
  document.getElementById("probe-state").textContent = "fell behind: reconnecting";
});
source.onerror = () => { document.getElementById("probe-state").textContent = "reconnecting"; };
