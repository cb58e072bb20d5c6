"""What every orchestrator shares: which services an action means, and one result from each
service's outcome (the local lab and Kubernetes report the same way)."""

from __future__ import annotations

import pytest

from wirelab.lab.orchestrator import OrchestratorError, gather, select_services


class _TransientError(OrchestratorError):
    """Stands for a subclass an orchestrator raises (a transient API error)."""


def test_all_means_every_service_available_and_an_unknown_one_is_named() -> None:
    assert select_services("kill", "all", ["rest", "ws"], "in this lab") == ("rest", "ws")
    assert select_services("kill", "ws", ["rest", "ws"], "in this lab") == ("ws",)
    with pytest.raises(OrchestratorError) as raised:
        select_services("kill", "sse", ["rest", "ws"], "on this release")
    assert str(raised.value) == "kill sse: unknown service on this release (known: rest, ws, all)"


def test_one_service_gives_its_own_detail_and_its_own_error() -> None:
    result = gather("scale", "ws", 1.0, {"ws": (["ws-1", "ws-2"], "2 replicas")})
    assert (result.affected, result.detail, result.started_at) == (
        ["ws-1", "ws-2"],
        "2 replicas",
        1.0,
    )
    assert result.ended_at >= result.started_at
    with pytest.raises(_TransientError, match=r"^API kept failing$"):
        gather("scale", "ws", 1.0, {"ws": _TransientError("API kept failing")})
    with pytest.raises(OrchestratorError, match=r"^no free address slot$"):
        gather("scale", "ws", 1.0, {"ws": RuntimeError("no free address slot")})


def test_several_services_name_each_one_and_a_failure_does_not_hide_the_others() -> None:
    result = gather("kill", "all", 1.0, {"rest": (["r1"], "killed 1"), "ws": (["w1"], "killed 1")})
    assert (result.affected, result.detail) == (["r1", "w1"], "rest: killed 1; ws: killed 1")
    with pytest.raises(OrchestratorError) as raised:
        outcomes = {
            "rest": OrchestratorError("timed out"),
            "sse": ([], "ok"),
            "ws": RuntimeError("gone"),
        }
        gather("kill", "all", 1.0, outcomes)
    assert str(raised.value) == "kill all failed: rest: timed out; ws: gone"
