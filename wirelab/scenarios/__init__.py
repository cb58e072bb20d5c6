"""Scenarios: a run's shape, users, feed and thresholds, as data a person can copy and edit.

A scenario is a YAML (or TOML) file. The built-in ones ship in this package
(``wirelab/scenarios/*.yaml``); ``--scenario NAME`` picks one of them and
``--scenario path/to/file.yaml`` reads a user's own. Every key is checked: an unknown key,
a wrong type or a bad value is a :class:`ScenarioError` whose message names the file and
the key, which the CLI reports as one line with exit code 2.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..protocols import PROTOCOL_ORDER
from ..units import parse_duration, parse_size
from .actions import Action, LabShape, parse_actions, parse_lab, parse_replicas

#: Scenario user keys → the Locust user classes in :mod:`wirelab.users` they run.
USER_CLASSES: dict[str, str] = {
    "rest": "RestUser",
    "poll_short": "ShortPollUser",
    "poll_long": "LongPollUser",
    "sse": "SseUser",
    "ws": "WebSocketUser",
    "grpc": "GrpcUser",
    # Only POST /echo: stateless REST traffic that stays valid across replicas (the
    # reference target keeps items per replica, so CRUD through a balancer sees 404s).
    "rest_echo": "RestEchoUser",
    # Feed-only clients (no echo/chat tasks): the cheapest connection a worker holds, for
    # reconnect storms and connection-count scenarios.
    "ws_feed": "WebSocketFeedUser",
    "grpc_feed": "GrpcFeedUser",
}

#: Which target protocol each user key needs.
USER_PROTOCOL: dict[str, str] = {
    "rest": "rest",
    "poll_short": "rest",
    "poll_long": "rest",
    "sse": "sse",
    "ws": "ws",
    "grpc": "grpc",
    "rest_echo": "rest",
    "ws_feed": "ws",
    "grpc_feed": "grpc",
}

#: ``--protocols`` names and the user keys they select ("poll" is REST polling).
PROTOCOL_USERS: dict[str, tuple[str, ...]] = {
    "rest": ("rest", "rest_echo"),
    "poll": ("poll_short", "poll_long"),
    "sse": ("sse",),
    "ws": ("ws", "ws_feed"),
    "grpc": ("grpc", "grpc_feed"),
}


class ScenarioError(ValueError):
    """A scenario file or value is wrong; the message names where."""


@dataclass(slots=True)
class FeedShape:
    """The targets' feed during the run."""

    rate: float = 20.0
    payload_size: int = 64
    retention: int = 10_000


@dataclass(slots=True)
class Scenario:
    """Everything a run needs besides where the targets are."""

    name: str
    description: str = ""
    duration: float = 30.0
    workers: int = 2
    spawn_rate: float = 10.0
    users: dict[str, int] = field(default_factory=dict)
    feed: FeedShape = field(default_factory=FeedShape)
    #: Open-model arrival rate for request/response users, e.g. 200.0 (per second, total).
    rate: float | None = None
    reconnect: str = "full_jitter:base=0.5,cap=5"
    thresholds: list[str] = field(default_factory=list)
    #: Replicas per protocol (``"*"``: every protocol); empty: the one-process lab.
    replicas: dict[str, int] = field(default_factory=dict)
    #: Actions on the targets, in time order (see :mod:`.actions`).
    actions: list[Action] = field(default_factory=list)
    #: Drain and reconnect-hint settings of the replicated lab's targets.
    lab: LabShape = field(default_factory=LabShape)
    source: str = "<built-in>"

    @property
    def replicated(self) -> bool:
        """Whether the run needs the replicated lab (replicas, a balancer, an orchestrator)."""
        return bool(self.replicas or self.actions)

    def replica_counts(self) -> dict[str, int]:
        """Replicas per protocol this run needs (1 where the scenario says nothing)."""
        default = self.replicas.get("*", 1)
        return {protocol: self.replicas.get(protocol, default) for protocol in self.protocols}

    def slot_counts(self) -> dict[str, int]:
        """Address slots per protocol: room for the most replicas any action asks for, plus
        the spare slots a rolling restart surges into."""
        counts = self.replica_counts()
        slots = {}
        for protocol, count in counts.items():
            most = max(
                [count]
                + [
                    action.replicas or 0
                    for action in self.actions
                    if action.do == "scale" and action.service in (protocol, "all")
                ]
            )
            slots[protocol] = most + self.lab.spare_slots
        return slots

    @property
    def total_users(self) -> int:
        return sum(self.users.values())

    @property
    def protocols(self) -> list[str]:
        """Target protocols this scenario needs, in a stable order."""
        needed = {USER_PROTOCOL[key] for key, count in self.users.items() if count > 0}
        return [name for name in PROTOCOL_ORDER if name in needed]

    def select_protocols(self, names: list[str]) -> None:
        """Keep only the users of ``names`` (``--protocols``); others drop to zero."""
        unknown = [name for name in names if name not in PROTOCOL_USERS]
        if unknown:
            choices = ", ".join(PROTOCOL_USERS)
            raise ScenarioError(f"unknown protocol {unknown[0]!r}: choose from {choices}")
        keep = {key for name in names for key in PROTOCOL_USERS[name]}
        self.users = {key: count for key, count in self.users.items() if key in keep}
        # Actions on protocols left out have nothing to act on.
        kept = {USER_PROTOCOL[key] for key, count in self.users.items() if count > 0}
        self.actions = [a for a in self.actions if a.service == "all" or a.service in kept]
        # The scenario's own thresholds about protocols left out would fail for lack of
        # data; they go too (thresholds given on the command line stay).
        self.thresholds = [
            expression
            for expression in self.thresholds
            if expression.split(":", 1)[0].split(" ", 1)[0] in {*names, "*"}
            or expression.split(":", 1)[0].split(" ", 1)[0] not in PROTOCOL_USERS
        ]
        if self.total_users == 0:
            raise ScenarioError(f"scenario {self.name!r} has no users for {', '.join(names)}")

    def scale_users(self, total: int) -> None:
        """Spread ``total`` users over the scenario's protocols in its proportions."""
        if total < 1:
            raise ScenarioError("--users must be at least 1")
        weights = {key: count for key, count in self.users.items() if count > 0}
        if total < len(weights):
            raise ScenarioError(f"--users {total} is fewer than the {len(weights)} user kinds")
        whole = sum(weights.values())
        scaled = {key: max(1, int(total * count / whole)) for key, count in weights.items()}
        # Hand out what rounding left over to the largest kinds first.
        leftover = total - sum(scaled.values())
        for key in sorted(weights, key=weights.get, reverse=True):
            if leftover <= 0:
                break
            scaled[key] += 1
            leftover -= 1
        while leftover < 0:
            key = max(scaled, key=scaled.get)
            scaled[key] -= 1
            leftover += 1
        self.users = scaled


_TOP_KEYS = {
    "name",
    "description",
    "duration",
    "workers",
    "spawn_rate",
    "users",
    "feed",
    "rate",
    "reconnect",
    "thresholds",
    "replicas",
    "lab",
    "actions",
}


def builtin_names() -> list[str]:
    """Names of the scenarios shipped with wirelab."""
    folder = resources.files(__package__)
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    )


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml", ".toml"} or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file {name_or_path} does not exist")
        text = path.read_text()
        return parse_scenario(text, source=str(path), toml=path.suffix == ".toml")
    if name_or_path not in builtin_names():
        raise ScenarioError(
            f"unknown scenario {name_or_path!r}: built-in ones are {', '.join(builtin_names())}"
        )
    text = resources.files(__package__).joinpath(f"{name_or_path}.yaml").read_text()
    return parse_scenario(text, source=f"<built-in {name_or_path}>")


def parse_scenario(  # noqa: PLR0912, PLR0915 - one branch per key keeps every message specific
    text: str, *, source: str = "<string>", toml: bool = False
) -> Scenario:
    """Parse and validate scenario text; :class:`ScenarioError` names the first problem."""
    try:
        data = tomllib.loads(text) if toml else yaml.safe_load(text)
    # PyYAML raises ValueError for impossible dates (2001-02-30), RecursionError for deep nesting.
    except (yaml.YAMLError, tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise ScenarioError(
            f"{source}: not valid {'TOML' if toml else 'YAML'}: {first_line}"
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping of keys, got {type(data).__name__}")
    unknown = sorted(map(str, set(data) - _TOP_KEYS))  # str: YAML keys may be ints
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    where = source

    def fail(key: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{where}: {key}: {problem}")

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail("name", "required, a non-empty string")
    scenario = Scenario(name=name.strip(), source=source)
    scenario.description = _string(data.get("description", ""), "description", fail)
    scenario.duration = _duration(data.get("duration", "30s"), "duration", fail)
    if scenario.duration <= 0:
        raise fail("duration", "must be positive")
    scenario.workers = _int(data.get("workers", 2), "workers", fail, minimum=1, maximum=64)
    scenario.spawn_rate = _number(data.get("spawn_rate", 10), "spawn_rate", fail, minimum=0.1)
    users = data.get("users")
    if not isinstance(users, dict) or not users:
        raise fail("users", f"required, a mapping of {', '.join(USER_CLASSES)} to counts")
    for key, count in users.items():
        if key not in USER_CLASSES:
            raise fail(f"users.{key}", f"unknown user kind (known: {', '.join(USER_CLASSES)})")
        scenario.users[key] = _int(count, f"users.{key}", fail, minimum=0, maximum=100_000)
    if scenario.total_users == 0:
        raise fail("users", "at least one user kind needs a count above 0")
    feed = data.get("feed") or {}
    if not isinstance(feed, dict):
        raise fail("feed", "a mapping with rate, payload_size, retention")
    extra = sorted(map(str, set(feed) - {"rate", "payload_size", "retention"}))
    if extra:
        raise fail(f"feed.{extra[0]}", "unknown key (known: rate, payload_size, retention)")
    scenario.feed = FeedShape(
        rate=_number(feed.get("rate", 20), "feed.rate", fail, minimum=0),
        payload_size=_size(feed.get("payload_size", 64), "feed.payload_size", fail),
        retention=_int(feed.get("retention", 10_000), "feed.retention", fail, minimum=1),
    )
    if data.get("rate") is not None:
        scenario.rate = parse_rate(data["rate"], key="rate", fail=fail)
    scenario.reconnect = _string(data.get("reconnect", scenario.reconnect), "reconnect", fail)
    thresholds = data.get("thresholds") or []
    if not isinstance(thresholds, list) or not all(isinstance(t, str) for t in thresholds):
        raise fail("thresholds", "a list of expressions such as 'ws echo:p99<50ms'")
    from ..thresholds import ThresholdError, parse_threshold  # noqa: PLC0415 - avoid a cycle

    for index, expression in enumerate(thresholds):
        try:
            parse_threshold(expression)
        except ThresholdError as exc:
            raise fail(f"thresholds[{index}]", str(exc)) from None
    scenario.thresholds = list(thresholds)
    _parse_acting_keys(scenario, data, fail)
    return scenario


def _parse_acting_keys(scenario: Scenario, data: dict[str, Any], fail: Any) -> None:
    """``replicas``, ``lab`` and ``actions`` (see :mod:`.actions`)."""
    if data.get("replicas") is not None:
        scenario.replicas = parse_replicas(data["replicas"], fail)
    scenario.lab = parse_lab(data.get("lab"), fail)
    scenario.actions = parse_actions(data.get("actions"), fail, duration=scenario.duration)
    check_actions(scenario, fail)


def check_actions(scenario: Scenario, fail: Any = None) -> None:
    """Checks that need the scenario as a whole (run again after command-line overrides):
    every action starts within the run and names a protocol the run uses, and a kill takes
    at most as many replicas as there are (all of them is allowed: an outage is a scenario).
    """
    fail = fail or (lambda key, problem: ScenarioError(f"{scenario.source}: {key}: {problem}"))
    protocols = scenario.protocols
    for index, action in enumerate(scenario.actions):
        if action.at >= scenario.duration:
            raise fail(
                f"actions[{index}].at",
                f"{action.at:g}s is not within the run's duration ({scenario.duration:g}s)",
            )
    counts = scenario.replica_counts()
    for index, action in enumerate(scenario.actions):
        if action.service != "all" and action.service not in protocols:
            raise fail(
                f"actions[{index}].service",
                f"{action.service!r} has no users in this scenario "
                f"(it uses {', '.join(protocols)})",
            )
        if action.do == "kill":
            services = protocols if action.service == "all" else [action.service]
            for service in services:
                if action.count > counts[service]:
                    raise fail(
                        f"actions[{index}].count",
                        f"kills {action.count} {service} replicas; "
                        f"the scenario runs {counts[service]}",
                    )


def parse_rate(value: object, *, key: str = "rate", fail: Any = None) -> float:
    """``500``, ``"500/s"``, ``"30000/m"`` → per second."""
    fail = fail or (lambda k, problem: ScenarioError(f"{k}: {problem}"))
    text = str(value).strip().replace(" ", "")
    per = 1.0
    if "/" in text:
        text, unit = text.split("/", 1)
        per = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit, 0.0)
        if not per:
            raise fail(key, f"rate unit must be /s, /m or /h, not /{unit}")
    try:
        number = float(text)
    except ValueError:
        raise fail(key, f"not a rate: {value!r} (examples: 500/s, 200)") from None
    if not math.isfinite(number) or number <= 0:
        raise fail(key, "rate must be a positive finite number")
    return number / per


def _string(value: object, key: str, fail: Any) -> str:
    if not isinstance(value, str):
        raise fail(key, "must be a string")
    return value


def _duration(value: object, key: str, fail: Any) -> float:
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise fail(key, str(exc)) from None


def _size(value: object, key: str, fail: Any) -> int:
    try:
        return parse_size(str(value))
    except ValueError as exc:
        raise fail(key, str(exc)) from None


def _int(value: object, key: str, fail: Any, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(key, f"must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise fail(key, f"must be {bound}, got {value}")
    return value


def _number(value: object, key: str, fail: Any, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(key, f"must be a number, got {value!r}")
    if not math.isfinite(value) or value < minimum:  # YAML .nan/.inf are floats too
        raise fail(key, f"must be a finite number >= {minimum:g}, got {value}")
    return float(value)
