"""Helpers for the `shipyard serve` end-to-end tests: models, registries, server processes.

`SlowModel` lives here (not in a test module) because the server process imports it by
module path: servers get this directory on PYTHONPATH.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import shipyard
from shipyard.app.settings import Settings
from shipyard.client import Registry

HERE = Path(__file__).resolve().parent
_ANNOUNCED = re.compile(rb"on (https?)://[0-9a-z.:\[\]]+?:(\d+) ")


class SlowModel(shipyard.PythonModel):
    """Sleeps, then answers each row's sum: lets a test hold requests in flight."""

    def predict(self, context: shipyard.ModelContext, inputs: Any) -> Any:
        time.sleep(float(os.environ.get("SLOW_MODEL_SECONDS", "1.5")))
        return np.asarray(inputs, dtype=np.float64).sum(axis=1)


def open_registry(home: Path, database_url: str) -> Registry:
    return Registry(settings=Settings(home=home, database_url=database_url))


def server_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SHIPYARD_HOME=str(home),
        SHIPYARD_DATABASE_URL=database_url,
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        **extra,
    )
    return env


class ServerProcess:
    """`shipyard serve` in a subprocess on 127.0.0.1 and a free port (read from its banner).

    `host` changes the interface bound (the tests still connect to 127.0.0.1), `grpc_port`
    serves gRPC there too, `verify` (an SSLContext trusting its CA) checks a TLS server's
    certificate, and `python` is the interpreter (another venv's) that runs shipyard."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        *args: str,
        host: str = "127.0.0.1",
        grpc_port: int | None = None,
        verify: ssl.SSLContext | bool = True,
        python: str = sys.executable,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / "serve.stderr"
        self._stderr = self.stderr_path.open("wb")
        command = [python, "-m", "shipyard", "serve", *args]
        command += ["--host", host, "--http-port", "0"]
        command += ["--no-grpc"] if grpc_port is None else ["--grpc-port", str(grpc_port)]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        self.url = ""
        self.verify = verify

    def logs(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 90.0) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited {self.process.returncode}:\n{self.logs()[-4000:]}"
                )
            if not self.url:
                found = _ANNOUNCED.search(self.stderr_path.read_bytes())
                if found:
                    scheme = found.group(1).decode()
                    self.url = f"{scheme}://127.0.0.1:{int(found.group(2))}"
            elif _get_status(self.url + "/v2/health/ready", self.verify) == 200:
                return self
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout_s} s:\n{self.logs()[-4000:]}")

    @property
    def address(self) -> str:
        return self.url.partition("://")[2]

    def terminate(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._stderr.close()


@contextmanager
def running(
    env: dict[str, str], log_dir: Path, *args: str, **options: Any
) -> Iterator[ServerProcess]:
    server = ServerProcess(env, log_dir, *args, **options)
    try:
        yield server.wait_ready()
    finally:
        server.terminate()


def _get_status(url: str, verify: ssl.SSLContext | bool = True) -> int | None:
    try:
        return httpx.get(url, timeout=1.0, verify=verify).status_code
    except httpx.HTTPError:
        return None


def requests_counted(metrics_text: str, **labels: str) -> float:
    """Sum of shipyard_requests_total samples whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith("shipyard_requests_total{"):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
