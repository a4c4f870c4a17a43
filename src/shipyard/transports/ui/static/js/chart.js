// Charts drawn with the vendored uPlot (static/vendor/uplot, loaded by index.html).
import { h } from "./dom.js";

const COLORS = ["#2458c6", "#b26b00", "#1a7f4b", "#6b4fbb", "#b42318", "#0e7490"];

// Traffic share of each model version at every revision of a deployment: a stepped line per
// version, so a canary's climb (and a rollback's drop) reads at a glance.
export function weightsChart(revisions) {
  const box = h("div", { class: "chart", id: "weights-chart" });
  const labels = [];
  for (const r of revisions) for (const v of r.spec.variants) {
    const label = `${v.model}:${v.version}`;
    if (!labels.includes(label)) labels.push(label);
  }
  const xs = revisions.map((r) => r.number);
  const series = labels.map((label) => revisions.map((r) => {
    const found = r.spec.variants.find((v) => `${v.model}:${v.version}` === label);
    return found ? found.weight : 0;
  }));
  const uPlot = globalThis.uPlot;
  if (!uPlot || !xs.length) {
    box.append(h("p", { class: "muted" }, "No revisions to chart."));
    return box;
  }
  const stepped = uPlot.paths.stepped({ align: 1 });
  const options = {
    width: 600, height: 240,
    scales: { x: { time: false }, y: { range: [0, 100] } },
    axes: [
      { label: "revision", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], values: (u, ticks) => ticks.map((t) => `#${t}`) },
      { label: "share %" },
    ],
    series: [{ label: "revision" }, ...labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 2, paths: stepped,
      points: { show: true, size: 6 }, value: (u, v) => (v === null ? "—" : `${v}%`),
    }))],
  };
  // Drawn once the box is in the page, at the width it was given there.
  requestAnimationFrame(() => {
    options.width = Math.max(320, box.clientWidth || 600);
    new uPlot(options, [xs, ...series], box);
  });
  return box;
}

// Draw once the box is in the page, at the width it was given there.
function drawLater(box, options, data) {
  requestAnimationFrame(() => {
    if (!box.isConnected) return; // a newer page replaced this one
    options.width = Math.max(280, box.clientWidth || options.width);
    new globalThis.uPlot(options, data, box);
  });
}

// Values over time, one line per series ({label, values, dash?}); `xs` are ISO timestamps.
// uPlot formats the time axis and legend in the viewer's time zone.
// `format` writes a value in the legend, `tick` one on the axis (default: `format`).
export function timeChart(id, xs, series, { yLabel = "", format = (v) => String(v), tick = format, height = 200 } = {}) {
  const box = h("div", { class: "chart small", id });
  const uPlot = globalThis.uPlot;
  if (!uPlot || !xs.length || !series.length) {
    box.append(h("p", { class: "muted" }, "Nothing to chart."));
    return box;
  }
  const options = {
    width: 520, height,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{}, { label: yLabel, size: 64, values: (u, ticks) => ticks.map((t) => tick(t)) }],
    series: [{ label: "time" }, ...series.map((s, i) => ({
      label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2, dash: s.dash,
      // A bucket without requests has no rate: the line joins its neighbours over it.
      spanGaps: true, points: { show: true, size: 4 }, value: (u, v) => (v === null || v === undefined ? "—" : format(v)),
    }))],
  };
  drawLater(box, options, [xs.map((t) => Date.parse(t) / 1000), ...series.map((s) => s.values)]);
  return box;
}

// Reference vs live shares on the same bins: `labels` name the bins (category or range).
export function histogramChart(id, labels, reference, live) {
  const box = h("div", { class: "chart histogram", id });
  const uPlot = globalThis.uPlot;
  const share = (counts) => {
    const total = counts.reduce((a, b) => a + b, 0);
    return counts.map((c) => (total ? c / total : 0));
  };
  if (!uPlot || !labels.length) {
    box.append(h("p", { class: "muted" }, "No values to draw."));
    return box;
  }
  const xs = labels.map((_, i) => i);
  const bars = (align) => uPlot.paths.bars({ size: [0.45, 40], align });
  const percent = (v) => (v === null || v === undefined ? "—" : `${(100 * v).toFixed(1)}%`);
  const options = {
    width: 360, height: 170,
    scales: { x: { time: false, range: (u, min, max) => [min - 0.6, max + 0.6] }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { incrs: [1, 2, 5, 10, 20, 50], values: (u, ticks) => ticks.map((t) => labels[t] ?? "") },
      { size: 50, values: (u, ticks) => ticks.map((t) => `${Math.round(100 * t)}%`) },
    ],
    legend: { live: true },
    series: [
      { label: "bin", value: (u, v) => (v === null || v === undefined ? "—" : labels[v] ?? "") },
      { label: "reference", stroke: "#8c8c8c", fill: "rgba(140,140,140,0.45)", paths: bars(-1), points: { show: false }, value: (u, v) => percent(v) },
      { label: "live", stroke: "#d62728", fill: "rgba(214,39,40,0.45)", paths: bars(1), points: { show: false }, value: (u, v) => percent(v) },
    ],
  };
  drawLater(box, options, [xs, share(reference), share(live)]);
  return box;
}
