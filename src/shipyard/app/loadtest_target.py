"""What `shipyard loadtest` loads: a server at a URL, or one it starts itself for a REF.

A URL must be loopback unless the caller allows remote targets: a load test is a denial of
service for whoever else runs that server. Control calls (model index, metadata, /metrics)
are plain blocking HTTP with proxies off; the load itself goes through loadgen.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.app.serve_settings import is_loopback
from shipyard.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ShipyardError,
    Unavailable,
)

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_ANNOUNCED = re.compile(rb"on http://127\.0\.0\.1:(\d+)")
_CONTROL_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """A server's base URL, parsed."""

    base: str
    host: str
    port: int


def parse_url(url: str, *, allow_remote: bool) -> Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise InvalidArgument(f"{url!r} is not an http:// URL (https is not supported)")
    try:
        port = parts.port or 80
    except ValueError:
        raise InvalidArgument(f"{url!r}: the port is not a number in 1-65535") from None
    host = parts.hostname
    if not allow_remote and not _is_loopback(host):
        raise InvalidArgument(
            f"{host} is not a loopback address; loading someone else's server by accident "
            "is an outage: pass --allow-remote if this server is yours to load"
        )
    shown = f"[{host}]" if ":" in host else host
    return Target(f"http://{shown}:{port}", host, port)


def _is_loopback(host: str) -> bool:
    if is_loopback(host):
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def control(target: Target, method: str, path: str) -> Any:
    """A JSON control call; connection problems are Unavailable, 404 NotFound."""
    url = target.base + path  # parse_url let only http:// through
    request = urllib.request.Request(url, method=method)  # noqa: S310
    if method == "POST":
        request.data = b"{}"
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=_CONTROL_TIMEOUT_S) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        detail = _error_text(exc)
        if exc.code == 404:
            raise NotFound(f"{target.base}{path}: {detail}") from None
        raise Unavailable(f"{target.base}{path} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unavailable(f"cannot reach {target.base}: {reason}") from None
    except ValueError:
        raise Unavailable(f"{target.base}{path} did not answer JSON") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    with contextlib.suppress(Exception):
        return str(json.loads(exc.read())["error"])[:300]
    return exc.reason if isinstance(exc.reason, str) else "error"


def pick_model(target: Target, model: str | None) -> str:
    """--model, or the server's first model from the repository index."""
    if model:
        return model
    index = control(target, "POST", "/v2/repository/index")
    names = [e.get("name") for e in index or [] if isinstance(e, dict) and e.get("name")]
    if not names:
        raise NotFound(f"{target.base} serves no models")
    return str(names[0])


def metadata(target: Target, model: str) -> dict[str, Any]:
    doc = control(target, "GET", f"/v2/models/{urllib.parse.quote(model, safe='')}")
    if not isinstance(doc, dict):
        raise Unavailable(f"{target.base}: malformed metadata for model {model!r}")
    return doc


def scrape_metrics(target: Target) -> str | None:
    """The /metrics text, or None when the server has none (it is optional)."""
    try:
        with _OPENER.open(target.base + "/metrics", timeout=_CONTROL_TIMEOUT_S) as response:
            return str(response.read().decode("utf-8", "replace"))
    except (urllib.error.URLError, OSError):
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How loadtest starts `shipyard serve REF` for a run."""

    ref: str
    workers: int
    max_batch_size: int | None = None
    grpc_port: int | None = None
    startup_timeout_s: float = 120.0


@contextlib.contextmanager
def own_server(config: ServerConfig) -> Iterator[Target]:
    """`shipyard serve REF` on 127.0.0.1 and a free port, until the block ends."""
    args = [sys.executable, "-m", "shipyard", "serve", config.ref, "--host", "127.0.0.1"]
    args += ["--http-port", "0", "--workers", str(config.workers), "--no-access-log"]
    if config.max_batch_size is not None:
        args += ["--max-batch-size", str(config.max_batch_size)]
    args += ["--no-grpc"] if config.grpc_port is None else ["--grpc-port", str(config.grpc_port)]
    with tempfile.TemporaryDirectory(prefix="shipyard-loadtest-") as folder:
        log_path = Path(folder) / "serve.stderr"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # a Ctrl-C ends the run, not the server under it
            )
            try:
                yield _wait_ready(process, log_path, config)
            finally:
                _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path, config: ServerConfig) -> Target:
    deadline = time.monotonic() + config.startup_timeout_s
    target: Target | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _startup_error(config, process.returncode, _tail(log_path))
        if target is None:
            found = _ANNOUNCED.search(log_path.read_bytes())
            if found:
                port = int(found.group(1))
                target = Target(f"http://127.0.0.1:{port}", "127.0.0.1", port)
        elif _ready(target):
            return target
        time.sleep(0.05)
    raise Unavailable(f"shipyard serve {config.ref} not ready in {config.startup_timeout_s:g} s")


def _startup_error(config: ServerConfig, code: int, line: str) -> ShipyardError:
    """The server's own error (exit 3, 4, 6 keep their kind), else Unavailable."""
    kinds: dict[int, type[ShipyardError]] = {
        3: InvalidArgument,
        4: NotFound,
        6: FailedPrecondition,
    }
    message = line.partition("): ")[2] or line if line.startswith("error") else line
    if code in kinds:
        return kinds[code](f"shipyard serve {config.ref}: {message}")
    return Unavailable(f"shipyard serve {config.ref} exited {code}: {message}")


def _ready(target: Target) -> bool:
    try:
        with _OPENER.open(target.base + "/v2/health/ready", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").strip().splitlines()
    for line in reversed(lines):  # the CLI's own error line, else the last line
        if line.startswith("error"):
            return line
    return lines[-1] if lines else "(no output)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
