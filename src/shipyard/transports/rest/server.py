"""Running the REST app under uvicorn (uvloop + httptools) with our stop sequence.

SIGTERM/SIGINT: readiness fails at once (`Lifecycle.draining`), the listener stays open for
`shutdown_delay_s` so load balancers notice, then uvicorn stops accepting, finishes in-flight
requests (at most `drain_timeout_s`) and runs the app's shutdown hooks (model host drain).
The signal is not re-raised afterwards, so a graceful stop exits with status 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shipyard.transports.rest.app import RestApp

log = logging.getLogger("shipyard.serve")


@dataclass(frozen=True, slots=True)
class HttpOptions:
    shutdown_delay_s: float = 1.0
    drain_timeout_s: float = 20.0
    keep_alive_s: float = 5.0
    backlog: int = 2048
    ssl_certfile: str | None = None  # both or neither: serve HTTPS only
    ssl_keyfile: str | None = None


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: RestApp, shutdown_delay_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._delay_s = shutdown_delay_s
        self._exit_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's handler, the signal is not recorded for re-raising on exit.
        if self._exit_at is not None:
            if sig == signal.SIGINT:
                self.force_exit = True
            self.should_exit = True
            return
        self._app.lifecycle.draining = True
        self._exit_at = time.monotonic() + self._delay_s

    def stop_now(self) -> None:
        """Stop without the readiness grace period (e.g. the models could not be loaded)."""
        self._app.lifecycle.draining = True
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            log.info("stopping: draining %d in-flight request(s)", self._app.in_flight)
            return True
        return await super().on_tick(counter)


class _HeadWithBody:
    """A response's transport that sends the status line and headers with the first body
    write, in one system call instead of two.

    uvicorn writes the head on `http.response.start` and the body on `http.response.body`;
    uvloop sends each write at once, so every response cost two segments and woke the client
    twice. An interim `100 Continue` and anything else pass straight through, and any other
    use of the transport (close, flow control) sends a held head first.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
        elif data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1":
            self._head = data  # a final response's head: its body follows right away
        else:
            self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        return getattr(self._transport, name)


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with each request's responses written by `_HeadWithBody`."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle: Any = self.cycle
        if cycle is not None and type(cycle.transport) is not _HeadWithBody:
            cycle.transport = _HeadWithBody(cycle.transport)


def make_server(app: RestApp, options: HttpOptions) -> DrainingServer:
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=_Protocol,
        lifespan="on",
        interface="asgi3",
        access_log=False,  # our access log is one JSON line per request (requestlog.py)
        log_config=None,
        server_header=False,
        timeout_keep_alive=int(options.keep_alive_s),
        timeout_graceful_shutdown=int(options.drain_timeout_s),
        backlog=options.backlog,
        ws="none",
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
    )
    return DrainingServer(config, app, options.shutdown_delay_s)


def serve_on(server: DrainingServer, sock: socket.socket) -> None:
    """Run until stopped; blocks. `sock` is bound, not yet listening."""
    server.run(sockets=[sock])
