"""InfluxDB 1.x: ``POST /write?db=DB&rp=RP&precision=ns`` with a line-protocol body.

urllib3 (already a dependency through influxdb-client) keeps one connection alive; under
Locust's monkey-patching its sockets are gevent's, so a send yields to the loop while it
waits. urllib3's own retries are off: :class:`~wirelab.metrics.sinks.buffer.BufferedSink`
decides what to retry.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import urllib3

from .buffer import RejectedError, TransientError

__all__ = ["InfluxV1Transport"]

# InfluxDB 1.x answers a partly bad batch with 400 "partial write: ... dropped=N" and
# stores the rest.
_PARTIAL_DROPPED = re.compile(r"dropped=(\d+)")


class InfluxV1Transport:
    """Sends line protocol to one database (and retention policy) of an InfluxDB 1.x."""

    def __init__(
        self,
        base_url: str,
        database: str,
        *,
        retention_policy: str = "",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.database = database
        self._fields = {"db": database, "precision": "ns"}
        if retention_policy:
            self._fields["rp"] = retention_policy
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if username is not None:
            # Basic auth in a header: unlike u=/p= query parameters it stays out of
            # server and proxy access logs.
            self._headers.update(urllib3.make_headers(basic_auth=f"{username}:{password or ''}"))
        self._timeout = urllib3.Timeout(connect=min(timeout, 2.0), read=timeout)
        self._pool = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
        # urllib3's request() encodes fields into the URL only for GET-like methods.
        self._url = f"{self.base_url}/write?{urlencode(self._fields)}"

    def send(self, body: bytes, points: int) -> None:
        """Write one batch.

        Raises:
            TransientError: connection refused or reset, timeout, HTTP 5xx or 429.
            RejectedError: any other non-2xx answer (with how many points were dropped).
        """
        try:
            response = self._pool.request(
                "POST",
                self._url,
                body=body,
                headers=self._headers,
                timeout=self._timeout,
                retries=False,
                preload_content=True,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {_short(str(exc))}") from exc
        status = response.status
        if 200 <= status < 300:
            return
        message = _error_message(response.data)
        if status == 429 or status >= 500:
            raise TransientError(f"HTTP {status}: {message}")
        match = _PARTIAL_DROPPED.search(message)
        dropped = int(match.group(1)) if match and "partial write" in message else points
        raise RejectedError(message, status=status, dropped=dropped)

    def close(self) -> None:
        self._pool.clear()


def _error_message(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    try:
        return _short(str(json.loads(text).get("error") or text))
    except (ValueError, AttributeError):
        return _short(text)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
