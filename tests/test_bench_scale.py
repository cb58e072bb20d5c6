"""The bench's scale part on a CI-sized run: 200 idle WebSocket connections from wirelab's
Locust users and 200 from Tsung 1.7, one after the other, to one real WebSocket target;
each side's memory per connection and CPU per connect, and their ratio (correctness, not
speed: the figures exist, are positive, and the ratio is the one of the figures)."""

from __future__ import annotations

import math
import shutil
import xml.dom.minidom
from pathlib import Path

import psutil
import pytest

from wirelab_bench.scale import measure_scale, tsung_config

CONNECTIONS = 200


def test_the_tsung_session_connects_and_then_only_thinks() -> None:
    document = xml.dom.minidom.parseString(tsung_config(8082, 500, 250))
    (users,) = document.getElementsByTagName("users")
    assert (users.getAttribute("maxnumber"), users.getAttribute("arrivalrate")) == ("500", "250")
    (client,) = document.getElementsByTagName("client")
    assert client.getAttribute("use_controller_vm") == "true"
    assert int(client.getAttribute("maxusers")) > 500  # one VM holds every user
    (session,) = document.getElementsByTagName("session")
    (request,) = session.getElementsByTagName("websocket")
    assert (request.getAttribute("type"), request.getAttribute("path")) == ("connect", "/ws")
    (think,) = session.getElementsByTagName("thinktime")
    assert int(think.getAttribute("value")) >= 3600


@pytest.mark.timeout(170)
def test_wirelab_and_tsung_hold_the_same_idle_websockets_on_one_target(tmp_path: Path) -> None:
    assert shutil.which("tsung"), "tsung (Debian package) is a benchmark peer: install it"
    found = measure_scale(tmp_path, connections=CONNECTIONS, spawn_rate=200, hold=2, log=print)
    for tool in ("wirelab", "tsung"):
        row = found[tool]
        assert row["held"] >= CONNECTIONS - 10, (tool, row)  # counted at the target, less base
        # Differences between a baseline process and this one: at this size their sign is the
        # host's noise (the benchmark's own size is thousands); they must be figures.
        assert all(math.isfinite(row[key]) for key in ("kb_per_conn", "cpu_ms_per_connect")), row
    ratios = found["wirelab_over_tsung"]
    for key in ("kb_per_conn", "cpu_ms_per_connect"):
        if found["tsung"][key] <= 0:  # no ratio against a figure that is noise
            assert ratios[key] is None, ratios
            continue
        expected = found["wirelab"][key] / found["tsung"][key]
        assert ratios[key] == pytest.approx(expected, rel=0.01), key
    # Nothing of either tool outlives the part (Tsung's VM is stopped with its group).
    assert left_running(tmp_path) == []


def left_running(workdir: Path) -> list[str]:
    """Processes whose command line names a file of ``workdir``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if str(workdir) in command:
            found.append(command)
    return found
