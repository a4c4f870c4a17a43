"""AWS Lambda-style functions over the REST ASGI app, through Mangum.

Mangum turns API Gateway (REST and HTTP APIs), ALB and Function URL events into ASGI requests.
Its per-invocation lifespan would load the models at every call, so lifespan is off and the
`start` hook (the model host's first load) runs once, on the first invocation of a container,
on the same event loop Mangum then uses for every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shipyard.transports.rest.app import RestApp

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


class LambdaFunction:
    """`handler(event, context)` serving `app` on one event loop of its own; `start` is
    awaited before the first event. `close()` ends the loop (tests, or a runtime's shutdown
    hook), so the model host's background tasks do not outlive it."""

    def __init__(self, app: RestApp, start: Callable[[], Awaitable[None]]) -> None:
        from mangum import Mangum  # the serverless extra; imported only where it is used

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)  # Mangum runs each event on this thread's loop
        self._adapter = Mangum(app, lifespan="off")
        self._start = start
        self._started = False

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not self._started:
            self._loop.run_until_complete(self._start())
            self._started = True
        return self._adapter(event, context)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()


def lambda_handler(app: RestApp, start: Callable[[], Awaitable[None]]) -> LambdaFunction:
    """A `handler(event, context)` serving `app`; `start` is awaited before the first event."""
    return LambdaFunction(app, start)
