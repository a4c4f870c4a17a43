"""The JSON access log: one line per request on stderr, through the logging module.

Cheap by construction: the handler lets the caller build one dict per request, orjson
serialises it, and lines go to a 64 KiB buffer flushed a few times a second (and at once
for warnings and errors) instead of one write syscall per request.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from typing import Any

import orjson

ACCESS_LOGGER = "shipyard.access"
FLUSH_INTERVAL_S = 0.25
_BUFFER = 64 * 1024


class JsonLineFormatter(logging.Formatter):
    """Access records (a dict as `msg`) as they are; other records as time/level/logger/message."""

    def format(self, record: logging.LogRecord) -> str:
        raise NotImplementedError  # the handler calls `line`, which skips str round trips

    def line(self, record: logging.LogRecord) -> bytes:
        if type(record.msg) is dict:
            return orjson.dumps(record.msg) + b"\n"
        doc: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            doc["request_id"] = request_id
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc) + b"\n"


class BufferedStderrHandler(logging.Handler):
    """JSON lines to fd 2 through a buffer, flushed by a daemon thread and on close."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter = JsonLineFormatter()
        self._out = io.BufferedWriter(io.FileIO(sys.stderr.fileno(), "wb", closefd=False), _BUFFER)
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="log-flush", daemon=True)
        self._flusher.start()

    def write_line(self, line: bytes) -> None:
        """A finished line (the access log's fast path: no LogRecord, no formatting)."""
        try:
            self._out.write(line)  # BufferedWriter locks internally, like flush() here
        except Exception:  # logging must never take a request down
            self.handleError(
                logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, None, None, None)
            )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.write(self._formatter.line(record))
            if record.levelno >= logging.WARNING:
                self._out.flush()
        except Exception:  # logging must never take a request down
            self.handleError(record)

    def flush(self) -> None:
        with self.lock or threading.Lock():
            self._out.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except (OSError, ValueError):  # stderr closed under us: nothing left to do
                return


_last_second = -1
_last_prefix = ""


def iso_time(epoch: float) -> str:
    """UTC ISO-8601 with milliseconds; the formatted second is cached."""
    global _last_second, _last_prefix
    second = int(epoch)
    if second != _last_second:
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second
    return f"{_last_prefix}.{int((epoch - second) * 1000):03d}Z"


def configure_logging(level: int | str = logging.INFO) -> None:
    """Route shipyard's loggers (access log included) to JSON lines on stderr."""
    handler = BufferedStderrHandler()
    for name in ("shipyard", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class AccessLog:
    """Writes one access line per request, or nothing at all when disabled."""

    __slots__ = ("_enabled", "_logger")

    def __init__(self, enabled: bool = True) -> None:
        self._logger = logging.getLogger(ACCESS_LOGGER)
        self._enabled = enabled

    @property
    def enabled(self) -> bool:
        return self._enabled and self._logger.isEnabledFor(logging.INFO)

    def _sink(self) -> BufferedStderrHandler | None:
        """The handler every access line goes to when `configure_logging` set it up and
        nothing else (filters, other handlers, propagation) could see the record, else None."""
        logger = self._logger
        parent = logger.parent
        if logger.handlers or logger.filters or not logger.propagate or parent is None:
            return None
        handlers = parent.handlers
        if parent.propagate or parent.filters or len(handlers) != 1:
            return None
        handler = handlers[0]
        if type(handler) is not BufferedStderrHandler or handler.filters:
            return None
        return handler if handler.level <= logging.INFO else None

    def write(
        self,
        request_id: str,
        method: str,
        path: str,
        status: int,
        seconds: float,
        model: str | None,
        version: str | None,
        protocol: str,
        key: str | None = None,
    ) -> None:
        line = {
            "time": iso_time(time.time()),
            "request_id": request_id,
            "method": method,
            "path": path[:256],
            "status": status,
            "duration_ms": round(seconds * 1000.0, 3),
            "model": model,
            "version": version,
            "protocol": protocol,
            "key": key,  # the caller's key id (`key:<id>`), never its token
        }
        sink = self._sink()
        if sink is not None:  # the same bytes JsonLineFormatter makes, without a LogRecord
            sink.write_line(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))
            return
        # A record made here skips Logger.findCaller's stack walk (a few µs per request).
        record = logging.LogRecord(ACCESS_LOGGER, logging.INFO, "", 0, None, None, None)
        record.msg = line
        self._logger.handle(record)
