"""The demo's serving steps: start `shipyard serve` and call it the way clients do, then
release a new version to a deployment through a canary that the rollout controller judges."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from shipyard.cli.deploy import revision_line
from shipyard.cli.output import console
from shipyard.cli.rollout import numbers_text, rollout_line
from shipyard.client import Registry
from shipyard.client.deployments import Deployments
from shipyard.core.errors import Unavailable
from shipyard.rollouts.controller import Controller
from shipyard.rollouts.policy import Gates, LatencyGate, Policy
from shipyard.rollouts.progress import Rollout


def serve_and_call(name: str, rows: pd.DataFrame) -> None:
    """Serve NAME@production on a free port, call it over OIP v2 and MLflow, then stop it."""
    port = free_port()
    args = ["serve", f"{name}@production", "--http-port", str(port), "--workers", "1", "--no-grpc"]
    with serving(args, port) as base:
        _call(base, name, rows)


@contextlib.contextmanager
def serving(args: list[str], port: int) -> Iterator[str]:
    """Run `shipyard ARGS` (a data plane on `port`) until the block ends; yields its URL."""
    console.print(f"$ shipyard {' '.join(args)}", highlight=False, markup=False)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "shipyard", *args, "--no-access-log"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_ready(base, server, log)
            yield base
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=30)
            console.print(f"SIGTERM → drained and exited with {code}")


def _call(base: str, name: str, rows: pd.DataFrame) -> None:
    meta = request(f"{base}/v2/models/{name}")
    console.print(
        f"GET /v2/models/{name} → platform {meta['platform']}, versions {meta['versions']}, "
        f"{len(meta['inputs'])} inputs"
    )
    inputs = [
        {"name": str(c), "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()}
        for c in rows.columns
    ]
    result = request(f"{base}/v2/models/{name}/infer", {"inputs": inputs})
    outputs = {o["name"]: o["data"] for o in result["outputs"]}
    console.print(
        f"POST /v2/models/{name}/infer ({len(rows)} rows) → predict {outputs['predict']} "
        f"from version {result['model_version']}"
    )
    split = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    mlflow = request(f"{base}/invocations", split)
    console.print(f"POST /invocations (MLflow dataframe_split) → {mlflow['predictions']}")


def request(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310
        url, data=data, method="POST" if data else "GET", headers=headers or {}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (our own 127.0.0.1 server)
        return json.loads(response.read())


def _wait_ready(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise Unavailable(f"shipyard serve exited with {server.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise Unavailable("shipyard serve did not become ready within 60 s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the release step: a canary through a data plane, judged by the controller ---------------

# Accelerated time: three-second windows (the data plane writes its statistics every second)
# and a small, but not tiny, sample per variant. The
# latency gate is looser than the default: v2 is a 50-tree forest replacing a depth-2 tree.
DEMO_POLICY = Policy(
    steps=(25, 50, 100),
    window_s=3.0,
    min_requests=40,
    max_windows=5,
    gates=Gates(latency=LatencyGate(max_ratio=2.0)),
)
RELEASE_DEADLINE_S = 120.0
MAX_REQUESTS = 20_000


def release(
    registry: Registry, deployment: str, name: str, v1: int, v2: int, rows: pd.DataFrame
) -> Rollout:
    """Deploy v1 as DEPLOYMENT, canary v2 with a policy, send traffic through a data plane
    serving the deployment while the controller judges each window, print its decisions."""
    with Deployments(registry) as releases:
        names = {d.name for d in releases.list()}
        if deployment in names and releases.rollout(deployment) is not None:
            releases.abort(deployment, reason="demo restarted")  # left by an interrupted demo
        first = releases.deploy(deployment, f"{name}:{v1}", reason="demo: first release")
        console.print(revision_line(first), highlight=False, markup=False)
        with data_plane(deployment) as base:
            canary = releases.deploy(
                deployment,
                f"{name}:{v2}",
                strategy="canary",
                policy=DEMO_POLICY,
                reason="demo: v2 beats v1 offline",
            )
            console.print(revision_line(canary), highlight=False, markup=False)
            answered = _follow(base, deployment, rows, releases)
        return _outcome(releases, deployment, answered)


def follow_rollout(releases: Deployments, deployment: str, rows: pd.DataFrame) -> Rollout:
    """Serve DEPLOYMENT, whose rollout has started, and send it `rows` until the controller
    ends the rollout; print its decisions."""
    with data_plane(deployment) as base:
        answered = _follow(base, deployment, rows, releases)
    return _outcome(releases, deployment, answered)


def data_plane(deployment: str) -> contextlib.AbstractContextManager[str]:
    """`shipyard serve --deployment DEPLOYMENT` on a free port while the block runs."""
    port = free_port()
    args = ["serve", "--deployment", deployment, "--http-port", str(port), "--workers", "1"]
    return serving([*args, "--no-grpc"], port)


def _follow(
    base: str, deployment: str, rows: pd.DataFrame, releases: Deployments
) -> dict[str, int]:
    rollout = releases.rollout(deployment)
    assert rollout is not None  # a canary with a policy starts one
    console.print(rollout_line(rollout), highlight=False, markup=False)
    return _drive(base, deployment, rows, releases, Controller(releases.rollouts))


def _outcome(releases: Deployments, deployment: str, answered: dict[str, int]) -> Rollout:
    final = releases.latest_rollout(deployment)
    shares = ", ".join(f"{v} {n:,}" for v, n in sorted(answered.items()))
    console.print(f"requests answered per version: {shares}", highlight=False, markup=False)
    console.print("the rollout's decisions, from the ledger:")
    for entry in releases.history(deployment):
        if entry.action.startswith("rollout.") and entry.details.get("rollout") == final.id:
            why = f" — {entry.reason}" if entry.reason else ""
            numbers = entry.details.get("numbers")
            shown = f"\n    {numbers_text(numbers)}" if numbers else ""
            console.print(
                f"  {entry.action}{why}{shown}", highlight=False, markup=False, soft_wrap=True
            )
    console.print(
        f"rollout {final.state.value}; now {revision_line(releases.get(deployment).revision)}",
        highlight=False,
    )
    return final


def _drive(
    base: str, deployment: str, rows: pd.DataFrame, releases: Deployments, controller: Controller
) -> dict[str, int]:
    """One row per request, round the rows, until the rollout ends (bounded in time and
    count); the controller looks at the windows between requests, as often as a control
    plane would."""
    columns = [str(c) for c in rows.columns]
    records = rows.to_numpy().tolist()
    answered: dict[str, int] = {}
    deadline = time.monotonic() + RELEASE_DEADLINE_S
    next_tick = time.monotonic()
    for count in range(MAX_REQUESTS):
        if time.monotonic() >= next_tick:
            for decision in controller.tick_now():
                console.print(
                    f"controller: {decision.outcome} at {decision.weight}%", highlight=False
                )
            if releases.rollout(deployment) is None or time.monotonic() > deadline:
                break
            next_tick = time.monotonic() + 0.5
        inputs = row_inputs(columns, records[count % len(records)])
        result = request(f"{base}/v2/models/{deployment}/infer", {"inputs": inputs})
        version = str(result["model_version"])  # a deployment answers with `name:version`
        answered[version] = answered.get(version, 0) + 1
    return answered


def row_inputs(columns: list[str], row: list[Any]) -> list[dict[str, Any]]:
    """One row as OIP v2 inputs, a tensor of shape [1] per column."""
    return [
        {"name": c, "datatype": "FP64", "shape": [1], "data": [v]}
        for c, v in zip(columns, row, strict=True)
    ]
