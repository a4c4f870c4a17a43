"""The `shipyard` command line: typer commands over the Python client."""

from __future__ import annotations

import typer

from shipyard.cli import (
    batch,
    demo,
    deploy,
    export,
    feedback,
    keys,
    loadtest,
    logs,
    models,
    monitor,
    retrain,
    rollout,
    serve,
    server,
    stream,
)
from shipyard.cli.errors import EXIT_CODES_HELP

app = typer.Typer(
    name="shipyard",
    help="Register, serve and watch machine-learning models.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
models.install(app)
demo.install(app)
serve.install(app)
keys.install(app)
loadtest.install(app)
batch.install(app)
export.install(app)
retrain.install(app)
stream.install(app)
server.install(app)
logs.install(app)
deploy.install(app)
rollout.install(app)
monitor.install(app)
feedback.install(app)


def main() -> None:
    app()
