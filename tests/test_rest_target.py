"""The REST target, driven by httpx (a real HTTP client) against the real process."""

from __future__ import annotations

import signal
import socket
import threading
import time

import httpx
import pytest

JSON = {"content-type": "application/json"}


@pytest.fixture
def rest(targets):
    return targets.start("rest", args=["--rate", "50", "--max-message-bytes", "4096"])


@pytest.fixture
def client(rest):
    with httpx.Client(base_url=rest.url("rest"), timeout=10) as http:
        yield http


def _control_request_works(base_url: str) -> None:
    """A second, well-behaved client on the same server still gets answers."""
    with httpx.Client(base_url=base_url, timeout=5) as other:
        response = other.post("/items", json={"control": True})
        assert response.status_code == 201


def test_item_crud_uses_etags_and_if_match(client) -> None:
    created = client.post("/items", json={"name": "a"})
    assert created.status_code == 201
    etag = created.headers["etag"]
    location = created.headers["location"]
    assert client.get(location).json()["data"] == {"name": "a"}
    assert client.get(location, headers={"If-None-Match": etag}).status_code == 304

    missing_precondition = client.put(location, json={"name": "b"})
    assert missing_precondition.status_code == 428
    updated = client.put(location, json={"name": "b"}, headers={"If-Match": etag})
    assert updated.status_code == 200
    assert updated.headers["etag"] != etag
    stale = client.put(location, json={"name": "c"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.headers["etag"] == updated.headers["etag"]

    assert client.delete(location, headers={"If-Match": etag}).status_code == 412
    assert client.delete(location, headers={"If-Match": updated.headers["etag"]}).status_code == 204
    gone = client.get(location)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


def test_replayed_idempotency_key_returns_the_original_response(client) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = client.post("/items", json={"amount": 10}, headers=key)
    again = client.post("/items", json={"amount": 10}, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get("/items", params={"limit": 500}).json()["items"].count(first.json()) == 1
    reused = client.post("/items", json={"amount": 99}, headers=key)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_cursor_pagination_visits_every_item_once(client) -> None:
    created = [client.post("/items", json={"n": n}).json()["id"] for n in range(23)]
    client.delete(f"/items/{created[5]}")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = client.get("/items", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [item_id for item_id in created if item_id != created[5]]
    assert seen == expected
    bad = client.get("/items", params={"cursor": "not-a-cursor!"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_cursor"


def test_short_poll_returns_contiguous_events_and_304_when_nothing_is_new(targets) -> None:
    rest = targets.start("rest", args=["--rate", "0"])
    with httpx.Client(base_url=rest.url("rest"), timeout=10) as client:
        empty = client.get("/events", params={"since": 0})
        assert empty.status_code == 200
        assert empty.json()["events"] == []
        again = client.get(
            "/events", params={"since": 0}, headers={"If-None-Match": empty.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.content == b""

    busy = targets.start("rest", args=["--rate", "100"])
    with httpx.Client(base_url=busy.url("rest"), timeout=10) as client:
        time.sleep(0.3)
        page = client.get("/events", params={"since": 0, "limit": 10}).json()
        assert [event["seq"] for event in page["events"]] == list(range(1, 11))
        assert page["cursor"] == 10
        assert page["head"] >= 10


def test_long_poll_holds_until_an_event_or_the_wait_ends(targets) -> None:
    quiet = targets.start("rest", args=["--rate", "0"])
    with httpx.Client(base_url=quiet.url("rest"), timeout=10) as client:
        started = time.monotonic()
        response = client.get("/events", params={"since": 0, "wait": 1})
        held = time.monotonic() - started
        assert response.json()["events"] == []
        assert held >= 0.9

    lively = targets.start("rest", args=["--rate", "5"])
    with httpx.Client(base_url=lively.url("rest"), timeout=10) as client:
        head = client.get("/events").json()["head"]
        response = client.get("/events", params={"since": head, "wait": 30})
        events = response.json()["events"]
        assert events
        assert events[0]["seq"] == head + 1


def test_poll_past_retention_reports_a_reset(targets) -> None:
    rest = targets.start("rest", args=["--rate", "200", "--retention", "20"])
    with httpx.Client(base_url=rest.url("rest"), timeout=10) as client:
        time.sleep(0.5)
        page = client.get("/events", params={"since": 1}).json()
        assert page["reset"]["since"] == 1
        assert page["reset"]["first"] == page["events"][0]["seq"] > 2
        assert page["reset"]["lost"] == page["reset"]["first"] - 2


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b"{not json", JSON, 400, "malformed_json"),
        (b'{"a": 1}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b"[1, 2]", JSON, 422, "invalid_body"),
    ],
)
def test_bad_bodies_get_4xx_with_a_json_error(rest, client, body, headers, status, code) -> None:
    response = client.post("/items", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    _control_request_works(rest.url("rest"))


def test_credentials_in_the_url_are_refused(rest, client) -> None:
    response = client.get("/items", params={"access_token": "abc"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "credentials_in_url"


def test_unknown_paths_and_methods_are_404_and_405(client) -> None:
    assert client.get("/nope").status_code == 404
    response = client.patch("/items")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


def _raw_exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes, return everything the server answers before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_body_gets_413_and_only_that_connection_closes(rest) -> None:
    body = b'{"x": "' + b"a" * 8000 + b'"}'
    head = (
        b"POST /items HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    answer = _raw_exchange(rest.port(), head + body)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in answer
    _control_request_works(rest.url("rest"))


def test_garbage_and_huge_headers_are_refused_cleanly(rest) -> None:
    assert _raw_exchange(rest.port(), b"\x16\x03\x01garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    huge = b"GET /items HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n"
    assert _raw_exchange(rest.port(), huge).startswith(b"HTTP/1.1 431")
    _control_request_works(rest.url("rest"))


def test_bearer_token_is_required_when_configured(targets) -> None:
    rest = targets.start("rest", env={"WIRELAB_TARGET_TOKEN": "s3cret"})
    with httpx.Client(base_url=rest.url("rest"), timeout=5) as client:
        assert client.get("/healthz").status_code == 200
        refused = client.get("/items")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/items", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/items", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_sigterm_lets_the_request_in_flight_finish_and_exits_within_grace(targets) -> None:
    rest = targets.start("rest", args=["--grace", "5s", "--drain-delay", "0.5s"])
    results: dict[str, object] = {}

    def slow_request() -> None:
        with httpx.Client(base_url=rest.url("rest"), timeout=10) as client:
            results["response"] = client.post("/echo", json={"id": 1, "delay_ms": 1500})

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)
    rest.process.signal(signal.SIGTERM)
    time.sleep(0.2)
    with httpx.Client(base_url=rest.url("rest"), timeout=5) as client:
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.headers["connection"] == "close"
    worker.join(10)
    response = results["response"]
    assert response.status_code == 200
    assert response.json()["id"] == 1
    assert response.headers["connection"] == "close"
    assert rest.wait_exit(10) == 0
    # Within grace: the drain ended with nothing in flight, not cut off when grace ran out.
    assert rest.stops_clean() == [True]
