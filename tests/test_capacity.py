"""Capacity built in: file limits raised where connections are held, targets sized from
them, and a run that cannot fit its users stopped before anything starts.

The file limits a test needs are set on the child it starts (``setrlimit`` before exec, in
its own session, stopped by pid), so what is pinned does not depend on this machine's own.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from wirelab.capacity import CLIENT_PROCESS_FDS, target_max_connections, target_process_plan
from wirelab.limits import HostLimits, listen_backlog
from wirelab.preflight import capacity_problems, client_source_addresses
from wirelab.processes import free_port
from wirelab.scenarios import Scenario, load_scenario, parse_scenario
from wirelab.targets.collector import GC_THRESHOLDS

from .file_limits import HARD, limited, open_files_of, run_limited

LIMITS = HostLimits(open_files=20_000, listen_backlog=4096, ephemeral_ports=28_232)


def scenario(**data: object) -> Scenario:
    return parse_scenario(yaml.safe_dump({"name": "t", "duration": "10s", **data}))


@contextlib.contextmanager
def target(argv: list[str], admin_port: int, soft: int, hard: int) -> Iterator[dict]:
    """A target process started under these file limits; yields its first ``/stats``."""
    command = [sys.executable, "-m", "wirelab", "targets", "serve", *argv, "--rate", "0",
               "--admin-port", str(admin_port), "--log-level", "warning"]  # fmt: skip
    with subprocess.Popen(limited(command, soft, hard), start_new_session=True) as child:
        try:
            yield child, stats(admin_port, wait=30)
        finally:
            child.terminate()
            child.wait(timeout=30)


def stats(admin_port: int, wait: float = 0.0) -> dict:
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/stats", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- file limits, raised -------------------------------------------------------------------


def test_a_locust_process_raises_its_soft_file_limit_to_the_hard_one_on_importing_the_users() -> (
    None
):
    code = "import resource, wirelab.users\nprint(*resource.getrlimit(resource.RLIMIT_NOFILE))"
    result = subprocess.run(
        limited([sys.executable, "-c", code], 256),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    soft, hard = map(int, result.stdout.split())
    # As far as this process may go: the hard limit, or higher with CAP_SYS_RESOURCE.
    assert soft == hard >= HARD, result.stdout


def test_a_target_raises_its_file_limit_and_derives_max_connections_and_backlog_from_the_host() -> (
    None
):
    admin_port = free_port()
    with target(["sse", "--port", str(free_port())], admin_port, 256, 600) as (child, first):
        assert open_files_of(child.pid) == (600, 600)
        figures = first["targets"]["sse"]
        assert figures["max_connections"] == target_max_connections(600)
        assert figures["listen_backlog"] == listen_backlog()


def test_a_target_freezes_its_start_up_heap_and_collects_young_objects_in_larger_batches() -> None:
    """Full collector passes over a heap of thousands of connections stall a target for
    seconds (see wirelab.targets.collector); a target says in /stats how it is tuned."""
    admin_port = free_port()
    with target(["ws", "--port", str(free_port())], admin_port, HARD, HARD) as (_child, first):
        collector = first["gc"]
        assert collector["thresholds"] == list(GC_THRESHOLDS)
        assert collector["frozen"] > 10_000  # modules and classes: never garbage
        assert len(collector["collections"]) == 3


def test_a_target_at_its_file_limit_refuses_new_streams_with_503_and_keeps_serving() -> None:
    port, admin_port = free_port(), free_port()
    limit = target_max_connections(400)
    streams: list[http.client.HTTPConnection] = []
    with target(["sse", "--port", str(port)], admin_port, 400, 400) as (_child, _first):
        try:
            for _ in range(limit):
                streams.append(open_stream(port, expect=200))
            # Beyond the limit: a clear "try later", not a hang or a process out of files.
            refused = [open_stream(port, expect=503) for _ in range(20)]
            body = json.loads(refused[0].sock.recv(65536).split(b"\r\n\r\n", 1)[1])
            assert body["error"]["code"] == "too_many_connections", body
            figures = stats(admin_port)["targets"]["sse"]
            assert figures["active_streams"] == limit
            assert figures["refused_connections"] == 20
            # One client leaves: the next one gets its stream.
            streams.pop().close()
            time.sleep(0.5)
            streams.append(open_stream(port, expect=200))
        finally:
            for stream in streams:
                stream.close()


def open_stream(port: int, *, expect: int) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.sock = None
    connection.connect()
    connection.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    head = connection.sock.recv(12)
    assert head.startswith(b"HTTP/1.1 %d" % expect), head
    return connection


# -- the lab's target processes --------------------------------------------------------------


def test_the_lab_serves_every_protocol_from_one_process_while_their_connections_fit_one() -> None:
    room = target_max_connections(LIMITS.open_files)
    fits = {"sse": room // 2, "ws": room // 2, "rest": 0}
    assert target_process_plan(fits, ["rest", "sse", "ws"], LIMITS.open_files) == [
        ("rest", "sse", "ws")
    ]
    beyond = {"sse": room + 1, "ws": 10, "rest": 0}
    assert target_process_plan(beyond, ["rest", "sse", "ws"], LIMITS.open_files) == [
        ("rest",), ("sse",), ("sse",), ("ws",),
    ]  # fmt: skip


def test_a_scenario_that_kills_gets_each_protocol_apart_and_a_spare_per_process_it_kills() -> None:
    """Storms and kills run on these processes: a kill of SSE must leave WebSocket up, and
    the killed process's clients must fit into the survivors, so the protocol it kills gets
    as many processes more as one kill takes; the pre-flight counts them."""
    small = {"sse": 10, "ws": 10}
    assert target_process_plan(small, ["sse", "ws"], LIMITS.open_files, separate=True) == [
        ("sse",), ("ws",),
    ]  # fmt: skip
    assert target_process_plan(
        small, ["sse", "ws"], LIMITS.open_files, separate=True, spare={"sse": 2}
    ) == [("sse",), ("sse",), ("sse",), ("ws",)]
    kills = parse_scenario(
        "name: k\nusers: {sse: 10, ws_feed: 10}\nduration: 30s\nactions:\n"
        "  - {at: 5s, do: kill, service: sse, count: 2}\n"
        "  - {at: 9s, do: kill, service: all}\n"
        "  - {at: 12s, do: drop_connections, service: all}\n"
    )
    assert not kills.replicated and kills.kill_counts() == {"sse": 2, "ws": 1}
    # 15 processes' worth of SSE users and two spares: beyond the lab's 16 per protocol.
    room = target_max_connections(LIMITS.open_files)
    kills.users, kills.workers = {"sse": 15 * room, "ws_feed": 10}, 64
    (problem,) = capacity_problems(kills, LIMITS, lab_protocols=["sse", "ws"], source_addresses=999)
    assert "need 17 target processes" in problem, problem
    kills.users = {"sse": 14 * room, "ws_feed": 10}
    assert capacity_problems(kills, LIMITS, lab_protocols=["sse", "ws"], source_addresses=999) == []


# -- the pre-flight check --------------------------------------------------------------------


def test_users_beyond_a_workers_file_limit_name_the_limit_and_the_worker_count_that_fits() -> None:
    big = scenario(workers=2, users={"ws_feed": 25_000, "sse": 15_000})
    (problem,) = capacity_problems(big, LIMITS, lab_protocols=["sse", "ws"])
    need = 20_000 + CLIENT_PROCESS_FDS
    assert problem == (
        f"40000 users on 2 workers need ~{need} file descriptors per worker, above this "
        "machine's limit of 20000 per process: raise --workers to 3"
    )
    big.workers = 3  # the fix it names is enough
    assert capacity_problems(big, LIMITS, lab_protocols=["sse", "ws"]) == []


def test_connections_beyond_one_source_addresss_ephemeral_ports_name_the_port_range() -> None:
    many = scenario(workers=4, users={"sse": 30_000})
    (problem,) = capacity_problems(many, LIMITS, lab_protocols=["sse"])
    assert "30000 sse connections" in problem and "28232 ephemeral ports" in problem
    assert problem.endswith("spread the clients over 2 source addresses")
    assert capacity_problems(many, LIMITS, lab_protocols=["sse"], source_addresses=2) == []


def test_loopback_clients_count_each_workers_address_block_and_remote_ones_what_they_are_given():
    many = scenario(workers=6, users={"sse": 60_000, "ws": 30_000, "grpc": 20_000})
    lab = client_source_addresses(many, {}, env={})
    assert lab == {"sse": 6 * 254, "ws": 6 * 254, "grpc": 1}
    assert capacity_problems(many, LIMITS, lab_protocols=["sse"], source_addresses=lab) == []
    # 20,000 gRPC users share 200 connections: no source-port problem from one address.
    remote = {"ws": "ws://10.0.0.7:8082", "sse": "http://127.0.0.9:8081,http://localhost:1"}
    counts = client_source_addresses(many, remote, env={})
    assert counts == {"sse": 6 * 254, "ws": 1, "grpc": 1}
    (problem,) = capacity_problems(many, LIMITS, source_addresses=counts)
    assert problem.startswith("30000 ws connections") and "from 1 source address(es)" in problem
    given = client_source_addresses(many, remote, env={"WIRELAB_SOURCE_ADDRESSES": "10.0.1.0/29"})
    assert given == {"sse": 6, "ws": 6, "grpc": 1}
    assert capacity_problems(many, LIMITS, source_addresses=given) == []


def test_a_replicated_run_beyond_haproxys_one_process_names_the_proxy_and_the_way_around() -> None:
    storm = scenario(
        workers=4,
        replicas=2,
        users={"ws_feed": 6_000, "sse": 6_000},
        actions=[{"at": "5s", "do": "drop_connections", "service": "all"}],
    )
    (problem,) = capacity_problems(storm, LIMITS, lab_protocols=["sse", "ws"])
    assert problem.startswith("12000 connections through the lab's HAProxy")
    assert "at most 9900 fit" in problem and "leave out replicas and actions" in problem
    # The user's own targets are theirs to size: only the workers are checked then.
    assert capacity_problems(storm, LIMITS, lab_protocols=[]) == []


def test_grpc_users_of_a_replicated_run_count_on_every_replica() -> None:
    grpc = scenario(workers=8, replicas=3, users={"grpc_feed": 19_000})
    (problem,) = capacity_problems(grpc, LIMITS, lab_protocols=["grpc"])
    assert "19000 grpc connections on 3 replicas need 19000 per replica" in problem, problem
    assert problem.endswith("since each one connects to every replica")


def test_more_target_processes_than_the_lab_starts_name_the_file_limit() -> None:
    small = HostLimits(open_files=1000, listen_backlog=4096, ephemeral_ports=28_232)
    room = target_max_connections(1000)
    wide = scenario(workers=64, users={"sse": 16 * room + 1})
    (problem,) = capacity_problems(wide, small, lab_protocols=["sse"])
    assert "need 17 target processes" in problem and "file limit of 1000" in problem
    wide.users = {"sse": 16 * room}
    assert capacity_problems(wide, small, lab_protocols=["sse"]) == []


def test_a_built_in_scenario_fits_this_kind_of_machine() -> None:
    for name in ("smoke", "reconnect-storm", "rolling-deploy"):
        loaded = load_scenario(name)
        assert capacity_problems(loaded, LIMITS, lab_protocols=loaded.protocols) == [], name


def test_wirelab_run_beyond_the_file_limit_exits_2_naming_it_before_anything_starts(
    tmp_path: Path,
) -> None:
    big = {"name": "big", "duration": "10s", "workers": 1, "users": {"sse": 1500}}
    result, reports = run_limited(tmp_path, big, 1000, 1000, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == (
        f"wirelab: error: 1500 users on 1 workers need ~{1500 + CLIENT_PROCESS_FDS} file "
        "descriptors per worker, above this machine's limit of 1000 per process: "
        "raise --workers to 2\n"
    )
    # Nothing started: the run directory (the first thing a run creates, before its
    # targets, master and workers) does not exist.
    assert not reports.exists()
    assert "wirelab run" not in result.stdout
