"""The machinery every other test stands on: real Redis and InfluxDB, and ManagedProcess."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests.fixtures import require_binary
from tests.fixtures.influxdb import InfluxDBServer
from tests.fixtures.redis import RedisServer
from wirelab.processes import ManagedProcess, free_port, free_ports, wait_for_port


def _is_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs; an unreaped zombie counts as gone."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# -- Redis ---------------------------------------------------------------------------------------


def test_redis_server_is_a_real_redis_server_answering_ping(redis_server: RedisServer) -> None:
    assert psutil.Process(redis_server.pid).name() == "redis-server"
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis_server.client() as client:
        assert client.ping() is True


def test_redis_url_supports_streams_with_xadd_and_xrange(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        first = client.xadd("feed", {"seq": "1"})
        second = client.xadd("feed", {"seq": "2"})
        entries = client.xrange("feed")
    assert entries == [(first, {"seq": "1"}), (second, {"seq": "2"})]


@pytest.mark.parametrize("round_", [1, 2])
def test_redis_url_is_empty_even_after_an_earlier_test_wrote_keys(
    redis_url: str, round_: int
) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        # Left behind on purpose: the next round must not see it.
        client.set(f"left-behind-{round_}", "x")


# -- InfluxDB ------------------------------------------------------------------------------------


def _count_points(server: InfluxDBServer, database: str) -> int:
    body = server.query('SELECT count("value") FROM "latency"', database=database)
    series = body["results"][0].get("series")
    if not series:
        return 0
    return int(series[0]["values"][0][1])


def test_influxdb_accepts_line_protocol_and_counts_it_back(
    influxdb_server: InfluxDBServer, influxdb_database: str
) -> None:
    now_ns = time.time_ns()
    lines = "\n".join(f"latency,host=a value={i}.5 {now_ns + i}" for i in range(5))
    influxdb_server.write(influxdb_database, lines, precision="ns")
    assert _count_points(influxdb_server, influxdb_database) == 5


def test_influxdb_database_is_fresh_for_each_test(
    influxdb_server: InfluxDBServer, influxdb_database: str
) -> None:
    assert _count_points(influxdb_server, influxdb_database) == 0
    names = influxdb_server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]
    assert [influxdb_database] in names


def test_influxdb_keeps_its_data_across_stop_and_start(
    influxdb_server: InfluxDBServer, influxdb_database: str
) -> None:
    now_ns = time.time_ns()
    lines = "\n".join(f"latency value={i} {now_ns + i}" for i in range(3))
    influxdb_server.write(influxdb_database, lines)
    first_pid = influxdb_server.pid

    influxdb_server.stop()
    assert not influxdb_server.running
    assert not influxdb_server.ping()
    assert _is_gone(first_pid)

    influxdb_server.start()
    assert influxdb_server.pid != first_pid
    assert _count_points(influxdb_server, influxdb_database) == 3


# -- ManagedProcess ------------------------------------------------------------------------------


def test_stop_ends_the_child_and_the_grandchild_it_forked(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    proc = ManagedProcess(
        _python(f"""
            import pathlib, subprocess, time
            grandchild = subprocess.Popen(["sleep", "60"])
            pathlib.Path({str(pid_file)!r}).write_text(str(grandchild.pid))
            time.sleep(60)
        """),
        name="parent",
    ).start()
    try:
        proc.wait_ready(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=10)
        grandchild = int(pid_file.read_text())
        assert not _is_gone(grandchild)
    finally:
        returncode = proc.stop(grace=5)

    assert returncode == -signal.SIGTERM
    assert _is_gone(proc.pid)
    assert _is_gone(grandchild)


def test_stop_escalates_to_sigkill_when_the_child_ignores_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = ManagedProcess(
        _python(f"""
            import pathlib, signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pathlib.Path({str(ready)!r}).touch()
            time.sleep(60)
        """),
        name="stubborn",
    ).start()
    # Only once the handler is installed does the test say anything about escalation.
    proc.wait_ready(ready.exists, timeout=10)

    returncode = proc.stop(grace=1.0)

    # Killed, not terminated: stop() escalated once the grace ran out.
    assert returncode == -signal.SIGKILL
    assert _is_gone(proc.pid)


def test_stop_kills_a_grandchild_that_ignores_sigterm_after_the_child_exited(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = ManagedProcess(
        _python(f"""
            import pathlib, subprocess, sys, time
            grandchild = subprocess.Popen([sys.executable, "-c", {stubborn!r}])
            time.sleep(0.5)  # let the grandchild install its handler
            pathlib.Path({str(pid_file)!r}).write_text(str(grandchild.pid))
            time.sleep(60)
        """),
        name="parent",
    ).start()
    try:
        proc.wait_ready(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=10)
        grandchild = int(pid_file.read_text())
    finally:
        returncode = proc.stop(grace=1.0)

    # The child obeyed SIGTERM; its orphan did not and still had to go.
    assert returncode == -signal.SIGTERM
    assert _is_gone(grandchild)


def test_stop_still_clears_the_group_when_something_else_reaped_the_child(
    tmp_path: Path,
) -> None:
    # gevent's hub reaps every child as soon as it exits; the orphan must still be stopped.
    pid_file = tmp_path / "grandchild.pid"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc = ManagedProcess(
        _python(f"""
            import pathlib, subprocess, sys, time
            grandchild = subprocess.Popen([sys.executable, "-c", {stubborn!r}])
            time.sleep(0.5)  # let the grandchild install its handler
            pathlib.Path({str(pid_file)!r}).write_text(str(grandchild.pid))
        """),
        name="parent",
    ).start()
    try:
        os.waitpid(proc.pid, 0)  # the reap ManagedProcess did not do
        grandchild = int(pid_file.read_text())
        assert not _is_gone(grandchild)
        assert not proc.alive
    finally:
        proc.stop(grace=1.0)

    assert _is_gone(grandchild)


def test_wait_ready_reports_the_exit_code_and_log_tail_when_the_child_dies(
    tmp_path: Path,
) -> None:
    log = tmp_path / "dies.log"
    proc = ManagedProcess(
        _python("""
            import sys
            for i in range(30):
                print(f"boot line {i}")
            print("fatal: port already in use", file=sys.stderr)
            sys.exit(3)
        """),
        name="dies",
        log_path=log,
    )
    with proc, pytest.raises(RuntimeError) as excinfo:
        proc.wait_ready(lambda: False, timeout=10)

    message = str(excinfo.value)
    assert "dies" in message
    assert "exited with code 3" in message
    assert "fatal: port already in use" in message
    assert "boot line 29" in message
    assert "boot line 5\n" not in message  # only the tail, not the whole log
    assert proc.returncode == 3


def test_wait_ready_times_out_with_the_last_check_error(tmp_path: Path) -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nobody home")

    with ManagedProcess(["sleep", "60"], name="sleeper") as proc:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"sleeper .* not ready after 0.3s .*nobody home"):
            proc.wait_ready(refused, timeout=0.3)
        assert time.monotonic() - started < 5
        assert proc.alive
    assert not proc.alive


def test_stop_is_idempotent_and_signal_refuses_a_stopped_process() -> None:
    never_started = ManagedProcess(["sleep", "60"], name="idle")
    assert never_started.stop() is None

    proc = ManagedProcess(["sleep", "60"], name="sleeper").start()
    first = proc.stop()
    assert first == -signal.SIGTERM
    assert proc.stop() == first
    with pytest.raises(RuntimeError, match="not running"):
        proc.signal(signal.SIGTERM)


def test_a_stopped_process_can_be_started_again_and_appends_to_its_log(tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    proc = ManagedProcess(["echo", "hello"], name="echo", log_path=log)
    for _ in range(2):
        proc.start()
        deadline = time.monotonic() + 10
        while proc.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.returncode == 0
        assert proc.stop() == 0
    assert log.read_text() == "hello\nhello\n"


def test_free_ports_are_distinct_and_wait_for_port_sees_a_listener() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        wait_for_port("127.0.0.1", listener.getsockname()[1], timeout=2)


def test_wait_for_port_raises_timeout_error_naming_the_address() -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}"):
        wait_for_port("127.0.0.1", port, timeout=0.2)


def test_require_binary_fails_with_the_install_command_instead_of_skipping() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"make test.*apt-get install"):
        require_binary("wirelab-no-such-binary")
    assert require_binary("redis-server").endswith("/redis-server")
