"""Request/response: REST keep-alive, REST with a new connection per request, WebSocket echo
and gRPC unary Echo, each at the same arrival rates (open model) with the same payload.

Per variant, a ladder of arrival rates runs against one fresh target process; one rung (the
``fixed_rate``) is the rate the latencies and CPU per operation are compared at. The ladder
stops at the first step that is, twice in a row, not *sustained* (p99 over the bound, or more
than 1% of starts dropped or failed), or at the first step whose generator ran out of CPU:
such a step measures the generator, not the protocol, whether it held or not (on the bench
VM gRPC's 4,000 req/s rung held or failed from one repetition to the next with the
generator at 97-99% of its core either way). The ceiling is then the last step held with
the generator under its limit, and ``limited_by`` says "generator".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .lab import Generator, Target, bottleneck, run_with_cpu, url_option
from .locustfiles import REQUEST
from .stats import histogram_ms
from .wire import WireCounter

__all__ = ["VARIANTS", "measure_request", "measures_target", "summarize_ladder", "sustained"]

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


def measures_target(step: dict[str, Any]) -> bool:
    """Whether a step held its rate with the generator under its CPU limit: only such a
    step says something about the protocol's ceiling."""
    return bool(step["sustained"]) and step["bottleneck"] != "generator"


def summarize_ladder(
    label: str, steps: list[dict[str, Any]], rates: list[float], fixed_rate: float
) -> dict[str, Any]:
    """One variant's figures from its ladder: the fixed-rate step's latency, CPU and bytes,
    and the ceiling (the last step that :func:`measures_target`, and who stopped the ladder)."""
    fixed = next((step for step in steps if step["rate"] == fixed_rate), steps[0])
    held = []
    for step in steps:
        if not measures_target(step):
            break
        held.append(step)
    ceiling_step = steps[len(held)] if len(held) < len(steps) else None
    return {
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
        # Who ran out of CPU at the first rate that was not held (or not the target's).
        "limited_by": _limited_by(ceiling_step) if ceiling_step else "ladder end",
        "steps": steps,
    }


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
    fixed_rate: float | None = None,
    fixed_duration: float | None = None,
    variants: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition of every variant: the fixed-rate step and the ladder's ceiling.

    The rung at ``fixed_rate`` (default: the first) is the measurement whose p50/p99 and CPU
    per operation are reported; it runs for ``fixed_duration`` (default ``duration``), long
    enough that its p99 stands on a hundred samples rather than the eighth slowest of 800.
    """
    fixed_rate = rates[0] if fixed_rate is None else fixed_rate
    if fixed_rate not in rates:
        raise ValueError(f"fixed_rate {fixed_rate:g} is not one of the ladder's rates {rates}")
    out: dict[str, Any] = {}
    for variant in variants or list(VARIANTS):
        protocol, cls, label = VARIANTS[variant]
        steps = []
        with Target(workdir, protocol, "--rate", "0") as target:
            for rate in rates:
                # A rung that misses is run once more before the ladder stops: on a shared
                # machine one p99 can belong to someone else's burst of CPU.
                for attempt in (1, 2):
                    step = _step(
                        workdir,
                        target,
                        cls,
                        rate,
                        duration=(fixed_duration or duration) if rate == fixed_rate else duration,
                        users=users,
                        payload=payload,
                        count_bytes=False,
                    )
                    step["sustained"] = sustained(step, bound_ms)
                    step["attempt"] = attempt
                    log(
                        f"  request {variant:<15} rate {rate:>6g}/s: {step['achieved_rps']:>7}/s "
                        f"p50 {step['p50_ms']} p99 {step['p99_ms']} ms dropped {step['dropped']} "
                        f"cpu target {step['target_cpu_pct']}% "
                        f"generator {step['generator_cpu_pct']}% (attempt {attempt})"
                    )
                    # A generator out of CPU would be out of it again: no second attempt.
                    if step["sustained"] or step["bottleneck"] == "generator":
                        break
                if rate == fixed_rate and variant != "rest_new_conn":
                    # Bytes are counted in a run of their own at the same rate: sampling the
                    # sockets costs CPU on the measured cores, and with it running the
                    # latency run's p99 doubled (REST at 1,000 req/s: 2.0-2.4 ms vs 0.6-0.8).
                    counted = _step(
                        workdir,
                        target,
                        cls,
                        rate,
                        duration=duration,
                        users=users,
                        payload=payload,
                        count_bytes=True,
                    )
                    step["bytes_per_op_up"] = counted["bytes_per_op_up"]
                    step["bytes_per_op_down"] = counted["bytes_per_op_down"]
                steps.append(step)
                if not measures_target(step):
                    break
        out[variant] = summarize_ladder(label, steps, rates, fixed_rate)
    return out
