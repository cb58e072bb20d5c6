"""Requests, responses and errors of the targets' HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import orjson

#: Query parameters that carry credentials. A URL ends up in proxy and access logs, so the
#: targets refuse these outright rather than accept them (tokens travel in headers only).
CREDENTIAL_PARAMS = frozenset({"token", "access_token", "auth", "api_key", "apikey", "jwt"})


class HttpError(Exception):
    """A request the client got wrong (4xx) or the server could not serve (5xx).

    Rendered as a JSON body ``{"error": {"code": ..., "message": ...}}`` so clients can
    branch on ``code`` and people can read ``message``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        #: Close the connection after the response (the stream may be out of sync).
        self.close = close

    def to_response(self) -> Response:
        body = {"error": {"code": self.code, "message": self.message}}
        return Response.json(body, status=self.status, headers=self.headers)


class Request:
    """One parsed HTTP request. Header names are lower-case."""

    __slots__ = (
        "_query",
        "body",
        "headers",
        "keep_alive",
        "method",
        "params",
        "path",
        "query_string",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        #: Path parameters filled by the router, e.g. ``{"id": "42"}``.
        self.params: dict[str, str] = {}
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (last value wins)."""
        if self._query is None:
            parsed = (
                parse_qs(self.query_string, keep_blank_values=True) if self.query_string else {}
            )
            self._query = {key: values[-1] for key, values in parsed.items()}
        return self._query

    def query_int(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        """An integer query parameter, or a 400 that names it."""
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HttpError(400, "invalid_parameter", f"{name} must be an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise HttpError(400, "invalid_parameter", f"{name} must be {bound}")
        return value

    def json(self) -> Any:
        """The body as JSON; 415 for another content type, 400 for malformed JSON."""
        content_type = self.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise HttpError(415, "unsupported_media_type", "body must be application/json")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, "malformed_json", f"body is not valid JSON: {exc.msg}") from None


class Response:
    """A complete response with a known length."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        content_type: str | None = "application/json",
    ) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers) if headers else []
        if content_type is not None and body:
            self.headers.append(("Content-Type", content_type))

    @classmethod
    def json(
        cls, obj: Any, *, status: int = 200, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        return cls(orjson.dumps(obj), status=status, headers=headers)


class StreamResponse:
    """A response whose body is produced over time (SSE); sent with chunked encoding."""

    __slots__ = ("chunks", "headers", "status")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.chunks = chunks
        self.headers = list(headers) if headers else []
