"""Drift detection: shipyard's DriftDetector vs scipy, Evidently and NannyML, side by side in one run.

Data: 20 correlated numeric features (3-factor model, a few skewed) + 5 categorical, reference
5,000 rows, fresh reference per repetition. Shifts: none, mean, scale, tail, categorical,
correlation-only (marginals unchanged). Windows of 100 / 500 / 5,000 rows.

Methods and their default rules:
- shipyard: DriftDetector, Holm-adjusted overall p < 0.05;
- scipy: KS per numeric + chi-square per categorical column, Bonferroni at 5%;
- Evidently (bench/peers/drift_evidently.py, own venv): DataDriftPreset's dataset drift rule,
  share of drifted columns >= 0.5 with its per-column default tests;
- NannyML (bench/peers/drift_nannyml.py, own venv): UnivariateDriftCalculator with default
  methods and thresholds, alarm when any column alerts.
The peers run as subprocess workers in bench/.venvs/{evidently,nannyml} (created on first use by
bench/peers/venvs.py) on Parquet copies of the first repetitions' reference and windows; their
detection runs while shipyard's loop runs, their cost is measured alone afterwards.

Reported per window size:
- false-alarm rate with each method's default rule, on windows with no shift;
- detection rate with each default rule, per shift;
- power at a calibrated 5% false-alarm rate for shipyard and scipy (threshold = 5th percentile
  of the method's overall p-value on the no-shift windows of the same run; the peers run too
  few repetitions to calibrate);
- cost of one check of a 10,000 x 50 window (and 100,000 x 50): median time, peak traced memory.

    .venv/bin/python bench/drift.py --quick        # 80 repetitions, peers 6 / 12 (~10 min on a busy 2 cores)
    .venv/bin/python bench/drift.py --reps 400     # tighter numbers
    .venv/bin/python bench/drift.py --peers ""     # shipyard and scipy only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from shipyard.monitoring import DriftDetector

# Run as a script, bench/ is on sys.path (`peers.venvs`); mypy sees the file as bench.drift.
if TYPE_CHECKING:
    from bench.peers import venvs
else:
    from peers import venvs

SHIFTS = ["none", "mean", "scale", "tail", "categorical", "correlation"]
WINDOWS = [100, 500, 5000]
NUMERIC, CATEGORICAL = 20, 5
CATS = list("abcdefgh")
CAT_P = np.array([0.25, 0.2, 0.15, 0.12, 0.1, 0.08, 0.06, 0.04])
LOADINGS = np.random.default_rng(11).normal(size=(3, 40))


def generate(
    n: int,
    rng: np.random.Generator,
    shift: str = "none",
    numeric: int = NUMERIC,
    categorical: int = CATEGORICAL,
) -> pd.DataFrame:
    loadings = LOADINGS[:, :numeric].copy()
    if shift == "correlation":
        loadings[0, 1::4] *= -1.0  # flips some correlations, keeps every marginal
    x = rng.normal(size=(n, 3)) @ loadings + rng.normal(size=(n, numeric))
    x[:, 3] = np.exp(x[:, 3] / 3.0)  # a few skewed features, like amounts
    x[:, 4] = np.round(np.abs(x[:, 4]) * 10)  # and a count-like one (ties)
    sd = np.sqrt((LOADINGS[:, 0] ** 2).sum() + 1.0)
    if shift == "mean":
        x[:, 0] += 0.15 * sd
    elif shift == "scale":
        x[:, 1] *= 1.12
    elif shift == "tail":
        tail = rng.random(n) < 0.02  # 2% of rows from a heavy-tailed source (e.g. a bad sensor)
        x[tail, 2] = rng.standard_t(1.5, size=int(tail.sum())) * 6.0
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(numeric)])
    p = CAT_P
    if shift == "categorical":
        p = CAT_P + np.array([-0.04, 0, 0, 0, 0, 0, 0, 0.04])
    for j in range(categorical):
        frame[f"c{j}"] = rng.choice(CATS, size=n, p=p if j == 0 else CAT_P)
    return frame


def scipy_overall_p(ref: pd.DataFrame, win: pd.DataFrame) -> float:
    """KS per numeric, chi-square per categorical, Bonferroni: the careful do-it-yourself rule."""
    ps: list[float] = []
    for name in ref.columns:
        if name.startswith("x"):
            ps.append(float(stats.ks_2samp(ref[name].to_numpy(), win[name].to_numpy()).pvalue))
        else:
            table = pd.crosstab(
                np.r_[np.zeros(len(ref)), np.ones(len(win))],
                np.r_[ref[name].to_numpy(), win[name].to_numpy()],
            )
            ps.append(float(stats.chi2_contingency(table.to_numpy())[1]))
    return min(1.0, min(ps) * len(ps))


PVals = dict[tuple[str, str, int], list[float]]
Cost = tuple[float, float, float | None]  # median s, best s, peak traced MB (None: not measured)
Windows = dict[tuple[str, int], pd.DataFrame]
SHIPYARD, SCIPY = "shipyard", "scipy KS+chi2 (Bonferroni)"
BENCH = Path(__file__).resolve().parent
# Peers' own telemetry stays off (no network in a bench): Evidently honours DO_NOT_TRACK,
# NannyML NML_DISABLE_USAGE_LOGGING.
PEER_ENV = {"DO_NOT_TRACK": "1", "NML_DISABLE_USAGE_LOGGING": "1", "PYTHONWARNINGS": "ignore"}


@dataclass(frozen=True)
class PeerSpec:
    label: str  # rows of the detection tables
    packages: tuple[str, ...]  # pip install into bench/.venvs/NAME
    dists: tuple[str, ...]  # versions shown in the header
    methods: dict[str, str]  # worker method -> row of the cost table; the first decides
    reps: tuple[int, int]  # repetitions (--quick, default): a check costs far more than ours
    verify: int = 0  # windows on which the worker compares its methods' decisions


# Pinned to what PyPI gave on 2026-12-01. Both break on pandas 3 (Evidently imports a removed
# pandas helper; NannyML too), and NannyML 0.13.1 imports statsmodels without requiring it.
PEERS = {
    "evidently": PeerSpec(
        "Evidently (DataDriftPreset: share of drifted columns >= 0.5)",
        ("evidently==0.7.23", "pandas==2.3.3", "pyarrow==26.0.1"),
        ("evidently", "pandas"),
        {
            "metric": "Evidently DatasetDriftMetric (the preset's rule, no widgets)",
            "preset": "Evidently Report([DataDriftPreset()])",
        },  # fmt: skip
        (6, 30),
        verify=3,
    ),
    "nannyml": PeerSpec(
        "NannyML univariate (Jensen-Shannon, default thresholds, any column alerts)",
        ("nannyml==0.13.1", "pandas==2.3.3", "statsmodels==0.15.0", "pyarrow==26.0.1"),
        ("nannyml", "pandas"),
        {"univariate": "NannyML UnivariateDriftCalculator (fitted)"},
        (12, 60),
    ),
}


@dataclass
class PeerRun:
    name: str
    spec: PeerSpec
    reps: int
    error: str = ""
    alarms: dict[tuple[str, int], list[bool]] = field(default_factory=dict)
    costs: dict[str, dict[int, Cost]] = field(default_factory=dict)
    agreement: dict[str, list[int]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def venv(self) -> Path:
        return venvs.VENVS / self.name


def run_stats(
    reps: int, seed: int, on_rep: Callable[[int, pd.DataFrame, Windows], None] | None = None
) -> PVals:
    """p-values keyed by (method, shift, window); one fresh reference per repetition.
    `on_rep` sees every repetition's reference and windows (the peers get copies)."""
    out: PVals = {}
    rng = np.random.default_rng(seed)
    for rep in range(reps):
        ref = generate(5000, rng)
        det = DriftDetector.fit(ref)
        windows: Windows = {}
        for window in WINDOWS:
            for shift in SHIFTS:
                win = windows[(shift, window)] = generate(window, rng, shift)
                out.setdefault((SHIPYARD, shift, window), []).append(det.check(win).p_value)
                out.setdefault((SCIPY, shift, window), []).append(scipy_overall_p(ref, win))
        if on_rep is not None:
            on_rep(rep, ref, windows)
    return out


def timed(func: Callable[[], object], repeat: int) -> Cost:
    """(median s, best s, peak traced MB); memory on a separate traced call. The best of the
    repeats is the less noisy number on a shared machine; the median is what a job sees."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    func()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), min(times), peak / 1e6


def cost_frames(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 5,000-row reference and a `rows`-row window, 40 numeric + 10 categorical columns."""
    rng = np.random.default_rng(1)
    ref = generate(5000, rng, numeric=40, categorical=10)
    return ref, generate(rows, rng, numeric=40, categorical=10)


def run_cost(rows: int, repeat: int) -> dict[str, Cost]:
    ref, win = cost_frames(rows)
    det = DriftDetector.fit(ref)
    return {
        SHIPYARD: timed(lambda: det.check(win), repeat),
        SCIPY: timed(lambda: scipy_overall_p(ref, win), max(1, repeat // 3)),
    }


# --------------------------------------------------------------------------- peers


class PeerDumper:
    """Writes the first repetitions' data as Parquet for the peers and starts each peer's
    detection worker as soon as its repetitions are on disk, so it runs beside our loop."""

    def __init__(self, runs: list[PeerRun], work: Path) -> None:
        self.runs = [r for r in runs if not r.error and r.reps > 0]
        self.work = work
        self.data = work / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.groups: list[dict[str, Any]] = []

    def __call__(self, rep: int, ref: pd.DataFrame, windows: Windows) -> None:
        if rep >= max((r.reps for r in self.runs), default=0):
            return
        ref.to_parquet(self.data / f"ref_{rep}.parquet")
        items = []
        for (shift, window), frame in sorted(windows.items(), key=lambda kv: kv[0][1]):
            name = f"w_{rep}_{shift}_{window}.parquet"
            frame.to_parquet(self.data / name)
            items.append({"id": f"{rep}/{shift}/{window}", "path": f"../data/{name}"})
        self.groups.append({"ref": f"../data/ref_{rep}.parquet", "windows": items})
        for run in self.runs:
            if run.reps == rep + 1:
                tasks = {"groups": self.groups[: run.reps], "verify": run.spec.verify}
                run.proc = start_worker(run, self.work / f"{run.name}-detect", tasks)


def start_worker(run: PeerRun, folder: Path, tasks: dict[str, Any]) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tasks.json").write_text(json.dumps(tasks))
    script = BENCH / "peers" / f"drift_{run.name}.py"
    with (folder / "stdout").open("wb") as out, (folder / "stderr").open("wb") as err:
        return subprocess.Popen(
            [str(run.venv / "bin" / "python"), str(script), str(folder)],
            stdout=out,
            stderr=err,
            env={**os.environ, **PEER_ENV},
        )


def finish_worker(proc: subprocess.Popen[bytes], folder: Path, timeout_s: float) -> dict[str, Any]:
    """The worker's JSON; RuntimeError with its last error line when it failed."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"timed out after {timeout_s:.0f} s") from None
    err = (folder / "stderr").read_text(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {err[-1] if err else 'no output'}")
    out: dict[str, Any] = json.loads((folder / "stdout").read_text().strip().splitlines()[-1])
    return out


def setup_peers(names: list[str], quick: bool, reps: int, peer_reps: int | None) -> list[PeerRun]:
    runs = []
    for name in names:
        spec = PEERS[name]
        count = min(reps, peer_reps if peer_reps is not None else spec.reps[0 if quick else 1])
        run = PeerRun(name, spec, count)
        try:
            venvs.ensure_venv(name, spec.packages)
            run.versions = venvs.venv_versions(run.venv, spec.dists)
        except (venvs.VenvError, subprocess.CalledProcessError, OSError) as exc:
            run.error = f"not installed: {exc}"
        runs.append(run)
    return runs


def collect_detection(run: PeerRun, work: Path) -> None:
    if run.proc is None:
        return
    try:
        out = finish_worker(run.proc, work / f"{run.name}-detect", timeout_s=1800)
    except (RuntimeError, ValueError) as exc:
        run.error = f"detection worker failed: {exc}"
        return
    for key, res in out["results"].items():
        _, shift, window = key.split("/")
        run.alarms.setdefault((shift, int(window)), []).append(bool(res["drift"]))
    run.agreement = out["agreement"]
    run.seconds["detection"] = float(out["seconds"])


def peer_cost(run: PeerRun, work: Path, sizes: list[int], repeat: int, memory: bool) -> None:
    """Time the peer's methods alone (nothing of ours running) on the same frames as ours."""
    if run.error:
        return
    folder = work / f"{run.name}-cost"
    data = work / "cost"
    data.mkdir(exist_ok=True)
    windows = {}
    for rows in sizes:
        ref, win = cost_frames(rows)
        if not (data / "ref.parquet").exists():
            ref.to_parquet(data / "ref.parquet")
        win.to_parquet(data / f"win_{rows}.parquet")
        windows[str(rows)] = f"../cost/win_{rows}.parquet"
    tasks = {"cost": {"ref": "../cost/ref.parquet", "windows": windows, "repeat": repeat,
                      "memory": memory}}  # fmt: skip
    try:
        out = finish_worker(start_worker(run, folder, tasks), folder, timeout_s=1800)
    except (RuntimeError, ValueError) as exc:
        run.error = f"cost worker failed: {exc}"
        return
    for method, by_rows in out["cost"].items():
        for rows, (median, best, mb) in by_rows.items():
            run.costs.setdefault(method, {})[int(rows)] = (median, best, mb)
    run.seconds["cost"] = float(out["seconds"])


# --------------------------------------------------------------------------- report


def default_rule_rates(
    pvals: PVals, runs: list[PeerRun]
) -> dict[str, dict[tuple[str, int], float]]:
    """Share of windows that alarm with each method's default rule, by (shift, window)."""
    rates: dict[str, dict[tuple[str, int], float]] = {}
    for (method, shift, window), ps in pvals.items():
        rates.setdefault(method, {})[(shift, window)] = float(np.mean(np.array(ps) < 0.05))
    for run in runs:
        if run.alarms:
            rates[run.spec.label] = {k: float(np.mean(v)) for k, v in run.alarms.items()}
    return rates


def machine_line(load_before: str) -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = f"{os.getloadavg()[0]:.2f}"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {platform.node()} · {cpu} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()} · 1-min load average "
        f"before / after {load_before} / {load}"
    )


def render(
    pvals: PVals,
    costs: dict[int, dict[str, Cost]],
    reps: int,
    runs: list[PeerRun],
    header: str,
) -> str:
    rates = default_rule_rates(pvals, runs)
    counts = {SHIPYARD: reps, SCIPY: reps} | {r.spec.label: r.reps for r in runs if r.alarms}
    methods = list(rates)
    peers = ", ".join(
        f"{r.name} {r.versions.get(r.name, '?')} ("
        + ", ".join(f"{k} {v}" for k, v in r.versions.items() if k != r.name)
        + ")"
        for r in runs
        if r.versions
    )
    lines = [
        f"# Drift detection ({header})",
        "",
        f"Reference 5,000 rows, {NUMERIC} numeric + {CATEGORICAL} categorical; shipyard and scipy"
        f" {reps} repetitions; peers on the first repetitions of the same run (same references"
        f" and windows), in their own venvs: {peers or 'none'}.",
        "",
        "## False alarms with default rules (no shift; lower is better, bar <= 5%)",
        "",
        "| method | repetitions | " + " | ".join(f"{w} rows" for w in WINDOWS) + " |",
        "|---|---:|" + "---:|" * len(WINDOWS),
    ]
    for m in methods:
        cells = [f"{rates[m][('none', w)]:.1%}" for w in WINDOWS]
        lines.append(f"| {m} | {counts[m]} | " + " | ".join(cells) + " |")
    for run in runs:  # a peer that could not run still gets its row, with the reason below
        if not run.alarms:
            lines.append(
                f"| {run.spec.label} | 0 | " + " | ".join(["not run"] * len(WINDOWS)) + " |"
            )
    lines += [
        "",
        "## Detection with default rules (share of shifted windows that alarm; read with the"
        " false alarms above)",
        "",
        "| shift | method | " + " | ".join(f"{w} rows" for w in WINDOWS) + " |",
        "|---|---|" + "---:|" * len(WINDOWS),
    ]
    for shift in SHIFTS[1:]:
        for m in methods:
            cells = [f"{rates[m][(shift, w)]:.2f}" for w in WINDOWS]
            lines.append(f"| {shift} | {m} | " + " | ".join(cells) + " |")
    for m in methods:
        cells = [f"**{np.mean([rates[m][(s, w)] for s in SHIFTS[1:]]):.2f}**" for w in WINDOWS]
        lines.append(f"| **mean** | {m} | " + " | ".join(cells) + " |")
    lines += render_power(pvals)
    lines += render_cost(costs, runs)
    lines += ["", *peer_notes(runs), ""]
    return "\n".join(lines)


def render_power(pvals: PVals) -> list[str]:
    methods = [SHIPYARD, SCIPY]
    lines = [
        "",
        "## Power at a calibrated 5% false-alarm rate, shipyard and scipy (higher is better)",
        "",
        "| shift | method | " + " | ".join(f"{w} rows" for w in WINDOWS) + " |",
        "|---|---|" + "---:|" * len(WINDOWS),
    ]
    means: dict[str, list[list[float]]] = {m: [[] for _ in WINDOWS] for m in methods}
    for shift in SHIFTS[1:]:
        for m in methods:
            cells = []
            for i, w in enumerate(WINDOWS):
                threshold = np.quantile(pvals[(m, "none", w)], 0.05)
                power = float(np.mean(np.array(pvals[(m, shift, w)]) < threshold))
                means[m][i].append(power)
                cells.append(f"{power:.2f}")
            lines.append(f"| {shift} | {m} | " + " | ".join(cells) + " |")
    for m in methods:
        lines.append(
            f"| **mean** | {m} | " + " | ".join(f"**{np.mean(v):.2f}**" for v in means[m]) + " |"
        )
    return lines


def render_cost(costs: dict[int, dict[str, Cost]], runs: list[PeerRun]) -> list[str]:
    lines = [
        "",
        "## Cost of one check (reference 5,000 rows; 40 numeric + 10 categorical columns)",
        "",
        "| window | method | median time | best time | peak traced memory | median vs shipyard |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for rows, by_method in costs.items():
        rows_costs = dict(by_method)
        for run in runs:
            for method, label in run.spec.methods.items():
                if rows in run.costs.get(method, {}):
                    rows_costs[label] = run.costs[method][rows]
        ours = by_method[SHIPYARD][0]
        for m, (median, best, mb) in rows_costs.items():
            memory = f"{mb:.1f} MB" if mb is not None else "-"
            lines.append(
                f"| {rows:,} x 50 | {m} | {_seconds(median)} | {_seconds(best)} | {memory} |"
                f" {median / ours:,.1f}x |"
            )
    return lines


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1e3:.1f} ms"


def peer_notes(runs: list[PeerRun]) -> list[str]:
    lines = []
    for run in runs:
        if run.error:
            lines.append(f"- {run.name}: {run.error}")
            continue
        took = (
            ", ".join(f"{k} worker {v:.0f} s" for k, v in run.seconds.items()) + ", after imports"
        )
        agree = "; ".join(
            f"{run.spec.methods[m]} took the same decision on {a}/{n} windows"
            for m, (a, n) in run.agreement.items()
        )
        lines.append(
            f"- {run.name}: {run.reps} repetitions ({took}){'; ' + agree if agree else ''}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="80 repetitions (default 200)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument(
        "--peers",
        default="evidently,nannyml",
        help="comma-separated peers run in their own venvs (default evidently,nannyml; '' for none)",
    )
    parser.add_argument(
        "--peer-reps",
        type=int,
        default=None,
        help="repetitions for every peer (default: evidently 6, nannyml 12; 30 / 60 without --quick)",
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--markdown", type=Path, default=Path("bench/out/drift.md"))
    args = parser.parse_args()
    names = [p for p in args.peers.split(",") if p]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    reps = args.reps or (80 if args.quick else 200)
    load_before = f"{os.getloadavg()[0]:.2f}"
    started = time.perf_counter()
    runs = setup_peers(names, args.quick, reps, args.peer_reps)
    with tempfile.TemporaryDirectory(prefix="shipyard-drift-") as tmp:
        work = Path(tmp)
        try:
            pvals = run_stats(reps, args.seed, PeerDumper(runs, work))
            for run in runs:
                collect_detection(run, work)
        finally:
            for run in runs:  # on error or Ctrl-C, no worker outlives the bench
                if run.proc is not None and run.proc.poll() is None:
                    run.proc.kill()
                    run.proc.wait()
        sizes = [10_000] if args.quick else [10_000, 100_000]
        costs = {rows: run_cost(rows, 7 if rows <= 10_000 else 3) for rows in (10_000, 100_000)}
        for run in runs:
            peer_cost(run, work, sizes, repeat=3 if args.quick else 5, memory=not args.quick)
    text = render(pvals, costs, reps, runs, machine_line(load_before))
    print(text)
    print(f"(bench took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)


if __name__ == "__main__":
    main()
