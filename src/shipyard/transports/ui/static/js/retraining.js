// Retraining: pipelines and their runs (trigger, status, the gate's verdict, logs).
import { ApiError, get, q } from "./api.js";
import { card, chip, h, kv, link, pairs, table, time } from "./dom.js";

function statusChip(status) {
  const kind = { succeeded: "ok", running: "warn", failed: "bad", rejected: "bad" }[status] || "";
  return chip(status, kind);
}

function candidate(run, model) {
  if (!run.candidate_version) return h("span", { class: "muted" }, "—");
  return model ? link(`${model}:${run.candidate_version}`, "models", model, "versions", run.candidate_version)
    : `version ${run.candidate_version}`;
}

export async function retrainingPage() {
  const [pipelines, runs] = await Promise.all([get("/pipelines"), get("/runs" + q({ limit: 100 }))]);
  const models = Object.fromEntries(pipelines.map((p) => [p.name, p.model]));
  const pipelineRows = pipelines.map((p) => [
    h("strong", {}, p.name), link(p.model, "models", p.model), h("code", {}, p.entry),
    p.config.schedule ? h("code", {}, p.config.schedule) : "—", time(p.created_at), p.created_by]);
  const runRows = runs.map((r) => [
    link(`run ${r.id}`, "retraining", "runs", r.id), r.pipeline, statusChip(r.status), r.trigger,
    time(r.started_at), time(r.ended_at), candidate(r, models[r.pipeline]), r.error || ""]);
  const empty = h("span", {}, "No pipelines yet. Register one with ", h("code", {}, "shipyard retrain register"), ".");
  return h("div", { id: "retraining-page" },
    h("h1", {}, "Retraining"),
    h("p", { class: "sub" }, "Pipelines that train, validate and register candidates, and their runs."),
    h("div", { class: "stack" },
      card("Pipelines", table(["Name", "Model", "Entry", "Schedule", "Created", "By"], pipelineRows, empty)),
      card("Runs", h("div", { id: "runs" }, table(["Run", "Pipeline", "Status", "Trigger", "Started", "Ended", "Candidate", "Error"],
        runRows, "No runs yet.")))));
}

export async function runPage(ctx, idText) {
  if (!/^[1-9][0-9]{0,17}$/.test(idText)) throw new ApiError(404, `no run ${idText}`);
  const [run, logs] = await Promise.all([get(`/runs/${idText}`), get(`/runs/${idText}/logs`)]);
  const pipeline = await get(`/pipelines/${encodeURIComponent(run.pipeline)}`).catch(() => null);
  if (run.status === "running") ctx.watch(3000);
  const verdict = run.result && (run.result.verdict ?? run.result.gate);
  return h("div", { id: "run-page" },
    h("div", { class: "crumbs" }, link("Retraining", "retraining"), " / "),
    h("h1", {}, `Run ${run.id} of ${run.pipeline} `, statusChip(run.status)),
    h("div", { class: "grid" },
      card("Run", kv([
        ["Trigger", h("span", {}, run.trigger, " ", pairs(run.trigger_details))],
        ["Started", time(run.started_at)], ["Ended", time(run.ended_at)],
        ["Candidate", candidate(run, pipeline && pipeline.model)],
        ["Error", run.error],
      ])),
      card("Validation verdict", h("div", { id: "verdict" },
        verdict === undefined ? h("p", { class: "muted" }, "No verdict recorded.")
          : typeof verdict === "object" && verdict !== null ? pairs(verdict) : String(verdict)))),
    h("div", { class: "stack" },
      card("Result", pairs(run.result)),
      card("Log", h("pre", { class: "log", id: "run-log" }, logs.log || "(empty)"))));
}
