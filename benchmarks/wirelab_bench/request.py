"""Request/response: REST keep-alive, REST with a new connection per request, WebSocket echo
and gRPC unary Echo, each at the same arrival rates (open model) with the same payload.

Each variant has one target process for the whole repetition. Two measurements run on it:

- **At the fixed rate** (``fixed_rate``), the latencies and CPU per operation the variants
  are compared at. They come in ``fixed_slices`` short runs, interleaved: round after round,
  one slice of every variant. This host's cores change speed by up to ~2x for seconds to
  minutes at a time (see :mod:`.speed`); one long run per variant put each variant's figure
  in whichever phase it met, and REST's p50 moved 0.32-0.50 ms from one repetition to the
  next while it sat in a single 12 s window. Interleaved slices spread every variant over
  the same stretch of the machine's time, and the slices' histograms and CPU are merged.
- **A ladder** of arrival rates for the ceiling. It stops at the first step that is, twice
  in a row, not *sustained* (p99 over the bound, or more than 1% of starts dropped or
  failed), or at the first step whose generator ran out of CPU: such a step measures the
  generator, not the protocol, whether it held or not (on the bench VM gRPC's 4,000 req/s
  rung held or failed from one repetition to the next with the generator at 97-99% of its
  core either way). The ceiling is then the last step held with the generator under its
  limit, and ``limited_by`` says "generator". Such a ceiling, or one at the ladder's top
  rate, is only a lower bound of the target's (:func:`lower_bound`): the page prints it
  with "≥" and comparing two runs leaves it out.
- **Bisection** (optional, ``refine`` rungs) between the last rung that held and the first
  that did not. The ladder doubles, so on its own it turns a ceiling that wobbles by 10%
  into a 2x jump when the wobble straddles a rung (REST with a new connection per request
  read 2,000 req/s in four of one run's six repetitions and 1,000 in all six of the next,
  its generator at 79-97% of its core at 2,000). Halving the gap removes the jump but makes
  the ceiling follow the generator's speed everywhere: with three halvings two full runs'
  ceilings were 3-25% apart (benchmarks/README.md, Earlier recorded runs), so it is off by
  default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .interleave import alternating_rounds
from .lab import Generator, Target, bottleneck, cpu_shares, run_with_cpu, url_option
from .locustfiles import REQUEST
from .stats import histogram_ms, merge_wire, per_1k
from .wire import WireCounter

__all__ = [
    "VARIANTS",
    "bisect_rates",
    "ceiling",
    "figures",
    "lower_bound",
    "measure_request",
    "measures_target",
    "merge_runs",
    "plan",
    "summarize_ladder",
    "sustained",
]

#: name -> (target protocol, user class, label)
VARIANTS: dict[str, tuple[str, str, str]] = {
    "rest_keepalive": ("rest", "RestKeepAlive", "REST keep-alive"),
    "rest_new_conn": ("rest", "RestNewConnection", "REST new connection per request"),
    "ws": ("ws", "WsEcho", "WebSocket echo"),
    "grpc": ("grpc", "GrpcEcho", "gRPC unary Echo"),
}

#: The parts of a run that add up over slices (see :func:`merge_runs`).
_SUMMED = (
    "ops",
    "total_ops",
    "measured_s",
    "elapsed_s",
    "wall_s",
    "target_cpu_s",
    "generator_cpu_s",
    "host_busy_s",
    "dropped",
    "failures",
    "dropped_late",
    "dropped_busy",
)


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


def _run(
    workdir: Path,
    target: Target,
    cls: str,
    rate: float,
    *,
    duration: float,
    users: int,
    payload: int,
    count_bytes: bool = False,
) -> dict[str, Any]:
    """One generator run against ``target``: its raw parts, in a form :func:`merge_runs`
    can add up (histograms in wire form, counts, CPU seconds)."""
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
    with counter if counter is not None else contextlib.nullcontext():
        result, cpu = run_with_cpu(target, generator)
    extra = result.get("extra") or {}
    latencies = extra.get("latency") or {}
    services = extra.get("service") or {}
    name = max(latencies, key=lambda n: latencies[n]["n"], default=None)
    ops = latencies[name]["n"] if name else 0
    schedulers = result.get("schedulers", {}).values()
    run: dict[str, Any] = {
        "rate": rate,
        "latency": latencies.get(name) if name else None,
        "service": services.get(name) if name else None,
        "ops": ops,
        # CPU covers the whole run, warm-up included: it is divided by every operation.
        "total_ops": sum(entry["count"] for entry in result["stats"].values()) or ops,
        "measured_s": max(extra.get("measured_s") or result["elapsed_s"], 0.001),
        "elapsed_s": result.get("elapsed_s") or cpu["wall_s"],
        "wall_s": cpu["wall_s"],
        "target_cpu_s": cpu["target_cpu_s"],
        "generator_cpu_s": cpu["generator_cpu_s"],
        "host_busy_s": cpu["host_busy_pct"] * cpu["wall_s"] / 100,
        "dropped": extra.get("dropped", 0),
        "failures": extra.get("failures", 0),
        # Why starts were dropped: the scheduler itself ran late (the generator's CPU) or
        # every lane was busy waiting for answers (the target, or connection set-up).
        "dropped_late": sum(s.get("dropped_late", 0) for s in schedulers),
        "dropped_busy": sum(s.get("dropped_busy", 0) for s in schedulers),
        # Resident memory of the target after the run (it only grows over the repetition).
        "target_rss_mb": round(target.rss_kb() / 1024, 1),
    }
    if counter is not None:
        run["bytes_up"], run["bytes_down"] = counter.received, counter.sent
    return run


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one variant at one rate as if they were one: histograms merged,
    counts and CPU seconds added, memory as after the last."""
    merged: dict[str, Any] = {key: sum(run[key] for run in runs) for key in _SUMMED}
    merged["rate"] = runs[0]["rate"]
    merged["target_rss_mb"] = runs[-1]["target_rss_mb"]
    for key in ("latency", "service"):
        merged[key] = merge_wire(run[key] for run in runs)
    return merged


def figures(run: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run (or of merged runs): percentiles, rates, CPU and who was busy."""
    latency = histogram_ms(run["latency"])
    service = histogram_ms(run["service"])
    wall = max(run["wall_s"], 0.001)
    cpu = cpu_shares(
        run["target_cpu_s"],
        run["generator_cpu_s"],
        run["elapsed_s"],
        round(100 * run["host_busy_s"] / wall, 1),
        run["wall_s"],
    )
    step: dict[str, Any] = {
        "rate": run["rate"],
        "ops": run["ops"],
        "achieved_rps": round(run["ops"] / max(run["measured_s"], 0.001), 1),
        "dropped": run["dropped"],
        "failures": run["failures"],
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "service_p50_ms": service["p50"],
        **cpu,
        "target_cpu_s_per_1k_ops": per_1k(run["target_cpu_s"], run["total_ops"]),
        "generator_cpu_s_per_1k_ops": per_1k(run["generator_cpu_s"], run["total_ops"]),
        "bottleneck": bottleneck(cpu),
        "dropped_late": run["dropped_late"],
        "dropped_busy": run["dropped_busy"],
        "target_rss_mb": run["target_rss_mb"],
    }
    if "bytes_up" in run and run["total_ops"]:
        # Bytes per operation over the whole run (connections are set up once, per lane).
        step["bytes_per_op_up"] = round(run["bytes_up"] / run["total_ops"], 1)
        step["bytes_per_op_down"] = round(run["bytes_down"] / run["total_ops"], 1)
    return step


def measures_target(step: dict[str, Any]) -> bool:
    """Whether a step held its rate with the generator under its CPU limit: only such a
    step says something about the protocol's ceiling."""
    return bool(step["sustained"]) and step["bottleneck"] != "generator"


def summarize_ladder(
    label: str, steps: list[dict[str, Any]], rates: list[float], fixed: dict[str, Any]
) -> dict[str, Any]:
    """One variant's figures: latency, CPU and bytes from ``fixed`` (the merged fixed-rate
    slices), and the ceiling from the ladder's ``steps`` (the last step that
    :func:`measures_target`, and who stopped the ladder)."""
    best, ceiling_step = ceiling(steps)
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
        "max_sustained_rps": best["achieved_rps"] if best else 0.0,
        "max_sustained_rate": best["rate"] if best else 0.0,
        "ladder_top_reached": bool(best) and best["rate"] >= rates[-1],
        # Who ran out of CPU at the first rate that was not held (or not the target's).
        "limited_by": _limited_by(ceiling_step) if ceiling_step else "ladder end",
        "steps": steps,
        "slice_figures": fixed.get("slice_figures", []),
    }


def ceiling(
    steps: list[dict[str, Any]],
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The step that sets the ceiling and the one that ended it, from the steps in the order
    they ran: the doubling rungs up to the first that does not :func:`measures_target`, then
    any bisection rungs between that one and the last before it (see :func:`bisect_rates`).

    The ceiling is the highest rate that measured the target below the lowest that did
    not; the step that ended it is that lowest one (``None`` when nothing failed)."""
    failed = [step for step in steps if not measures_target(step)]
    end = min(failed, key=lambda step: step["rate"], default=None)
    below = [
        step
        for step in steps
        if measures_target(step) and (end is None or step["rate"] < end["rate"])
    ]
    return max(below, key=lambda step: step["rate"], default=None), end


def lower_bound(limited_by: str | list[str | None] | None) -> bool:
    """Whether a ceiling is only a lower bound of the target's: what ended the ladder, in
    every repetition ``limited_by`` summarises (one label, or a list when they differ), was
    the generator's CPU or the ladder's top rate, never the target or its answers."""
    labels = limited_by if isinstance(limited_by, list) else [limited_by]
    return bool(labels) and all(
        isinstance(label, str) and (label == "ladder end" or label.startswith("generator"))
        for label in labels
    )


def bisect_rates(held: float, failed: float, measure: Callable[[float], bool], times: int) -> None:
    """Halve the gap between a rate that ``held`` and one that ``failed`` ``times`` times:
    ``measure(rate)`` runs a rung and says whether it measured the target."""
    for _ in range(times):
        rate = float(round((held + failed) / 2))
        if rate in (held, failed):
            return
        if measure(rate):
            held = rate
        else:
            failed = rate


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


def plan(variants: list[str], slices: int) -> list[tuple[str, str]]:
    """The order of one repetition's runs, as ``("slice" | "ladder", variant)``.

    ``slices`` rounds of one fixed-rate slice per variant (see :func:`alternating_rounds`),
    with the ladders spread evenly between the rounds, so that the slices cover the whole
    part rather than its first minute.
    """
    actions: list[tuple[str, str]] = []
    for index, order in enumerate(alternating_rounds(variants, slices)):
        actions += [("slice", variant) for variant in order]
        actions += [
            ("ladder", variant)
            for position, variant in enumerate(variants)
            if position * slices // len(variants) == index
        ]
    return actions


def measure_request(
    workdir: Path,
    *,
    rates: list[float],
    duration: float,
    users: int,
    payload: int,
    bound_ms: float,
    fixed_rate: float | None = None,
    fixed_slices: int = 1,
    refine: int = 0,
    variants: list[str] | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """One repetition of every variant: the fixed-rate figures and the ladder's ceiling.

    The fixed rate (default: the ladder's first) is measured in ``fixed_slices`` runs of
    ``duration`` seconds each, interleaved with the other variants' (see :func:`plan`); the
    ladder's last gap is halved ``refine`` times (see :func:`bisect_rates`).
    """
    fixed_rate = rates[0] if fixed_rate is None else fixed_rate
    chosen = variants or list(VARIANTS)
    actions = plan(chosen, fixed_slices)
    run_options = {"duration": duration, "users": users, "payload": payload}
    slices: dict[str, list[dict[str, Any]]] = {variant: [] for variant in chosen}
    ladders: dict[str, list[dict[str, Any]]] = {}
    counted: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        targets = {
            variant: stack.enter_context(Target(workdir, VARIANTS[variant][0], "--rate", "0"))
            for variant in chosen
        }
        for action, variant in actions:
            cls = VARIANTS[variant][1]
            if action == "slice":
                run = _run(workdir, targets[variant], cls, fixed_rate, **run_options)
                slices[variant].append(run)
                step = figures(run)
                log(
                    f"  request {variant:<15} fixed {fixed_rate:g}/s slice "
                    f"{len(slices[variant])}/{fixed_slices}: p50 {step['p50_ms']} "
                    f"p99 {step['p99_ms']} ms cpu target {step['target_cpu_pct']}% "
                    f"generator {step['generator_cpu_pct']}%"
                )
                continue
            ladders[variant] = _ladder(
                workdir, targets[variant], variant, rates, bound_ms, refine, run_options, log
            )
            if variant != "rest_new_conn":
                # Bytes are counted in a run of their own at the fixed rate: sampling the
                # sockets costs CPU on the measured cores, and with it running the
                # latency run's p99 doubled (REST at 1,000 req/s: 2.0-2.4 ms vs 0.6-0.8).
                counted[variant] = figures(
                    _run(
                        workdir,
                        targets[variant],
                        cls,
                        fixed_rate,
                        **run_options,
                        count_bytes=True,
                    )
                )
    out: dict[str, Any] = {}
    for variant in chosen:
        fixed = figures(merge_runs(slices[variant]))
        fixed["bytes_per_op_up"] = counted.get(variant, {}).get("bytes_per_op_up")
        fixed["bytes_per_op_down"] = counted.get(variant, {}).get("bytes_per_op_down")
        fixed["slice_figures"] = [
            {key: step[key] for key in ("p50_ms", "p99_ms", "target_cpu_s_per_1k_ops")}
            for step in map(figures, slices[variant])
        ]
        out[variant] = summarize_ladder(VARIANTS[variant][2], ladders[variant], rates, fixed)
    return out


def _ladder(
    workdir: Path,
    target: Target,
    variant: str,
    rates: list[float],
    bound_ms: float,
    refine: int,
    run_options: dict[str, Any],
    log: Any,
) -> list[dict[str, Any]]:
    """The rungs of one variant's ladder, up to the first that does not measure the target,
    then ``refine`` bisection rungs between it and the one below."""
    steps: list[dict[str, Any]] = []

    def rung(rate: float) -> bool:
        # A rung that misses is run once more before it counts as missed: on a shared
        # machine one p99 can belong to someone else's burst of CPU.
        for attempt in (1, 2):
            step = figures(_run(workdir, target, VARIANTS[variant][1], rate, **run_options))
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
        steps.append(step)
        return measures_target(step)

    held = None
    for rate in rates:
        if not rung(rate):
            if held is not None:
                bisect_rates(held, rate, rung, refine)
            break
        held = rate
    return steps
