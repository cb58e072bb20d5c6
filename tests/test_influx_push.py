"""``wirelab influx push``: a finished run's timeseries.lp loaded into influxd later."""

from __future__ import annotations

from wirelab import influx_push
from wirelab.influx_push import push_run
from wirelab.metrics.lineprotocol import Point, encode
from wirelab.processes import free_port


def _run_dir(tmp_path, points: int):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [
        encode(
            Point("requests", {"run_id": "pushed", "name": f"n{i % 7}"}, {"count": i}, 10**18 + i)
        )
        for i in range(points)
    ]
    (run_dir / "timeseries.lp").write_text("\n".join(lines) + "\n")
    return run_dir


def test_push_loads_every_point_of_a_run_dir_into_influxd_in_batches(
    tmp_path, influxdb_server, influxdb_database
):
    run_dir = _run_dir(tmp_path, 12_345)  # more than two batches
    url = f"influxdb://{influxdb_server.host}:{influxdb_server.port}/{influxdb_database}"
    assert push_run(run_dir, url) == 0
    result = influxdb_server.query(
        'SELECT count("count"), sum("count") FROM "requests" WHERE "run_id" = \'pushed\'',
        database=influxdb_database,
    )
    [[_, count, total]] = result["results"][0]["series"][0]["values"]
    assert count == 12_345 and total == sum(range(12_345))


def test_push_exit_codes_bad_run_dir_and_url_are_2_unreachable_server_is_3(
    tmp_path, monkeypatch, influxdb_server, capsys
):
    run_dir = _run_dir(tmp_path, 3)
    assert push_run(tmp_path / "nowhere", "influxdb://127.0.0.1:8086/db") == 2
    assert push_run(run_dir, "influxdb://127.0.0.1:8086/") == 2
    assert push_run(run_dir, "influxdb://writer:pw@127.0.0.1:8086/db") == 2
    assert push_run(run_dir, f"file://{tmp_path}/copy.lp") == 2
    # A database that does not exist: a configuration error, said in one line.
    url = f"influxdb://{influxdb_server.host}:{influxdb_server.port}/no_such_database"
    assert push_run(run_dir, url) == 2
    monkeypatch.setattr(influx_push, "_BACKOFF_S", 0.01)
    assert push_run(run_dir, f"influxdb://127.0.0.1:{free_port()}/db") == 3
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 6 and all(
        line.startswith("wirelab influx push: error:") for line in errors
    )
    assert "pw" not in "".join(errors)
