// Monitoring: an overview of the deployments and their open alerts, and one deployment's
// traffic over time (request rate, error rate, latency percentiles per version), the drift of
// each live version's logged predictions against its reference data, and its alerts.
import { enc, get, q } from "./api.js";
import { card, chip, h, href, link, number, table, time } from "./dom.js";
import { histogramChart, timeChart } from "./chart.js";

const WATCH_MS = 60_000; // a quiet redraw: new traffic, alerts and drift
// The periods offered, each with a bucket width that keeps a chart at 60-170 points.
const PERIODS = [["1h", 60, "hour"], ["6h", 300, "6 hours"], ["24h", 900, "24 hours"], ["7d", 3600, "7 days"]];
const MAX_HISTOGRAMS = 12;

const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(2)}%`);
const ms = (s) => (s === null || s === undefined ? "—" : `${number(1000 * s)} ms`);
const short = (x) => +x.toPrecision(3); // axis ticks: 0.5, 1.5, 250
const rate = (x) => (x === null || x === undefined ? "—" : `${number(x)}/s`);

function period(params) {
  const wanted = params.get("since");
  return PERIODS.find(([since]) => since === wanted) || PERIODS[0];
}

// The models a deployment's alerts may be about: its own name and every live version's model.
function subjectsOf(deployment) {
  const spec = deployment.revision.spec;
  const models = spec.variants.map((v) => v.model).concat(spec.shadow ? [spec.shadow.model] : []);
  return [...new Set([deployment.name, ...models])];
}

function alertRows(alerts) {
  return alerts.map((a) => [
    time(a.at), h("code", {}, a.rule), a.subject,
    chip(a.severity, a.severity === "critical" ? "bad" : "warn"),
    chip(a.state, a.state === "firing" ? "bad" : "ok"), a.message,
  ]);
}

export async function monitoringPage() {
  const [deployments, open] = await Promise.all([get("/deployments"), get("/alerts" + q({ state: "open", limit: 1000 }))]);
  const rows = deployments.map((d) => {
    const subjects = subjectsOf(d);
    const firing = open.filter((a) => subjects.includes(a.subject)).length;
    return [link(d.name, "monitoring", d.name),
      d.revision.spec.variants.map((v) => `${v.model}:${v.version} ${v.weight}%`).join(" · "),
      firing ? chip(`${firing} open`, "bad") : chip("none", "ok")];
  });
  const empty = h("span", {}, "No deployments to monitor yet. Create one with ", h("code", {}, "shipyard deploy NAME --version 1"), ".");
  return h("div", { id: "monitoring-overview" },
    h("h1", {}, "Monitoring"),
    h("p", { class: "sub" }, "Traffic, drift and alerts of each deployment."),
    card(null, table(["Deployment", "Live split", "Open alerts"], rows, empty)),
    card("Open alerts", h("div", { id: "open-alerts" },
      table(["Since", "Rule", "Subject", "Severity", "State", "Message"], alertRows(open), "No open alerts."))));
}

function hasTraffic(traffic) {
  return traffic.series.some((s) => s.requests.some((n) => n > 0));
}

function trafficView(traffic, label) {
  if (!hasTraffic(traffic)) {
    return h("p", { class: "empty", id: "no-traffic" }, `No traffic in the last ${label}.`);
  }
  const live = traffic.series;
  const name = (s) => (s.shadow ? `${s.ref} (shadow)` : s.ref);
  const perSecond = live.map((s) => ({ label: name(s), values: s.requests.map((n) => n / traffic.step_s) }));
  const errors = live.map((s) => ({ label: name(s), values: s.error_rate }));
  const dashes = { p50: undefined, p95: [6, 3], p99: [2, 3] };
  const latency = live.flatMap((s) => ["p50", "p95", "p99"].map((p) => ({
    label: `${name(s)} ${p}`, values: s[`latency_${p}_s`], dash: dashes[p],
  })));
  const totals = live.map((s) => {
    const requests = s.requests.reduce((a, b) => a + b, 0);
    const failed = s.errors.reduce((a, b) => a + b, 0);
    return [h("code", {}, name(s)), String(requests), String(failed), pct(requests ? failed / requests : null)];
  });
  return h("div", { id: "traffic" },
    h("div", { id: "traffic-totals" }, table(["Version", "Requests", "Errors", "Error rate"], totals, "")),
    h("div", { class: "grid charts" },
      h("div", {}, h("h3", {}, "Requests per second"), timeChart("requests-chart", traffic.buckets, perSecond, { format: rate, tick: (t) => `${short(t)}/s` })),
      h("div", {}, h("h3", {}, "Error rate"), timeChart("errors-chart", traffic.buckets, errors, { format: pct, tick: (t) => `${short(100 * t)}%` })),
      h("div", {}, h("h3", {}, "Latency p50 / p95 / p99"), timeChart("latency-chart", traffic.buckets, latency, { format: ms, tick: (t) => `${short(1000 * t)} ms` }))),
    h("p", { class: "muted note" }, `Buckets of ${traffic.step_s} s; latency percentiles are read from log-spaced buckets, so they may overstate by up to ~40%.`));
}

function binLabels(histogram) {
  if (histogram.categories.length) return histogram.categories;
  const e = histogram.edges;
  return e.slice(0, -1).map((lo, i) => number((lo + e[i + 1]) / 2));
}

function featureView(feature, index) {
  const drifted = feature.drifted ? chip("drift", "bad") : chip("no drift", "ok");
  const p = feature.p_adjusted === null ? "—" : number(feature.p_adjusted);
  const chart = feature.histogram && index < MAX_HISTOGRAMS
    ? histogramChart(`histogram-${index}`, binLabels(feature.histogram), feature.histogram.reference, feature.histogram.live)
    : null;
  return h("div", { class: "feature", "data-feature": feature.name },
    h("h4", {}, h("code", {}, feature.name), " ", drifted),
    h("p", { class: "muted" }, `${feature.test}: statistic ${feature.statistic === null ? "—" : number(feature.statistic)}, p = ${p} (Holm) · ${feature.summary}`),
    chart);
}

function driftView(ref, drift, label) {
  if (drift instanceof Error) {
    return h("div", { class: "drift", "data-ref": ref }, h("h3", {}, ref),
      h("p", { class: "empty drift-empty" }, drift.status === 412 ? `${drift.message}.` : `Drift unavailable: ${drift.message}.`));
  }
  // Drifted features first: they are what someone opens this page for.
  const features = drift.features.slice().sort((a, b) => (a.p_adjusted ?? 1) - (b.p_adjusted ?? 1));
  const verdict = drift.drift ? chip("drift", "bad") : chip("no drift", "ok");
  return h("div", { class: "drift", "data-ref": ref },
    h("h3", {}, ref, " ", verdict),
    h("p", { class: "muted" }, `${drift.n_live} logged rows in the last ${label} against ${drift.n_reference} reference rows; `,
      `alpha ${drift.alpha}, smallest adjusted p = ${drift.p_value === null ? "—" : number(drift.p_value)}.`,
      drift.not_logged.length ? ` Not in the log: ${drift.not_logged.join(", ")}.` : ""),
    drift.multivariate ? h("p", { class: "muted" }, `Joint test of the numeric features: ${drift.multivariate.drifted ? "drift" : "no drift"} (${drift.multivariate.summary}).`) : null,
    h("div", { class: "features" }, features.map(featureView)));
}

async function orError(promise) {
  try {
    return await promise;
  } catch (error) {
    if (error.status === 401) throw error;
    return error;
  }
}

export async function deploymentMonitoringPage(ctx, name, params) {
  const [since, step, label] = period(params);
  const deployment = await get(`/deployments/${enc(name)}`);
  const spec = deployment.revision.spec;
  const versions = spec.variants.concat(spec.shadow ? [spec.shadow] : []);
  const subject = subjectsOf(deployment);
  const [traffic, open, past, ...drifts] = await Promise.all([
    get(`/deployments/${enc(name)}/traffic` + q({ since, step })),
    get("/alerts" + q({ state: "open" }) + subject.map((s) => `&subject=${enc(s)}`).join("")),
    get("/alerts" + q({ state: "all", limit: 50 }) + subject.map((s) => `&subject=${enc(s)}`).join("")),
    ...versions.map((v) => orError(get(`/models/${enc(v.model)}/drift` + q({ since, version: v.version })))),
  ]);
  ctx.watch(WATCH_MS);
  const periods = h("p", { class: "periods", id: "periods" }, "Period: ", PERIODS.map(([s, , text]) => (s === since
    ? h("strong", {}, `last ${text}`)
    : h("a", { href: `${href("monitoring", name)}?since=${s}` }, `last ${text}`))).flatMap((el, i) => (i ? [" · ", el] : [el])));
  return h("div", { id: "monitoring-page" },
    h("div", { class: "crumbs" }, link("Monitoring", "monitoring"), " / "),
    h("h1", {}, name),
    h("p", { class: "sub" }, "Live revision ", link(`#${deployment.revision.number}`, "deployments", name), " · as of ", time(traffic.end)),
    periods,
    card("Traffic", trafficView(traffic, label)),
    card("Drift", h("div", { id: "drift" }, versions.map((v, i) => driftView(`${v.model}:${v.version}`, drifts[i], label)))),
    card("Open alerts", h("div", { id: "open-alerts" },
      table(["Since", "Rule", "Subject", "Severity", "State", "Message"], alertRows(open), "No open alerts."))),
    card("Alert history", h("div", { id: "alert-history" },
      table(["When", "Rule", "Subject", "Severity", "State", "Message"], alertRows(past), "No alerts recorded."))));
}
