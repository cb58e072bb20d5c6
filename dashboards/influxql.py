"""The InfluxQL phrases every panel shares, so each query reads as what it shows.

The data model is :mod:`wirelab.metrics.lineprotocol`: one point per series per interval,
counters per interval, percentiles per interval. Three consequences shape every query:

* counters become rates as ``sum(x) * 1000 / $__interval_ms`` (the bucket's count over the
  bucket's length), which stays right when Grafana widens ``$__interval`` on a long run;
* interval percentiles are never averaged: a bucket shows the worst interval in it
  (``max("p99")``), and panels say so;
* a gauge kept per series (``connected`` per stream) is summed across series only inside one
  interval: a subquery takes each series' value per bucket, the outer query adds them up.

Only InfluxQL that InfluxDB 1.x and 2.x's v1 compatibility API both run: regex tag matches,
``GROUP BY time(...)``, ``fill(none)``, subqueries, arithmetic on aggregates.
"""

# ruff: noqa: S608 - InfluxQL for Grafana built from constants: no input reaches it

from __future__ import annotations

from collections.abc import Iterable

#: Tag filters fed by the dashboard variables (Grafana regex-escapes and joins their values).
RUN = '"run_id" =~ /^$run_id$/'
PROTOCOL = '"protocol" =~ /^$protocol$/'
NAME = '"name" =~ /^$name$/'
WORKER = '"worker" =~ /^$worker$/'
REPLICA = '"replica" =~ /^$replica$/'
#: Every series point of the selected run and request/stream selection.
SERIES = (RUN, PROTOCOL, NAME)


def where(*conditions: str) -> str:
    """``WHERE`` with the run filter first and the dashboard's time range last."""
    parts = [RUN, *(c for c in conditions if c != RUN), "$timeFilter"]
    return "WHERE " + " AND ".join(parts)


def group_by(tags: Iterable[str] = (), *, over_time: bool = True) -> str:
    """``GROUP BY time($__interval), "tag", ...`` (or only the tags, for whole-range figures)."""
    keys = [f'"{tag}"' for tag in tags]
    if over_time:
        return "GROUP BY " + ", ".join(["time($__interval)", *keys]) + " fill(none)"
    return ("GROUP BY " + ", ".join(keys)) if keys else ""


def select(
    fields: str,
    measurement: str,
    conditions: Iterable[str] = SERIES,
    *,
    by: Iterable[str] = (),
    over_time: bool = True,
) -> str:
    """One ``SELECT`` over a measurement of the selected run, within the time range."""
    text = f'SELECT {fields} FROM "{measurement}" {where(*conditions)}'
    grouping = group_by(by, over_time=over_time)
    return f"{text} {grouping}" if grouping else text


def per_second(field: str) -> str:
    """A per-interval counter as a rate per second over each ``$__interval`` bucket."""
    return f'sum("{field}") * 1000 / $__interval_ms'


def sum_of_gauge(
    field: str,
    measurement: str,
    conditions: Iterable[str],
    *,
    per: Iterable[str],
    by: Iterable[str],
) -> str:
    """A gauge kept per ``per`` series, added up per bucket into one line per ``by``.

    The inner query reduces each series to one value per bucket (its mean), so a widened
    ``$__interval`` never adds the same series' samples together.
    """
    inner = select(f'mean("{field}") AS "{field}"', measurement, conditions, by=(*by, *per))
    return f'SELECT sum("{field}") FROM ({inner}) WHERE $timeFilter {group_by(by)}'


def worst(*fields: str, labels: Iterable[str] | None = None) -> str:
    """``max("f") AS "label"`` for each field: the worst interval's percentile per bucket."""
    names = list(labels) if labels is not None else list(fields)
    return ", ".join(f'max("{f}") AS "{n}"' for f, n in zip(fields, names, strict=True))


def sums(*fields: str, labels: Iterable[str] | None = None) -> str:
    """``sum("f") AS "label"`` for each field: counters over each bucket or the range."""
    names = list(labels) if labels is not None else list(fields)
    return ", ".join(f'sum("{f}") AS "{n}"' for f, n in zip(fields, names, strict=True))
