// Models: the list with search, a model with its versions and aliases, a version in full.
import { ApiError, enc, get, put, q } from "./api.js";
import { card, chip, h, href, kv, link, number, pairs, table, time } from "./dom.js";

function statusChip(status) {
  const kind = { READY: "ok", PENDING: "warn", FAILED: "bad" }[status] || "";
  return chip(status, kind);
}

function aliasChips(aliases, name) {
  const entries = Object.entries(aliases || {});
  if (!entries.length) return h("span", { class: "muted" }, "—");
  return entries.map(([alias, version]) =>
    h("a", { href: href("models", name, "versions", version), class: "chip primary" }, `${alias} → ${version}`));
}

export async function modelsPage(ctx, query) {
  const models = await get("/models" + q({ query }));
  const input = h("input", { type: "search", id: "model-search", value: query, placeholder: "Search models by name", "aria-label": "Search models" });
  const search = h("form", {
    class: "search",
    onsubmit: (event) => {
      event.preventDefault();
      const text = input.value.trim();
      location.hash = text ? `#/models?q=${enc(text)}` : "#/models";
    },
  }, input, h("button", { type: "submit" }, "Search"));
  const empty = query
    ? `No model matches “${query}”.`
    : h("span", {}, "No models yet. Register one with ", h("code", {}, "shipyard register NAME model.onnx"),
      " or ", h("code", {}, "shipyard.register(model, name=…)"), ".");
  const rows = models.map((m) => [
    link(m.name, "models", m.name),
    m.description ? h("span", { class: "description" }, m.description) : h("span", { class: "muted" }, "—"),
    m.latest_version ?? "—",
    aliasChips(m.aliases, m.name),
    Object.entries(m.tags).map(([k, v]) => chip(`${k}: ${v}`)),
    time(m.created_at),
  ]);
  return h("div", { id: "models-page" },
    h("h1", {}, "Models"),
    h("p", { class: "sub" }, `${models.length} model${models.length === 1 ? "" : "s"} in the registry`),
    search,
    card(null, table(["Name", "Description", "Latest", "Aliases", "Tags", "Created"], rows, empty)));
}

function aliasHistory(entries) {
  const moves = entries.filter((e) => e.action === "alias.set" || e.action === "alias.deleted");
  const rows = moves.slice().reverse().map((e) => [
    time(e.at), chip(e.details.alias ?? "?"),
    e.action === "alias.deleted" ? "deleted" : `${e.details.previous ?? "—"} → ${e.details.version}`,
    e.actor, e.reason || "",
  ]);
  return table(["When", "Alias", "Move", "Who", "Reason"], rows, "No alias has been set yet.");
}

export async function modelPage(ctx, name) {
  const [model, versions, ledger] = await Promise.all([
    get(`/models/${enc(name)}`), get(`/models/${enc(name)}/versions`),
    get("/ledger" + q({ model: name, limit: 500 })),
  ]);
  const rows = versions.slice().reverse().map((v) => [
    link(`version ${v.version}`, "models", name, "versions", v.version),
    statusChip(v.status), v.flavor, v.aliases.map((a) => chip(a, "primary")),
    pairs(v.metrics), v.compiled ? chip(v.compiled.status, v.compiled.status === "kept" ? "ok" : "") : "—",
    time(v.created_at), v.creator,
  ]);
  return h("div", { id: "model-page" },
    h("div", { class: "crumbs" }, link("Models", "models"), " / "),
    h("h1", { id: "model-name" }, model.name),
    h("p", { class: "sub description", id: "model-description" }, model.description || "No description."),
    h("div", { class: "grid" },
      card("About", kv([
        ["Latest version", model.latest_version ?? "—"],
        ["Created", time(model.created_at)],
        ["Archived", model.archived ? "yes" : "no"],
        ["Tags", Object.keys(model.tags).length ? Object.entries(model.tags).map(([k, v]) => chip(`${k}: ${v}`)) : null],
      ])),
      card("Aliases", h("div", {}, aliasChips(model.aliases, name)))),
    h("div", { class: "stack" },
      card("Versions", table(["Version", "Status", "Flavor", "Aliases", "Metrics", "Compiled", "Created", "By"], rows,
        "No versions yet.")),
      card("Alias history", aliasHistory(ledger))));
}

function signatureTable(columns) {
  return table(["Name", "Type", "Shape"], (columns || []).map((c) =>
    [h("code", {}, c.name), c.datatype, JSON.stringify(c.shape)]), "—");
}

function lineageView(name, lineage) {
  const data = lineage.data;
  return kv([
    ["Parent", lineage.parent_version ? link(`version ${lineage.parent_version}`, "models", name, "versions", lineage.parent_version) : null],
    ["Data fingerprint", data ? h("span", {}, h("code", { title: data.sha256 }, data.sha256.slice(0, 16) + "…"),
      ` · ${data.rows} rows`) : null],
    ["Data schema", data && Object.keys(data.schema || {}).length ? pairs(data.schema) : null],
    ["Code version", lineage.code_version ? h("code", {}, lineage.code_version) : null],
    ["Training run", lineage.run_id ? h("code", {}, lineage.run_id) : null],
    ["Creator", lineage.creator],
    ...Object.entries(lineage.extra || {}).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]),
  ]);
}

function compiledView(compiled) {
  if (!compiled) return h("p", { class: "muted" }, "No compiled path for this flavor.");
  const kept = compiled.status === "kept";
  return h("div", { id: "compiled" },
    h("p", {}, chip(kept ? "compiled path in use" : `not compiled: ${compiled.status}`, kept ? "ok" : "warn"), " ", compiled.reason || ""),
    kv([
      ["Converter", compiled.converter],
      ["Rows compared", compiled.rows],
      ["Labels equal", compiled.labels_equal === null ? null : compiled.labels_equal ? "yes" : "no"],
      ["Max |difference|", compiled.max_abs_diff === null ? null : number(compiled.max_abs_diff)],
    ]));
}

function ledgerView(entries) {
  const rows = entries.slice().reverse().map((e) => [time(e.at), h("code", {}, e.action), e.actor, e.reason || "", pairs(e.details)]);
  return table(["When", "Action", "Who", "Reason", "Details"], rows, "No ledger entries.");
}

function aliasForm(ctx, model, version) {
  const input = h("input", { id: "alias-name", placeholder: "alias, e.g. production", required: true, maxlength: 64, list: "alias-list", autocomplete: "off" });
  const list = h("datalist", { id: "alias-list" }, Object.keys(model.aliases).map((a) => h("option", { value: a })));
  return h("form", {
    class: "inline-form", id: "alias-form",
    onsubmit: async (event) => {
      event.preventDefault();
      const alias = input.value.trim();
      if (!alias) return;
      const expected = model.aliases[alias] ?? null; // what this page showed: compare-and-set
      const where = expected === null ? "a new alias" : `now version ${expected}`;
      const answer = await ctx.confirm({
        title: `Point ${alias} at version ${version.version}?`,
        body: `${model.name}@${alias} (${where}) will resolve to ${version.ref}. Servers following the alias switch to it.`,
        confirmLabel: "Move alias",
      });
      if (!answer) return;
      await ctx.act(
        () => put(`/models/${enc(model.name)}/aliases/${enc(alias)}`, { version: version.version, expected, reason: answer.reason }),
        `${model.name}@${alias} now points at version ${version.version}.`);
    },
  }, input, list, h("button", { type: "submit", class: "primary", id: "move-alias" }, "Point alias here"));
}

export async function versionPage(ctx, name, versionText) {
  if (!/^[1-9][0-9]{0,8}$/.test(versionText)) {
    throw new ApiError(404, `no version ${versionText} of ${name}`);
  }
  const [version, model, ledger] = await Promise.all([
    get(`/models/${enc(name)}/versions/${versionText}`), get(`/models/${enc(name)}`),
    get("/ledger" + q({ model: name, limit: 1000 })),
  ]);
  const mine = ledger.filter((e) => e.version === version.version);
  const aliasMoves = mine.filter((e) => e.action.startsWith("alias."));
  const actions = ctx.canDeploy ? card("Move an alias", h("p", { class: "muted" },
    "Point an alias of this model at this version. If someone moved it since this page loaded, the move is refused."),
  aliasForm(ctx, model, version)) : null;
  return h("div", { id: "version-page" },
    h("div", { class: "crumbs" }, link("Models", "models"), " / ", link(name, "models", name), " / "),
    h("h1", {}, version.ref, " ", statusChip(version.status)),
    h("p", { class: "sub description" }, version.description || "No description."),
    h("div", { class: "grid" },
      card("Summary", kv([
        ["Flavor", version.flavor], ["Created", time(version.created_at)], ["By", version.creator],
        ["Aliases", version.aliases.length ? version.aliases.map((a) => chip(a, "primary")) : null],
        ["Stage", version.stage], ["Archived", version.archived ? "yes" : "no"],
        ["Status reason", version.status_reason],
        ["Tags", Object.keys(version.tags).length ? Object.entries(version.tags).map(([k, v]) => chip(`${k}: ${v}`)) : null],
      ])),
      card("Lineage", lineageView(name, version.lineage)),
      card("Metrics", h("div", { id: "metrics" }, Object.keys(version.metrics).length
        ? kv(Object.entries(version.metrics).map(([k, v]) => [k, number(v)])) : h("p", { class: "muted" }, "No metrics recorded."))),
      card("Compiled path parity", compiledView(version.compiled))),
    h("div", { class: "stack" },
      card("Signature", version.signature ? h("div", { class: "grid", id: "signature" },
        h("div", {}, h("h3", {}, "Inputs"), signatureTable(version.signature.inputs)),
        h("div", {}, h("h3", {}, "Outputs"), signatureTable(version.signature.outputs)))
        : h("p", { class: "muted" }, "No signature recorded.")),
      actions,
      card("Alias history of this version", aliasHistory(aliasMoves)),
      card("Parameters", pairs(version.params)),
      card("Artifacts", table(["Name", "SHA-256", "Size"], Object.entries(version.artifacts).map(([k, a]) =>
        [h("code", {}, k), h("code", { title: a.sha256 }, a.sha256.slice(0, 16) + "…"), `${a.size} bytes`]), "No artifacts.")),
      card("Ledger", h("div", { id: "version-ledger" }, ledgerView(mine)))));
}
