"""HTTP serving throughput and latency: shipyard against its peers, side by side in one run.

One model (a 20-tree depth-8 random forest on 20 features, and a larger 200-tree depth-12
one) is trained here, exported in each peer's format and served by:

    shipyard            `shipyard serve NAME@production --workers 2` (OIP JSON, metrics on)
    mlserver            MLServer 1.7.1 + mlserver-sklearn, parallel_workers=2
    mlserver-batching   the same with adaptive batching (max_batch_size/max_batch_time)
    mlflow              `mlflow models serve --env-manager local --workers 2`
    floor               a bare ASGI app on uvicorn --workers 2 calling onnxruntime

Each peer runs in its own venv under bench/.venvs/ (created on first use, with a stamp),
on a free 127.0.0.1 port, and is loaded with wrk at each concurrency (single-row requests).
A second table gives rows/s for 256-row binary-tensor requests to shipyard against
in-process onnxruntime on the same rows.

    .venv/bin/python bench/serving.py [--quick] [--duration 10] [--concurrency 1,16,64]
        [--peers shipyard,mlserver,mlserver-batching,mlflow,floor] [--models small,large]

Bounded: every wrk cell runs for --duration seconds (3 with --quick) against 127.0.0.1 and
stops by itself; every server is killed (its whole process group) at the end, on error
and on Ctrl-C. The table is printed and written to bench/out/serving.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

# Run as a script, bench/ is on sys.path (`peers.venvs`); mypy sees the file as bench.serving.
if TYPE_CHECKING:
    from bench.peers import venvs as peer_venvs
else:
    from peers import venvs as peer_venvs
VENVS, venv_versions = peer_venvs.VENVS, peer_venvs.venv_versions

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out" / "serving.md"
FLOOR_APP = BENCH / "peers" / "floor_app.py"
SHIPYARD = ROOT / ".venv" / "bin" / "shipyard"

ALL_PEERS = ("shipyard", "shipyard-nolog", "mlserver", "mlserver-batching", "mlflow", "floor")
WORKERS = 2
BINARY_ROWS = 256
# MLServer's adaptive batching defaults (--mlserver-batch SIZE,MS overrides them).
MLSERVER_BATCH = (16, 5.0)
NOT_RUNNABLE = "n/a (not yet runnable)"


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    key: str
    label: str
    trees: int
    depth: int


MODEL_SPECS = {
    "small": ModelSpec("small", "RF 20x d8", 20, 8),
    "large": ModelSpec("large", "RF 200x d12", 200, 12),
}


@dataclass
class Trained:
    spec: ModelSpec
    model: Any
    X: np.ndarray
    onnx_path: Path
    joblib_path: Path


def train(spec: ModelSpec, workdir: Path) -> Trained:
    import joblib
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(5000, 20, n_informative=10, random_state=0)
    X = X.astype(np.float32)
    model = RandomForestClassifier(spec.trees, max_depth=spec.depth, random_state=0).fit(X, y)
    folder = workdir / "models" / spec.key
    folder.mkdir(parents=True)
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(to_onnx(model, X[:5], options={"zipmap": False}).SerializeToString())
    joblib_path = folder / "model.joblib"
    joblib.dump(model, joblib_path)
    return Trained(spec, model, X, onnx_path, joblib_path)


# --------------------------------------------------------------------------- peer venvs


def _sklearn_pin() -> str:
    import sklearn

    return f"scikit-learn=={sklearn.__version__}"


def peer_packages(venv: str) -> list[str]:
    """What each peer venv gets from PyPI. scikit-learn matches the training side so the
    joblib/pickle files load without version warnings."""
    if venv == "mlserver":
        # MLServer 1.7.1's parallel workers die at start with uvloop >= 0.22.
        return ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", _sklearn_pin()]
    if venv == "mlflow":
        # uvicorn[standard]: with plain asyncio, `--workers 2` sockets miss TCP_NODELAY
        # (proto 0) and every keep-alive response waits ~40 ms for a delayed ACK.
        return ["mlflow>=3,<4", "uvicorn[standard]", _sklearn_pin()]
    if venv == "floor":
        return ["uvicorn[standard]", "onnxruntime", "orjson", "numpy"]
    raise ValueError(venv)


def venv_for(peer: str) -> str | None:
    return {"mlserver": "mlserver", "mlserver-batching": "mlserver", "mlflow": "mlflow",
            "floor": "floor"}.get(peer)  # fmt: skip


def ensure_venv(name: str) -> Path:
    """bench/.venvs/NAME with this peer's packages (bench/peers/venvs.py builds it once)."""
    return peer_venvs.ensure_venv(name, peer_packages(name))


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    peer: str
    model: str
    base: str
    infer_path: str
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


class Processes:
    """Every server started here, in its own process group, killed on close."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], *, env: dict[str, str], log: Path,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
        out = log.open("wb")
        try:
            proc = subprocess.Popen(
                list(argv), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        finally:
            out.close()
        self._procs.append(proc)
        return proc

    def close(self, grace_s: float = 5.0) -> None:
        """SIGTERM every group at once, wait up to `grace_s` in all, then SIGKILL them."""
        procs, self._procs = list(self._procs), []
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")  # fmt: skip
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)
    return env


class StartFailed(RuntimeError):
    """A server died or never became ready; `reason` is one line for the table."""

    def __init__(self, reason: str, tail: str) -> None:
        super().__init__(f"{reason}\n{tail}")
        self.reason = reason


def _last_error_line(tail: str) -> str:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception)\b", line):
            return line
    return lines[-1] if lines else "no output"


def wait_ready(server: Server, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log_tail()
            raise StartFailed(
                f"exited {server.process.returncode}: {_last_error_line(tail)[:150]}", tail
            )
        try:
            with urllib.request.urlopen(server.base + path, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise StartFailed(f"not ready after {timeout_s:.0f} s ({last[:100]})", server.log_tail())


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float = 30) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        data: bytes = response.read()
        return data


# --------------------------------------------------------------------------- request bodies


@dataclass(frozen=True)
class Body:
    content: bytes
    headers: dict[str, str]
    rows: int


def oip_json(row: np.ndarray, name: str = "input-0") -> Body:
    request = {"inputs": [{"name": name, "shape": list(row.shape), "datatype": "FP32",
                           "data": row.ravel().tolist()}]}  # fmt: skip
    return Body(json.dumps(request).encode(), {"Content-Type": "application/json"}, len(row))


def mlflow_json(row: np.ndarray) -> Body:
    request = {"inputs": row.tolist()}
    return Body(json.dumps(request).encode(), {"Content-Type": "application/json"}, len(row))


def oip_binary(batch: np.ndarray, name: str = "input-0") -> Body:
    """KServe binary tensor extension: JSON header, then the raw little-endian FP32 bytes."""
    raw = np.ascontiguousarray(batch, dtype="<f4").tobytes()
    header = {"inputs": [{"name": name, "shape": list(batch.shape), "datatype": "FP32",
                          "parameters": {"binary_data_size": len(raw)}}]}  # fmt: skip
    head = json.dumps(header).encode()
    return Body(
        head + raw,
        {"Content-Type": "application/octet-stream",
         "Inference-Header-Content-Length": str(len(head))},
        len(batch),
    )  # fmt: skip


# --------------------------------------------------------------------------- peers


def start_peer(
    peer: str, trained: Trained, work: Path, procs: Processes, args: argparse.Namespace
) -> Server:
    if peer == "shipyard":
        return start_shipyard(trained, work, procs)
    if peer == "shipyard-nolog":  # what the prediction log costs, in the same run
        return start_shipyard(trained, work, procs, "--no-log-predictions")
    if peer in ("mlserver", "mlserver-batching"):
        batch = args.mlserver_batch if peer == "mlserver-batching" else None
        return start_mlserver(trained, work, procs, batch=batch)
    if peer == "mlflow":
        return start_mlflow(trained, work, procs)
    if peer == "floor":
        return start_floor(trained, work, procs)
    raise ValueError(peer)


def shipyard_runnable() -> bool:
    if not SHIPYARD.exists():
        return False
    result = subprocess.run([str(SHIPYARD), "serve", "--help"], capture_output=True,
                            text=True, env=base_env())  # fmt: skip
    return result.returncode == 0


def start_shipyard(trained: Trained, work: Path, procs: Processes, *extra: str) -> Server:
    import shipyard
    from shipyard.app.settings import Settings

    home = work / "shipyard-home"
    name = f"rf-{trained.spec.key}"
    with shipyard.Registry(settings=Settings(home=home)) as registry:
        try:
            registry.get_model(name)
        except Exception:
            version = registry.register(trained.model, name, sample_input=trained.X[:100])
            registry.set_alias(name, "production", version.version)
    port = free_port()
    env = base_env()
    env["SHIPYARD_HOME"] = str(home)
    log = work / f"shipyard{''.join(extra)}-{trained.spec.key}.log"
    argv = [str(SHIPYARD), "serve", f"{name}@production", "--http-port", str(port),
            "--grpc-port", str(free_port()), "--workers", str(WORKERS), *extra]  # fmt: skip
    proc = procs.start(argv, env=env, log=log, cwd=work)
    server = Server("shipyard", trained.spec.key, f"http://127.0.0.1:{port}",
                    f"/v2/models/{name}/infer", proc, log)  # fmt: skip
    wait_ready(server, f"/v2/models/{name}/ready", 120)
    return server


def start_mlserver(
    trained: Trained, work: Path, procs: Processes, *, batch: tuple[int, float] | None
) -> Server:
    venv = ensure_venv("mlserver")
    tag = "mlserver-batching" if batch else "mlserver"
    root = work / f"{tag}-{trained.spec.key}"
    name = f"rf-{trained.spec.key}"
    model_dir = root / name
    model_dir.mkdir(parents=True)
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": WORKERS,
        "debug": False,
    }
    model_settings: dict[str, Any] = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(trained.joblib_path)},
    }
    if batch:
        model_settings["max_batch_size"] = batch[0]
        model_settings["max_batch_time"] = batch[1] / 1000
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    env = base_env()
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    log = work / f"{tag}-{trained.spec.key}.log"
    proc = procs.start([str(venv / "bin" / "mlserver"), "start", str(root)], env=env, log=log,
                       cwd=root)  # fmt: skip
    server = Server(tag, trained.spec.key, f"http://127.0.0.1:{port}",
                    f"/v2/models/{name}/infer", proc, log)  # fmt: skip
    wait_ready(server, f"/v2/models/{name}/ready", 180)
    return server


MLFLOW_SAVE = textwrap.dedent(
    """
    import sys, joblib, mlflow.sklearn
    model = joblib.load(sys.argv[1])
    # MLflow 3 defaults to skops, which refuses tree models unless their types are
    # trusted; cloudpickle is what MLflow 2 used and what most deployments still have.
    mlflow.sklearn.save_model(model, sys.argv[2], serialization_format="cloudpickle")
    """
)


def start_mlflow(trained: Trained, work: Path, procs: Processes) -> Server:
    venv = ensure_venv("mlflow")
    env = base_env()
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"file://{work / 'mlruns'}"
    model_path = work / f"mlflow-model-{trained.spec.key}"
    if not model_path.exists():
        saved = subprocess.run(
            [str(venv / "bin" / "python"), "-c", MLFLOW_SAVE, str(trained.joblib_path),
             str(model_path)],
            env=env, cwd=work, capture_output=True, text=True,
        )  # fmt: skip
        if saved.returncode != 0:
            raise RuntimeError(f"mlflow save_model failed:\n{saved.stderr[-2000:]}")
    port = free_port()
    log = work / f"mlflow-{trained.spec.key}.log"
    argv = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model_path),
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
            "--workers", str(WORKERS)]  # fmt: skip
    proc = procs.start(argv, env=env, log=log, cwd=work)
    server = Server("mlflow", trained.spec.key, f"http://127.0.0.1:{port}", "/invocations",
                    proc, log)  # fmt: skip
    wait_ready(server, "/ping", 180)
    return server


def start_floor(trained: Trained, work: Path, procs: Processes) -> Server:
    venv = ensure_venv("floor")
    env = base_env()
    env["FLOOR_MODEL"] = str(trained.onnx_path)
    port = free_port()
    log = work / f"floor-{trained.spec.key}.log"
    argv = [str(venv / "bin" / "uvicorn"), "floor_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(WORKERS), "--no-access-log",
            "--log-level", "warning"]  # fmt: skip
    proc = procs.start(argv, env=env, log=log, cwd=FLOOR_APP.parent)
    server = Server("floor", trained.spec.key, f"http://127.0.0.1:{port}",
                    "/v2/models/floor/infer", proc, log)  # fmt: skip
    wait_ready(server, "/ready", 60)
    return server


def single_row_body(peer: str, trained: Trained) -> Body:
    row = trained.X[:1]
    return mlflow_json(row) if peer == "mlflow" else oip_json(row)


def peer_config(peer: str, args: argparse.Namespace) -> str:
    size, wait_ms = args.mlserver_batch
    return {
        "shipyard": f"{WORKERS} workers, OIP JSON, defaults (metrics, access log, prediction log)",
        "shipyard-nolog": f"{WORKERS} workers, OIP JSON, defaults but --no-log-predictions",
        "mlserver": f"parallel_workers={WORKERS}, sklearn runtime",
        "mlserver-batching": f"parallel_workers={WORKERS}, adaptive batching "
        f"max {size} rows / {wait_ms:g} ms",
        "mlflow": f"--workers {WORKERS}, /invocations, uvicorn with uvloop+httptools",
        "floor": f"uvicorn --workers {WORKERS}, bare ASGI + onnxruntime",
    }[peer]


# --------------------------------------------------------------------------- load (wrk)


@dataclass
class Cell:
    peer: str
    config: str
    model: str
    concurrency: int
    rows: int = 1
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int | None = None
    note: str = ""
    error_detail: str = ""
    samples: list[Sample] = field(default_factory=list)

    def finish(self) -> None:
        """Median req/s, p50 and p99 over the rounds; errors summed."""
        if not self.samples:
            return
        self.rps = float(np.median([s.rps for s in self.samples]))
        self.p50_ms = float(np.median([s.p50_ms for s in self.samples]))
        self.p99_ms = float(np.median([s.p99_ms for s in self.samples]))
        self.errors = sum(s.errors for s in self.samples)
        kinds: dict[str, int] = {}
        for sample in self.samples:
            for kind, count in sample.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
        done = sum(s.done for s in self.samples)
        if done and self.errors == done:
            self.note = "all requests failed"
        self.error_detail = ", ".join(f"{kind} {count}" for kind, count in kinds.items())


WRK_LUA = """
local f = assert(io.open("{body}", "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
{headers}
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Sample(NamedTuple):
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    done: int
    kinds: dict[str, int]


def parse_wrk(output: str) -> Sample:
    """req/s, p50 ms, p99 ms, errors (non-2xx + socket errors) by kind, completed requests."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    kinds: dict[str, int] = {}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non2xx:
        kinds["non-2xx"] = int(non2xx.group(1))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sock:
        for kind, count in zip(("connect", "read", "write", "timeout"), sock.groups(), strict=True):
            if int(count):
                kinds[kind] = int(count)
    return Sample(rps, p50, p99, sum(kinds.values()), done, kinds)


def write_lua(body: Body, folder: Path) -> Path:
    digest = hashlib.sha1(body.content).hexdigest()[:12]
    body_path = folder / f"body-{digest}.bin"
    body_path.write_bytes(body.content)
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in body.headers.items())
    script = folder / f"post-{digest}.lua"
    script.write_text(WRK_LUA.format(body=body_path, headers=headers))
    return script


def run_wrk(url: str, script: Path, concurrency: int, duration_s: float) -> str:
    threads = max(1, min(2, concurrency))
    argv = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
            "--timeout", "5s", "--latency", "-s", str(script), url]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True,
                            timeout=duration_s + 60)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@dataclass
class Lane:
    """One server and one request body, with a cell per concurrency."""

    server: Server
    url: str
    script: Path
    cells: list[Cell]


def open_lane(server: Server, body: Body, cells: list[Cell], work: Path) -> Lane | None:
    """Check one request answers 200 and warm up for 1 s; None (cells noted) if it fails."""
    url = server.base + server.infer_path
    try:
        reply = post(url, body.content, body.headers)
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode(errors="replace")
        for cell in cells:
            cell.note = f"probe failed: HTTP {exc.code} {detail}"
        return None
    except (urllib.error.URLError, OSError) as exc:
        for cell in cells:
            cell.note = f"probe failed: {exc}"
        return None
    print(f"  {server.peer} rows={body.rows} probe ok: {reply[:100]!r}", flush=True)
    script = write_lua(body, work)
    run_wrk(url, script, 16, 1)  # warm-up: caches, pools, lazy imports, workers
    return Lane(server, url, script, cells)


def run_lanes(lanes: list[Lane], rounds: int, duration_s: float) -> None:
    """Interleave: each round runs every lane's cell at one concurrency before moving on, so
    background load on a shared machine hits every peer alike; cells keep every sample."""
    depth = max((len(lane.cells) for lane in lanes), default=0)
    for round_ in range(1, rounds + 1):
        for index in range(depth):
            for lane in lanes:
                if index < len(lane.cells):
                    run_cell(lane, lane.cells[index], duration_s, round_)


def run_cell(lane: Lane, cell: Cell, duration_s: float, round_: int) -> None:
    if cell.note:
        return
    if lane.server.process.poll() is not None:
        cell.note = f"server exited ({lane.server.process.returncode})"
        return
    try:
        output = run_wrk(lane.url, lane.script, cell.concurrency, duration_s)
        sample = parse_wrk(output)
    except Exception as exc:
        cell.note = f"load failed: {str(exc).splitlines()[0][:120]}"
        print(f"  {cell.peer}: {cell.note}\n{lane.server.log_tail()}", flush=True)
        return
    cell.samples.append(sample)
    rps, p50, p99, errors, _, kinds = sample
    print(f"  r{round_} {cell.peer:18} {cell.model:6} rows={cell.rows:<4} "
          f"c={cell.concurrency:<3} {rps:9.0f} req/s  p50 {p50:7.2f} ms  "
          f"p99 {p99:7.2f} ms  errors {errors} {kinds or ''}", flush=True)  # fmt: skip
    if errors:
        tail = [line for line in lane.server.log_tail(200).splitlines()
                if "error" in line.lower() or "exception" in line.lower()][-3:]  # fmt: skip
        for line in tail:
            print(f"    log: {line[:200]}", flush=True)


# --------------------------------------------------------------------------- in-process ORT


def inprocess_rows_per_s(
    trained: Trained, budget_s: float, threads: int = 1
) -> tuple[float, float, float]:
    """rows/s, p50 ms, p99 ms of onnxruntime.run on 256 rows in this process, from one
    Python thread with `threads` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(trained.onnx_path), options,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    name = session.get_inputs()[0].name
    batch = np.ascontiguousarray(trained.X[:BINARY_ROWS])
    session.run(None, {name: batch})
    times = []
    start = time.perf_counter()
    deadline = start + budget_s
    while True:
        t0 = time.perf_counter()
        session.run(None, {name: batch})
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if t1 >= deadline:
            break
    elapsed = time.perf_counter() - start
    ms = np.array(times) * 1e3
    return (len(times) * BINARY_ROWS / elapsed, float(np.percentile(ms, 50)),
            float(np.percentile(ms, 99)))  # fmt: skip


# --------------------------------------------------------------------------- report


def machine_header(versions: dict[str, str], load_before: str) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrk_version = (wrk.stdout or wrk.stderr).split(" [")[0].strip() or "wrk"
    peers = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC} · {socket.gethostname()} · {cpu} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()} · {wrk_version} "
        f"(load generator on the same cores) · 1-min load average before (others) / after "
        f"{load_before} / {load_average()} · {peers}"
    )


def load_average() -> str:
    """1-minute load average: others' work on the same cores shows up here."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def target_lines(cells: list[Cell]) -> list[str]:
    """Issue 4's targets, for shipyard at concurrency 16: >= 10x MLServer's best req/s,
    >= 0.5x the floor (0.8x ambition), p99 under 5 ms."""

    def rps(peers: Sequence[str], model: str) -> float | None:
        values = [c.rps for c in cells if c.peer in peers and c.model == model
                  and c.concurrency == 16 and c.rps is not None]  # fmt: skip
        return max(values) if values else None

    lines = []
    for c in cells:
        if c.peer != "shipyard" or c.concurrency != 16 or c.rps is None or c.p99_ms is None:
            continue
        mlserver = rps(("mlserver", "mlserver-batching"), c.model)
        floor = rps(("floor",), c.model)
        checks = [f"p99 {c.p99_ms:.1f} ms {'<' if c.p99_ms < 5 else '>='} 5 ms"]
        if mlserver:
            ratio = c.rps / mlserver
            checks.append(f"{ratio:.1f}x MLServer best ({'met' if ratio >= 10 else 'missed'})")
        if floor:
            ratio = c.rps / floor
            checks.append(f"{ratio:.2f}x floor ({'met' if ratio >= 0.5 else 'missed'})")
        lines.append(f"- {MODEL_SPECS[c.model].label}: " + ", ".join(checks))
    if lines:
        lines = ["", "Targets at concurrency 16 (>= 10x MLServer best, >= 0.5x floor, "
                 "p99 < 5 ms):", "", *lines]  # fmt: skip
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}x"


def render(header: str, cells: list[Cell], binary: list[Cell],
           inproc: dict[tuple[str, int], tuple[float, float, float]],
           args: argparse.Namespace) -> str:  # fmt: skip
    def best(peers: Sequence[str], model: str, conc: int) -> float | None:
        values = [c.rps for c in cells
                  if c.peer in peers and c.model == model and c.concurrency == conc
                  and c.rps is not None and not c.note]  # fmt: skip
        return max(values) if values else None

    lines = [
        "# Serving: shipyard and peers, single-row requests",
        "",
        header,
        "",
        f"wrk -t2 -c{{C}} -d{args.duration:g}s --latency on 127.0.0.1, {WORKERS} workers per "
        f"server, OMP_NUM_THREADS=1. All peers of a model are up at once (idle) and loaded "
        f"one at a time, interleaved: {args.rounds} round(s) over peers and concurrencies, "
        "median req/s, p50 and p99 shown. Errors = non-2xx + socket errors (summed). "
        "Ratios (shipyard rows): req/s over MLServer's best (plain or batching) and over the "
        "floor at the same model and concurrency.",
        "",
        "| server | config | model | concurrency | req/s | p50 ms | p99 ms | errors "
        "| vs MLServer best | vs floor |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        label = MODEL_SPECS[c.model].label
        if c.note and c.rps is None:
            lines.append(f"| {c.peer} | {c.config} | {label} | {c.concurrency} | {_cell(c.note)} "
                         "| | | | | |")  # fmt: skip
            continue
        vs_ml = vs_floor = ""
        if c.peer.startswith("shipyard"):
            vs_ml = _ratio(c.rps, best(("mlserver", "mlserver-batching"), c.model,
                                       c.concurrency))  # fmt: skip
            vs_floor = _ratio(c.rps, best(("floor",), c.model, c.concurrency))
        detail = "; ".join(text for text in (c.error_detail, c.note) if text)
        errors = f"{c.errors}" + (f" ({_cell(detail)})" if detail else "")
        lines.append(
            f"| {c.peer} | {c.config} | {label} | {c.concurrency} | {_num(c.rps, '.0f')} "
            f"| {_num(c.p50_ms, '.2f')} | {_num(c.p99_ms, '.2f')} | {errors} "
            f"| {vs_ml} | {vs_floor} |"
        )
    lines += target_lines(cells)
    lines += [
        "",
        f"## {BINARY_ROWS}-row requests, binary tensor extension (rows/s)",
        "",
        "shipyard: JSON header + raw FP32 bytes (`Inference-Header-Content-Length`). "
        "In-process: `onnxruntime.InferenceSession.run` on the same rows from one Python "
        f"thread, no HTTP, with 1 and {WORKERS} intra-op threads (shipyard has {WORKERS} "
        "workers, and wrk shares the cores). Ratios are against the 1-thread row.",
        "",
        "| server | model | concurrency | req/s | rows/s | p50 ms | p99 ms | errors "
        "| vs in-process ORT (1 thread) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (key, threads), (rows_s, p50, p99) in inproc.items():
        ref = inproc[key, 1][0]
        lines.append(f"| in-process onnxruntime, {threads} thread(s) | {MODEL_SPECS[key].label} "
                     f"| 1 | {rows_s / BINARY_ROWS:.0f} | {rows_s:,.0f} | {p50:.2f} "
                     f"| {p99:.2f} | 0 | {_ratio(rows_s, ref)} |")  # fmt: skip
    for c in binary:
        label = MODEL_SPECS[c.model].label
        if c.rps is None:
            lines.append(f"| {c.peer} | {label} | {c.concurrency} | {_cell(c.note)} | | | | | |")
            continue
        rows_s = c.rps * c.rows
        base = inproc.get((c.model, 1), (None, 0.0, 0.0))[0]
        lines.append(
            f"| {c.peer} | {label} | {c.concurrency} | {c.rps:.0f} | {rows_s:,.0f} "
            f"| {_num(c.p50_ms, '.2f')} | {_num(c.p99_ms, '.2f')} | {c.errors}"
            f"{f' ({c.error_detail})' if c.error_detail else ''} "
            f"| {_ratio(rows_s, base)} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--peers", default=",".join(ALL_PEERS))
    parser.add_argument("--models", default="small,large")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk cell")
    parser.add_argument("--quick", action="store_true", help="3 s per cell")
    parser.add_argument("--rounds", type=int, default=1,
                        help="interleaved rounds per cell; the table shows medians")  # fmt: skip
    parser.add_argument("--binary-concurrency", type=int, default=16,
                        help="concurrency of the 256-row binary cells")  # fmt: skip
    parser.add_argument("--setup-only", action="store_true",
                        help="create the peer venvs and exit")  # fmt: skip
    parser.add_argument("--mlserver-batch", default=",".join(f"{v:g}" for v in MLSERVER_BATCH),
                        help="MLServer adaptive batching: max_batch_size,max_batch_time_ms")  # fmt: skip
    parser.add_argument("--markdown", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 3.0
    if args.rounds < 1 or args.duration <= 0:
        parser.error("--rounds must be >= 1 and --duration > 0")
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(ALL_PEERS)
    if unknown:
        parser.error(f"unknown peers: {sorted(unknown)}; known: {', '.join(ALL_PEERS)}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(args.models) - set(MODEL_SPECS):
        parser.error(f"models are {', '.join(MODEL_SPECS)}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    size, wait_ms = args.mlserver_batch.split(",")
    args.mlserver_batch = (int(size), float(wait_ms))
    return args


def ensure_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (it is in Debian)")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT both unwind through the finally that kills the servers (SIGINT
    explicitly too: a background job of a non-interactive shell starts with it ignored)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def collect_versions(peers: Sequence[str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    if "shipyard" in peers:
        from importlib.metadata import version

        versions["shipyard"] = version("shipyard")
    wanted = {"mlserver": ("mlserver", "mlserver-sklearn", "uvloop", "scikit-learn"),
              "mlflow": ("mlflow", "scikit-learn"),
              "floor": ("uvicorn", "onnxruntime")}  # fmt: skip
    for venv, dists in wanted.items():
        if any(venv_for(p) == venv for p in peers) and (VENVS / venv).exists():
            for dist, ver in venv_versions(VENVS / venv, dists).items():
                versions.setdefault(dist if dist != "scikit-learn" else f"sklearn({venv})", ver)
    return versions


def start_lanes(peer: str, trained: Trained, args: argparse.Namespace, work: Path,
                procs: Processes, cells: list[Cell], binary: list[Cell]) -> list[Lane]:  # fmt: skip
    """Start `peer` for one model, probe and warm it; its cells go into `cells`/`binary`."""
    key = trained.spec.key
    mine = [Cell(peer, peer_config(peer, args), key, c) for c in args.concurrency]
    cells.extend(mine)
    bin_cells = (
        [Cell(peer, "binary", key, args.binary_concurrency, rows=BINARY_ROWS)]
        if peer == "shipyard" else []
    )  # fmt: skip
    binary.extend(bin_cells)
    if peer.startswith("shipyard") and not shipyard_runnable():
        for cell in mine + bin_cells:
            cell.note = NOT_RUNNABLE
        print(f"[{peer}] {NOT_RUNNABLE}: `shipyard serve --help` fails", flush=True)
        return []
    print(f"[{peer}] starting for {trained.spec.label}", flush=True)
    started = time.monotonic()
    try:
        server = start_peer(peer, trained, work, procs, args)
    except Exception as exc:
        print(f"[{peer}] failed to start: {exc}", flush=True)
        reason = exc.reason if isinstance(exc, StartFailed) else str(exc).splitlines()[0][:150]
        prefix = NOT_RUNNABLE[:-1] + ": " if peer == "shipyard" else "failed to start: "
        for cell in mine + bin_cells:
            cell.note = f"{prefix}{reason}" + (")" if peer == "shipyard" else "")
        return []
    print(f"[{peer}] ready in {time.monotonic() - started:.1f} s", flush=True)
    lanes = [open_lane(server, single_row_body(peer, trained), mine, work)]
    if bin_cells:
        lanes.append(open_lane(server, oip_binary(trained.X[:BINARY_ROWS]), bin_cells, work))
    return [lane for lane in lanes if lane is not None]


def bench_model(trained: Trained, args: argparse.Namespace, work: Path, procs: Processes,
                cells: list[Cell], binary: list[Cell]) -> None:  # fmt: skip
    """All peers up at once (idle ones cost nothing), then the interleaved rounds."""
    lanes: list[Lane] = []
    try:
        for peer in args.peers:
            lanes += start_lanes(peer, trained, args, work, procs, cells, binary)
        run_lanes(lanes, args.rounds, args.duration)
    finally:
        procs.close()
    for cell in cells + binary:
        cell.finish()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_wrk()
    for venv in dict.fromkeys(v for p in args.peers if (v := venv_for(p))):
        ensure_venv(venv)
    if args.setup_only:
        return 0
    procs = Processes()
    load_before = load_average()
    cells: list[Cell] = []
    binary: list[Cell] = []
    inproc: dict[tuple[str, int], tuple[float, float, float]] = {}
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        work = Path(tmp)
        try:
            for key in args.models:
                trained = train(MODEL_SPECS[key], work)
                if "shipyard" in args.peers:
                    for threads in (1, WORKERS):
                        inproc[key, threads] = inprocess_rows_per_s(
                            trained, min(args.duration, 3.0), threads
                        )
                bench_model(trained, args, work, procs, cells, binary)
        except KeyboardInterrupt:
            print("interrupted: stopping servers", file=sys.stderr)
            return 130
        finally:
            procs.close()
    header = machine_header(collect_versions(args.peers), load_before)
    text = render(header, cells, binary, inproc, args)
    print()
    print(text)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)
    print(f"written to {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
