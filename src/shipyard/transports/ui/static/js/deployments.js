// Deployments: the list, and one deployment with its live split, the rollout in progress,
// the weights chart, revisions (roll back to any) and history. Actions need a deploy key.
import { enc, get, post } from "./api.js";
import { card, chip, h, href, kv, link, pairs, table, time } from "./dom.js";
import { weightsChart } from "./chart.js";

const WATCH_MS = 3000;
const same = (a, b) => !!a && !!b && a.model === b.model && a.version === b.version;

function variantLabel(v) {
  return link(`${v.model}:${v.version}`, "models", v.model, "versions", v.version);
}

function splitText(spec) {
  return spec.variants.map((v) => `${v.model}:${v.version} ${v.weight}%`).join(" · ") +
    (spec.shadow ? ` · shadow ${spec.shadow.model}:${spec.shadow.version}` : "");
}

export async function deploymentsPage() {
  const deployments = await get("/deployments");
  const rows = deployments.map((d) => [
    link(d.name, "deployments", d.name), chip(d.revision.spec.strategy), `#${d.revision.number}`,
    splitText(d.revision.spec), time(d.revision.created_at), d.revision.actor,
  ]);
  const empty = h("span", {}, "No deployments yet. Create one with ",
    h("code", {}, "shipyard deploy NAME --version 1"), ".");
  return h("div", { id: "deployments-page" },
    h("h1", {}, "Deployments"),
    h("p", { class: "sub" }, "Named endpoints and where their traffic goes now."),
    card(null, table(["Name", "Strategy", "Revision", "Split", "Since", "By"], rows, empty)));
}

// primary / canary / shadow for each place traffic goes in `spec`.
function roles(spec, rollout) {
  const out = spec.variants.map((v, i) => {
    let role = "primary";
    if (rollout && same(v, rollout.candidate)) role = "canary";
    else if (!rollout && spec.strategy === "canary" && i > 0) role = "canary";
    else if (spec.strategy === "ab" && i > 0) role = "variant";
    return { variant: v, role, share: v.weight };
  });
  if (spec.shadow) out.push({ variant: spec.shadow, role: "shadow", share: 0 });
  return out;
}

function splitView(revision, rollout) {
  const parts = roles(revision.spec, rollout);
  const bar = h("div", { class: "split", "aria-hidden": "true" });
  for (const p of parts.filter((p) => p.share > 0)) {
    const piece = h("span", { class: p.role === "canary" ? "canary" : "primary", title: `${p.variant.model}:${p.variant.version} ${p.share}%` });
    piece.style.width = `${p.share}%`;
    bar.append(piece);
  }
  const rows = parts.map((p) => [variantLabel(p.variant), h("span", { class: "share" }, `${p.share}%`),
    chip(p.role, p.role === "variant" ? "" : p.role), p.role === "shadow" ? "copy of live traffic, answers discarded" : ""]);
  return h("div", { id: "split" }, bar, table(["Version", "Share", "Role", ""], rows, "No variants."));
}

function rolloutActions(ctx, name, rollout, revision) {
  if (!ctx.canDeploy) return null;
  const action = (verb, label, body, danger = false) => h("button", {
    type: "button", id: `rollout-${verb}`, class: danger ? "danger" : "",
    onclick: async () => {
      const answer = await ctx.confirm({ title: `${label} the rollout of ${name}?`, body, confirmLabel: label, danger });
      if (!answer) return;
      // Sent with the revision this page shows: the server refuses (409) if it has moved on.
      await ctx.act(() => post(`/deployments/${enc(name)}/rollout/${verb}`, { reason: answer.reason, expected_revision: revision }),
        `${label}: done for ${name}.`);
    },
  }, label);
  const cand = `${rollout.candidate.model}:${rollout.candidate.version}`;
  return h("div", { class: "actions" },
    rollout.state === "running" ? action("pause", "Pause", "The split stays as it is and the controller stops advancing it.") : null,
    rollout.state === "paused" ? action("resume", "Resume", "The controller goes on analysing and advancing the canary.") : null,
    action("promote", "Promote", `${cand} gets 100% of the traffic now, skipping the remaining steps.`),
    action("abort", "Abort", `Traffic goes back to ${rollout.baseline.model}:${rollout.baseline.version} alone; the rollout ends.`, true));
}

function rolloutView(ctx, name, rollout, revision) {
  if (!rollout) return card("Rollout", h("p", { class: "empty", id: "no-rollout" }, "No rollout in progress."));
  const steps = rollout.policy.steps || [];
  const stepList = h("ol", { class: "steps", id: "rollout-steps" }, steps.map((w, i) =>
    h("li", { class: i < rollout.step ? "done" : i === rollout.step ? "current" : "" }, `${w}%`)));
  const decisions = rollout.decisions.slice().reverse().map((d) => [
    time(d.at), `step ${d.step} · ${d.weight}%`, chip(d.outcome, d.outcome === "rollback" ? "bad" : d.outcome === "hold" ? "warn" : "ok"),
    d.reason, pairs(d.numbers)]);
  return card("Rollout in progress", h("div", { id: "rollout" },
    kv([
      ["State", chip(rollout.state, rollout.state === "running" ? "ok" : "warn")],
      ["From → to", h("span", {}, variantLabel(rollout.baseline), " → ", variantLabel(rollout.candidate))],
      ["Canary share", `${rollout.weight}%`],
      ["Analysis windows", `${rollout.windows} (each ${rollout.policy.window_s ?? "?"} s)`],
      ["Started", h("span", {}, time(rollout.started_at), ` by ${rollout.actor}`)],
      ["Updated", time(rollout.updated_at)],
    ]),
    h("h3", {}, "Steps"), stepList,
    h("h3", {}, "Decisions"),
    table(["When", "Step", "Outcome", "Reason", "Numbers"], decisions, "No analysis window has closed yet."),
    rolloutActions(ctx, name, rollout, revision)));
}

function revisionsView(ctx, deployment, revisions) {
  const current = deployment.revision.number;
  const rollbackButton = (r) => h("button", {
    type: "button", class: "rollback", "data-revision": r.number, id: `rollback-${r.number}`,
    onclick: async () => {
      const answer = await ctx.confirm({
        title: `Roll ${deployment.name} back to revision ${r.number}?`,
        body: `A new revision will route like #${r.number}: ${splitText(r.spec)}. A rollout in progress ends as rolled back.`,
        confirmLabel: "Roll back", danger: true,
      });
      if (!answer) return;
      // Sent with the revision this page shows: the server refuses (409) if it has moved on.
      await ctx.act(() => post(`/deployments/${enc(deployment.name)}/rollback`,
        { to: r.number, reason: answer.reason, expected_revision: current }),
      `${deployment.name} rolled back to the routing of revision ${r.number}.`);
    },
  }, `Roll back to #${r.number}`);
  const rows = revisions.slice().reverse().map((r) => [
    r.number === current ? h("strong", {}, `#${r.number} (live)`) : `#${r.number}`,
    chip(r.spec.strategy), splitText(r.spec), time(r.created_at), r.actor, r.reason || "",
    ctx.canDeploy && r.number !== current ? rollbackButton(r) : "",
  ]);
  return table(["Revision", "Strategy", "Split", "When", "Who", "Reason", ""], rows, "No revisions.");
}

const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(2)}%`);
const interval = (ci, format = pct) => (ci && ci[0] !== null && ci[1] !== null ? ` [${format(ci[0])}, ${format(ci[1])}]` : "");
const ms = (s) => (s === null || s === undefined ? "—" : `${(1000 * s).toFixed(1)} ms`);

function comparison(c) {
  if (!c || c.difference === null) return "—";
  const signed = (x) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(2)} pt`;
  return `${signed(c.difference)}${interval(c.ci, signed)}${c.p_value === null ? "" : ` · p = ${c.p_value.toPrecision(2)}`}`;
}

// GET /deployments/{name}/ab: each variant of the live revision with confidence intervals.
function abView(report) {
  if (report instanceof Error) return h("p", { class: "muted" }, `A/B results unavailable: ${report.message}`);
  const rows = report.variants.map((v) => [
    h("code", {}, v.ref), chip(v.role), `${v.weight}%`, String(v.requests),
    `${pct(v.error_rate)}${interval(v.error_rate_ci)}`, comparison(v.error_rate_vs_primary),
    `${ms(v.latency_p50_s)} / ${ms(v.latency_p95_s)}`, String(v.feedback),
    `${pct(v.accuracy)}${interval(v.accuracy_ci)}`, comparison(v.accuracy_vs_primary),
  ]);
  return h("div", { id: "ab" },
    h("p", { class: "muted" }, `Revision #${report.revision}, ${Math.round(report.confidence * 100)}% intervals, as of `, time(report.generated_at)),
    table(["Variant", "Role", "Share", "Requests", "Error rate", "vs primary", "p50 / p95", "Feedback", "Accuracy", "vs primary"],
      rows, "No traffic recorded for this revision yet."));
}

export async function deploymentPage(ctx, name) {
  const [deployment, status, revisions, history, ab] = await Promise.all([
    get(`/deployments/${enc(name)}`), get(`/deployments/${enc(name)}/rollout`),
    get(`/deployments/${enc(name)}/revisions`), get(`/deployments/${enc(name)}/history`),
    get(`/deployments/${enc(name)}/ab`).catch((error) => {
      if (error.status === 401 || error.status === 404) throw error;
      return error;
    }),
  ]);
  const revision = deployment.revision;
  const rollout = status.rollout;
  if (rollout && rollout.active) ctx.watch(WATCH_MS); // follow the canary as it moves
  const historyRows = history.slice().reverse().map((e) => [time(e.at), h("code", {}, e.action), e.actor, e.reason || "", pairs(e.details)]);
  return h("div", { id: "deployment-page" },
    h("div", { class: "crumbs" }, link("Deployments", "deployments"), " / "),
    h("h1", {}, deployment.name),
    h("p", { class: "sub" }, deployment.description || `Created by ${deployment.created_by}`, " · ", time(deployment.created_at),
      " · ", h("a", { href: href("monitoring", deployment.name), id: "monitoring-link" }, "Monitoring")),
    h("div", { class: "grid" },
      card(`Live: revision #${revision.number}`, h("p", { class: "muted" }, chip(revision.spec.strategy), ` since `, time(revision.created_at), ` by ${revision.actor}`,
        revision.reason ? ` — ${revision.reason}` : ""), splitView(revision, rollout)),
      card("Traffic share by revision", weightsChart(revisions))),
    h("div", { class: "stack" },
      rolloutView(ctx, name, rollout, revision.number),
      card("A/B results", abView(ab)),
      card("Revisions", h("div", { id: "revisions" }, revisionsView(ctx, deployment, revisions))),
      card("History", table(["When", "Action", "Who", "Reason", "Details"], historyRows, "No history."))));
}
