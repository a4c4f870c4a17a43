"""`shipyard up`: the control plane in this process and a data plane serving every deployment
(`shipyard serve --deployments`) as a child process, for local use.

The data plane starts with the management API's lifespan and is stopped (SIGTERM, drained)
before this process exits. Ctrl-C reaches both through the terminal's process group; a
SIGTERM to this process stops the API, which then stops the child. If the data plane dies on
its own, the control plane stops too, so `up` never runs half of itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys

from shipyard.app.control import ControlSettings, controller_factory, run_control_plane
from shipyard.app.settings import Settings
from shipyard.registry.service import Registry
from shipyard.transports.api.context import Background

log = logging.getLogger("shipyard.up")

STOP_TIMEOUT_S = 35.0  # the data plane drains within 30 s
POLL_S = 0.2


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class DataPlaneProcess:
    """A model server child process, run for as long as the control plane runs."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    async def run(self) -> None:
        self.process = process = subprocess.Popen(self.command)
        try:
            # Polled, not waited on in a thread: a thread blocked in wait() would keep the
            # event loop from closing if the child outlived it.
            while (code := process.poll()) is None:
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            await asyncio.to_thread(self.stop)
            raise
        log.error("the data plane exited with status %s: stopping the control plane", code)
        os.kill(os.getpid(), signal.SIGTERM)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


class Together:
    """Several background pieces run, and cancelled, as one."""

    def __init__(self, parts: list[Background]) -> None:
        self.parts = parts

    async def run(self) -> None:
        await asyncio.gather(*(part.run() for part in self.parts))


def serve_command(control: ControlSettings, serve_port: int, *, grpc: bool) -> list[str]:
    command = [sys.executable, "-m", "shipyard", "serve", "--deployments"]
    command += ["--host", control.host, "--http-port", str(serve_port)]
    return command if grpc else [*command, "--no-grpc"]


def run_up(
    settings: Settings, control: ControlSettings, *, serve_port: int, grpc: bool = True
) -> int:
    data_plane = DataPlaneProcess(serve_command(control, serve_port, grpc=grpc))

    def background(registry: Registry, chosen: ControlSettings) -> Background:
        if not chosen.controller:
            return data_plane
        return Together([controller_factory(registry, chosen), data_plane])

    try:
        return run_control_plane(settings, control, background=background)
    finally:
        data_plane.stop()  # whatever happened to the lifespan, no orphaned data plane
