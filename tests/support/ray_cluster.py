"""A Ray head node for the tests, in its own process group, as a user's cluster would be.

Starting Ray inside the test process failed 3 of 5 CI runs on 2026-12-01 (a second start
never brought up its GCS; a first one missed Ray's 30 s wait on a busy machine): here the
wait is ours, and the whole group is killed at the end. The `ray_cluster` fixture
(tests/conftest.py) starts one per test process, only when a test asks for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HEAD_START_S = 180.0  # seconds; up in ~4 s on a quiet machine


@contextlib.contextmanager
def head_node(temp_dir: Path, cpus: int = 2) -> Iterator[str]:
    """`ray start --head` with `cpus` CPUs until the block ends; yields its address."""
    port = _free_port()
    # Ray's agents default to fixed ports (52365, ...): free ones let this head run beside
    # another Ray on the machine (a developer's, another test run's).
    agents = [
        f"--{name}={_free_port()}"
        for name in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "ray-client-server-port",
        )
    ]
    head = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            *("start", "--head", "--block", "--num-cpus", str(cpus), "--port", str(port)),
            *("--node-ip-address", "127.0.0.1", "--include-dashboard", "false"),
            *("--disable-usage-stats", "--temp-dir", str(temp_dir), *agents),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(head, port, HEAD_START_S)
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(head)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(process: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ray start exited with {process.returncode}"
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        time.sleep(0.2)
    raise AssertionError(f"Ray's head node did not listen on {port} in {timeout_s:.0f} s")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the head's process group (GCS, raylet, monitor; on SIGTERM they take 20 s
    and more): a test cluster has nothing to save. Its workers leave with their raylet."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)
