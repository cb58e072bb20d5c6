"""The committed Grafana dashboards: fresh, valid, on the datasource variable, described.

That every panel's query returns data from a real run is ``test_dashboards_data.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dashboards import build
from dashboards.grafana import GRID_WIDTH

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboards"
SCHEMA = json.loads((DASHBOARD_DIR / "schema" / "dashboard.schema.json").read_text())

#: Bookmarks, links between dashboards and the Helm chart's ConfigMaps name these: a change
#: is a breaking change, never a side effect of regenerating.
STABLE_UIDS = {
    "overview.json": "wirelab-overview",
    "streams.json": "wirelab-streams",
    "deploy.json": "wirelab-deploy",
    "generator.json": "wirelab-generator",
    "protocols.json": "wirelab-protocols",
}


def committed() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels() -> list[Any]:
    return [
        pytest.param(name, panel, id=f"{name}: {panel['title']}")
        for name, dashboard in committed().items()
        for panel in dashboard["panels"]
    ]


def test_committed_json_is_exactly_what_the_generator_writes():
    assert build.stale_files() == [], "run: python -m dashboards.build"
    assert sorted(build.render()) == sorted(committed())


def test_the_build_check_fails_on_a_hand_edited_file(tmp_path):
    assert build.main(["--out", str(tmp_path)]) == 0
    assert build.main(["--check", "--out", str(tmp_path)]) == 0
    path = tmp_path / "streams.json"
    path.write_text(path.read_text().replace("Streams", "Streamz", 1))
    assert build.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", sorted(STABLE_UIDS))
def test_every_dashboard_validates_against_the_dashboard_schema(name):
    dashboard = committed()[name]
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    errors = sorted(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(dashboard), key=lambda e: e.path
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_dashboard_uids_are_unique_and_stable():
    dashboards = committed()
    assert {name: d["uid"] for name, d in dashboards.items()} == STABLE_UIDS
    assert len({d["title"] for d in dashboards.values()}) == len(dashboards)


def test_the_five_dashboards_of_the_issue_exist():
    titles = {d["title"] for d in committed().values()}
    assert titles == {
        "wirelab · Run overview",
        "wirelab · Streams",
        "wirelab · Deploy & storms",
        "wirelab · Generator health",
        "wirelab · Protocol comparison",
    }


@pytest.mark.parametrize(("name", "panel"), panels())
def test_every_panel_targets_the_datasource_variable_and_has_a_description(name, panel):
    assert panel["datasource"] == {"type": "influxdb", "uid": "${DS}"}
    assert panel["targets"], "a panel without a query"
    for target in panel["targets"]:
        assert target["datasource"] == {"type": "influxdb", "uid": "${DS}"}
        assert target["rawQuery"] is True
        # Always the selected run and the dashboard's time range.
        assert '"run_id" =~ /^$run_id$/' in target["query"]
        assert "$timeFilter" in target["query"]
    assert len(panel["description"]) >= 30
    assert panel["fieldConfig"]["defaults"]["unit"]


@pytest.mark.parametrize("name", sorted(STABLE_UIDS))
def test_panels_have_unique_ids_and_titles_and_fit_the_grid(name):
    dashboard = committed()[name]
    ids = [p["id"] for p in dashboard["panels"]]
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids) and len(set(titles)) == len(titles)
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


@pytest.mark.parametrize("name", sorted(STABLE_UIDS))
def test_every_dashboard_selects_a_run_and_narrows_by_protocol_and_name(name):
    variables = {v["name"]: v for v in committed()[name]["templating"]["list"]}
    assert {"DS", "scenario", "run_id", "protocol", "name"} <= set(variables)
    assert variables["DS"]["type"] == "datasource" and variables["DS"]["query"] == "influxdb"
    # One run at a time; the filters offer every value and "All".
    assert not variables["run_id"]["multi"] and not variables["run_id"]["includeAll"]
    for key in ("protocol", "name"):
        assert variables[key]["multi"] and variables[key]["includeAll"]
        assert variables[key]["query"].startswith("SHOW TAG VALUES")
    # Variables used in the panels exist; variables defined are used somewhere.
    text = json.dumps(committed()[name]["panels"]) + " ".join(
        v.get("query", "") for v in variables.values()
    )
    used = set(re.findall(r"\$(\w+)", text)) - {"timeFilter", "__interval", "__interval_ms", "col"}
    used = {u for u in used if not u.startswith("tag_")}
    assert used <= set(variables)
    assert set(variables) - {"DS"} <= used


def test_generator_health_has_the_worker_variable_and_the_cpu_saturation_line():
    dashboard = committed()["generator.json"]
    assert "worker" in {v["name"] for v in dashboard["templating"]["list"]}
    [cpu] = [p for p in dashboard["panels"] if p["title"].startswith("Worker CPU")]
    defaults = cpu["fieldConfig"]["defaults"]
    assert defaults["unit"] == "percent"
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert {"color": "red", "value": 100} in defaults["thresholds"]["steps"]


@pytest.mark.parametrize(("name", "panel"), panels())
def test_percentile_series_are_labelled_with_their_percentile(name, panel):
    for target in panel["targets"]:
        alias = target.get("alias", "$col")
        for field, digits, label in re.findall(
            r'max\("([a-z_]*)p(\d+)"\)(?: AS "([^"]+)")?', target["query"]
        ):
            shown = alias.replace("$col", label or "max") + " | " + panel["title"]
            percentile = {"999": "p99.9"}.get(digits, f"p{digits}")
            assert percentile in shown, f"{field}p{digits} is shown unlabelled as {shown!r}"


def test_every_dashboard_marks_scenario_actions_from_the_annotations_measurement():
    for name, dashboard in committed().items():
        marks = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
        assert marks, name
        for mark in marks:
            assert 'FROM "annotations"' in mark["query"] and "$timeFilter" in mark["query"]
            assert mark["target"]["query"] == mark["query"]
            assert (mark["textColumn"], mark["tagsColumn"]) == ("text", "kind")


def test_provisioning_creates_the_datasource_the_dashboards_preselect():
    config = yaml.safe_load((DASHBOARD_DIR / "provisioning/datasources/wirelab.yaml").read_text())
    [datasource] = config["datasources"]
    assert config["apiVersion"] == 1
    assert datasource["type"] == "influxdb" and datasource["access"] == "proxy"
    assert datasource["jsonData"]["timeInterval"] == "1s"
    for dashboard in committed().values():
        [ds] = [v for v in dashboard["templating"]["list"] if v["name"] == "DS"]
        assert ds["current"]["value"] == datasource["uid"]
        assert {p["interval"] for p in dashboard["panels"]} == {"1s"}


def test_provisioning_loads_the_dashboards_from_a_directory():
    config = yaml.safe_load((DASHBOARD_DIR / "provisioning/dashboards/wirelab.yaml").read_text())
    [provider] = config["providers"]
    assert config["apiVersion"] == 1 and provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    # Only dashboards match dashboards/*.json: what a ConfigMap built from that glob mounts.
    assert {path.name for path in DASHBOARD_DIR.glob("*.json")} == set(STABLE_UIDS)


def test_the_readme_lists_every_dashboard_and_how_to_import_it():
    readme = (DASHBOARD_DIR / "README.md").read_text()
    for name, dashboard in committed().items():
        assert name in readme and dashboard["title"].removeprefix("wirelab · ") in readme
    for words in ("provisioning/datasources", "provisioning/dashboards", "Import", "v1"):
        assert words in readme
