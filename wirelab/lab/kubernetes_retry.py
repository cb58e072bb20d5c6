"""One call to the Kubernetes API, tried again while its failure may pass.

**Transient**, retried with backoff: the API server throttling (429; its ``Retry-After`` is
honoured), failing for now (500, 502, 503, 504: an API server restarting, etcd electing a
leader, a load balancer in front with no healthy backend for a moment), and the connection
failing (refused, reset, timed out). **Permanent**, failed at once with the API's own
message: everything else, 403 (the Role does not allow it), 404 (no such object) and 422
(an invalid object) first of all. Trying those again only delays the one-line error.

Delays follow :class:`wirelab.reconnect.ServerHint`, the policy a client of a draining
target uses: the server's hint when it gives one, else full jitter (``uniform(0, base *
2**attempt)``), so many masters throttled together do not come back in step. A call never
sleeps past its ``deadline``: a wait's retries end where the wait does.

Why not the client's own retry support (``Configuration.retries``, a urllib3 ``Retry``): it
runs inside one request, blind to the action's deadline; it does not retry a PATCH (not
idempotent to urllib3, though a strategic merge of the same values is); and an
``ApiClient`` handed in by a caller keeps whatever configuration it was built with. One
loop here treats every call the same way. urllib3's default stays in place under it: up
to three immediate retries of a failed connection for GET and DELETE, harmless, except
that a DELETE it sent again after a reset may find its own earlier attempt's work done:
hence ``gone_is_done``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3

from ..reconnect import ServerHint
from .orchestrator import OrchestratorError

__all__ = ["TRANSIENT_STATUSES", "RetryPolicy", "TransientApiError", "call_api"]

#: HTTP statuses from the API server that may pass by themselves.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: What the API's own message gains for the statuses people meet most.
_HINTS = {403: " (the ServiceAccount's Role does not allow it)", 404: " (no such object)"}


class TransientApiError(OrchestratorError):
    """The API kept failing in a way that may pass: a wait counts it as "not yet"."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a transient failure is tried again.

    ``attempts`` counts the first try; the delay before retry ``n`` (from 0) is full jitter
    up to ``base * 2**n`` seconds, or the server's ``Retry-After``; both at most ``cap``.
    The defaults ride out an API server restart (about 15 s of retries at worst).
    """

    attempts: int = 6
    base: float = 0.5
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < self.base:
            raise ValueError(f"invalid retry policy {self}")

    def delays(self) -> ServerHint:
        """A fresh backoff for one call's retries."""
        return ServerHint(base=self.base, cap=self.cap)


def call_api(
    what: str,
    method: Callable[..., Any],
    *args: Any,
    policy: RetryPolicy,
    deadline: float | None = None,
    gone_is_done: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """``method(*args, **kwargs)`` (a generated client method called with
    ``_preload_content=False``), its JSON body decoded; a transient failure is tried again.

    ``deadline`` (monotonic) bounds the retries. ``gone_is_done``: a 404 means the object is
    already gone, as a delete wants it (an earlier attempt, ours or urllib3's, whose answer
    was lost, may have been the one to delete it); it returns ``{}``.

    Raises:
        TransientApiError: the failure was transient every time, until the attempts or the
            deadline ran out.
        OrchestratorError: a permanent failure, at once.
    """
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415 - optional dependency

    backoff = policy.delays()
    failed: str | None = None
    for attempt in range(policy.attempts):
        hint: float | None = None
        try:
            response = method(*args, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and gone_is_done:
                return {}
            if exc.status not in TRANSIENT_STATUSES:
                raise OrchestratorError(f"{what}: {api_reason(exc)}") from None
            failed = api_reason(exc)
            hint = retry_after(exc.headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            failed = f"Kubernetes API unreachable: {exc}"
        else:
            data = response.data
            return json.loads(data) if data else {}
        if attempt + 1 == policy.attempts:
            break
        delay = backoff.next_delay(attempt, hint)
        if deadline is not None and time.monotonic() + delay > deadline:
            break
        time.sleep(delay)
    tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
    raise TransientApiError(f"{what}: {failed} (transient; gave up after {tries})")


def retry_after(headers: Any) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), or ``None``."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def api_reason(exc: Any) -> str:
    """One line from an ApiException: the API's own Status message when there is one."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {exc.status} {message or exc.reason}{_HINTS.get(exc.status, '')}"
