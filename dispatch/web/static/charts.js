// Line charts with uPlot (served from /static/vendor/uplot/), times on the estate's clock
// (Layout.tzDate), sized to their box and redrawn when it changes size.
"use strict";

const Charts = (() => {
  const COLOURS = ["#5aa9ff", "#3ccf8e", "#f2b84b", "#c792ea", "#f06464", "#4dd0e1",
                   "#ff9e64", "#a3be8c", "#e0e0e0"];
  const AXIS = { stroke: "#8ba0b5", grid: { stroke: "#243243", width: 1 },
                 ticks: { stroke: "#243243", width: 1 } };
  const HEIGHT = 220;  // fits two charts beside the list on a 768-pixel-high screen

  // A tick on the estate's clock, 24-hour; midnight names the day instead.
  function timeTick(seconds) {
    const hhmm = Layout.time(seconds * 1000, false);
    return hhmm === "00:00" ? Layout.dateTime(seconds * 1000).split(",")[0] : hhmm;
  }

  // series: [{label, values, dash?, colour?, step?}] over times (ms).
  function line(box, times, series, { height = HEIGHT, unit = "" } = {}) {
    if (box.chart) { box.chart.destroy(); box.observer.disconnect(); }
    box.innerHTML = "";
    const width = Math.max(240, box.clientWidth);
    const opts = {
      width, height, tzDate: Layout.tzDate,
      legend: { live: true }, cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{ ...AXIS, values: (u, ticks) => ticks.map(timeTick) },
             { ...AXIS, values: (u, ticks) => ticks.map(t => Layout.num(t, Math.abs(t) < 10 && t % 1 ? 1 : 0)),
               // As wide as its longest label: a fixed width clips "12,500".
               size: (u, values) => 16 + 7.5 * Math.max(3, ...(values || []).map(v => String(v).length)) }],
      series: [{ label: "time", value: (u, t) => t === null ? "–" : Layout.dateTime(t * 1000) },
               ...series.map((s, i) => ({
                 label: s.label, stroke: s.colour || COLOURS[i % COLOURS.length], width: 1.5,
                 dash: s.dash, spanGaps: false,
                 paths: s.step ? uPlot.paths.stepped({ align: 1 }) : undefined,
                 value: (u, v) => v === null || v === undefined ? "–" : `${Layout.num(v)}${unit}`,
               }))],
    };
    const data = [times.map(t => t / 1000), ...series.map(s => s.values)];
    const chart = new uPlot(opts, data, box);
    const resize = new ResizeObserver(() => {
      const w = Math.max(240, box.clientWidth);
      if (w !== chart.width) chart.setSize({ width: w, height });
    });
    resize.observe(box);
    box.chart = chart; box.observer = resize;
    box.dataset.series = String(series.length);
    box.dataset.points = String(times.length);
    return chart;
  }

  return { line, COLOURS };
})();
