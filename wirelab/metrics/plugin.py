"""The Locust plugin: record on workers, merge exactly on the master, write to the sinks.

Import it from a locustfile (``import wirelab.metrics.plugin``); importing registers the
listeners on ``locust.events`` once, however often or under whatever name it is imported.

Configuration, from environment variables that ``wirelab run`` sets on every process:

``WIRELAB_RUN_ID``
    Tag of every point; a run's identity in InfluxDB (default: ``adhoc-<UTC time>``).
``WIRELAB_SCENARIO``
    Tag of every point (default: none).
``WIRELAB_REPORT_DIR``
    Master only: where ``metrics.json`` and the embedded ``timeseries.lp`` go. Without it
    nothing is written locally.
``WIRELAB_SINKS``
    Comma-separated sink URLs (see :mod:`wirelab.metrics.sinks`); empty means the embedded
    file sink only.
``WIRELAB_INTERVAL``
    Seconds between points, and between worker reports (default 1).
``WIRELAB_FLUSH_TIMEOUT``
    Seconds the master waits at the end for sinks to deliver what they hold (default 10).

What happens where:

* every process with users: Locust request events go to the process's
  :func:`~wirelab.metrics.recorder.recorder` (events marked ``context["wirelab_stream"]``
  are delivery-lag events whose figures the users record into stream series themselves);
* every process with users runs a loop-lag timer (:mod:`wirelab.metrics.looplag`) from the
  users' start until they are told to stop;
* workers: Locust's worker report interval is set to ``WIRELAB_INTERVAL``, and every report
  carries ``data["wirelab"]``: the recorder's delta, a health sample, the interval's
  loop-lag and host-lag histograms and any annotations;
* master: every delta is merged into one :class:`~wirelab.metrics.recorder.Aggregate`; every
  interval the interval's points (see :mod:`wirelab.metrics.lineprotocol`) go to every
  sink; workers Locust marks ``missing`` are recorded as lost and their open streams stop
  counting; every health sample and lag histogram goes to the run's
  :class:`~wirelab.metrics.generator.GeneratorHealth` (the live verdict:
  :func:`wirelab.metrics.generator.generator_status`); at the end
  ``REPORT_DIR/metrics.json`` holds the run's totals (read it back with
  :func:`wirelab.metrics.results.load_results`);
* a local (non-distributed) run does both in one process.

One run per process, or one per test: a headless master (``wirelab run``, the cluster
``master`` role) merges one run from its start to its ``quitting``. A master with a web UI
(lab mode: ``wirelab up``, the cluster ``ui`` role) merges one run per test started in the
UI, each with its own run id and directory inside ``WIRELAB_REPORT_DIR``, finished (its
``metrics.json`` written) once the workers' last reports of that test are in; see
:mod:`wirelab.metrics.per_test`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import locust
import locust.runners
import orjson

from ..exitcodes import EXIT_USAGE
from .final_reports import final_report_timeout, wait_for_final_reports
from .generator import GeneratorHealth, watch
from .health import health_report
from .lineprotocol import (
    Point,
    annotation_point,
    encode_many,
    health_point,
    request_point,
    sink_point,
    stream_point,
    users_point,
)
from .looplag import loop_lag
from .per_test import per_test_config
from .recorder import Aggregate, recorder
from .results import METRICS_FILE, TIMESERIES_FILE
from .series import RequestSeries, StreamSeries
from .sinks import FileSink, Sink, open_sink, parse_sink_url

__all__ = [
    "ANNOTATION_TAGS",
    "PluginConfig",
    "RunMetrics",
    "annotate",
    "base_tags",
    "current_run",
    "plugin_loaded",
    "register",
    "write_points",
]

logger = logging.getLogger("wirelab.metrics")

#: The worker tag of a local (non-distributed) run's own health.
LOCAL_WORKER = "local"
#: Tags an annotation may carry besides its kind.
ANNOTATION_TAGS = frozenset({"protocol", "name", "worker", "replica"})
DEFAULT_INTERVAL_S = 1.0
DEFAULT_FLUSH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """The plugin's settings (see the module docstring for the variables)."""

    run_id: str
    scenario: str = ""
    report_dir: Path | None = None
    sinks: tuple[str, ...] = ()
    interval: float = DEFAULT_INTERVAL_S
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PluginConfig:
        """Read and validate the ``WIRELAB_*`` variables (``wirelab run`` calls this early,
        so a bad value is a usage error before any process starts).

        Raises:
            ValueError: a value is invalid; the message names the variable.
        """
        env = os.environ if env is None else env
        interval = _positive_float(env, "WIRELAB_INTERVAL", DEFAULT_INTERVAL_S)
        flush_timeout = _positive_float(env, "WIRELAB_FLUSH_TIMEOUT", DEFAULT_FLUSH_TIMEOUT_S)
        sinks = tuple(url.strip() for url in env.get("WIRELAB_SINKS", "").split(",") if url.strip())
        for url in sinks:
            parse_sink_url(url, env)
        report_dir = env.get("WIRELAB_REPORT_DIR") or None
        return cls(
            run_id=env.get("WIRELAB_RUN_ID")
            or time.strftime("adhoc-%Y%m%dT%H%M%SZ", time.gmtime()),
            scenario=env.get("WIRELAB_SCENARIO", ""),
            report_dir=Path(report_dir) if report_dir else None,
            sinks=sinks,
            interval=interval,
            flush_timeout=flush_timeout,
        )

    @property
    def base_tags(self) -> dict[str, str]:
        """The tags every point carries."""
        tags = {"run_id": self.run_id, "scenario": self.scenario}
        return {key: value for key, value in tags.items() if value}


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be more than 0 seconds")
    return value


# -- the master's (or a local run's) side ---------------------------------------------------


class RunMetrics:
    """Everything the master keeps for one run: the aggregate, sinks, annotations, workers.

    Live, for a web UI: ``aggregate.health`` holds each worker's latest health sample, and
    ``generator`` every worker's CPU and loop lag so far, with the loop-lag histograms
    merged per worker (``generator.workers[id].loop_lag``) and for the run
    (``generator.loop_lag``).
    """

    def __init__(self, config: PluginConfig, runner: Any = None, *, local: bool = False) -> None:
        self.config = config
        self.runner = runner
        self.local = local
        self.aggregate = Aggregate()
        self.sinks: list[Sink] = []
        if config.report_dir is not None:
            self.sinks.append(FileSink(config.report_dir / TIMESERIES_FILE))
        for url in config.sinks:
            self.sinks.append(open_sink(url))
        self.annotations: list[dict[str, Any]] = []
        self.lost: dict[str, dict[str, Any]] = {}
        #: Reports merged per worker (a per-test run waits on them for its last figures).
        self.reports_from: dict[str, int] = {}
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.intervals = 0
        self._loop: gevent.Greenlet | None = None
        self._finished = False
        self._warned_plain_worker = False
        self.generator = GeneratorHealth(config.interval)
        watch(self.generator, lambda: (self.aggregate.requests, self.aggregate.streams))

    def start(self) -> None:
        """Start writing one set of points per interval (idempotent)."""
        if self.started_at is None:
            self.started_at = time.time()
        self.generator.start(self.started_at)
        if self._loop is None and not self._finished:
            self._loop = gevent.spawn(self._run)

    def _run(self) -> None:
        interval = self.config.interval
        next_tick = time.monotonic() + interval
        while True:
            gevent.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += interval
            if next_tick < time.monotonic():  # fell behind (a stalled loop): don't burst
                next_tick = time.monotonic() + interval
            try:
                self.tick()
            except Exception:
                logger.exception("metrics interval failed")

    def on_worker_report(self, worker: str, data: Mapping[str, Any]) -> None:
        """Merge one worker report (its ``wirelab`` entry); a finished run takes no more."""
        if self._finished:
            return
        payload = data.get("wirelab")
        if payload is None:
            if not self._warned_plain_worker:
                self._warned_plain_worker = True
                logger.warning(
                    "worker %s sends no wirelab metrics: its locustfile must import "
                    "wirelab.metrics.plugin",
                    worker,
                )
            return
        self.aggregate.add(worker, payload)
        self.reports_from[worker] = self.reports_from.get(worker, 0) + 1
        self.generator.add(worker, payload, time.time())
        for annotation in payload.get("annotations", ()):
            self.add_annotation(annotation)

    def add_annotation(self, annotation: dict[str, Any]) -> None:
        """Keep an annotation for the report and write its point to every sink now."""
        self.annotations.append(annotation)
        point = annotation_point(
            annotation["kind"],
            annotation["text"],
            self.config.base_tags,
            annotation["time_ns"],
            annotation.get("tags"),
        )
        self._write([point])

    def tick(self) -> None:
        """Write the interval's points: merge (local run), check workers, encode, send."""
        now_ns = time.time_ns()
        if self.local:
            payload = {**recorder().take_delta(), **health_report()}
            self.aggregate.add(LOCAL_WORKER, payload)
            self.generator.add(LOCAL_WORKER, payload, time.time())
        self._check_workers()
        requests, streams = self.aggregate.take_interval()
        health = self.aggregate.take_health()
        tags = self.config.base_tags
        points = [request_point(series, tags, now_ns) for series in requests.values()]
        points += [stream_point(series, tags, now_ns) for series in streams.values()]
        points.append(users_point(self._user_count(), tags, now_ns))
        points += [health_point(worker, sample, tags, now_ns) for worker, sample in health.items()]
        for sink in self.sinks:
            stats = sink.stats()
            figures = {
                "buffered": stats.buffered,
                "dropped": stats.dropped,
                "retries": stats.retries,
                "written": stats.written,
            }
            points.append(sink_point(stats.name, figures, tags, now_ns))
        self._write(points)
        self.intervals += 1

    def _write(self, points: list[Point]) -> None:
        lines = encode_many(points)
        for sink in self.sinks:
            try:
                sink.write(lines)
            except Exception:
                logger.exception("sink %s failed to take %d points", sink.name, len(lines))

    def _user_count(self) -> int:
        try:
            return int(self.runner.user_count) if self.runner is not None else 0
        except Exception:
            return 0

    def _check_workers(self) -> None:
        clients = getattr(self.runner, "clients", None)
        if clients is None:
            return
        known = set()
        for node in list(clients.all):
            known.add(node.id)
            if node.state == locust.runners.STATE_MISSING:
                if node.id not in self.lost:
                    self._lose(node.id)
            elif node.id in self.lost and "back_at" not in self.lost[node.id]:
                self.lost[node.id]["back_at"] = time.time()
                self.add_annotation(
                    _annotation("worker_back", f"worker {node.id} is back", worker=node.id)
                )
        # A worker that quit (or that Locust removed) holds no streams any more.
        for worker in list(self.aggregate.connected):
            if worker not in known and worker != LOCAL_WORKER:
                self.aggregate.forget_worker(worker)

    def _lose(self, worker: str) -> None:
        record = {"worker": worker, "at": time.time()}
        self.lost[worker] = record
        self.aggregate.forget_worker(worker)
        logger.warning("worker %s lost (no heartbeat); its open streams no longer count", worker)
        self.add_annotation(
            _annotation("worker_lost", f"worker {worker} stopped sending heartbeats", worker=worker)
        )

    def users_stopping(self) -> None:
        """The users are told to stop: the generator's figures no longer count."""
        self.generator.stop(time.time())

    def finish(self, ended_at: float | None = None) -> dict[str, Any]:
        """End of run: last interval, final (bounded) flush of every sink, ``metrics.json``.

        ``ended_at``: when the run ended (default now); a test of the web UI ended when its
        users had stopped, not when its last reports came in.
        Idempotent; returns the summary that ``metrics.json`` holds.
        """
        if self._finished:
            return self.summary()
        self._finished = True
        if self._loop is not None:
            self._loop.kill(block=True, timeout=2.0)
            self._loop = None
        self.ended_at = time.time() if ended_at is None else ended_at
        if self.started_at is None:
            self.started_at = self.ended_at
        self.generator.stop(self.ended_at)
        try:
            self.tick()
        except Exception:
            logger.exception("final metrics interval failed")
        closers = [gevent.spawn(sink.close, self.config.flush_timeout) for sink in self.sinks]
        gevent.joinall(closers, timeout=self.config.flush_timeout + 3.0)
        summary = self.summary()
        if self.config.report_dir is not None:
            _write_json(self.config.report_dir / METRICS_FILE, summary)
        dropped = summary["dropped_points"]
        if dropped:
            logger.error("sinks dropped %d points in this run; see metrics.json", dropped)
        return summary

    def summary(self) -> dict[str, Any]:
        """The run's totals and bookkeeping, in the form of ``metrics.json``."""
        peaks = self.aggregate.connected_peak
        sinks = [sink.stats().to_dict() for sink in self.sinks]
        return {
            "version": 1,
            "run_id": self.config.run_id,
            "scenario": self.config.scenario,
            "interval_s": self.config.interval,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "intervals": self.intervals,
            "totals": {
                "requests": [
                    {**series.to_wire(), **request_summary(series)}
                    for series in self.aggregate.requests.values()
                ],
                "streams": [
                    {
                        **series.to_wire(),
                        "connected_peak": peaks.get(series.key, 0),
                        **stream_summary(series),
                    }
                    for series in self.aggregate.streams.values()
                ],
            },
            "workers": {
                "seen": sorted(self.aggregate.workers),
                "lost": list(self.lost.values()),
                "reports": self.aggregate.reports,
            },
            "annotations": list(self.annotations),
            "generator": self.generator.to_wire(),
            "sinks": sinks,
            "dropped_points": sum(stats["dropped"] for stats in sinks),
        }


_SUMMARY_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def _histogram_ms(histogram: Any) -> dict[str, float | None]:
    if not histogram:
        return {}
    values = histogram.quantiles(list(_SUMMARY_QUANTILES.values()))
    summary = {name: _ms(values[q]) for name, q in _SUMMARY_QUANTILES.items()}
    summary["max"] = _ms(histogram.max)
    summary["min"] = _ms(histogram.min)
    summary["mean"] = _ms(histogram.mean)
    return summary


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000.0, 4)


def request_summary(series: RequestSeries) -> dict[str, Any]:
    """Computed figures of a request series: ``ms`` (latency) and ``svc_ms`` (service time)
    with p50/p90/p95/p99/p999/max/min/mean in milliseconds."""
    summary: dict[str, Any] = {"ms": _histogram_ms(series.latency)}
    if series.service:
        summary["svc_ms"] = _histogram_ms(series.service)
    return summary


def stream_summary(series: StreamSeries) -> dict[str, Any]:
    """Computed figures of a stream series: ``lag_ms`` and ``reconnect_ms``."""
    return {
        "lag_ms": _histogram_ms(series.lag),
        "reconnect_ms": _histogram_ms(series.reconnect_time),
    }


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    os.replace(temporary, path)  # a reader never sees half a file


# -- the plugin: one per process, whatever imported it --------------------------------------


def _status_of(exception: Any) -> str:
    """`` (UNAVAILABLE)`` for a gRPC error: a status code is a small fixed set, and without it
    every gRPC failure reads the same (``_InactiveRpcError``)."""
    code = getattr(exception, "code", None)
    if not callable(code):
        return ""
    try:
        status = code()
    except Exception:
        return ""
    name = getattr(status, "name", None)
    return f" ({name})" if isinstance(name, str) else ""


def _annotation(kind: str, text: str, time_ns: int | None = None, **tags: str) -> dict[str, Any]:
    if not kind or not isinstance(kind, str):
        raise ValueError("an annotation needs a kind")
    unknown = set(tags) - ANNOTATION_TAGS
    if unknown:
        raise ValueError(
            f"annotation tags may only be {', '.join(sorted(ANNOTATION_TAGS))} "
            f"(got {', '.join(sorted(unknown))}); put details in the text"
        )
    if time_ns is None:
        time_ns = time.time_ns()
    return {
        "at": time_ns / 1e9,
        "time_ns": time_ns,
        "kind": kind,
        "text": str(text),
        "tags": {key: str(value) for key, value in tags.items() if value},
    }


class _Plugin:
    """Per-process state. Stored on the events object, so a second import (or a reload)
    finds the same state instead of registering twice."""

    def __init__(self) -> None:
        self.role: str | None = None  # "master" | "worker" | "local"
        self.config: PluginConfig | None = None
        self.runner: Any = None
        self.run: RunMetrics | None = None
        #: Annotations waiting for the next worker report (or for the master to start).
        self.pending: list[dict[str, Any]] = []
        #: Lab mode (a master with a web UI): one run per test, not one per process.
        self.per_test = False
        self.tests = 0
        #: While a stopped test waits for its last reports: the greenlet that waits, and
        #: when its users had stopped (the end of its run).
        self._finishing: gevent.Greenlet | None = None
        self._waiting = False
        self._stopped_at: float | None = None

    # listeners ---------------------------------------------------------------------------

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float | None,
        response_length: int | None = 0,
        exception: Any = None,
        context: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if context and context.get("wirelab_stream"):
            return  # the user recorded this into its stream series
        error = None
        if exception is not None:
            # The class, never the text: texts carry ids and addresses (unbounded keys).
            error = type(exception).__name__ if isinstance(exception, BaseException) else "error"
            error += _status_of(exception)
        service = context.get("service_time_s") if context else None
        retried = bool(context.get("retried")) if context else False
        recorder().request(
            request_type,
            name,
            (response_time or 0.0) / 1000.0,
            ok=exception is None,
            size=int(response_length or 0),
            service_s=service,
            error=error,
            retried=retried,
        )

    def on_init(self, environment: Any, runner: Any = None, web_ui: Any = None, **_: Any) -> None:
        try:
            self.config = PluginConfig.from_env()
        except ValueError as exc:
            logger.error("wirelab metrics: %s", exc)
            raise SystemExit(EXIT_USAGE) from exc
        if isinstance(runner, locust.runners.WorkerRunner):
            self.role = "worker"
            locust.runners.WORKER_REPORT_INTERVAL = self.config.interval
            return
        if isinstance(runner, locust.runners.MasterRunner):
            self.role = "master"
        elif runner is not None:
            self.role = "local"
        else:
            return
        self.runner = runner
        # Started from a web UI, tests come and go while the process stays: each gets a run
        # (opened at its start, see on_test_start); a headless process is one run.
        self.per_test = web_ui is not None
        if self.per_test:
            return
        try:
            self.run = RunMetrics(self.config, runner, local=self.role == "local")
        except (ValueError, OSError) as exc:
            logger.error("wirelab metrics: cannot open sinks: %s", exc)
            raise SystemExit(EXIT_USAGE) from exc
        self._take_pending()

    def _take_pending(self) -> None:
        assert self.run is not None
        for annotation in self.pending:
            self.run.add_annotation(annotation)
        self.pending.clear()

    def on_test_start(self, **_: Any) -> None:
        if self.role in ("worker", "local"):
            loop_lag().start()
        if self.per_test:
            self._start_test()
        if self.run is not None:
            self.run.start()

    def _start_test(self) -> None:
        """A fresh run for the test the web UI just started."""
        assert self.config is not None
        self._finish_now("the next test started before its last reports came in")
        self.tests += 1
        config = per_test_config(self.config, self.tests, time.time())
        try:
            self.run = RunMetrics(config, self.runner, local=self.role == "local")
        except (ValueError, OSError) as exc:  # the UI stays up; this test has no record
            self.run = None
            logger.error("wirelab metrics: test %s: cannot open sinks: %s", config.run_id, exc)
            return
        self._take_pending()
        logger.info("wirelab: test %s started", config.run_id)

    def on_test_stop(self, **_: Any) -> None:
        run = self.run
        if not self.per_test or run is None or run._finished or self._finishing is not None:
            return
        self._stopped_at = time.time()
        self._finishing = gevent.spawn(self._finish_test, run)

    def _finish_test(self, run: RunMetrics) -> None:
        """Once every worker's last report of the test is in (bounded), write its run."""
        environment = getattr(self.runner, "environment", None)
        if getattr(self.runner, "clients", None) is not None:
            self._waiting = True
            owed = wait_for_final_reports(
                self.runner,
                set(run.aggregate.workers),
                run.reports_from,
                timeout=final_report_timeout(
                    getattr(environment, "stop_timeout", None), run.config.interval
                ),
            )
            if owed:
                logger.warning(
                    "test %s: no last report from %s; written without it",
                    run.config.run_id,
                    ", ".join(owed),
                )
        self._waiting = False
        run.finish(self._stopped_at)
        self._finishing = None
        logger.info("wirelab: test %s written to %s", run.config.run_id, run.config.report_dir)

    def _finish_now(self, cut_short: str | None = None) -> None:
        """Write the current run at once: the process quits (Locust's runner has told the
        workers to quit and waited for their final reports), or the next test starts while
        this one still waits for its last reports (``cut_short`` says so in the log)."""
        finishing, self._finishing = self._finishing, None
        if finishing is not None and self._waiting:
            finishing.kill(block=True)
            self._waiting = False
            if self.run is not None and cut_short:
                logger.warning("test %s: %s", self.run.config.run_id, cut_short)
        elif finishing is not None:  # already writing its files: let it end
            finishing.join()
        if self.run is not None:
            self.run.finish(self._stopped_at if self.per_test else None)
        self._stopped_at = None

    def on_test_stopping(self, **_: Any) -> None:
        loop_lag().stop()
        if self.run is not None:
            self.run.users_stopping()

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        payload = recorder().take_delta()
        payload.update(health_report())
        if self.pending:
            payload["annotations"], self.pending = self.pending, []
        data["wirelab"] = payload

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_: Any) -> None:
        if self.run is not None:
            self.run.on_worker_report(client_id, data)

    def on_quitting(self, **_: Any) -> None:
        self._finish_now()

    # public ------------------------------------------------------------------------------

    def annotate(self, annotation: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.add_annotation(annotation)
        else:
            self.pending.append(annotation)


def register(events: Any = None) -> None:
    """Register the listeners on ``events`` (default ``locust.events``); idempotent.

    Importing this module does it for ``locust.events``; call it for an ``Environment``
    built by hand with its own ``Events``.
    """
    events = locust.events if events is None else events
    # Not an isinstance check: a second copy of this module (imported under another name)
    # has its own _Plugin class, and must still find the first copy's listeners.
    if getattr(events, "_wirelab_metrics", None) is not None:
        return
    plugin = _Plugin()
    events._wirelab_metrics = plugin
    events.request.add_listener(plugin.on_request)
    events.init.add_listener(plugin.on_init)
    events.test_start.add_listener(plugin.on_test_start)
    events.test_stopping.add_listener(plugin.on_test_stopping)
    events.test_stop.add_listener(plugin.on_test_stop)
    events.report_to_master.add_listener(plugin.on_report_to_master)
    events.worker_report.add_listener(plugin.on_worker_report)
    events.quitting.add_listener(plugin.on_quitting)


def _plugin() -> _Plugin:
    register()
    return locust.events._wirelab_metrics


def annotate(kind: str, text: str, *, time_ns: int | None = None, **tags: str) -> dict[str, Any]:
    """Put a scenario action (``deploy_start``, ``deploy_end``, ``storm``...) on the run's
    timeline: an ``annotations`` point at now in every sink, and an entry in metrics.json.

    ``kind`` becomes a tag, so keep it to a small fixed vocabulary; ``text`` is free.
    ``tags`` may be ``protocol``, ``name``, ``worker`` and ``replica``. ``time_ns`` places
    it at an earlier moment (an event that happened elsewhere and is reported now, such as a
    replica's drain seen by the orchestrator); default: now. On the master (or in a local run)
    the point is written at once; on a worker it travels with the next report. Returns the
    annotation as kept.

    Raises:
        ValueError: no kind, or a tag outside ``protocol``/``name``/``worker``.
    """
    annotation = _annotation(kind, text, time_ns, **tags)
    _plugin().annotate(annotation)
    return annotation


def base_tags() -> dict[str, str]:
    """The tags every point of this run carries (``run_id``, ``scenario``)."""
    plugin = _plugin()
    config = plugin.config or PluginConfig.from_env()
    return config.base_tags


def current_run(events: Any = None) -> RunMetrics | None:
    """The run this process merges (the master's, or a local run's), for live readers such
    as the web UI's view; ``None`` on a worker or before Locust's init. Read-only use: the
    plugin keeps writing to it."""
    plugin = getattr(locust.events if events is None else events, "_wirelab_metrics", None)
    return None if plugin is None else plugin.run


def plugin_loaded(events: Any = None) -> bool:
    """Whether the plugin listens on ``events`` (default ``locust.events``), even while it
    has no run to show (a web UI's master before its first test)."""
    return (
        getattr(locust.events if events is None else events, "_wirelab_metrics", None) is not None
    )


def write_points(points: list[Point]) -> bool:
    """Write extra points (the target monitor's ``targets`` series) to every sink of the run,
    now. Only the master (or a local run) writes; elsewhere nothing happens and ``False`` is
    returned."""
    run = _plugin().run
    if run is None:
        return False
    run._write(points)
    return True


register()
# Workers read this module global before each report; setting it at import (before the
# runner's first report) as well as at init makes even the first interval the right length.
with contextlib.suppress(ValueError):  # a bad value is reported, with exit code 2, at init
    locust.runners.WORKER_REPORT_INTERVAL = PluginConfig.from_env().interval
