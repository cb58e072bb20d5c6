"""The Locust plugin in real Locust processes: what users fire is what metrics.json says.

The helpers here (a tiny locustfile and :func:`run_locust`) are shared with
``test_influx_runs.py``. The tiny user needs no target: it fires request events and records
stream figures from a counter, and each process writes what it fired to a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures import wait_until
from wirelab.metrics.results import load_results
from wirelab.processes import ManagedProcess, free_port

LOCUST = str(Path(sys.executable).with_name("locust"))

TINY_LOCUSTFILE = textwrap.dedent(
    """
    import itertools
    import json
    import os

    from locust import User, constant, events, task
    from locust.runners import MasterRunner

    import wirelab.metrics.plugin
    import wirelab.metrics.plugin as again  # a second import must not register twice
    from wirelab.metrics import recorder

    OUT = os.environ["WIRELAB_TEST_OUT"]
    counter = itertools.count()
    fired = {"requests": {}, "failures": {}, "delivered": 0}


    class Boom(Exception):
        pass


    class Tiny(User):
        wait_time = constant(float(os.environ.get("WIRELAB_TEST_WAIT", "0.02")))

        def on_start(self):
            stream = recorder().stream("sse", "sse deliver")
            stream.connects += 1
            stream.connected += 1

        def on_stop(self):
            recorder().stream("sse", "sse deliver").connected -= 1

        @task
        def fire(self):
            n = next(counter)
            name = "tiny GET /a" if n % 2 else "tiny POST /b"
            failed = n % 10 == 0
            fired["requests"][name] = fired["requests"].get(name, 0) + 1
            if failed:
                fired["failures"][name] = fired["failures"].get(name, 0) + 1
            self.environment.events.request.fire(
                request_type="rest",
                name=name,
                response_time=1.0 + n % 50,
                response_length=100,
                exception=Boom(f"request {n} failed at 0x{id(self):x}") if failed else None,
                context={},
            )
            # A delivery-lag event: figures go to the stream series, not to requests.
            recorder().stream("sse", "sse deliver").record_event("ok", 1000.0 + n % 1000)
            fired["delivered"] += 1
            self.environment.events.request.fire(
                request_type="sse",
                name="sse deliver",
                response_time=1.0,
                response_length=0,
                exception=None,
                context={"wirelab_stream": True},
            )


    @events.test_stop.add_listener
    def _dump(environment, **kwargs):
        if isinstance(environment.runner, MasterRunner):
            return
        with open(os.path.join(OUT, f"fired-{os.getpid()}.json"), "w") as out:
            json.dump(fired, out)
    """
)


@dataclass
class LocustRun:
    report_dir: Path
    out_dir: Path
    master: ManagedProcess
    workers: list[ManagedProcess]
    run_id: str

    def fired(self) -> dict:
        """What every user process fired, summed."""
        total = {"requests": {}, "failures": {}, "delivered": 0}
        for path in self.out_dir.glob("fired-*.json"):
            data = json.loads(path.read_text())
            for key in ("requests", "failures"):
                for name, count in data[key].items():
                    total[key][name] = total[key].get(name, 0) + count
            total["delivered"] += data["delivered"]
        return total

    def wait(self, timeout: float) -> int:
        """Wait for the master to exit; stop everything; return the master's exit code."""
        deadline = time.monotonic() + timeout
        while self.master.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        still_running = self.master.alive
        for process in [self.master, *self.workers]:
            process.stop(grace=5.0)
        assert not still_running, (
            f"locust master still running after {timeout}s\n" + self.master.log_tail()
        )
        return self.master.returncode

    def stop(self) -> None:
        for process in [self.master, *self.workers]:
            process.stop(grace=2.0)


def start_locust(
    tmp_path: Path,
    *,
    workers: int,
    users: int,
    run_time: str,
    sinks: str = "",
    extra_env: dict[str, str] | None = None,
) -> LocustRun:
    """Start a headless Locust run of the tiny locustfile: a master and ``workers`` workers
    on a free loopback port (``workers=0``: one local process)."""
    locustfile = tmp_path / "tiny_locustfile.py"
    locustfile.write_text(TINY_LOCUSTFILE)
    report_dir, out_dir = tmp_path / "report", tmp_path / "out"
    out_dir.mkdir()
    run_id = f"test-{tmp_path.name}"[:60]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))},
        "WIRELAB_RUN_ID": run_id,
        "WIRELAB_SCENARIO": "tiny",
        "WIRELAB_SINKS": sinks,
        "WIRELAB_INTERVAL": "1",
        "WIRELAB_TEST_OUT": str(out_dir),
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    # Failures are part of the tiny workload; Locust's exit code 1 for them is not the point.
    common = [
        "-f",
        str(locustfile),
        "--headless",
        "--loglevel",
        "INFO",
        "--exit-code-on-error",
        "0",
    ]
    if workers == 0:
        master = ManagedProcess(
            [LOCUST, *common, "-u", str(users), "-r", str(users), "-t", run_time],
            name="locust-local",
            env={**env, "WIRELAB_REPORT_DIR": str(report_dir)},
            log_path=tmp_path / "master.log",
        )
        master.start()
        return LocustRun(report_dir, out_dir, master, [], run_id)
    port = free_port()
    master = ManagedProcess(
        [
            LOCUST, *common, "--master", "--expect-workers", str(workers),
            "-u", str(users), "-r", str(users), "-t", run_time,
            "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        ],
        name="locust-master",
        env={**env, "WIRELAB_REPORT_DIR": str(report_dir)},
        log_path=tmp_path / "master.log",
    )  # fmt: skip
    worker_processes = [
        ManagedProcess(
            [LOCUST, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)],
            name=f"locust-worker-{i}",
            env=env,
            log_path=tmp_path / f"worker-{i}.log",
        )
        for i in range(workers)
    ]
    run = LocustRun(report_dir, out_dir, master, worker_processes, run_id)
    try:
        master.start()
        for worker in worker_processes:
            worker.start()
    except BaseException:
        run.stop()
        raise
    return run


def assert_totals_match_fired(run: LocustRun) -> dict:
    """metrics.json's totals equal what the users fired; returns metrics.json."""
    fired = run.fired()
    results = load_results(run.report_dir)
    requests = {name: series for (protocol, name), series in results.requests.items()}
    assert set(requests) == set(fired["requests"]), (requests.keys(), fired)
    for name, count in fired["requests"].items():
        assert requests[name].count == count, name
        assert requests[name].failures == fired["failures"].get(name, 0), name
        if requests[name].failures:
            # The exception class is the error kind; its text (ids, addresses) is nowhere.
            assert requests[name].errors == {"Boom": requests[name].failures}
    assert ("sse", "sse deliver") not in results.requests
    stream = results.streams[("sse", "sse deliver")]
    assert stream.delivered == fired["delivered"]
    assert stream.lag.count == fired["delivered"]
    return json.loads((run.report_dir / "metrics.json").read_text())


def test_local_run_writes_metrics_json_and_timeseries_matching_what_users_fired(tmp_path):
    run = start_locust(tmp_path, workers=0, users=3, run_time="3s")
    assert run.wait(timeout=30) == 0, run.master.log_tail()
    metrics = assert_totals_match_fired(run)
    assert metrics["workers"]["seen"] == ["local"]
    results = load_results(run.report_dir)
    assert results.complete and results.run_id == run.run_id and results.scenario == "tiny"
    # The interval points add up to the totals.
    counts: dict[str, int] = {}
    for point in results.series("requests"):
        counts[point.tags["name"]] = counts.get(point.tags["name"], 0) + point.fields["count"]
    assert counts == {name: s.count for (_, name), s in results.requests.items()}
    assert {p.measurement for p in results.points} >= {
        "requests",
        "streams",
        "users",
        "worker_health",
        "sink",
    }
    assert max(p.fields["users"] for p in results.series("users")) == 3
    # The stream gauge: 3 users held a stream each.
    assert max(p.fields["connected"] for p in results.series("streams")) == 3
    assert results.dropped_points == 0


def test_a_worker_killed_mid_run_is_recorded_lost_and_its_streams_stop_counting(tmp_path):
    run = start_locust(tmp_path, workers=2, users=4, run_time="9s")
    try:
        timeseries = run.report_dir / "timeseries.lp"
        all_users_up = wait_until(
            lambda: timeseries.is_file() and "users=4i" in timeseries.read_text(), 30, 0.2
        )
        assert all_users_up, run.master.log_tail()
        run.workers[1].signal(signal.SIGKILL)
    except BaseException:
        run.stop()
        raise
    run.wait(timeout=60)

    results = load_results(run.report_dir)
    assert len(results.workers_seen) == 2
    [lost] = results.workers_lost
    assert lost["worker"] in results.workers_seen
    [annotation] = results.series("annotations", kind="worker_lost")
    assert annotation.tags["worker"] == lost["worker"]
    # Each user holds one stream; the dead worker's last gauge never adds to the survivor's.
    connected = [point.fields["connected"] for point in results.series("streams")]
    assert max(connected) <= 4 and connected[-1] == 0


# -- plugin logic without Locust processes -------------------------------------------------
#
# Importing wirelab.metrics.plugin imports locust, and importing locust monkey-patches the
# whole process with gevent: that must not happen to the pytest session (other tests run
# asyncio and gRPC servers in it). These tests run their body in a fresh interpreter.


def run_python(tmp_path: Path, body: str) -> str:
    """Run ``body`` in a fresh Python with ``tmp`` bound to ``tmp_path``; return its stdout."""
    script = tmp_path / "body.py"
    script.write_text(
        f"from pathlib import Path\ntmp = Path({str(tmp_path)!r})\n" + textwrap.dedent(body)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WIRELAB_", "LOCUST_"))}
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_worker_locust_marks_missing_is_recorded_lost_and_its_streams_stop_counting(tmp_path):
    run_python(
        tmp_path,
        """
        from types import SimpleNamespace

        from wirelab.metrics.plugin import PluginConfig, RunMetrics
        from wirelab.metrics.results import load_results
        from wirelab.metrics.series import StreamSeries

        def report(connected):
            stream = StreamSeries("sse", "sse deliver", connected=connected).to_wire()
            return {"wirelab": {"requests": [], "streams": [stream]}}

        nodes = [SimpleNamespace(id=w, state="running") for w in ("w1", "w2")]
        runner = SimpleNamespace(clients=SimpleNamespace(all=nodes), user_count=4)
        run = RunMetrics(PluginConfig(run_id="r1", report_dir=tmp), runner)
        run.on_worker_report("w1", report(5))
        run.on_worker_report("w2", report(5))
        run.tick()
        nodes[1].state = "missing"
        run.on_worker_report("w1", report(5))
        run.tick()
        summary = run.finish()

        assert [lost["worker"] for lost in summary["workers"]["lost"]] == ["w2"]
        assert [a["kind"] for a in summary["annotations"]] == ["worker_lost"]
        results = load_results(tmp)
        assert [p.fields["connected"] for p in results.series("streams")] == [10, 5]
        [lost] = results.series("annotations", kind="worker_lost")
        assert lost.tags["worker"] == "w2"
        assert results.streams[("sse", "sse deliver")].connected == 10  # the peak
        """,
    )


def test_annotations_are_points_on_the_timeline_and_entries_in_metrics_json(tmp_path):
    run_python(
        tmp_path,
        """
        from wirelab.metrics import plugin
        from wirelab.metrics.plugin import PluginConfig, RunMetrics
        from wirelab.metrics.results import load_results

        # Before the master exists, annotations wait; then they are written.
        early = plugin.annotate("storm", "reconnect storm, 500 clients")
        run = RunMetrics(PluginConfig(run_id="r2", scenario="deploy", report_dir=tmp))
        plugin._plugin().run = run
        for pending in plugin._plugin().pending:
            run.add_annotation(pending)
        text = 'rolling restart of "sse", 3 replicas'
        annotation = plugin.annotate("deploy_start", text, name="sse")
        try:
            plugin.annotate("storm", "x", service="sse")
            raise AssertionError("a tag outside the schema was accepted")
        except ValueError as exc:
            assert "tags may only be" in str(exc)
        summary = run.finish()

        assert summary["annotations"] == [early, annotation]
        points = load_results(tmp).series("annotations")
        assert [p.tags["kind"] for p in points] == ["storm", "deploy_start"]
        point = points[1]
        assert point.tags == {
            "run_id": "r2", "scenario": "deploy", "kind": "deploy_start", "name": "sse"
        }
        assert point.fields == {"text": text}
        assert point.time_ns == annotation["time_ns"]
        """,
    )


def test_plugin_config_rejects_bad_values_with_the_variable_name(tmp_path):
    run_python(
        tmp_path,
        """
        from wirelab.metrics.plugin import PluginConfig

        for env, message in [
            ({"WIRELAB_INTERVAL": "0"}, "WIRELAB_INTERVAL"),
            ({"WIRELAB_FLUSH_TIMEOUT": "soon"}, "WIRELAB_FLUSH_TIMEOUT"),
            ({"WIRELAB_SINKS": "mysql://db"}, "unknown scheme"),
        ]:
            try:
                PluginConfig.from_env(env)
                raise AssertionError(f"{env} was accepted")
            except ValueError as exc:
                assert message in str(exc), exc
        config = PluginConfig.from_env(
            {
                "WIRELAB_RUN_ID": "r",
                "WIRELAB_SINKS": " influxdb://h:1/db , ",
                "WIRELAB_INTERVAL": "0.5",
            }
        )
        assert config.sinks == ("influxdb://h:1/db",) and config.interval == 0.5
        assert config.base_tags == {"run_id": "r"}
        """,
    )
