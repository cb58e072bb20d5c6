"""Request/response: REST keep-alive, REST with a new connection per request, WebSocket echo
and gRPC unary Echo, each at the same arrival rates (open model) with the same payload.

Per variant, a ladder of arrival rates runs against one fresh target process: the first step
is the fixed rate the latencies are compared at; the ladder stops at the first step that is,
twice in a row, not *sustained* (p99 over the bound, or more than 1% of starts dropped or failed).
Each step records which side was out of CPU, so a ceiling set by the generator is not
mistaken for one of the protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .lab import Generator, Target, bottleneck, run_with_cpu, url_option
from .locustfiles import REQUEST
from .stats import histogram_ms
from .wire import WireCounter

__all__ = ["VARIANTS", "measure_request", "sustained"]

#: name -> (target protocol, user class, label)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "rest_keepalive": ("rest", "RestKeepAlive", "REST keep-alive"),
    "rest_new_conn": ("rest", "RestNewConnection", "REST new connection per request"),
    "ws": ("ws", "WsEcho", "WebSocket echo"),
    "grpc": ("grpc", "GrpcEcho", "gRPC unary Echo"),
}


def sustained(step: dict[str, Any], bound_ms: float) -> bool:
    """Whether a step held its rate: p99 within the bound, at most 1% dropped or failed."""
    p99 = step.get("p99_ms")
    offered = step["ops"] + step["dropped"]
    return (
        p99 is not None
        and p99 <= bound_ms
        and offered > 0
        and step["dropped"] <= 0.01 * offered
        and step["failures"] <= 0.01 * max(1, step["ops"])
    )


def _step(
    workdir: Path,
    target: Target,
    cls: str,
    rate: float,
    *,
    duration: float,
    users: int,
    payload: int,
    count_bytes: bool,
) -> dict[str, Any]:
    generator = Generator(
        workdir,
        f"request-{cls}",
        REQUEST,
        users=users,
        duration=duration,
        classes=[cls],
        args=[
            url_option(target.protocol),
            target.url,
            "--rate",
            f"{rate:g}/s",
            "--payload-size",
            str(payload),
        ],
    )
    counter = WireCounter(target.port) if count_bytes else None
    if counter is not None:
        with counter:
            result, cpu = run_with_cpu(target, generator)
    else:
        result, cpu = run_with_cpu(target, generator)
    extra = result.get("extra") or {}
    latencies = extra.get("latency") or {}
    services = extra.get("service") or {}
    name = max(latencies, key=lambda n: latencies[n]["n"], default=None)
    ops = latencies[name]["n"] if name else 0
    failures = extra.get("failures", 0)
    dropped = extra.get("dropped", 0)
    latency = histogram_ms(latencies.get(name) if name else None)
    service = histogram_ms(services.get(name) if name else None)
    elapsed = max(extra.get("measured_s") or result["elapsed_s"], 0.001)
    # CPU covers the whole run, warm-up included: divide it by every operation of the run.
    total_ops = sum(entry["count"] for entry in result["stats"].values()) or ops
    step: dict[str, Any] = {
        "rate": rate,
        "ops": ops,
        "achieved_rps": round(ops / elapsed, 1),
        "dropped": dropped,
        "failures": failures,
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "service_p50_ms": service["p50"],
        **cpu,
        "target_cpu_s_per_1k_ops": _per_1k(cpu["target_cpu_s"], total_ops),
        "generator_cpu_s_per_1k_ops": _per_1k(cpu["generator_cpu_s"], total_ops),
        "bottleneck": bottleneck(cpu),
        # Why starts were dropped: the scheduler itself ran late (the generator's CPU) or
        # every lane was busy waiting for answers (the target, or connection set-up).
        "dropped_late": sum(
            s.get("dropped_late", 0) for s in result.get("schedulers", {}).values()
        ),
        "dropped_busy": sum(
            s.get("dropped_busy", 0) for s in result.get("schedulers", {}).values()
        ),
        # Resident memory of the target after the step (it only grows over the ladder).
        "target_rss_mb": round(target.rss_kb() / 1024, 1),
    }
    if counter is not None:
        # Bytes per operation over the whole run (connections are set up once, per lane).
        step["bytes_per_op_up"] = round(counter.received / total_ops, 1) if total_ops else None
        step["bytes_per_op_down"] = round(counter.sent / total_ops, 1) if total_ops else None
    return step


def _limited_by(step: dict[str, Any]) -> str | None:
    """Who set the ceiling: a side out of CPU; else what the dropped starts say."""
    side = step["bottleneck"]
    if side in ("generator", "target"):
        return side
    late, busy = step.get("dropped_late", 0), step.get("dropped_busy", 0)
    if late > busy:
        return "generator (starts late)" + (" on a busy host" if side == "host" else "")
    if busy:
        return "lanes busy (slow answers)" + (" on a busy host" if side == "host" else "")
    return side


def _per_1k(cpu_s: float, ops: int) -> float | None:
    return round(1000 * cpu_s / ops, 4) if ops else None


def measure_request(
    workdir: Path,
    *,
    rates: list[float],
    duration: float,
    users: int,
    payload: int,
    bound_ms: float,
    fixed_duration: float | None = None,
    variants: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition of every variant: the fixed-rate step and the ladder's ceiling.

    The first rung is the fixed-rate measurement whose p50/p99 are reported; it runs for
    ``fixed_duration`` (default ``duration``), long enough that its p99 stands on a few
    dozen samples rather than the eighth slowest of 800.
    """
    out: dict[str, Any] = {}
    for variant in variants or list(VARIANTS):
        protocol, cls, label = VARIANTS[variant]
        steps = []
        with Target(workdir, protocol, "--rate", "0") as target:
            for index, rate in enumerate(rates):
                # A rung that misses is run once more before the ladder stops: on a shared
                # machine one p99 can belong to someone else's burst of CPU.
                for attempt in (1, 2):
                    step = _step(
                        workdir,
                        target,
                        cls,
                        rate,
                        duration=(fixed_duration or duration) if index == 0 else duration,
                        users=users,
                        payload=payload,
                        count_bytes=index == 0 and variant != "rest_new_conn",
                    )
                    step["sustained"] = sustained(step, bound_ms)
                    step["attempt"] = attempt
                    log(
                        f"  request {variant:<15} rate {rate:>6g}/s: {step['achieved_rps']:>7}/s "
                        f"p50 {step['p50_ms']} p99 {step['p99_ms']} ms dropped {step['dropped']} "
                        f"cpu target {step['target_cpu_pct']}% "
                        f"generator {step['generator_cpu_pct']}% (attempt {attempt})"
                    )
                    if step["sustained"]:
                        break
                steps.append(step)
                if not step["sustained"]:
                    break
        fixed = steps[0]
        held = [step for step in steps if step["sustained"]]
        ceiling_step = steps[len(held)] if len(held) < len(steps) else None
        out[variant] = {
            "label": label,
            "fixed_rate": fixed["rate"],
            "p50_ms": fixed["p50_ms"],
            "p99_ms": fixed["p99_ms"],
            "service_p50_ms": fixed["service_p50_ms"],
            "target_rss_mb": fixed["target_rss_mb"],
            "target_cpu_pct": fixed["target_cpu_pct"],
            "generator_cpu_pct": fixed["generator_cpu_pct"],
            "target_cpu_s_per_1k_ops": fixed["target_cpu_s_per_1k_ops"],
            "generator_cpu_s_per_1k_ops": fixed["generator_cpu_s_per_1k_ops"],
            "bytes_per_op_up": fixed.get("bytes_per_op_up"),
            "bytes_per_op_down": fixed.get("bytes_per_op_down"),
            "max_sustained_rps": held[-1]["achieved_rps"] if held else 0.0,
            "max_sustained_rate": held[-1]["rate"] if held else 0.0,
            "ladder_top_reached": len(held) == len(rates),
            # Who ran out of CPU at the first rate that was not held.
            "limited_by": _limited_by(ceiling_step) if ceiling_step else "ladder end",
            "steps": steps,
        }
    return out
