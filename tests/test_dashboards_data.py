"""Every dashboard panel's InfluxQL returns data from real runs written to a real influxd.

A short distributed ``wirelab run`` (smoke, 2 workers) streams into ``influxd``; every query
of every committed dashboard is then run the way Grafana would run it: variables filled from
their own ``SHOW TAG VALUES`` queries and interpolated with Grafana's InfluxQL formatting
(regex-escaped, multi-values joined as ``(a|b)``), then ``$timeFilter`` and
``$__interval``/``$__interval_ms`` replaced as Grafana's InfluxQL backend does.

Panels that only a deploy can fill (the ``targets`` measurement, action annotations,
reconnect times) are checked against ``wirelab run --scenario rolling-deploy``; panels over
threshold verdicts need the run to write its ``thresholds`` points.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dashboards.build import dashboards as dashboard_models
from dashboards.grafana import Needs
from tests.fixtures.influxdb import fresh_database
from tests.fixtures.runs import Run, TimeRange, wirelab_run

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"

# -- Grafana's interpolation, for InfluxQL ----------------------------------------------------

# Grafana's template syntax: $name, [[name]] and ${name} / ${name:format}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
# The characters Grafana's escapeRegex escapes (the InfluxDB datasource escapes `/` too, since
# an InfluxQL regex literal is delimited by it).
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def regex_escape(value: str) -> str:
    return _REGEX_SPECIAL.sub(lambda match: "\\" + match.group(0), value)


def format_value(values: list[str], variable: dict[str, Any], query: str) -> str:
    """A variable's value as Grafana's InfluxDB datasource formats it (interpolateQueryExpr)."""
    if variable.get("multi") or variable.get("includeAll"):
        escaped = [regex_escape(value) for value in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    (value,) = values
    # A single-value variable is escaped only where it sits inside a regex literal.
    if re.search(r"/\^?\(?\$" + re.escape(variable["name"]) + r"\b", query):
        return regex_escape(value)
    return value


def interpolate(
    query: str, variables: dict[str, dict[str, Any]], chosen: dict[str, list[str]]
) -> str:
    """Replace dashboard variables the way Grafana's templateSrv does; unknown names stay."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if name not in chosen:
            return match.group(0)
        return format_value(chosen[name], variables[name], query)

    return _VARIABLE.sub(replace, query)


def apply_macros(query: str, time_range: TimeRange, interval: str) -> str:
    """What Grafana's InfluxQL backend replaces after the variables."""
    seconds = _seconds(interval)
    return (
        query.replace("$timeFilter", time_range.time_filter())
        .replace("$__interval_ms", str(int(seconds * 1000)))
        .replace("$__interval", interval)
    )


def _seconds(interval: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", interval).groups()
    return float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


# -- the runs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(influxdb_server):
    with fresh_database(influxdb_server, "dashboards") as name:
        yield name


@pytest.fixture(scope="module")
def smoke_run(influxdb_server, database, tmp_path_factory) -> Run:
    """A short smoke run (every protocol, 2 workers) written to influxd."""
    report_dir = tmp_path_factory.mktemp("smoke-run")
    return wirelab_run(
        influxdb_server, database, report_dir, "smoke", "--duration", "10s", "--workers", "2"
    )


@pytest.fixture(scope="module")
def deploy_run(rolling_deploy_run: Run) -> Run:
    """The session's rolling deploy under load (tests/fixtures/runs.py), in its own database."""
    return rolling_deploy_run


# -- Grafana, as far as queries go -----------------------------------------------------------


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def series_values(result: dict[str, Any]) -> list[Any]:
    """Every non-null value of every non-time column in an InfluxQL answer."""
    values = []
    for statement in result.get("results", []):
        for series in statement.get("series", []):
            columns = series["columns"]
            for row in series.get("values", []):
                values += [
                    v for c, v in zip(columns, row, strict=True) if c != "time" and v is not None
                ]
    return values


class Grafana:
    """Runs a dashboard's queries against influxd as Grafana would, for one run."""

    def __init__(self, server, run: Run, dashboard: dict[str, Any]) -> None:
        self.server = server
        self.run = run
        self.variables = {
            v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "query"
        }
        self.chosen: dict[str, list[str]] = {}
        # In dashboard order: each variable's query may use the ones before it.
        for name, variable in self.variables.items():
            options = self.variable_options(variable)
            if name == "run_id":
                assert run.run_id in options, f"run list {options} lacks {run.run_id}"
                self.chosen[name] = [run.run_id]
            else:
                self.chosen[name] = options  # "All"

    def variable_options(self, variable: dict[str, Any]) -> list[str]:
        text = interpolate(variable["query"], self.variables, self.chosen)
        result = self.server.query(text, database=self.run.database)
        options = sorted(
            {row[1] for s in result["results"][0].get("series", []) for row in s["values"]}
        )
        return options

    def render(self, query: str, interval: str = "1s") -> str:
        return apply_macros(
            interpolate(query, self.variables, self.chosen), self.run.time_range, interval
        )

    def execute(self, query: str, interval: str = "1s") -> dict[str, Any]:
        return self.server.query(self.render(query, interval), database=self.run.database)


def panels_needing(*needs: Needs) -> list[Any]:
    """pytest params (dashboard stem, panel id) of the panels a kind of run fills."""
    params = []
    for stem, model in dashboard_models().items():
        for panel_id, panel in enumerate(model.panels, start=1):
            if panel.needs in needs:
                params.append(pytest.param(stem, panel_id, id=f"{stem}: {panel.title}"))
    return params


def assert_panel_has_data(server, run: Run, stem: str, panel_id: int) -> None:
    dashboard = load_dashboards()[stem]
    [panel] = [p for p in dashboard["panels"] if p["id"] == panel_id]
    grafana = Grafana(server, run, dashboard)
    for target in panel["targets"]:
        rendered = grafana.render(target["query"], panel["interval"])
        assert not _VARIABLE.search(rendered), f"a variable or macro was left in {rendered}"
        values = series_values(server.query(rendered, database=run.database))
        assert values, f"{panel['title']!r} query {target['refId']} returned no data:\n{rendered}"


# -- the tests ---------------------------------------------------------------------------------


def test_variables_offer_the_runs_scenario_protocols_names_and_workers(influxdb_server, smoke_run):
    dashboard = load_dashboards()["generator"]
    grafana = Grafana(influxdb_server, smoke_run, dashboard)
    assert "smoke" in grafana.chosen["scenario"]
    assert set(grafana.chosen["protocol"]) == {"rest", "poll", "sse", "ws", "grpc"}
    assert {"poll short", "poll long", "sse deliver", "ws deliver", "grpc deliver"} <= set(
        grafana.chosen["name"]
    )
    assert len(grafana.chosen["worker"]) == 2
    # Regex-escaped and joined, "All" still selects every series: names with '/', '{' and '}'
    # such as 'rest GET /items/{id}' included.
    result = grafana.execute(
        'SELECT sum("count") FROM "requests" WHERE "run_id" =~ /^$run_id$/ '
        'AND "name" =~ /^$name$/ AND $timeFilter GROUP BY "name"'
    )
    selected = {series["tags"]["name"] for series in result["results"][0]["series"]}
    metrics = json.loads((smoke_run.run_dir / "metrics.json").read_text())
    assert selected == {series["n"] for series in metrics["totals"]["requests"]}
    assert "rest GET /items/{id}" in selected


@pytest.mark.parametrize(("stem", "panel_id"), panels_needing(Needs.RUN))
def test_every_panel_query_returns_data_from_a_distributed_run(
    influxdb_server, smoke_run, stem, panel_id
):
    assert_panel_has_data(influxdb_server, smoke_run, stem, panel_id)


@pytest.mark.parametrize(("stem", "panel_id"), panels_needing(Needs.THRESHOLDS))
def test_threshold_panels_return_the_runs_verdicts(influxdb_server, smoke_run, stem, panel_id):
    assert_panel_has_data(influxdb_server, smoke_run, stem, panel_id)


@pytest.mark.parametrize(("stem", "panel_id"), panels_needing(Needs.DEPLOY))
def test_deploy_panels_return_data_from_a_rolling_deploy_run(
    influxdb_server, deploy_run, stem, panel_id
):
    assert_panel_has_data(influxdb_server, deploy_run, stem, panel_id)


def test_scenario_actions_are_annotated_on_every_dashboard_during_a_rolling_deploy(
    influxdb_server, deploy_run
):
    for stem, dashboard in load_dashboards().items():
        grafana = Grafana(influxdb_server, deploy_run, dashboard)
        queries = [a for a in dashboard["annotations"]["list"] if a.get("query")]
        assert queries, f"{stem} marks no scenario actions"
        for annotation in queries:
            result = grafana.execute(annotation["query"])
            [series] = result["results"][0]["series"]
            kinds = {row[series["columns"].index("kind")] for row in series["values"]}
            assert "deploy_start" in kinds, f"{stem}: {kinds}"
