"""``RestUser``: CRUD the way a careful API client does it, plus a request/response echo.

Each user keeps a few items of its own and mixes create, read, update and delete on them:

- ``POST /items`` carries an ``Idempotency-Key``; on a 5xx or a connection error it is sent
  once more with the same key, and a 201 that says ``Idempotent-Replayed: true`` proves the
  first attempt landed (the retry is its own request name, so retries are visible);
- ``GET /items/{id}`` sends ``If-None-Match``; 304 is the expected answer for an unchanged item;
- ``PUT /items/{id}`` sends ``If-Match``; a 412 (someone else wrote first) is handled like a
  client should: re-read, then write again with the fresh ETag;
- ``DELETE /items/{id}`` with ``If-Match``;
- ``POST /echo``: the plain request/response round trip, and the open-model operation.

Request names are ``rest <METHOD> <path template>`` with ``request_type="rest"``, e.g.
``rest GET /items/{id}``. Point it at your own API by subclassing: change the paths, the
``item_body`` or the tasks; the helper :meth:`RestUserBase.call` and the open-model timing
come along. ``RestUserBase`` has the operations and no tasks (Locust merges a subclass's
tasks with its base's, so a class that wants only its own tasks starts from the base).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from geventhttpclient.client import HTTPClient, HTTPClientPool
from locust import between, task
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager

from .open_model import OpenModelUser
from .options import payload_size, stop_test_on_bad_config, target_urls, token
from .source_addresses import bind_source, source_addresses_for
from .tls import configure_fasthttp, env_insecure, tls_settings

__all__ = ["RestEchoUser", "RestUser", "RestUserBase"]

_JSON = "application/json"


class _SourceBoundClientPool(HTTPClientPool):
    """geventhttpclient's per-host client pool, with every new TCP socket bound to the next
    source address (see :mod:`wirelab.users.source_addresses`)."""

    def __init__(self, environment: Any, class_value: list[str] | None, **client_args: Any):
        super().__init__(**client_args)
        self._environment = environment
        self._class_value = class_value

    def get_client(self, url: Any) -> HTTPClient:
        known = len(self.clients)
        client = super().get_client(url)
        if len(self.clients) != known:
            sources = source_addresses_for(self._environment, client.host, self._class_value)
            if sources is not None:
                # geventhttpclient's socket factory hook ("tcp socket factory") on the
                # client's connection pool: bind before the pool connects.
                pool = client._connection_pool
                make = pool._create_tcp_socket

                def bound_socket(family: int, socktype: int, protocol: int) -> Any:
                    sock = make(family, socktype, protocol)
                    source = sources.next()
                    if (family == socket.AF_INET6) == (":" in source[0]):
                        bind_source(sock, source)
                    return sock

                pool._create_tcp_socket = bound_socket
        return client


def spread_sources(user: Any) -> None:
    """After ``FastHttpUser.__init__``: the user's connections come from the source
    addresses (a loopback target's 127.0.0.0/8 block, or ``--source-addresses``).

    A class that brings its own shared ``client_pool`` keeps it as it is.

    Raises:
        ValueError: ``--source-addresses`` does not parse.
    """
    agent = user.client.client
    pool = agent.clientpool
    if type(pool) is HTTPClientPool:
        class_value = getattr(user, "source_addresses", None)
        source_addresses_for(user.environment, "", class_value)  # a bad list fails here
        agent.clientpool = _SourceBoundClientPool(user.environment, class_value, **pool.client_args)


def bind_rest_target(user: Any, environment: Any) -> None:
    """Point a FastHttpUser at its REST target (``--rest-url``, else the class's ``rest_url``,
    else ``--host``; the first replica) and make it verify TLS as wirelab's settings say.

    Raises:
        MissingTargetError: no REST target given.
        TlsConfigError: the TLS settings cannot work (e.g. an unreadable ``--ca-file``).
    """
    user.host = target_urls(environment, "rest_url", user.rest_url, user.host, "http")[0]
    configure_fasthttp(user, tls_settings(environment, insecure=type(user).insecure))


class RestUserBase(OpenModelUser, FastHttpUser):
    """The REST operations, with no tasks: subclass it to run only tasks of your own."""

    abstract = True
    protocol: ClassVar[str] = "rest"
    #: Where the target address comes from (checked before users spawn).
    wirelab_target: ClassVar[tuple[str, str, str]] = ("rest_url", "rest_url", "http")
    open_name: ClassVar[str] = "rest POST /echo"
    wait_time = between(0.5, 1.5)
    #: Verify the target's certificate on https URLs: Locust's FastHttpUser does not by
    #: default. ``--tls-insecure`` / ``WIRELAB_TLS_INSECURE=1`` turns it off (self-signed
    #: labs only); ``True`` here does the same for this class. ``--ca-file`` names the CA.
    insecure: ClassVar[bool] = env_insecure()

    #: Base URL of the API; ``--rest-url``/``WIRELAB_REST_URL`` win, then this, then ``--host``.
    rest_url: ClassVar[str | None] = None
    items_path: ClassVar[str] = "/items"
    echo_path: ClassVar[str] = "/echo"
    #: Items a user keeps at most; beyond it, creating deletes the oldest first.
    max_items: ClassVar[int] = 20
    #: Payload bytes per item and echo (``--payload-size`` wins).
    payload_size: ClassVar[int | None] = None
    #: Local addresses to connect from, rotated per connection; ``--source-addresses``
    #: wins. Unset, loopback targets spread over 127.0.0.0/8 (see
    #: :mod:`wirelab.users.source_addresses`).
    source_addresses: ClassVar[list[str] | None] = None

    def __init__(self, environment: Any) -> None:
        with stop_test_on_bad_config(self):
            bind_rest_target(self, environment)
        super().__init__(environment)
        with stop_test_on_bad_config(self):
            spread_sources(self)
        self.items: dict[int, str] = {}
        self.payload = "x" * payload_size(environment, self.payload_size)
        bearer = token()
        self.auth_headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        self._json_headers = {"Content-Type": _JSON, "Accept": _JSON, **self.auth_headers}
        self._item_name = f"{self.protocol} {{method}} {self.items_path}/{{{{id}}}}"

    # -- the one way requests are made ------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        name: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
        intended: float | None = None,
        context: dict[str, Any] | None = None,
        inspect: Callable[[ResponseContextManager, dict[str, Any]], None] | None = None,
    ) -> ResponseContextManager:
        """Send one request and report it as ``request_type=rest`` under ``name``.

        A status outside ``expect`` is a failure. With ``intended`` (open model) the
        latency runs from the intended start and ``service_time_s`` goes in the context.
        ``inspect(response, context)`` runs before the event fires, to add to its context.
        """
        sent = time.perf_counter()
        with self.client.request(
            method,
            path,
            name=name,
            data=body,
            headers=headers or self._json_headers,
            catch_response=True,
            context=context or {},
        ) as response:
            meta = response.request_meta
            meta["request_type"] = self.protocol
            if intended is not None:
                meta["context"]["service_time_s"] = meta["response_time"] / 1000
                # From the intended start; a start sent early counts from its send.
                meta["response_time"] += max(0.0, sent - intended) * 1000
            status = response.status_code
            if inspect is not None:
                inspect(response, meta["context"])
            if status in expect:
                response.success()
            elif status:
                response.failure(f"HTTP {status}")
            else:
                response.failure(getattr(response, "error", None) or ConnectionError("no response"))
        return response

    def item_body(self) -> dict[str, Any]:
        """The JSON body of a created or replaced item."""
        return {"name": "wirelab", "payload": self.payload}

    def _item_path(self, item_id: int) -> str:
        return f"{self.items_path}/{item_id}"

    def _name(self, method: str) -> str:
        return self._item_name.format(method=method)

    # -- operations (each usable from a task, a subclass or the open model) -------------

    def create_item(self, intended: float | None = None) -> int | None:
        """``POST /items`` with an Idempotency-Key; one retry with the same key on 5xx/error."""
        key = uuid.uuid4().hex
        body = orjson.dumps(self.item_body())
        headers = {**self._json_headers, "Idempotency-Key": key}
        name = f"{self.protocol} POST {self.items_path}"
        response = self.call(
            "POST", self.items_path, name, body=body, headers=headers, expect=(201,),
            intended=intended,
        )  # fmt: skip
        if response.status_code == 0 or response.status_code >= 500:
            response = self.call(
                "POST", self.items_path, f"{name} retry", body=body, headers=headers,
                expect=(201,), context={"idempotency_key_retry": True},
                inspect=_note_replay,
            )  # fmt: skip
        if response.status_code != 201:
            return None
        item = orjson.loads(response.content)
        self.items[int(item["id"])] = response.headers.get("ETag") or ""
        return int(item["id"])

    def read_item(self, item_id: int, intended: float | None = None) -> str | None:
        """``GET`` with ``If-None-Match``: 304 (unchanged) or 200 (new ETag); the ETag."""
        etag = self.items.get(item_id)
        headers = {**self.auth_headers, "Accept": _JSON}
        if etag:
            headers["If-None-Match"] = etag
        response = self.call(
            "GET", self._item_path(item_id), self._name("GET"), headers=headers,
            expect=(200, 304), intended=intended,
        )  # fmt: skip
        if response.status_code == 404:
            self.items.pop(item_id, None)
            return None
        if response.status_code == 200:
            etag = response.headers.get("ETag") or etag
            self.items[item_id] = etag or ""
        return etag

    def update_item(
        self, item_id: int, etag: str | None = None, intended: float | None = None
    ) -> bool:
        """``PUT`` with ``If-Match``; on 412 re-read and write once more with the fresh ETag."""
        etag = etag if etag is not None else self.items.get(item_id, "")
        body = orjson.dumps(self.item_body())
        name = self._name("PUT")
        response = self.call(
            "PUT", self._item_path(item_id), name, body=body,
            headers={**self._json_headers, "If-Match": etag}, expect=(200, 412),
            intended=intended,
        )  # fmt: skip
        if response.status_code == 412:
            # Lost an optimistic-concurrency race: the answer is to re-read, not to fail.
            self.items.pop(item_id, None)  # force a full GET, not a conditional one
            fresh = self.read_item(item_id)
            if fresh is None:
                return False
            response = self.call(
                "PUT", self._item_path(item_id), name, body=body,
                headers={**self._json_headers, "If-Match": fresh}, expect=(200,),
                context={"after_412": True},
            )  # fmt: skip
        if response.status_code != 200:
            return False
        self.items[item_id] = response.headers.get("ETag") or ""
        return True

    def delete_item(self, item_id: int, intended: float | None = None) -> bool:
        """``DELETE`` with ``If-Match``; the item leaves this user's set either way."""
        etag = self.items.pop(item_id, None)
        headers = {**self.auth_headers}
        if etag:
            headers["If-Match"] = etag
        response = self.call(
            "DELETE", self._item_path(item_id), self._name("DELETE"), headers=headers,
            expect=(204,), intended=intended,
        )  # fmt: skip
        return response.status_code == 204

    def echo(self, intended: float | None = None) -> bool:
        """``POST /echo``: one request/response round trip."""
        body = b'{"payload":"%s"}' % self.payload.encode()
        response = self.call(
            "POST", self.echo_path, f"{self.protocol} POST {self.echo_path}", body=body,
            expect=(200,), intended=intended,
        )  # fmt: skip
        return response.status_code == 200

    def open_operation(self, intended: float) -> None:
        """Open model: one ``POST /echo`` per start (override for another operation)."""
        self.echo(intended)


def _note_replay(response: ResponseContextManager, context: dict[str, Any]) -> None:
    """A retried POST's answer: ``Idempotent-Replayed: true`` means the first attempt had
    landed and this is its stored response; without it, this attempt created the item."""
    if response.status_code == 201:
        context["idempotent_replayed"] = response.headers.get("Idempotent-Replayed") == "true"


class RestUser(RestUserBase):
    """CRUD mix with ETag/If-Match and Idempotency-Key retries, and ``POST /echo``.

    Locust adds a subclass's tasks to these; to run only your own, subclass
    :class:`RestUserBase` instead.
    """

    abstract = True

    # -- the closed-model mix -----------------------------------------------------------

    def _some_item(self) -> int | None:
        if not self.items:
            return None
        # Round-robin through the user's items: cheap, and every item gets read and written.
        item_id = next(iter(self.items))
        self.items[item_id] = self.items.pop(item_id)
        return item_id

    @task(2)
    def create(self) -> None:
        if len(self.items) >= self.max_items:
            self.delete_item(next(iter(self.items)))
        self.create_item()

    @task(4)
    def read(self) -> None:
        item_id = self._some_item()
        if item_id is None:
            self.create_item()
        else:
            self.read_item(item_id)

    @task(2)
    def update(self) -> None:
        item_id = self._some_item()
        if item_id is None:
            self.create_item()
        else:
            self.update_item(item_id)

    @task(1)
    def delete(self) -> None:
        item_id = self._some_item()
        if item_id is None:
            self.create_item()
        else:
            self.delete_item(item_id)

    @task(2)
    def echo_task(self) -> None:
        self.echo()


class RestEchoUser(RestUserBase):
    """Only ``POST /echo``: stateless request/response, for runs across several replicas.

    The reference REST target keeps its items in each replica's memory, so a CRUD mix behind
    a balancer reads items another replica created (404), deploy or not. Deploy and storm
    scenarios use this user for their REST traffic.
    """

    abstract = True

    @task
    def echo_task(self) -> None:
        self.echo()
