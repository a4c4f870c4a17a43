"""Parse an untrusted model file in a child process first.

Native parsers (XGBoost, LightGBM) can crash the whole process on a damaged or crafted file
instead of raising. A file the user hands us is therefore parsed once in a throw-away child:
if the child dies from a signal, the file is refused with a clear error and this process never
touches it; if the child parses it (or raises), the real parse runs here and gives the usual
result or message. Files already in the registry were parsed this way when registered.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

from shipyard.core.errors import InvalidArgument

PROBE_TIMEOUT_S = 120.0


def survives(parse: Callable[[Path], object], path: Path, what: str) -> None:
    """Run `parse(path)` in a child; InvalidArgument if the parser crashes or hangs."""
    context = multiprocessing.get_context("spawn")  # no fork: no inherited locks or threads
    child = context.Process(target=_parse_quietly, args=(parse, path), daemon=True)
    child.start()
    child.join(PROBE_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        child.join()
        raise InvalidArgument(
            f"{path.name}: the {what} parser did not finish in {PROBE_TIMEOUT_S:.0f} s; "
            "the file is damaged or not a model",
            details={"path": path.name, "format": what},
        )
    if child.exitcode is not None and child.exitcode < 0:
        raise InvalidArgument(
            f"{path.name}: the {what} parser crashed on this file (signal {-child.exitcode}); "
            "it is damaged or not a model",
            details={"path": path.name, "format": what},
        )


def _parse_quietly(parse: Callable[[Path], object], path: Path) -> None:
    try:
        parse(path)
    except Exception:  # the parent parses again and reports the error properly
        raise SystemExit(1) from None
