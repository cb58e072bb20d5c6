"""A small model of Grafana's dashboard JSON: just the parts wirelab's dashboards use.

Why our own builder and not a library: ``grafana-foundation-sdk`` (up to its Grafana 11.6
build) has no InfluxDB query type, and ``grafanalib`` would add an attrs-based dependency
whose panel classes emit many legacy keys for the few dozen lines of JSON each panel needs.
Here every key written is one Grafana 10/11 reads (``schemaVersion`` 39), the output is
deterministic (so a test can regenerate and compare), and each panel carries what the
tests need to know about it (``needs``: which kind of run fills it) without putting
anything Grafana does not know into the JSON.

Every panel and every query points at the ``${DS}`` datasource variable, so the same JSON
works against whichever InfluxDB (1.x, or 2.x through its v1 API) a reviewer picks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: The datasource every panel, query, variable and annotation uses: the ``DS`` variable.
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": "${DS}"}
#: Grafana's dashboard JSON model version these dashboards are written in (Grafana 10.4+).
SCHEMA_VERSION = 39
#: Width of Grafana's grid.
GRID_WIDTH = 24
#: The tag every wirelab dashboard carries; dashboard links find each other by it.
TAG = "wirelab"


class Needs(StrEnum):
    """What a run must have done for a panel to show data (the tests run each kind)."""

    #: Any run: requests, streams, users, worker health and sink points.
    RUN = "run"
    #: A run whose thresholds were written as ``thresholds`` points at its end.
    THRESHOLDS = "thresholds"
    #: A run with deploy/storm actions: the ``targets`` measurement, action annotations and
    #: reconnects (``wirelab run --scenario rolling-deploy``).
    DEPLOY = "deploy"


@dataclass(frozen=True, slots=True)
class Query:
    """One raw InfluxQL query of a panel.

    ``alias`` uses Grafana's InfluxDB alias patterns (``$tag_protocol``, ``$col``);
    ``table`` asks for table-shaped results (tables and lists) instead of time series.
    """

    text: str
    alias: str = ""
    table: bool = False

    def to_json(self, ref_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refId": ref_id,
            "datasource": dict(DATASOURCE),
            "rawQuery": True,
            "query": self.text,
            "resultFormat": "table" if self.table else "time_series",
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True, slots=True)
class Step:
    """A threshold step: from ``value`` up (``None``: the base), shown in ``color``."""

    value: float | None
    color: str


@dataclass(slots=True)
class Panel:
    """One panel. Build them with :func:`timeseries`, :func:`stat`, :func:`table` and
    :func:`bargauge` rather than directly."""

    kind: str
    title: str
    description: str
    queries: list[Query]
    unit: str = "short"
    width: int = 12
    height: int = 8
    needs: Needs = Needs.RUN
    decimals: int | None = None
    steps: list[Step] = field(default_factory=list)
    #: Draw the threshold steps as lines on a time series (e.g. CPU saturation at 100 %).
    threshold_lines: bool = False
    #: Reduction for stat and bar gauge panels (``lastNotNull``, ``max``, ``sum``).
    calc: str = "lastNotNull"
    mappings: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    stepped: bool = False
    min_value: float | None = 0

    def to_json(self, panel_id: int, grid: dict[str, int], interval: str) -> dict[str, Any]:
        defaults: dict[str, Any] = {"unit": self.unit}
        if self.min_value is not None and self.kind != "table":
            defaults["min"] = self.min_value
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        steps = self.steps or [Step(None, "green")]
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": s.color, "value": s.value} for s in steps],
        }
        if self.mappings:
            defaults["mappings"] = self.mappings
        if self.kind == "timeseries":
            defaults["color"] = {"mode": "palette-classic"}
            defaults["custom"] = {
                "drawStyle": "line",
                "lineInterpolation": "stepAfter" if self.stepped else "linear",
                "lineWidth": 1,
                "fillOpacity": 0,
                "showPoints": "never",
                "spanNulls": True,
                "thresholdsStyle": {"mode": "line" if self.threshold_lines else "off"},
            }
        elif self.kind == "table":
            defaults["custom"] = {"align": "auto", "cellOptions": {"type": "auto"}}
        out: dict[str, Any] = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": dict(DATASOURCE),
            "gridPos": grid,
            # Points arrive once per wirelab interval: a finer $__interval would split them
            # into empty buckets and turn per-interval counts into wrong rates.
            "interval": interval,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self._options(),
            "targets": [q.to_json(chr(ord("A") + i)) for i, q in enumerate(self.queries)],
        }
        if self.transformations:
            out["transformations"] = self.transformations
        return out

    def _options(self) -> dict[str, Any]:
        reduce = {"calcs": [self.calc], "fields": "", "values": False}
        if self.kind == "timeseries":
            return {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        if self.kind == "stat":
            return {
                "reduceOptions": reduce,
                "colorMode": "value",
                "graphMode": "none",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            }
        if self.kind == "bargauge":
            return {
                "reduceOptions": reduce,
                "displayMode": "gradient",
                "orientation": "horizontal",
                "showUnfilled": True,
                "valueMode": "color",
            }
        return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}


def timeseries(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    """A time series panel (lines over the run)."""
    return Panel("timeseries", title, description, list(queries), **options)


def stat(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    """A single big number for the selected time range."""
    options.setdefault("width", 4)
    options.setdefault("height", 4)
    return Panel("stat", title, description, list(queries), **options)


def bargauge(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    """Horizontal bars, one per series: figures side by side."""
    return Panel("bargauge", title, description, list(queries), **options)


def table(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    """A table of the queries' rows (merged into one table when there are several series)."""
    options.setdefault("min_value", None)
    transformations = options.pop("transformations", None)
    if transformations is None:  # several series (GROUP BY a tag): one table, no time column
        transformations = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ]
    return Panel(
        "table",
        title,
        description,
        list(queries),
        transformations=transformations,
        **options,
    )


@dataclass(frozen=True, slots=True)
class Variable:
    """A query variable filled from ``SHOW TAG VALUES``.

    ``multi``/``include_all`` variables are regex-escaped and joined as ``(a|b)`` by Grafana,
    so queries use them as ``"tag" =~ /^$name$/``.
    """

    name: str
    label: str
    query: str
    description: str
    multi: bool = True
    include_all: bool = True
    #: Grafana's sort: 0 none, 1 alphabetical, 2 alphabetical descending.
    sort: int = 1

    def _current(self) -> dict[str, Any]:
        # "All" preselected; a run list has no "All", so Grafana picks its first (newest) run.
        if not self.include_all:
            return {}
        if self.multi:
            return {"selected": True, "text": ["All"], "value": ["$__all"]}
        return {"selected": True, "text": "All", "value": "$__all"}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "type": "query",
            "datasource": dict(DATASOURCE),
            "query": self.query,
            "definition": self.query,
            # 1: on dashboard load; tag values do not depend on the time range in InfluxQL.
            "refresh": 1,
            "sort": self.sort,
            "multi": self.multi,
            "includeAll": self.include_all,
            "current": self._current(),
            "options": [],
            "regex": "",
            "hide": 0,
        }


def datasource_variable(default_uid: str) -> dict[str, Any]:
    """The ``DS`` variable: any InfluxDB datasource, preselecting the provisioned one."""
    return {
        "name": "DS",
        "label": "InfluxDB",
        "description": "The InfluxDB (1.x, or 2.x through its v1 API) that wirelab wrote to.",
        "type": "datasource",
        "query": "influxdb",
        "current": {"selected": True, "text": default_uid, "value": default_uid},
        "options": [],
        "refresh": 1,
        "regex": "",
        "hide": 0,
        "multi": False,
        "includeAll": False,
    }


@dataclass(frozen=True, slots=True)
class Annotation:
    """Events drawn on every time series: one InfluxQL query, ``text`` and ``kind`` columns."""

    name: str
    query: str
    color: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datasource": dict(DATASOURCE),
            "enable": True,
            "hide": False,
            "iconColor": self.color,
            # Grafana before 8.3 reads ``query`` and the *Column keys on the annotation; later
            # versions read them from ``target`` (and would migrate the former).
            "query": self.query,
            "target": {
                "refId": "Anno",
                "query": self.query,
                "rawQuery": True,
                "fromAnnotations": True,
                "textColumn": "text",
                "tagsColumn": "kind",
                "titleColumn": "kind",
            },
            "textColumn": "text",
            "tagsColumn": "kind",
            "titleColumn": "kind",
        }


@dataclass(slots=True)
class Dashboard:
    """A whole dashboard: panels are laid out left to right in rows of 24 columns."""

    uid: str
    title: str
    description: str
    panels: list[Panel]
    variables: list[Variable]
    annotations: list[Annotation] = field(default_factory=list)

    def layout(self) -> list[dict[str, int]]:
        """Grid positions: fill a row until the next panel does not fit, then wrap."""
        grids, x, y, row_height = [], 0, 0, 0
        for panel in self.panels:
            if x + panel.width > GRID_WIDTH:
                x, y, row_height = 0, y + row_height, 0
            grids.append({"h": panel.height, "w": panel.width, "x": x, "y": y})
            x += panel.width
            row_height = max(row_height, panel.height)
        return grids

    def to_json(self, *, interval: str, datasource_uid: str) -> dict[str, Any]:
        builtin = {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        }
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": [TAG],
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": "browser",
            "time": {"from": "now-1h", "to": "now"},
            "refresh": "",
            "links": [
                {
                    "title": "wirelab dashboards",
                    "type": "dashboards",
                    "tags": [TAG],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "url": "",
                    "tooltip": "",
                }
            ],
            "annotations": {"list": [builtin] + [a.to_json() for a in self.annotations]},
            "templating": {
                "list": [datasource_variable(datasource_uid)]
                + [v.to_json() for v in self.variables]
            },
            "panels": [
                panel.to_json(index, grid, interval)
                for index, (panel, grid) in enumerate(
                    zip(self.panels, self.layout(), strict=True), start=1
                )
            ],
        }
