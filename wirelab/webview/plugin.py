"""The live view's place in Locust's web UI: a page and its JSON, and two tabs in Locust's own UI.

Import this module from a locustfile (the ones ``wirelab run`` and ``wirelab up`` generate
do); importing registers one ``init`` listener on ``locust.events``, and on the master (or a
local run) with a web UI it adds, through Locust's extension points only:

``/wirelab/``           the live view: one self-contained page (inline CSS and script, no
                        CDN: it works offline) that asks for ``live.json`` about once a second
``/wirelab/live.json``  the figures (see :class:`~.figures.LiveFigures`); ``?since=N`` sends
                        the annotations from the N-th on, so each poll carries only new ones;
                        ``reports`` lists the lab's finished tests (:mod:`.reports`)
``/wirelab/reports/<run id>/report.html``  a finished test's report (also its
                        ``summary.json`` and ``junit.xml``), served from the lab's directory
tabs                    "wirelab streams" and "wirelab percentiles" in Locust's own UI
                        (``extended_tabs``/``extended_tables``; their rows ride on Locust's
                        ``/stats/requests`` as ``extended_stats``), and links to the view and
                        its JSON in Locust's "Download Data" tab

Every route requires the web UI's login when ``--web-login`` is on (Locust's
``auth_required_if_enabled``, the check every route of Locust's own UI uses; see
:mod:`wirelab.webauth`). The base path (``--web-base-path``) prefixes them all.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import locust.runners
import orjson
from flask import Blueprint, Response, abort, request, send_file

from ..listeners import on_init_once
from ..metrics.plugin import PluginConfig
from .figures import LiveFigures
from .reports import FinishedTests
from .settings import thresholds_from_environment

__all__ = ["PAGE_PATH", "REQUESTS_TAB", "STREAMS_TAB", "install", "register"]

log = logging.getLogger("wirelab.webview")

#: Where the view lives, under Locust's base path.
PAGE_PATH = "/wirelab"
STREAMS_TAB = "wirelab-streams"
REQUESTS_TAB = "wirelab-percentiles"
#: Security headers of both routes: nothing leaves the page (no CDN, no third party), and
#: figures are never cached by a proxy.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'self'"
    ),
}
#: A finished test's files: the report's own inline script and styles run, in a sandbox (an
#: origin of its own: it cannot use the UI's session), and nothing is fetched.
_REPORT_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:"
    ),
}
# Locust's tables show these keys (single words: its UI camel-cases keys with underscores).
_STREAM_COLUMNS = (
    ("name", "stream"),
    ("connected", "connected"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("gaps", "gaps"),
    ("duplicates", "duplicates"),
    ("reordered", "out of order"),
    ("resets", "resets"),
    ("reconnects", "reconnects"),
    ("lagp50", "lag p50 ms (exact)"),
    ("lagp99", "lag p99 ms (exact)"),
    ("locustp99", "lag p99 ms (Locust's)"),
)
_REQUEST_COLUMNS = (
    ("name", "request"),
    ("count", "count"),
    ("failures", "failures"),
    ("p50", "p50 ms (exact)"),
    ("p99", "p99 ms (exact)"),
    ("p999", "p99.9 ms (exact)"),
    ("locustp50", "p50 ms (Locust's)"),
    ("locustp99", "p99 ms (Locust's)"),
    ("locustp999", "p99.9 ms (Locust's)"),
)


def _page() -> bytes:
    return resources.files(__package__).joinpath("page.html").read_bytes()


def _stream_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in figures["streams"]:
        locust_lag = row.get("locust_lag_ms") or {}
        rows.append(
            {
                "name": row["name"],
                "connected": row["connected"],
                "delivered": row["delivered"],
                "lost": row["lost"],
                "gaps": row["gaps"],
                "duplicates": row["duplicates"],
                "reordered": row["out_of_order"],
                "resets": row["resets"],
                "reconnects": row["reconnects"],
                "lagp50": row["lag_ms"]["p50"],
                "lagp99": row["lag_ms"]["p99"],
                "locustp99": locust_lag.get("p99"),
            }
        )
    return rows


def _request_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in figures["requests"]:
        theirs = (row.get("locust") or {}).get("ms") or {}
        rows.append(
            {
                "name": row["name"] + (" (held)" if row["held"] else ""),
                "count": row["count"],
                "failures": row["failures"],
                **{key: row["latency_ms"][key] for key in ("p50", "p99", "p999")},
                **{f"locust{key}": theirs.get(key) for key in ("p50", "p99", "p999")},
            }
        )
    return rows


def _add_tabs(web_ui: Any, figures: LiveFigures) -> None:
    """Locust's own UI: two tables of wirelab's figures, and links to the view."""
    args = web_ui.template_args
    args.setdefault("extended_tabs", []).extend(
        [
            {"title": "wirelab streams", "key": STREAMS_TAB},
            {"title": "wirelab percentiles", "key": REQUESTS_TAB},
        ]
    )
    args.setdefault("extended_tables", []).extend(
        [
            {
                "key": key,
                "structure": [{"key": name, "title": title} for name, title in columns],
            }
            for key, columns in ((STREAMS_TAB, _STREAM_COLUMNS), (REQUESTS_TAB, _REQUEST_COLUMNS))
        ]
    )
    args.setdefault("extended_csv_files", []).extend(
        [
            {"href": f".{PAGE_PATH}/", "title": "Open the wirelab live view"},
            {"href": f".{PAGE_PATH}/live.json", "title": "wirelab live figures (JSON)"},
        ]
    )

    @web_ui.app.after_request
    def _with_wirelab_rows(response: Response) -> Response:
        if request.endpoint != "locust.request_stats" or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if not isinstance(data, dict):
            return response
        try:
            live = figures.snapshot(since=2**31)
            data["extended_stats"] = [
                {"key": STREAMS_TAB, "data": _stream_rows(live)},
                {"key": REQUESTS_TAB, "data": _request_rows(live)},
            ]
        except Exception:  # Locust's own figures must still arrive
            log.exception("wirelab's rows for Locust's tabs failed")
            return response
        response.set_data(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
        return response


def install(web_ui: Any, figures: LiveFigures, finished: FinishedTests | None = None) -> None:
    """Add the view's routes and Locust's tabs to ``web_ui`` (a :class:`locust.web.WebUI`);
    ``finished``: the lab's finished tests (default: none listed)."""
    finished = finished or FinishedTests(None)
    options = getattr(web_ui.environment, "parsed_options", None)
    base = (getattr(options, "web_base_path", "") or "").rstrip("/")
    blueprint = Blueprint("wirelab_live", __name__, url_prefix=f"{base}{PAGE_PATH}")
    page = _page()

    @blueprint.route("/")
    @web_ui.auth_required_if_enabled
    def live_view() -> Response:
        return Response(page, mimetype="text/html", headers=_HEADERS)

    @blueprint.route("/live.json")
    @web_ui.auth_required_if_enabled
    def live_figures() -> Response:
        since = request.args.get("since", default=0, type=int) or 0
        try:
            live = {**figures.snapshot(since), "reports": finished.listing()}
            body = orjson.dumps(live, option=orjson.OPT_NON_STR_KEYS)
        except Exception as exc:
            log.exception("wirelab live figures failed")
            body = orjson.dumps({"error": type(exc).__name__})
            return Response(body, status=500, mimetype="application/json", headers=_HEADERS)
        return Response(body, mimetype="application/json", headers=_HEADERS)

    @blueprint.route("/reports/<run_id>/<name>")
    @web_ui.auth_required_if_enabled
    def finished_file(run_id: str, name: str) -> Response:
        path = finished.file(run_id, name)  # only a listed test's own report files
        if path is None:
            abort(404)
        response = send_file(path, max_age=0)
        response.headers.update(_REPORT_HEADERS)
        return response

    web_ui.app.register_blueprint(blueprint)
    _add_tabs(web_ui, figures)


def _on_init(environment: Any, runner: Any = None, **_: Any) -> None:
    if runner is None or isinstance(runner, locust.runners.WorkerRunner):
        return
    thresholds, errors = thresholds_from_environment()
    for error in errors:
        log.warning("live view: %s", error)
    figures = LiveFigures(environment, thresholds, errors)
    environment.events.test_start.add_listener(figures.on_test_start)
    environment.events.test_stop.add_listener(figures.on_test_stop)
    if getattr(environment, "web_ui", None) is not None:
        install(environment.web_ui, figures, FinishedTests(_lab_dir()))


def _lab_dir() -> Path | None:
    """Where the lab's tests are written (``WIRELAB_REPORT_DIR``), if anywhere."""
    try:
        return PluginConfig.from_env().report_dir
    except ValueError:  # the metrics plugin reports it, and the process exits
        return None


def register(events: Any = None) -> None:
    """Register the view on ``events`` (default ``locust.events``); idempotent."""
    on_init_once("_wirelab_live", _on_init, events)


register()
