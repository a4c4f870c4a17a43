"""Where alerts go: the log, and a webhook (JSON POST, retried with exponential backoff).

The webhook retries connection failures, timeouts, HTTP 429 and 5xx with tenacity; a 4xx other
than 429 is the receiver saying no, and is not retried. After the last attempt it raises
Unavailable; AlertManager counts that and carries on with the other notifiers.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from shipyard.core.errors import InvalidArgument, Unavailable
from shipyard.monitoring.alerts import Alert

log = logging.getLogger("shipyard.alerts")


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {
        "rule": alert.rule,
        "subject": alert.subject,
        "state": alert.state,
        "severity": alert.severity,
        "message": alert.message,
        "at": alert.at.isoformat(),
        "details": alert.details,
    }


class LogNotifier:
    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def notify(self, alert: Alert) -> None:
        level = logging.WARNING if alert.state == "firing" else logging.INFO
        self.logger.log(level, "alert %s [%s]: %s", alert.state, alert.rule, alert.message)


class _RetryableStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | httpx.TransportError)


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument(f"webhook URL must be http(s)://host/..., got {url!r}")
        if attempts < 1 or backoff_s < 0 or max_backoff_s < backoff_s or timeout_s <= 0:
            raise InvalidArgument(
                "webhook needs attempts >= 1, 0 <= backoff_s <= max_backoff_s, timeout_s > 0"
            )
        self.url = url
        self.attempts = attempts
        self._wait = wait_exponential(multiplier=backoff_s, max=max_backoff_s)
        self._client = client or httpx.Client(timeout=timeout_s)
        self._own_client = client is None

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.url!r})"

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def notify(self, alert: Alert) -> None:
        body = orjson.dumps(alert_payload(alert), option=orjson.OPT_SERIALIZE_NUMPY)
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._post(body)
        except (_RetryableStatus, httpx.TransportError) as exc:
            raise Unavailable(
                f"webhook {self.url} failed after {self.attempts} attempts: {exc}"
            ) from exc

    def _post(self, body: bytes) -> None:
        headers = {"content-type": "application/json"}
        response = self._client.post(self.url, content=body, headers=headers)
        if response.status_code == 429 or response.status_code >= 500:
            raise _RetryableStatus(response.status_code)
        if response.status_code >= 400:
            raise InvalidArgument(
                f"webhook {self.url} refused the alert: HTTP {response.status_code}"
            )
