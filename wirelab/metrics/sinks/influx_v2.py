"""InfluxDB 2.x/3.x through influxdb-client: ``POST /api/v2/write?org=&bucket=&precision=ns``.

influxdb-client's ``WriteApi`` is used in ``SYNCHRONOUS`` mode from the sink's writer
greenlet. Its default batching mode runs reactivex pipelines on a ``ThreadPoolScheduler``;
under Locust's monkey-patching those "threads" are greenlets in disguise, its retry waits
and ``flush()`` then depend on patched primitives it was never written for, and a batch it
gives up on is only logged, never counted. Synchronous calls keep batching, retries,
backoff and drop counts in :class:`~wirelab.metrics.sinks.buffer.BufferedSink`, the same
as for InfluxDB 1.x, and the HTTP call itself (urllib3 on gevent sockets) is cooperative.
"""

from __future__ import annotations

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from .buffer import RejectedError, TransientError

__all__ = ["InfluxV2Transport"]


class InfluxV2Transport:
    """Sends line protocol to one bucket of an InfluxDB 2.x/3.x (or Cloud)."""

    def __init__(
        self,
        base_url: str,
        *,
        org: str,
        bucket: str,
        token: str | None,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url
        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(
            url=base_url,
            token=token,
            org=org,
            # (connect, read) in ms; retries=False: BufferedSink owns retrying.
            timeout=(int(min(timeout, 2.0) * 1000), int(timeout * 1000)),
            retries=False,
            enable_gzip=False,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes, points: int) -> None:
        """Write one batch.

        Raises:
            TransientError: connection refused or reset, timeout, HTTP 5xx or 429, TLS.
            RejectedError: any other non-2xx answer.
        """
        try:
            self._write_api.write(
                bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.NS
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _short(getattr(exc, "message", None) or str(exc.reason or exc))
            # status 0: no HTTP answer (TLS failure and the like)
            if status in {0, 429} or status >= 500:
                raise TransientError(f"HTTP {status}: {message}") from exc
            raise RejectedError(message, status=status, dropped=points) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {_short(str(exc))}") from exc

    def close(self) -> None:
        self._write_api.close()
        self._client.close()


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"
