"""Running the management API under uvicorn on a socket bound by the caller.

SIGTERM/SIGINT stop accepting, finish in-flight requests (bounded) and run the lifespan's
shutdown (the rollout controller stops); the signal is not re-raised, so a clean stop exits 0.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI


class ApiServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Only a second Ctrl-C forces the exit: a repeated SIGTERM (a supervisor, or `up`
        # stopping itself when its data plane died) must not cut the drain short.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def make_api_server(app: FastAPI, *, drain_timeout_s: float = 10.0) -> ApiServer:
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        ws="none",
        timeout_graceful_shutdown=max(1, int(drain_timeout_s)),
    )
    return ApiServer(config)


def run_api(server: ApiServer, sock: socket.socket) -> None:
    """Serve on `sock` (bound) until stopped; blocks."""
    server.run(sockets=[sock])
