"""The WebSocket target's wire contract: JSON text frames in, JSON text frames out.

Client -> server (one JSON object per text frame)::

    {"type": "auth", "token": "..."}                  -> {"type": "authenticated"}
    {"type": "echo", "id": X, "ts": T, "payload": P}  -> {"type": "echo", ..., "server_ts": S}
    {"type": "ping", "id": X, "ts": T}                -> {"type": "pong", ..., "server_ts": S}
    {"type": "subscribe", "since": N | null}          -> {"type": "subscribed", "since", "head"}
    {"type": "unsubscribe"}                           -> {"type": "unsubscribed"}

Server -> client, besides the replies: ``{"type": "event", "seq", "ts", "data"}`` and
``{"type": "reset", "since", "first", "lost"}`` from the feed, and
``{"type": "error", "code", "message"}`` for a request it could not serve.

With a token configured, a client authenticates in the handshake (subprotocols
``wirelab.v1, bearer.<token>``; a wrong token is refused with HTTP 401) or with an auth
frame as its first message within 5 s. Credentials in the URL's query string are refused
with HTTP 400 whether or not a token is configured. A draining server closes with 1001 and
the reason ``{"reconnect_after_ms": N}``.

Frames that break the contract end the connection with a close code, because the client
is out of step with the protocol: binary 1003, not a JSON object 1007, failed auth 1008,
larger than the limit 1009 (the websockets library enforces that one itself).
"""

from __future__ import annotations

import email.utils
import hmac
import struct
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson
from websockets.datastructures import Headers
from websockets.frames import CloseCode
from websockets.headers import parse_subprotocol
from websockets.http11 import Response

from .feed.event import Event, Reset
from .http.messages import CREDENTIAL_PARAMS

#: The subprotocol the server selects when a client offers it.
SUBPROTOCOL = "wirelab.v1"
#: A subprotocol ``bearer.<token>`` carries the token in the handshake, not in the URL.
BEARER_PREFIX = "bearer."
#: How long a client that did not authenticate in the handshake has to send its auth frame.
AUTH_TIMEOUT_S = 5.0
#: RFC 6455 allows 123 bytes of close reason (125-byte control frame minus the code).
MAX_CLOSE_REASON_BYTES = 123

AUTHENTICATED = b'{"type":"authenticated"}'
UNSUBSCRIBED = b'{"type":"unsubscribed"}'

# The cached event JSON starts with '{"seq":'; splicing the type in front of it reuses
# those bytes instead of encoding the event again for every connection.
_EVENT_PREFIX = b'{"type":"event",'


class ProtocolViolationError(Exception):
    """The client broke the framing contract; its connection closes with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class InvalidSinceError(ValueError):
    """A subscribe whose ``since`` is neither null nor an integer >= 0."""


def parse_message(frame: str | bytes) -> dict[str, Any]:
    """Decode one client frame into a JSON object, or raise :class:`ProtocolViolationError`."""
    if not isinstance(frame, str):
        raise ProtocolViolationError(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise ProtocolViolationError(CloseCode.INVALID_DATA, "frame is not valid JSON") from None
    if not isinstance(message, dict):
        raise ProtocolViolationError(CloseCode.INVALID_DATA, "frame must be a JSON object")
    return message


def parse_since(message: dict[str, Any]) -> int | None:
    """The ``since`` of a subscribe: ``None`` for live only, else a seq >= 0."""
    since = message.get("since")
    if since is None:
        return None
    # type() rather than isinstance(): JSON true/false decode to bool, a subclass of int.
    if type(since) is not int or since < 0:
        raise InvalidSinceError("since must be an integer >= 0, or null for live only")
    return since


def credentials_in_query(query: str) -> bool:
    """Whether a query string carries a credential (refused: URLs end up in logs)."""
    return bool(query) and any(
        name.lower() in CREDENTIAL_PARAMS for name, _ in parse_qsl(query, keep_blank_values=True)
    )


def bearer_token(headers: Headers) -> str | None:
    """The token of the first ``bearer.<token>`` subprotocol offered in the handshake.

    Raises :class:`websockets.exceptions.InvalidHeader` for a malformed header.
    """
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        for subprotocol in parse_subprotocol(value):
            if subprotocol.startswith(BEARER_PREFIX):
                return subprotocol[len(BEARER_PREFIX) :]
    return None


def tokens_match(presented: object, expected: str) -> bool:
    """Constant-time comparison, so response timing does not reveal the token."""
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


# -- server -> client ----------------------------------------------------------------------


def event_message(event: Event) -> bytes:
    """``{"type":"event","seq":..,"ts":..,"data":..}`` from the event's cached JSON."""
    return _EVENT_PREFIX + event.json[1:]


def text_frame(payload: bytes) -> bytes:
    """A complete server-to-client text frame: final, unmasked, no extension (RFC 6455 5.2).

    Valid only on connections without permessage-deflate, which the target never enables.
    """
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


class FrameCache:
    """Wire frames of recent events, built once and written as they are to every subscriber.

    Keyed by seq and checked by identity, so an event read again from the log (a new
    object, e.g. a Redis replay) is framed afresh rather than trusted by its number.
    """

    __slots__ = ("_frames", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._frames: dict[int, tuple[Event, bytes]] = {}
        self._limit = limit

    def frame(self, item: Event | Reset) -> bytes:
        """The wire frame of one item of a subscription batch (an event, or a reset)."""
        if type(item) is not Event:
            return text_frame(item.json)
        cached = self._frames.get(item.seq)
        if cached is not None and cached[0] is item:
            return cached[1]
        if len(self._frames) >= self._limit:
            # Subscribers read close to the head: dropping everything is cheap and rare.
            self._frames.clear()
        wire = text_frame(event_message(item))
        self._frames[item.seq] = (item, wire)
        return wire


def echo_reply(message: dict[str, Any], server_ts: int) -> bytes:
    return orjson.dumps(
        {
            "type": "echo",
            "id": message.get("id"),
            "ts": message.get("ts"),
            "server_ts": server_ts,
            "payload": message.get("payload"),
        }
    )


def pong_reply(message: dict[str, Any], server_ts: int) -> bytes:
    return orjson.dumps(
        {"type": "pong", "id": message.get("id"), "ts": message.get("ts"), "server_ts": server_ts}
    )


def subscribed_reply(since: int, head: int) -> bytes:
    """``since`` is where the stream starts after (the head, for a live-only subscribe)."""
    return orjson.dumps({"type": "subscribed", "since": since, "head": head})


def error_reply(code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message})


def going_away_reason(reconnect_after_ms: int) -> str:
    """Close reason of a draining server: when the client should come back."""
    reason = orjson.dumps({"reconnect_after_ms": reconnect_after_ms}).decode()
    assert len(reason) <= MAX_CLOSE_REASON_BYTES
    return reason


def describe_type(kind: object) -> str:
    """A short, safe rendering of a client's ``type`` for an error message."""
    text = repr(kind)
    return text if len(text) <= 40 else text[:37] + "..."


# -- HTTP answers on the WebSocket port ----------------------------------------------------


def json_response(
    status: HTTPStatus, body: object, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A complete HTTP response for a health probe or a refused handshake."""
    payload = orjson.dumps(body)
    response_headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ]
    )
    return Response(status.value, status.phrase, response_headers, payload)


def error_response(
    status: HTTPStatus, code: str, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    """The targets' HTTP error shape: ``{"error": {"code", "message"}}``."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)
