"""``wait_for_targets``: every target asked in parallel, the verdict at the deadline.

Real sockets on loopback: a target that answers ``/readyz`` and a black hole that accepts
connections and never says a word (what a probe meets behind a name that takes its
resolver's whole timeout, or a wedged server).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wirelab.probes import wait_for_targets


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class BlackHole:
    """Accepts and holds every connection; counts those the client gave up on."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.abandoned = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(connection)
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        try:
            while connection.recv(4096):
                pass  # the request, read and never answered
        except OSError:
            pass
        self.abandoned += 1

    def close(self) -> None:
        self.listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def ready_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def hole() -> Iterator[BlackHole]:
    black_hole = BlackHole()
    yield black_hole
    black_hole.close()


def test_a_target_that_never_answers_holds_up_neither_the_others_nor_the_verdict(
    ready_port: int, hole: BlackHole
) -> None:
    seen: dict[str, tuple[int, int]] = {}

    def on_ready(protocol: str) -> None:
        seen[protocol] = (hole.accepted, hole.abandoned)

    # The silent one first: asked one after the other, the ready one would wait behind it.
    urls = {"ws": f"ws://127.0.0.1:{hole.port}", "rest": f"http://127.0.0.1:{ready_port}"}
    assert wait_for_targets(urls, 2.0, poll_s=0.2, on_ready=on_ready) == ["ws"]
    assert set(seen) == {"rest"}
    # When the ready one was reported, the silent one's first probe was still waiting.
    assert seen["rest"][1] == 0, seen


def test_with_no_time_left_every_target_is_still_asked_once(
    ready_port: int, hole: BlackHole
) -> None:
    urls = {"ws": f"ws://127.0.0.1:{hole.port}", "rest": f"http://127.0.0.1:{ready_port}"}
    assert wait_for_targets(urls, 0) == ["ws"]
    assert hole.accepted == 1
