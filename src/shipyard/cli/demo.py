"""`shipyard demo`: the journey on the embedded registry, with nothing but this package.

Trains two real models on data that ships with scikit-learn, registers them with lineage,
moves `production` from v1 to the better v2, predicts through the compiled fast path and
shows the ledger, then releases v2 to the deployment `fraud`: v1 first, v2 as a canary with a
policy on accelerated time, traffic through a data plane serving the deployment, and the rollout
controller judging each window until it promotes (or rolls back) — its decisions printed.
Then it judges what was logged for drift, scores a file in batch, and closes the loop: a
shifted input stream fires a drift alert that retrains, validates and canaries a new version.
"""

from __future__ import annotations

import time
from typing import Annotated

import pandas as pd
import typer

from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import alias_line, console, history_table, version_panel
from shipyard.client import Registry
from shipyard.registry.models import ModelVersion

MODEL = "breast-cancer"
DEPLOYMENT = "fraud"


def install(app: typer.Typer) -> None:
    app.command("demo")(demo)


@exits_by_kind
def demo(
    name: Annotated[str, typer.Option(help="Model name to register the demo under.")] = MODEL,
    deployment: Annotated[
        str, typer.Option(help="Deployment the release step creates or updates.")
    ] = DEPLOYMENT,
) -> None:
    """Walk the journey: train, register v1 and v2 with lineage, promote, predict, serve,
    show the history, release v2 to a deployment through a canary rollout, watch what the
    release logged for drift, score a file in batch, then close the loop: shifted traffic, a
    drift alert, retraining, validation, a canary and its promotion."""
    # Imported when the demo runs, not whenever the CLI starts: they bring in the servers'
    # and sklearn's modules.
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from shipyard.cli.demo_batch import batch_step
    from shipyard.cli.demo_improve import improve
    from shipyard.cli.demo_serve import release, serve_and_call
    from shipyard.cli.demo_watch import watch

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    X.columns = [c.replace(" ", "_") for c in X.columns]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=7, stratify=y
    )

    with Registry() as registry:
        console.rule("[bold]1. register")
        console.print(f"registry: {registry.settings.resolved_database_url}")
        versions = _register(registry, name, X_train, X_test, y_train, y_test)
        console.print(version_panel(versions[-1]))

        console.rule("[bold]2. promote")
        v1, v2 = versions
        console.print(
            alias_line(registry.set_alias(name, "production", v1.version, reason="first release"))
        )
        move = registry.set_alias(
            name,
            "production",
            v2.version,
            expected=v1.version,
            reason="v2 beats v1 on held-out ROC AUC",
        )
        console.print(alias_line(move))

        console.rule("[bold]3. predict")
        model = registry.load(f"{name}@production")
        native = registry.load(f"{name}@production", compiled=False)
        rows = X_test.head(5)
        console.print(
            f"{model!r} predicts {list(model.predict(rows))} for 5 held-out rows (truth {list(y_test.head(5))})"
        )
        one = X_test.head(1)
        fast, slow = _latency(model.predict, one), _latency(native.predict, one)
        console.print(
            f"single-row latency: compiled {fast * 1e6:,.0f} µs, native {slow * 1e6:,.0f} µs "
            f"({slow / fast:,.0f}x) — measured just now, see bench/ for the real comparison"
        )

        console.rule("[bold]4. serve")
        serve_and_call(name, X_test.head(3))

        console.rule("[bold]5. history")
        console.print(history_table(name, registry.history(name)[-6:]))
        console.print(
            f"next: `shipyard models show {name}@production`, `shipyard history {name}`, "
            f"`shipyard predict {name}@production --input rows.csv`, "
            f"`shipyard serve {name}@production`"
        )

        console.rule("[bold]6. release")
        release(registry, deployment, name, v1.version, v2.version, X_test)
        console.print(
            f"next: `shipyard deployments history {deployment}`, "
            f"`shipyard rollout status {deployment}`, `shipyard rollback {deployment}`"
        )

        console.rule("[bold]7. watch")
        watch(registry, v2, X_test, "mean_radius")
        console.print(
            f"next: `shipyard logs show {name}`, `shipyard feedback labels.csv`, "
            "`shipyard server` (judges drift every minute, alerts, retrains) and its "
            "Monitoring page"
        )

        console.rule("[bold]8. batch")
        batch_step(registry, f"{name}@production", X_test)
        console.print(
            f"next: `shipyard batch score {name}@production data/ out/ --workers 2` "
            "(re-run the same command after a crash: it resumes, each row scored once)"
        )

        console.rule("[bold]9. improve")
        improve(registry, deployment, name, X_train, y_train, X_test, y_test)
        console.print(
            f"next: `shipyard runs list`, `shipyard runs show ID`, `shipyard pipelines show "
            f"{name}-retrain`, `shipyard validate CANDIDATE --against REF --data FILE --json`"
        )


def _register(
    registry: Registry,
    name: str,
    X_train: pd.DataFrame,
    X_test: pd.DataFrame,
    y_train: pd.Series,
    y_test: pd.Series,
) -> list[ModelVersion]:
    """v1 (a depth-2 tree) and v2 (a forest, v1's child), with metrics on the test split."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.tree import DecisionTreeClassifier

    candidates = [
        ("v1: a depth-2 decision tree", DecisionTreeClassifier(max_depth=2, random_state=7)),
        (
            "v2: a 50-tree random forest",
            RandomForestClassifier(50, max_depth=8, random_state=7),
        ),
    ]
    versions: list[ModelVersion] = []
    for label, estimator in candidates:
        estimator.fit(X_train, y_train)
        proba = estimator.predict_proba(X_test)[:, 1]
        metrics = {
            "accuracy": float(accuracy_score(y_test, estimator.predict(X_test))),
            "roc_auc": float(roc_auc_score(y_test, proba)),
        }
        parent = versions[-1].version if versions else None
        version = registry.register(
            estimator,
            name,
            sample_input=X_test.head(50),
            reference_data=X_train,
            description=label,
            tags={"dataset": "sklearn-breast-cancer", "task": "binary-classification"},
            params={
                k: v for k, v in estimator.get_params().items() if isinstance(v, int | float | str)
            },
            metrics=metrics,
            lineage={"training_data": X_train, "parent": parent},
        )
        versions.append(version)
        console.print(
            f"{version.ref}  {label}: accuracy {metrics['accuracy']:.3f}, "
            f"ROC AUC {metrics['roc_auc']:.3f}, compiled: {(version.compiled or {}).get('status')}"
        )
    return versions


def _latency(func: object, rows: object, repeat: int = 200) -> float:
    assert callable(func)
    func(rows)
    start = time.perf_counter()
    for _ in range(repeat):
        func(rows)
    return (time.perf_counter() - start) / repeat
