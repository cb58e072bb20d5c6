"""RestUser: the CRUD mix against the real REST target, 412 handling, idempotent retries."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.test_users_support import (
    assert_no_failures,
    run_users,
    shared_targets,
    stat,
    write_locustfile,
)

module_targets = pytest.fixture(scope="module", name="module_targets")(shared_targets)

CRUD_NAMES = [
    "rest POST /items",
    "rest GET /items/{id}",
    "rest PUT /items/{id}",
    "rest DELETE /items/{id}",
    "rest POST /echo",
]


def test_rest_user_runs_the_crud_mix_with_named_requests_and_no_failures(
    module_targets, tmp_path
) -> None:
    target = module_targets.start("rest", args=["--rate", "0"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant
        from wirelab.users import RestUser

        class Client(RestUser):
            wait_time = constant(0.01)
        """,
    )
    result = run_users(locustfile, users=3, duration=2.5, args=["--rest-url", target.url("rest")])
    assert_no_failures(result)
    for name in CRUD_NAMES:
        assert stat(result, "rest", name)["count"] > 0, name
    assert all(entry["request_type"] == "rest" for entry in result["stats"].values())


def test_a_stale_write_gets_412_then_rereads_and_writes_again(module_targets, tmp_path) -> None:
    target = module_targets.start("rest", args=["--rate", "0"])
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant, task
        from wirelab.users import RestUserBase

        class StaleWriter(RestUserBase):
            wait_time = constant(0.05)

            @task
            def lose_a_race(self):
                item = self.create_item()
                stale = self.items[item]
                self.update_item(item)  # the ETag moves on
                self.update_item(item, etag=stale)  # as a client that read before it did
                self.delete_item(item)
        """,
    )
    result = run_users(locustfile, users=2, duration=2, args=["--rest-url", target.url("rest")])
    assert_no_failures(result)
    creates = stat(result, "rest", "rest POST /items")["count"]
    assert creates > 5
    # Per iteration: a PUT, the stale PUT (412, expected), and the PUT after re-reading.
    assert stat(result, "rest", "rest PUT /items/{id}")["count"] >= 3 * creates - 6
    assert result["contexts"]["rest PUT /items/{id}"]["after_412"] >= creates - 2
    assert stat(result, "rest", "rest GET /items/{id}")["count"] >= creates - 2


class _FlakyItems(BaseHTTPRequestHandler):
    """POST /items answers 503 the first time a key is seen, then the stored 201 replay."""

    keys: Counter[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Idempotency-Key", "")
        self.keys[key] += 1
        if self.keys[key] == 1:
            self._send(503, b'{"error":{"code":"unavailable","message":"try again"}}', {})
            return
        body = json.dumps({"id": len(self.keys), "name": "wirelab"}).encode()
        self._send(201, body, {"ETag": '"1"', "Idempotent-Replayed": "true"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_items() -> Iterator[tuple[str, Counter[str]]]:
    keys: Counter[str] = Counter()
    handler = type("Handler", (_FlakyItems,), {"keys": keys, "protocol_version": "HTTP/1.1"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", keys
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_failed_post_is_retried_once_with_the_same_idempotency_key(flaky_items, tmp_path) -> None:
    url, keys = flaky_items
    locustfile = write_locustfile(
        tmp_path,
        """
        from locust import constant, task
        from wirelab.users import RestUserBase

        class Creator(RestUserBase):
            wait_time = constant(0.05)

            @task
            def create(self):
                self.create_item()
        """,
    )
    result = run_users(locustfile, users=1, duration=1.5, args=["--rest-url", url])
    first = stat(result, "rest", "rest POST /items")
    retry = stat(result, "rest", "rest POST /items retry")
    assert first["count"] > 3 and first["failures"] == first["count"]  # every first try: 503
    # The run's end stops the user wherever it is, so the last first try may have no retry
    # (seen in CI: 16 retries for 17 first tries); every earlier one has exactly one.
    assert first["count"] - 1 <= retry["count"] <= first["count"] and retry["failures"] == 0
    assert result["contexts"]["rest POST /items retry"]["idempotent_replayed"] == retry["count"]
    # Each key was sent twice, the original and its one retry, never a third time; at most
    # one (the one the run's end cut off) was sent only once.
    assert set(keys.values()) <= {1, 2} and sum(v == 2 for v in keys.values()) >= retry["count"]
    assert sum(v == 1 for v in keys.values()) <= 1
