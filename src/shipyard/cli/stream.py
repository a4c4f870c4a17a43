"""`shipyard stream MODEL_REF --source URL --input NAME --output NAME`: score a broker's
records as they arrive (Redis Streams, NATS JetStream, RabbitMQ)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from shipyard.app.settings import Settings
from shipyard.app.stream import StreamSpec, stream
from shipyard.cli.errors import exits_by_kind
from shipyard.cli.output import print_json
from shipyard.jobs.stream.loop import StreamSettings


def install(app: typer.Typer) -> None:
    app.command("stream")(stream_command)


@exits_by_kind
def stream_command(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    source: Annotated[
        str,
        typer.Option(help="redis://host:6379/0, nats://host:4222 or amqp://user:pw@host:5672/"),
    ],
    input: Annotated[str, typer.Option(help="Stream (Redis), subject (NATS) or queue (AMQP).")],
    output: Annotated[str, typer.Option(help="Where results go: stream, subject or queue.")],
    dlq: Annotated[
        str | None, typer.Option(help="Dead-letter stream/subject/queue [INPUT.dlq].")
    ] = None,
    group: Annotated[
        str, typer.Option(help="Consumer group (Redis) / durable consumer (NATS).")
    ] = "shipyard",
    consumer: Annotated[
        str | None, typer.Option(help="This consumer's name in the group [host-pid].")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Records per model call, at most.")] = 64,
    max_wait_ms: Annotated[
        float, typer.Option(help="After the first record, how long to wait to fill a batch.")
    ] = 5.0,
    id_field: Annotated[
        str, typer.Option(help="Record field holding its id (not a feature).")
    ] = "id",
    max_deliveries: Annotated[
        int, typer.Option(help="Tries before a record failing for other reasons is dead-lettered.")
    ] = 5,
    claim_idle_s: Annotated[
        float,
        typer.Option(help="Seconds before a dead consumer's unacknowledged records move on."),
    ] = 30.0,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT.")
    ] = None,
    until_empty: Annotated[
        bool, typer.Option("--until-empty", help="Exit once the source has nothing left.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score REF's records from a broker; results keyed by record id, bad records to a DLQ.

    Delivery is at-least-once: a record is acknowledged only after its result (or dead
    letter) was published. Stop with Ctrl-C or SIGTERM: the batch in hand is finished first.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = StreamSettings(
        batch_size=batch_size,
        max_wait_ms=max_wait_ms,
        id_field=id_field,
        max_deliveries=max_deliveries,
        until_empty=until_empty,
    )
    spec = StreamSpec(
        ref,
        source,
        input,
        output,
        dlq=dlq,
        group=group,
        consumer=consumer,
        claim_idle_s=claim_idle_s,
        metrics_port=metrics_port,
        settings=settings,
    )
    print(
        f"shipyard stream: {ref} from {source} {input} -> {output} (group {group})",
        file=sys.stderr,
        flush=True,
    )
    summary = stream(Settings(), spec)
    if json:
        print_json(summary.to_dict())
    else:
        print(summary.line(), flush=True)
