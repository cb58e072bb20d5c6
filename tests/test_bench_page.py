"""The page renders every part's table from summarised repetitions."""

from __future__ import annotations

from wirelab_bench.claims import build_claims
from wirelab_bench.page import _fmt, markdown, render_html
from wirelab_bench.stats import summarize_runs


def _rep(scale: float) -> dict:
    return {
        "request": {
            "rest_keepalive": {
                "label": "REST keep-alive", "fixed_rate": 200, "p50_ms": 2.0 * scale,
                "p99_ms": 6.0, "max_sustained_rps": 1000.0, "limited_by": "generator",
                "target_cpu_s_per_1k_ops": 0.1, "generator_cpu_s_per_1k_ops": 0.5,
                "bytes_per_op_up": 280.0, "bytes_per_op_down": 260.0, "target_rss_mb": 30.0,
                "steps": [{"rate": 200, "p99_ms": 6.0}],
            },
            "rest_new_conn": {
                "label": "REST new connection", "fixed_rate": 200, "p50_ms": 3.0,
                "p99_ms": 9.0, "max_sustained_rps": 500.0, "limited_by": None,
                "bytes_per_op_up": None, "bytes_per_op_down": None,
                "steps": [{"rate": 200, "p99_ms": 9.0}],
            },
            "ws": {
                "label": "WebSocket echo", "fixed_rate": 200, "p50_ms": 1.0, "p99_ms": 3.0,
                "max_sustained_rps": 2000.0, "limited_by": "ladder end",
                "target_cpu_s_per_1k_ops": 0.08, "bytes_per_op_up": 130.0,
                "bytes_per_op_down": 160.0, "target_rss_mb": 25.0,
                "steps": [{"rate": 200, "p99_ms": 3.0}],
            },
        },
        "push": {
            "sse": {"label": "SSE", "lag_p50_ms": 1.5, "lag_p99_ms": 4.0, "delivered": 100,
                    "expected": 101, "bytes_per_event_down": 125.0, "bytes_per_event_up": 0.0,
                    "generator_cpu_s_per_1k_events": 0.05},
            "short_poll": {"label": "short poll (1 s)", "lag_p50_ms": 500.0, "wasted_pct": 10.0,
                           "requests_per_event": 0.1, "delivered": 90, "expected": 101},
            "ws": {"label": "WebSocket", "frame_overhead_bytes": 4.0},
        },
        "push_settings": {"feed_rate": 10},
        "connections": {"ws": {"1000": {"connections": 1000, "server_kb_per_conn": 18.0}}},
        "peers": {
            "throughput": {"wrk": {"rps": 30000.0, "requests_per_cpu_s": 67000.0}},
            "added_latency": {"wrk": {"added_mean_ms": 0.7}},
            "nginx": {"nginx": {"rps": 80000.0}, "rest_over_nginx": 0.38},
            "ws": {"artillery": {"tool": "artillery", "error": "not installed"}},
        },
        "scaling": {
            "points": {"1": {"steady_rps": 3000.0, "worker_cpu_s_per_1k": 0.25}},
            "report": {"report_bytes": 12000, "merge_ms_per_report": 0.8},
            "model": {"here": {"1": {"predicted_rps": 3100, "measured_over_predicted": 0.97}},
                      "cluster": {"workers_per_master_core": 1200}},
        },
    }  # fmt: skip


def _report() -> dict:
    reps = [_rep(1.0), _rep(1.2)]
    parts = ("request", "push", "connections", "peers", "scaling")
    return {
        "command": "wirelab bench --repeat 2",
        "repeat": 2,
        "machine": {"cores": 2, "cpu_model": "test CPU", "kernel": "6.1"},
        "settings": {"push": {"clients": 20, "feed_rate": 10, "payload": 64}},
        "load_average": [{"at": "start", "load": [0.5, 0.4, 0.3]}],
        "repetitions": reps,
        "summary": {part: summarize_runs([rep[part] for rep in reps]) for part in parts},
        "claims": build_claims(reps),
    }


def test_markdown_has_a_table_per_part_and_the_claims_with_verdicts():
    text = markdown(_report())
    for title in ("Request/response", "Push", "Connections", "Generators", "REST target vs nginx",
                  "Scaling", "Cluster model", "Claims"):  # fmt: skip
        assert f"#### {title}" in text
    assert "`wirelab bench --repeat 2`" in text
    assert "**held**" in text  # REST p50 / WS p50 = 2.0 and 2.4 against a claimed 3.0
    assert "280 + 260" in text
    # Ladders the generator or the top rate ended are lower bounds; the target's is not.
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| ≥ 1,000 (1,000 / 1,000) | generator |" in rows["| REST keep-alive"]
    assert "| ≥ 2,000 (2,000 / 2,000) | ladder end |" in rows["| WebSocket echo"]
    assert "| 500 (500 / 500) | – |" in rows["| REST new connection"]
    # 20 clients x 0.05 ms of generator CPU per event: 1 ms to read an event on all of them.
    assert "| 0.05 (±0%) | 1 | – |" in rows["| SSE"]


def test_the_page_says_how_the_cpus_idled():
    report = _report()
    assert "Idle CPUs" not in markdown(report)  # a run recorded before the option existed
    report["cpu_idle"] = {"mode": "poll", "requested": True, "deep_idle_entries": 3}
    assert "polled instead of halting" in markdown(report)
    assert "3 halting idle entries" in markdown(report)
    report["cpu_idle"] = {"mode": "poll", "requested": True, "deep_idle_entries": None}
    assert "no idle states to count halts in" in markdown(report)
    report["cpu_idle"] = {"mode": "default", "requested": False, "driver": "haltpoll"}
    assert "idle driver (haltpoll) decided" in markdown(report)
    report["cpu_idle"] = {"mode": "default", "requested": False, "driver": None}
    assert "without a cpuidle driver" in markdown(report)
    report["cpu_idle"] = {
        "mode": "default",
        "requested": True,
        "reason": "cannot open /dev/cpu_dma_latency: Permission denied",
    }
    assert "asked for, but cannot open /dev/cpu_dma_latency: Permission denied" in markdown(report)


def test_html_page_is_self_contained_with_tables_and_charts():
    page = render_html(_report())
    assert page.startswith("<!doctype html>")
    assert page.count("<table>") >= 8
    assert "<svg" in page
    assert "<script" not in page


def test_counts_from_an_even_number_of_repetitions_print_as_counts() -> None:
    """Six repetitions' median of 75 and 81 events is 78.0; the table says 78, and keeps
    the decimal where there is one."""
    assert _fmt({"median": 78.0, "spread_pct": 7.7, "n": 6}) == "78"
    assert _fmt(362.2) == "362.2"
    assert _fmt(6023.5) == "6,024"
    assert _fmt(4.5) == "4.5"


def test_the_scale_table_shows_both_tools_and_their_ratio() -> None:
    reps = [
        {
            "scale": {
                "connections": 18000,
                "spawn_rate": 1000,
                "wirelab": {"held": 18000, "rss_mb": 250.0, "kb_per_conn": 11.0 * k,
                            "cpu_ms_per_connect": 0.9},
                "tsung": {"held": 18000, "rss_mb": 180.0, "kb_per_conn": 7.4,
                          "cpu_ms_per_connect": 0.3},
                "wirelab_over_tsung": {"kb_per_conn": 1.486 * k, "cpu_ms_per_connect": 3.0},
            }
        }
        for k in (1.0, 1.02)
    ]  # fmt: skip
    report = {"repetitions": reps, "summary": {"scale": summarize_runs([r["scale"] for r in reps])}}
    text = markdown(report)
    assert "18,000 idle WebSocket connections" in text
    (ratio_row,) = [line for line in text.splitlines() if line.startswith("| wirelab / Tsung")]
    assert ratio_row.split("|")[4:6] == [" 1.5 ", " 3 "], ratio_row
    assert "| tsung | 18,000 | 180 | 7.4 (±0%) | 0.3 (±0%) |" in text
