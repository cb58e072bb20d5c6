"""Scenarios: a run's shape, users, feed and thresholds, as data a person can copy and edit.

A scenario is a YAML (or TOML) file. The built-in ones ship in this package
(``wirelab/scenarios/*.yaml``); ``--scenario NAME`` picks one of them and
``--scenario path/to/file.yaml`` reads a user's own.

Every key is declared in a schema (pydantic models: :class:`Scenario` here, the acting keys
in :mod:`.actions`, the value types in :mod:`.fields`) and every value is parsed at load
with the grammars the command line uses (:mod:`wirelab.units`, reconnect policies,
thresholds): an unknown key, a wrong type or a bad value is a :class:`ScenarioError` whose
message names the file and the key, which the CLI reports as one line with exit code 2.
``wirelab scenarios --schema`` prints the schema as JSON Schema for editors.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from ..capacity import GRPC_STREAMS_PER_CHANNEL
from ..exitcodes import UsageError
from ..protocols import PROTOCOL_ORDER
from ..thresholds import parse_threshold
from .actions import PROCESS_LAB_ACTIONS, Action, LabShape, Replicas
from .fields import (
    Duration,
    FieldError,
    Rate,
    RateOrZero,
    Reconnect,
    Section,
    Size,
    SourceAddresses,
    Text,
    ThresholdExpression,
    first_problem,
    list_of,
    null_is,
    whole,
)

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

#: User kinds that read the feed (they record stream series); the others only make requests.
STREAM_USERS = frozenset(key for key in USER_PROTOCOL if key not in ("rest", "rest_echo"))

#: ``--protocols`` names and the user keys they select ("poll" is REST polling).
PROTOCOL_USERS: dict[str, tuple[str, ...]] = {
    "rest": ("rest", "rest_echo"),
    "poll": ("poll_short", "poll_long"),
    "sse": ("sse",),
    "ws": ("ws", "ws_feed"),
    "grpc": ("grpc", "grpc_feed"),
}


class ScenarioError(UsageError):
    """A scenario file or value is wrong; the message names the file and the key.

    ``key`` and ``problem`` are the two halves, for callers that name the key their own
    way (a command-line flag that set it).
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(": ".join(part for part in (source, key, problem) if part))
        self.source, self.key, self.problem = source, key, problem


def _user_kind(value: object) -> str:
    if value not in USER_CLASSES:
        raise FieldError(f"unknown user kind {value!r} (known: {', '.join(USER_CLASSES)})")
    return str(value)


def _users(value: object) -> object:
    if not isinstance(value, dict) or not value:
        raise FieldError(f"required, a mapping of {', '.join(USER_CLASSES)} to counts")
    return value


UserCount = whole(0, 100_000)
Users = Annotated[
    dict[Annotated[str, BeforeValidator(_user_kind)], UserCount],
    BeforeValidator(_users),
    WithJsonSchema(
        {
            "type": "object",
            "description": "users per kind; --users N rescales in these proportions",
            "properties": {kind: {"type": "integer", "minimum": 0} for kind in USER_CLASSES},
            "additionalProperties": False,
            "minProperties": 1,
        }
    ),
]


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError("required, a non-empty string")
    return value.strip()


Name = Annotated[str, BeforeValidator(_name), WithJsonSchema({"type": "string", "pattern": r"\S"})]


class FeedShape(Section):
    """The targets' feed during the run."""

    expects = "a mapping with rate, payload_size, retention"

    rate: RateOrZero = Field(20.0, description="events per second the targets publish")
    payload_size: Size = Field(64, description="bytes of data per event")
    retention: whole(1) = Field(10_000, description="events kept for resume")


class Scenario(Section):
    """Everything a run needs besides where the targets are: the file's keys, validated.

    Build one with :func:`parse_scenario` or :func:`load_scenario` (which name the file in
    every error), or :meth:`from_data`.
    """

    model_config = ConfigDict(title="wirelab scenario")
    expects = "a scenario is a mapping of keys"

    name: Name = Field(description="the run's name: run ids and reports start with it")
    description: Text = Field("", description="one line for `wirelab scenarios`")
    duration: Duration = Field(30.0, description="run time, from the first user's start")
    workers: whole(1, 64) = Field(2, description="Locust worker processes")
    spawn_rate: Rate = Field(10.0, description="users started per second, across all workers")
    users: Users
    feed: Annotated[FeedShape, null_is(FeedShape)] = Field(
        default_factory=FeedShape, description="the targets' event feed"
    )
    rate: Rate | None = Field(
        None,
        description="open-model arrival rate of request/response users, total (500/s); "
        "unset: closed model",
    )
    reconnect: Reconnect = Field(
        "full_jitter:base=0.5,cap=5", description="the stream users' reconnect policy"
    )
    source_addresses: SourceAddresses | None = Field(
        None,
        description="local addresses the clients connect from, rotated per connection "
        "(10.0.0.5,10.0.0.6 or 10.1.0.0/28): each gives the ephemeral ports anew, so a "
        "remote target can take more than ~28k connections per port from one machine; "
        "unset: loopback targets spread over 127.0.0.0/8 by themselves",
    )
    grpc_streams_per_channel: whole(1, 10_000) | None = Field(
        None,
        description="gRPC users sharing one channel (one HTTP/2 connection) in a worker; "
        f"1: a connection each; unset: {GRPC_STREAMS_PER_CHANNEL}",
    )
    thresholds: Annotated[
        list[ThresholdExpression], list_of("a list of expressions such as 'ws echo:p99<50ms'")
    ] = Field(default_factory=list, description="what the run must hold; exit 1 if not")
    #: Replicas per protocol (``"*"``: every protocol); empty: the one-process lab.
    replicas: Annotated[Replicas, null_is(dict)] = Field(default_factory=dict)
    #: Drain and reconnect-hint settings of the replicated lab's targets.
    lab: Annotated[LabShape, null_is(LabShape)] = Field(
        default_factory=LabShape, description="how the replicated lab's targets drain"
    )
    #: Actions on the targets, in time order (see :mod:`.actions`).
    actions: Annotated[list[Action], list_of("a list of {at, do, service} mappings")] = Field(
        default_factory=list, description="what the orchestrator does during the run"
    )
    _source: str = PrivateAttr("<built-in>")

    @classmethod
    def from_data(cls, data: object, *, source: str = "<string>") -> Scenario:
        """Validate parsed data; :class:`ScenarioError` names ``source`` and the first key."""
        try:
            scenario = cls.model_validate(data)
        except ValidationError as exc:
            key, problem = first_problem(exc)
            raise ScenarioError(source, key, problem) from None
        except RecursionError:  # YAML aliases can make a list that contains itself
            raise ScenarioError(source, "", "nested too deeply") from None
        scenario._source = source
        return scenario

    @property
    def source(self) -> str:
        """Where the scenario came from: a file's path, or ``<built-in NAME>``."""
        return self._source

    def revalidated(self) -> Scenario:
        """This scenario checked again as a whole, after its values were changed (the
        command line's overrides): the same checks as a file's, naming the same keys."""
        return Scenario.from_data(self.model_dump(exclude_defaults=True), source=self.source)

    @model_validator(mode="after")
    def _a_run_that_can_happen(self) -> Scenario:
        if self.duration <= 0:
            raise FieldError("must be positive", "duration")
        if self.total_users == 0:
            raise FieldError("at least one user kind needs a count above 0", "users")
        self._check_actions()
        self.actions = sorted(self.actions, key=lambda action: action.at)
        return self

    def _check_actions(self) -> None:
        """Every action starts within the run and names a protocol the run uses, and a kill
        on the replicated lab takes at most as many replicas as there are (all of them: an
        outage is a scenario). The lab's own processes get as many spare ones as a kill takes
        (:meth:`kill_counts`)."""
        protocols = self.protocols
        counts = self.replica_counts()
        for index, action in enumerate(self.actions):
            where = f"actions[{index}]"
            if action.at >= self.duration:
                raise FieldError(
                    f"{action.at:g}s is not within the run's duration ({self.duration:g}s)",
                    f"{where}.at",
                )
            if action.service != "all" and action.service not in protocols:
                raise FieldError(
                    f"{action.service!r} has no users in this scenario "
                    f"(it uses {', '.join(protocols)})",
                    f"{where}.service",
                )
            services = protocols if action.service == "all" else [action.service]
            for service in services if action.do == "kill" and self.replicated else ():
                if action.count > counts[service]:
                    raise FieldError(
                        f"kills {action.count} {service} replicas; "
                        f"the scenario runs {counts[service]}",
                        f"{where}.count",
                    )

    @property
    def replicated(self) -> bool:
        """Whether the run needs the replicated lab (replicas, a balancer, an orchestrator):
        replicas asked for, or an action that drains or adds processes behind a balancer.
        Storms and kills alone run on the lab's processes themselves (see
        :data:`~.actions.PROCESS_LAB_ACTIONS`)."""
        return bool(self.replicas) or any(
            action.do not in PROCESS_LAB_ACTIONS for action in self.actions
        )

    @property
    def acts_on_targets(self) -> bool:
        """Whether the run's actions act on the lab's own target processes."""
        return bool(self.replicas or self.actions)

    def replica_counts(self) -> dict[str, int]:
        """Replicas per protocol this run needs (1 where the scenario says nothing)."""
        default = self.replicas.get("*", 1)
        return {protocol: self.replicas.get(protocol, default) for protocol in self.protocols}

    def kill_counts(self) -> dict[str, int]:
        """The most processes of each protocol one ``kill`` action takes at once."""
        counts: dict[str, int] = {}
        for action in self.actions:
            if action.do == "kill":
                services = self.protocols if action.service == "all" else [action.service]
                for service in services:
                    counts[service] = max(counts.get(service, 0), action.count)
        return counts

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
    def streams_per_channel(self) -> int:
        """gRPC users per shared channel in a worker (the key, or the users' default)."""
        return self.grpc_streams_per_channel or GRPC_STREAMS_PER_CHANNEL

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
            problem = f"unknown protocol {unknown[0]!r}: choose from {choices}"
            raise ScenarioError(self.source, "protocols", problem)
        keep = {key for name in names for key in PROTOCOL_USERS[name]}
        self.users = {key: count for key, count in self.users.items() if key in keep}
        # Actions on protocols left out have nothing to act on.
        kept = {USER_PROTOCOL[key] for key, count in self.users.items() if count > 0}
        self.actions = [a for a in self.actions if a.service == "all" or a.service in kept]
        # The scenario's own thresholds about protocols left out would fail for lack of
        # data; they go too, as do its ``*`` stream thresholds when no user kind left reads
        # the feed (thresholds given on the command line stay).
        streams = any(count > 0 and key in STREAM_USERS for key, count in self.users.items())
        self.thresholds = [
            expression
            for expression in self.thresholds
            if _judgeable(expression, names, streams=streams)
        ]
        if self.total_users == 0:
            problem = f"scenario {self.name!r} has no users for {', '.join(names)}"
            raise ScenarioError(self.source, "protocols", problem)

    def scale_users(self, total: int) -> None:
        """Spread ``total`` users over the scenario's protocols in its proportions."""
        if total < 1:
            raise ScenarioError(self.source, "users", f"must be at least 1, got {total}")
        weights = {key: count for key, count in self.users.items() if count > 0}
        if total < len(weights):
            problem = f"{total} is fewer than the {len(weights)} user kinds"
            raise ScenarioError(self.source, "users", problem)
        weight = sum(weights.values())
        scaled = {key: max(1, int(total * count / weight)) for key, count in weights.items()}
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


def _judgeable(expression: str, protocols: list[str], *, streams: bool) -> bool:
    """Whether a scenario's threshold has data to judge once only ``protocols`` run."""
    selector = expression.split(":", 1)[0].strip()
    head = selector.split(" ", 1)[0]
    if head in PROTOCOL_USERS and head not in protocols:
        return False
    return streams or selector != "*" or not parse_threshold(expression).is_stream_metric


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
            raise ScenarioError("", "", f"scenario file {name_or_path} does not exist")
        text = path.read_text()
        return parse_scenario(text, source=str(path), toml=path.suffix == ".toml")
    if name_or_path not in builtin_names():
        known = ", ".join(builtin_names())
        raise ScenarioError("", "", f"unknown scenario {name_or_path!r}: built-in ones are {known}")
    text = resources.files(__package__).joinpath(f"{name_or_path}.yaml").read_text()
    return parse_scenario(text, source=f"<built-in {name_or_path}>")


def parse_scenario(text: str, *, source: str = "<string>", toml: bool = False) -> Scenario:
    """Parse and validate scenario text; :class:`ScenarioError` names the first problem."""
    try:
        data = tomllib.loads(text) if toml else yaml.safe_load(text)
    # PyYAML raises ValueError for impossible dates (2001-02-30), RecursionError for deep nesting.
    except (yaml.YAMLError, tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        first_line = str(exc).strip().splitlines()[0]
        problem = f"not valid {'TOML' if toml else 'YAML'}: {first_line}"
        raise ScenarioError(source, "", problem) from None
    return Scenario.from_data(data, source=source)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file, for editors (``wirelab scenarios --schema``)."""
    schema = Scenario.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
