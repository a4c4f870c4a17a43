"""One retraining run from start to verdict.

start the run record → train in a child process with a time limit (its output is the run's
log) → the candidate is registered in stage "candidate" (never picked by `latest`) → the
gate compares it with the champion on the holdout → rejected (kept, stage "rejected", with
the reasons) or released by the pipeline's release callback (a canary rollout or an alias
move). Whatever happens, the run ends with a status and the ledger says why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.core.errors import ShipyardError
from shipyard.jobs.retrain.config import RayExecutor
from shipyard.jobs.retrain.gate import GateResult, GateSettings, validate
from shipyard.jobs.retrain.pipelines import Pipeline, Pipelines, Run, RunStatus
from shipyard.packaging.load import load_version
from shipyard.registry.models import ModelVersion

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 2000

ChampionFinder = Callable[[Pipeline], str | None]
Releaser = Callable[[Pipeline, ModelVersion, GateResult], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """How the training process opens the same registry."""

    database_url: str
    blob_location: str
    actor: str
    # SHIPYARD_HOME, where the prediction log is: a `logged` source reads it.
    home: str | None = None


class RunFailed(Exception):
    """Training did not produce a candidate; the message is the run's error."""


INTERRUPTED = "interrupted: the control plane shut down during training; start it again to retry"


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - limit))
            return file.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


class Runner:
    def __init__(
        self,
        pipelines: Pipelines,
        store: StoreSpec,
        runs_dir: Path,
        *,
        champion: ChampionFinder | None = None,
        release: Releaser | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.registry = pipelines.registry
        self.store = store
        self.runs_dir = runs_dir
        self.find_champion = champion or self.default_champion
        self.release = release or self.release_by_alias
        self.cwd = cwd or Path.cwd()
        # Training processes running now, so `interrupt` can stop them; after it, none starts.
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._interrupted = False

    def interrupt(self) -> None:
        """Kill every training process of this runner (its whole process group) and refuse
        new ones: each run in progress ends FAILED as interrupted, and can be run again. A
        control plane calls this when it stops, instead of waiting for up to `timeout_s`."""
        with self._lock:
            self._interrupted = True
            children = list(self._children)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)

    def run(
        self,
        name: str,
        trigger: str = "manual",
        details: dict[str, Any] | None = None,
        *,
        respect_cooldown: bool = True,
    ) -> Run:
        """Start and finish one run of pipeline `name`; returns the finished run."""
        return self.execute(self.start(name, trigger, details, respect_cooldown=respect_cooldown))

    def start(
        self,
        name: str,
        trigger: str = "manual",
        details: dict[str, Any] | None = None,
        *,
        respect_cooldown: bool = True,
    ) -> Run:
        """Record the run (Conflict while one runs; FailedPrecondition in the cool-down)."""
        return self.pipelines.start_run(name, trigger, details, respect_cooldown=respect_cooldown)

    def execute(self, run: Run) -> Run:
        """Train, judge and release a started run; always ends it with a status."""
        try:
            return self._execute(self.pipelines.get(run.pipeline), run)
        except BaseException as exc:
            message = exc.message if isinstance(exc, ShipyardError) else str(exc)
            if not isinstance(exc, RunFailed | ShipyardError):
                log.exception("run %d of %s failed", run.id, run.pipeline)
                message = f"{type(exc).__name__}: {message}"
            return self.pipelines.finish_run(run.id, RunStatus.FAILED, error=message)

    def _execute(self, pipeline: Pipeline, run: Run) -> Run:
        champion_ref = self.find_champion(pipeline)
        champion = self.registry.resolve(champion_ref) if champion_ref else None
        run_dir = self.runs_dir / str(run.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        result = self._train(pipeline, run, run_dir, champion)
        number = int(result["candidate_version"])
        self.pipelines.update_run(run.id, candidate_version=number, result=result)
        candidate = self.registry.get_version(pipeline.model, number)
        # No champion yet: nothing to compare with, the first model is released as is.
        gate = self._gate(pipeline, candidate, champion, run_dir) or _no_champion(candidate)
        verdict = {"gate": gate.to_json()}
        if not gate.passed:
            reason = "; ".join(gate.reasons)
            self.registry.set_stage(pipeline.model, number, "rejected", reason=reason)
            return self.pipelines.finish_run(
                run.id, RunStatus.REJECTED, error=reason, result=verdict
            )
        released = self.release(pipeline, candidate, gate)
        return self.pipelines.finish_run(
            run.id, RunStatus.SUCCEEDED, result={**verdict, "release": released}
        )

    def _train(
        self, pipeline: Pipeline, run: Run, run_dir: Path, champion: ModelVersion | None
    ) -> dict[str, Any]:
        request = {
            "run_id": run.id,
            "model": pipeline.model,
            "entry": pipeline.entry,
            "config": pipeline.config.to_json(),
            "champion": champion.ref if champion else None,
            "champion_version": champion.version if champion else None,
            "store": {
                "database_url": self.store.database_url,
                "blob_location": self.store.blob_location,
                "actor": self.store.actor,
                "home": self.store.home,
            },
            "cwd": str(self.cwd),
        }
        _write_private(run_dir / "request.json", json.dumps(request))
        log_path = run_dir / "run.log"
        self.pipelines.update_run(run.id, log_path=str(log_path))
        timeout = pipeline.config.timeout_s
        log_path.write_bytes(b"")  # exists (and empty) from the start; executors append to it
        if pipeline.config.ray is not None:
            code = self._on_ray(pipeline.config.ray, run_dir, timeout)
        else:
            code = self._in_child(run_dir, log_path, timeout)
        result = _read_result(run_dir / "result.json")
        if code != 0:
            error = result.get("error") or f"training exited with code {code}"
            raise RunFailed(str(error))
        if "candidate_version" not in result:
            raise RunFailed(f"training exited without a result; log: {log_tail(log_path)}")
        ray = pipeline.config.ray
        return {**result, "executor": {"ray": ray.address} if ray is not None else "process"}

    def _in_child(self, run_dir: Path, log_path: Path, timeout: float) -> int:
        """Train in a child process of this one; its exit code."""
        with log_path.open("ab") as output, self._lock:
            if self._interrupted:
                raise RunFailed(INTERRUPTED)
            child = subprocess.Popen(
                [sys.executable, "-m", "shipyard.jobs.retrain.child", str(run_dir)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                start_new_session=True,  # so a timeout kills whatever training started
            )
            self._children.add(child)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise RunFailed(f"training timed out after {timeout:g} s and was killed") from None
        finally:
            with self._lock:
                self._children.discard(child)
        if self._interrupted and code != 0:
            raise RunFailed(INTERRUPTED)
        return code

    def _on_ray(self, executor: RayExecutor, run_dir: Path, timeout: float) -> int:
        """Train as a task on the Ray cluster of the pipeline's config; its exit code."""
        from shipyard.jobs.retrain.ray_train import TaskFailed, train_on_ray

        if self._interrupted:
            raise RunFailed(INTERRUPTED)
        try:
            return train_on_ray(
                run_dir, executor, timeout_s=timeout, stopped=lambda: self._interrupted
            )
        except TimeoutError:
            raise RunFailed(
                f"training timed out after {timeout:g} s and its Ray task was cancelled"
            ) from None
        except TaskFailed as exc:
            raise RunFailed(INTERRUPTED if self._interrupted else str(exc)) from None

    def _gate(
        self,
        pipeline: Pipeline,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        run_dir: Path,
    ) -> GateResult | None:
        if champion is None:
            return None
        settings = pipeline.config.gate
        holdout = pd.read_parquet(run_dir / "holdout.parquet")
        return validate(
            load_version(self.registry, candidate.ref),
            load_version(self.registry, champion.ref),
            holdout,
            GateSettings(
                label=pipeline.config.label,
                tolerance=settings.tolerance,
                segments=settings.segments,
                max_latency_ratio=settings.max_latency_ratio,
            ),
        )

    # -- defaults when the app gives no deployment-aware callbacks ---------------------------

    def default_champion(self, pipeline: Pipeline) -> str | None:
        """The release alias's version when it exists, else the latest released version."""
        release = pipeline.config.release
        if release is not None and release.alias is not None:
            model = self.registry.get_model(pipeline.model)
            if release.alias in model.aliases:
                return f"{pipeline.model}@{release.alias}"
        try:
            return self.registry.resolve(pipeline.model).ref
        except ShipyardError:
            return None  # no released version yet: the first candidate has no champion

    def release_by_alias(
        self, pipeline: Pipeline, candidate: ModelVersion, gate: GateResult
    ) -> dict[str, Any]:
        """Release the candidate (stage cleared) and move the pipeline's alias to it."""
        self.registry.set_stage(pipeline.model, candidate.version, None, reason="passed the gate")
        release = pipeline.config.release
        if release is None or release.alias is None:
            return {"released": candidate.ref}
        self.registry.set_alias(
            pipeline.model, release.alias, candidate.version, reason=f"retrained ({gate.champion})"
        )
        return {"released": candidate.ref, "alias": release.alias}


def _write_private(path: Path, text: str) -> None:
    """Owner-only: the request holds the config as given, database passwords included."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _no_champion(candidate: ModelVersion) -> GateResult:
    return GateResult(candidate.ref, "", "", 0, ())
