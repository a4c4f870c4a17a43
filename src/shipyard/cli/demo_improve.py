"""The demo's improve step: the loop a control plane closes, run here once, step by step.

A new scanner reads every size 30% larger. Its traffic reaches the deployment, ground truth
follows as feedback, the monitoring loop judges the window and fires a drift alert, the
alert starts the retraining pipeline (training in its own process on the reference data and
the labelled new traffic), the candidate is validated against the deployed champion on the
latest labelled rows, released as a canary, and promoted by the rollout controller. These are
the control plane's own parts (`shipyard server` runs them on timers), not a re-enactment.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from shipyard.app.monitor_loop import MonitorConfig, MonitorLoop, alert_manager
from shipyard.app.retrain import RetrainLoop, open_runner
from shipyard.cli.demo_serve import DEMO_POLICY, data_plane, follow_rollout, request, row_inputs
from shipyard.cli.output import console
from shipyard.cli.retrain import print_run
from shipyard.client import Registry
from shipyard.client.deployments import Deployments
from shipyard.jobs.retrain.config import parse_config
from shipyard.jobs.retrain.context import TrainContext
from shipyard.jobs.retrain.pipelines import Pipelines, Run
from shipyard.monitoring import DriftDetector
from shipyard.monitoring.alert_history import AlertHistory
from shipyard.monitoring.eventlog import read_events
from shipyard.monitoring.feedback import Feedback, FeedbackStore
from shipyard.monitoring.performance import join_feedback
from shipyard.monitoring.report import MonitorInput, render_report
from shipyard.registry.models import LedgerEntry

SIZE_MARKERS = ("radius", "perimeter", "area")  # the features a scanner's calibration scales
SCALE = 1.3
LABEL = "target"
RUN_DEADLINE_S = 300.0
SEED = 7
ACCURACY_FLOOR = "accuracy<0.9"  # the monitoring rule on the feedback: v2 scored 0.96 offline
REPORT = "demo-report.html"


def train(context: TrainContext) -> RandomForestClassifier:
    """The pipeline's entry point (`shipyard.cli.demo_improve:train`): the v2 recipe again,
    on what the run gathered."""
    model = RandomForestClassifier(50, max_depth=8, random_state=context.seed)
    return model.fit(context.features, context.target)


def scanner_shift(rows: pd.DataFrame) -> pd.DataFrame:
    shifted = rows.copy()
    sizes = [c for c in rows.columns if any(m in str(c) for m in SIZE_MARKERS)]
    shifted[sizes] = shifted[sizes] * SCALE
    return shifted


def improve(
    registry: Registry,
    deployment: str,
    name: str,
    train_rows: pd.DataFrame,
    train_labels: pd.Series,
    rows: pd.DataFrame,
    labels: pd.Series,
) -> None:
    """Shifted traffic → drift alert → retraining → validation → canary → promotion."""
    store = registry.store
    started = datetime.now(UTC)
    pipeline = _register_pipeline(registry, deployment, name, train_rows, train_labels)
    console.print(
        f"pipeline {pipeline}: retrains {name} when drift or an accuracy drop fires, releases "
        f"to {deployment} as a canary",
        highlight=False,
    )
    # The scanner sees every patient of the data set, in no particular order.
    scanned = pd.concat([train_rows, rows]).sample(frac=1.0, random_state=SEED)
    truth = pd.concat([train_labels, labels]).loc[scanned.index]
    shifted = scanner_shift(scanned)
    ids = _send(deployment, shifted)
    outcome = FeedbackStore(store.database).add(
        [Feedback(i, int(v)) for i, v in zip(ids, truth, strict=True)], store.actor
    )
    console.print(f"feedback: ground truth for {outcome.stored} of them", highlight=False)

    retraining = RetrainLoop(open_runner(store, registry.settings))
    config = MonitorConfig(
        window=datetime.now(UTC) - started + timedelta(seconds=1),
        min_rows=min(100, len(ids)),
        fire_after=1,
        performance=ACCURACY_FLOOR,  # judged on the feedback just given
        min_labelled=min(100, len(ids)),
    )
    monitor = MonitorLoop(
        store,
        registry.settings.home,
        alert_manager(store, config, on_fire=retraining.on_alert, notifiers=[]),
        config,
    )
    try:
        _judge(monitor, name)
        run = _finished_run(retraining)
    finally:
        monitor.close()
        retraining.close(wait=False)
    print_run(run)
    if run.result.get("release", {}).get("rollout"):
        with Deployments(registry) as releases:
            follow_rollout(releases, deployment, shifted)
    _ledger(registry, deployment, name, started)
    _report(registry, name, started)


def _register_pipeline(
    registry: Registry,
    deployment: str,
    name: str,
    train_rows: pd.DataFrame,
    train_labels: pd.Series,
) -> str:
    folder = registry.settings.home / "demo-retrain"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.parquet"
    train_rows.assign(**{LABEL: train_labels.to_numpy()}).to_parquet(path, index=False)
    config = parse_config(
        {
            "label": LABEL,
            # The data it was trained on, then the logged traffic that has ground truth.
            "sources": [{"path": str(path)}, {"logged": {"since": "1h", "deployment": deployment}}],
            "holdout": {"fraction": 0.25},  # the last rows: the newest labelled traffic
            "seed": SEED,
            "timeout_s": RUN_DEADLINE_S,
            "cooldown_s": 0,  # the demo may run again at once
            "gate": {"tolerance": 0.01, "max_latency_ratio": 3.0},
            "release": {"deployment": deployment, "policy": DEMO_POLICY.model_dump(mode="json")},
            "on_alerts": ["drift", "realised accuracy"],
        }
    )
    pipeline = f"{name}-retrain"
    Pipelines(registry.store).register(
        pipeline, model=name, entry=f"{__name__}:train", config=config
    )
    return pipeline


def _send(deployment: str, shifted: pd.DataFrame) -> list[str]:
    """Each shifted row once through the deployment, under a request id feedback can name."""
    columns = [str(c) for c in shifted.columns]
    tag = f"scan-{int(time.time())}"
    ids, answered = [], 0
    with data_plane(deployment) as base:
        for number, row in enumerate(shifted.to_numpy().tolist()):
            request_id = f"{tag}-{number}"
            request(
                f"{base}/v2/models/{deployment}/infer",
                {"inputs": row_inputs(columns, row)},
                headers={"X-Request-ID": request_id},
            )
            ids.append(request_id)
            answered += 1
    console.print(
        f"the new scanner's traffic: {answered} requests to {deployment}, sizes x{SCALE}",
        highlight=False,
    )
    return ids


def _judge(monitor: MonitorLoop, name: str) -> None:
    for check in monitor.tick():
        if check.model != name:
            continue
        judgement = check.judgement
        if judgement is None or judgement.observation is None:
            reason = check.error or (judgement.reason if judgement else "not judged")
            console.print(f"monitoring {name}: {reason}", highlight=False)
        for alert in check.alerts:
            console.print(f"alert {alert.rule} {alert.state}: {alert.message}", highlight=False)


def _finished_run(retraining: RetrainLoop) -> Run:
    if not retraining.futures:
        raise RuntimeError("the drift alert started no retraining run")
    return retraining.futures[0].result(timeout=RUN_DEADLINE_S + 30)


def _ledger(registry: Registry, deployment: str, name: str, since: datetime) -> None:
    with Deployments(registry) as releases:
        entries = [*registry.history(name), *releases.history(deployment)]
    fresh = sorted((e for e in entries if e.at >= since), key=lambda e: (e.at, e.id))
    console.print("the loop in the ledger:")
    for entry in dict((e.id, e) for e in fresh).values():
        console.print(f"  {entry.at.astimezone():%H:%M:%S} {_describe(entry)}", highlight=False)


def _describe(entry: LedgerEntry) -> str:
    spec = entry.details.get("spec")
    if isinstance(spec, dict):  # a deployment's new revision: its split
        split = ", ".join(f"v{v['version']} {v['weight']}%" for v in spec.get("variants", []))
        version = f" revision {entry.details.get('revision')} ({split})"
    else:
        version = f" v{entry.version}" if entry.version is not None else ""
    trigger = entry.details.get("trigger")
    by = f" by {trigger}" if trigger else ""
    why = f" — {entry.reason}" if entry.reason else ""
    return f"{entry.actor}: {entry.action}{version}{by}{why}"


def _report(registry: Registry, name: str, since: datetime) -> None:
    """`shipyard monitor report` of the model's traffic since the demo began: drift per
    feature over time against v2's reference, accuracy where feedback arrived, the alerts."""
    store = registry.store
    home = registry.settings.home
    reference = registry.reference_data(f"{name}@production")
    assert reference is not None  # the demo registers v2 with its training data
    events = read_events(home, model=name, since=since - timedelta(minutes=10))
    labels = FeedbackStore(store.database).values(events["request_id"].dropna().tolist())
    feedback = pd.DataFrame({"request_id": list(labels), "value": list(labels.values())})
    data = MonitorInput(
        name,
        DriftDetector.fit(reference),
        join_feedback(events, feedback),
        label="label",
        prediction="output.predict",
        alerts=AlertHistory(store.database).list(subject=name),
    )
    path = home / REPORT
    path.write_text(render_report(data), encoding="utf-8")
    console.print(
        f"report: {path} (drift over time, accuracy where feedback arrived, the alerts; opens "
        "offline)",
        highlight=False,
    )
