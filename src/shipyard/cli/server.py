"""`shipyard server` (the control plane) and `shipyard up` (control plane + data plane)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from shipyard.app.settings import Settings
from shipyard.cli.errors import exits_by_kind
from shipyard.core.errors import InvalidArgument

if TYPE_CHECKING:  # the control plane's modules (FastAPI, ...) load when a server starts
    from shipyard.app.control import ControlSettings

HostOption = Annotated[str | None, typer.Option(help="Interface to bind [127.0.0.1].")]
PortOption = Annotated[int | None, typer.Option(help="Management API port [8000]; 0 = any free.")]
UploadOption = Annotated[
    int | None, typer.Option(help="Largest model file upload in MiB [256].", min=1)
]
ControllerOption = Annotated[
    bool, typer.Option("--no-controller", help="Do not run the rollout controller here.")
]
IntervalOption = Annotated[
    float | None, typer.Option(help="Seconds between the controller's looks at rollouts [1].")
]

MonitorOption = Annotated[
    float | None,
    typer.Option(
        min=0, help="Seconds between drift checks of the logged predictions [60]; 0 = off."
    ),
]
RetentionOption = Annotated[
    str | None,
    typer.Option(
        help="Delete logged predictions and rollout statistics older than this "
        "(30d, 8w; at least 1d) [30d]; 'forever' keeps everything."
    ),
]


def install(app: typer.Typer) -> None:
    app.command("server")(server)
    app.command("up")(up)


def control_settings(**overrides: Any) -> ControlSettings:
    from shipyard.app.control import ControlSettings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ControlSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "server settings"
        raise InvalidArgument(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


@exits_by_kind
def server(
    host: HostOption = None,
    port: PortOption = None,
    max_upload_mb: UploadOption = None,
    no_controller: ControllerOption = False,
    controller_interval_s: IntervalOption = None,
    monitor_interval_s: MonitorOption = None,
    retention: RetentionOption = None,
) -> None:
    """Run the control plane: the management REST API under /api/v1 (OpenAPI at
    /openapi.json), the rollout controller and the monitoring loop (drift of the logged
    predictions against each version's reference data; alerts; alert-triggered retraining),
    retention of the prediction log and rollout statistics, and Prometheus gauges at /metrics.

    Every endpoint needs an API key. On a registry that never had a key, the first start
    creates an admin key and prints it once."""
    control = control_settings(
        host=host,
        port=port,
        max_upload_mb=max_upload_mb,
        controller=False if no_controller else None,
        controller_interval_s=controller_interval_s,
        monitor_interval_s=monitor_interval_s,
        retention=retention,
    )
    from shipyard.app.control import run_control_plane

    raise typer.Exit(run_control_plane(Settings(), control))


@exits_by_kind
def up(
    port: PortOption = None,
    serve_port: Annotated[
        int, typer.Option(help="Data plane (model server) REST port; 0 = any free.")
    ] = 8080,
    host: HostOption = None,
    controller_interval_s: IntervalOption = None,
    monitor_interval_s: MonitorOption = None,
    retention: RetentionOption = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Data plane: REST only.")] = False,
) -> None:
    """Run the control plane and a data plane serving every deployment, together, for local
    use. Ctrl-C or SIGTERM stops both."""
    from shipyard.app.up import run_up

    control = control_settings(
        host=host,
        port=port,
        controller_interval_s=controller_interval_s,
        monitor_interval_s=monitor_interval_s,
        retention=retention,
    )
    raise typer.Exit(run_up(Settings(), control, serve_port=serve_port, grpc=not no_grpc))
