"""Parse an untrusted model file in a child process only.

Native parsers (XGBoost, LightGBM) can crash the whole process on a damaged or crafted file
instead of raising, and not always: the same truncated UBJ file parsed once cleanly in a child
and then took the test process down (CI, 2026-12-01). So this process never parses the user's
bytes. A throw-away child parses them and sends back the model as the library itself writes
it (`Booster.save_raw`, `model_to_string`), which is what this process then loads. A child
that dies from a signal or hangs is reported as a damaged file; one that refuses the file
sends its error back, and it is raised here unchanged.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shipyard.core.errors import InvalidArgument
from shipyard.runtimes.base import unreadable

PROBE_TIMEOUT_S = 120.0
EXIT_GRACE_S = 5.0  # for a child to exit once it has answered or died


def canonical(parse: Callable[[Path], bytes], path: Path, what: str) -> bytes:
    """`parse(path)` run in a child: its bytes, or InvalidArgument if it refuses, crashes or hangs.

    `parse` must be a module-level function (a spawned child imports it), and return bytes
    written by the library's own serializer, never the input.
    """
    context = multiprocessing.get_context("spawn")  # no fork: no inherited locks or threads
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_parse, args=(parse, path, what, sender), daemon=True)
    child.start()
    sender.close()  # the child holds the only writer: a dead child reads as EOF here
    try:
        reply = receiver.recv() if receiver.poll(PROBE_TIMEOUT_S) else None
    except EOFError:
        reply = None
    finally:
        receiver.close()
    child.join(EXIT_GRACE_S)  # it has answered, died, or run out of time
    if child.is_alive():  # hung parsing, or (with a reply) stuck on its way out
        child.kill()
        child.join()
        if reply is None:
            raise _damaged(path, what, f"did not finish in {PROBE_TIMEOUT_S:.0f} s")
    if reply is None:
        code = child.exitcode or 0
        how = f"signal {-code}" if code < 0 else f"exit {code}"
        raise _damaged(path, what, f"crashed on this file ({how})")
    kind, value = reply
    if kind == "error":
        message, details = value
        raise InvalidArgument(message, details=details)
    return bytes(value)


def _damaged(path: Path, what: str, how: str) -> InvalidArgument:
    return InvalidArgument(
        f"{path.name}: the {what} parser {how}; it is damaged or not a model",
        details={"path": path.name, "format": what},
    )


def _parse(parse: Callable[[Path], bytes], path: Path, what: str, sender: Any) -> None:
    try:
        reply: tuple[str, object] = ("ok", parse(path))
    except Exception as exc:  # a parser's own error type is named, not trusted to pickle
        error = exc if isinstance(exc, InvalidArgument) else unreadable(path, what, exc)
        reply = ("error", (error.message, error.details))
    sender.send(reply)
    sender.close()
