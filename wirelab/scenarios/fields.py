"""The building blocks of the scenario schema: value types that parse what people type.

Each type is a pydantic ``Annotated`` type: a validator that reads the value with wirelab's
own parser (:mod:`wirelab.units`, the reconnect and threshold grammars) and the JSON Schema
an editor checks it against. Every mistake raises :class:`FieldError`, whose text is what the
user reads; :func:`first_problem` turns pydantic's report into one ``(key, problem)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from ..reconnect import POLICIES, ReconnectPolicy
from ..source_addresses import parse_source_addresses
from ..thresholds import parse_threshold
from ..units import (
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = [
    "Duration",
    "FieldError",
    "Rate",
    "RateOrZero",
    "Reconnect",
    "Section",
    "Size",
    "SourceAddresses",
    "Text",
    "ThresholdExpression",
    "first_problem",
    "list_of",
    "null_is",
    "number",
    "whole",
]


class FieldError(ValueError):
    """A value is wrong; the text is what the user reads. ``key`` (optional) names where,
    relative to the value validated: a check of a whole section blames one of its keys
    (``lab`` → ``drain_delay``)."""

    def __init__(self, problem: str, key: str = "") -> None:
        super().__init__(problem)
        self.key = key


class Section(BaseModel):
    """A mapping of known keys. Anything else is refused with the keys it could have been."""

    model_config = ConfigDict(extra="forbid")
    #: What a value of this section must be, said when it is something else.
    expects: ClassVar[str] = "a mapping"

    @model_validator(mode="before")
    @classmethod
    def _a_mapping_of_known_keys(cls, data: Any) -> Any:
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise FieldError(f"{cls.expects}, got {_shown(data)}")
        unknown = sorted(map(str, set(data) - set(cls.model_fields)))  # str: YAML keys may be ints
        if unknown:
            raise FieldError(f"unknown key (known: {', '.join(cls.model_fields)})", unknown[0])
        return data


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str | int | float | bool) else type(value).__name__


def _not_bool(value: object) -> None:
    if isinstance(value, bool):  # YAML's yes/no/true: never a number or a duration
        raise FieldError(f"must not be true/false, got {value!r}")


def _parsed(parse: Callable[[str], Any]) -> Callable[[object], Any]:
    def read(value: object) -> Any:
        _not_bool(value)
        if not isinstance(value, str | int | float):
            raise FieldError(f"must be a string or a number, got {_shown(value)}")
        # A number is read as the decimal it is (YAML's 1e-05 as 0.00001), in the base unit.
        text = format(Decimal(repr(value)), "f") if isinstance(value, float) else str(value)
        try:
            return parse(text)
        except ValueError as exc:
            raise FieldError(str(exc)) from None

    return read


def _either(pattern: str, what: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": pattern}],
            "description": what,
        }
    )


#: Seconds: ``30s``, ``250ms``, ``5m``, ``1h`` or a number of seconds.
Duration = Annotated[
    float,
    BeforeValidator(_parsed(parse_duration)),
    _either(DURATION_PATTERN, "a duration: 30s, 250ms, 5m, 1h or a number of seconds"),
]
#: Per second: ``500/s``, ``3000/m``, ``12.5``; more than 0.
Rate = Annotated[
    float,
    BeforeValidator(_parsed(parse_rate)),
    _either(RATE_PATTERN, "a rate above 0: 500/s, 3000/m, 20/h or a number per second"),
]
#: Per second, 0 included: a feed may publish nothing.
RateOrZero = Annotated[
    float,
    BeforeValidator(_parsed(lambda text: parse_rate(text, allow_zero=True))),
    _either(RATE_PATTERN, "a rate: 500/s, 3000/m, 20/h or a number per second; 0: none"),
]
#: Bytes: ``64``, ``4KiB``, ``1MB``.
Size = Annotated[
    int,
    BeforeValidator(_parsed(parse_size)),
    _either(SIZE_PATTERN, "a size in bytes: 64, 4KiB, 1MiB"),
]


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise FieldError(f"must be a string, got {_shown(value)}")
    return value


Text = Annotated[str, BeforeValidator(_text)]


def _checked_text(check: Callable[[str], object], pattern: str, what: str) -> Any:
    """A string that ``check`` accepts (its ``ValueError`` is the problem), kept as given."""

    def read(value: object) -> str:
        text = _text(value)
        try:
            check(text)
        except ValueError as exc:
            raise FieldError(str(exc)) from None
        return text

    schema = {"type": "string", "pattern": pattern, "description": what}
    return Annotated[str, BeforeValidator(read), WithJsonSchema(schema)]


#: A reconnect policy spec, checked by the policy parser: ``full_jitter:base=0.5,cap=5``.
Reconnect = _checked_text(
    ReconnectPolicy.from_spec,
    rf"^\s*({'|'.join(POLICIES)})\s*(:.*)?$",
    f"a reconnect policy: {', '.join(POLICIES)}, with base=,cap= in seconds "
    "(full_jitter:base=0.5,cap=5)",
)
#: A threshold expression, checked by the threshold parser: ``ws echo:p99<50ms``.
ThresholdExpression = _checked_text(
    parse_threshold,
    r"^.+:[a-z0-9_]+\s*(<=|>=|==|!=|<|>)\s*.+$",
    "SELECTOR:METRIC OP VALUE, e.g. 'ws echo:p99<50ms', 'sse:lost==0'",
)

#: Local addresses to connect from: ``10.0.0.5,10.0.0.6`` or a CIDR, ``10.1.0.0/28``.
SourceAddresses = _checked_text(
    lambda text: parse_source_addresses(text, name=""),
    r"\S",
    "local addresses the clients connect from: comma-separated addresses or a CIDR",
)


def null_is(default: Callable[[], Any]) -> BeforeValidator:
    """An empty key (YAML ``key:``) means the default; any other wrong value is an error."""
    return BeforeValidator(lambda value: default() if value is None else value)


def list_of(expects: str) -> BeforeValidator:
    """A list (an empty key: none); anything else is refused saying what it should be."""

    def read(value: object) -> object:
        if value is None:
            return []
        if not isinstance(value, list):
            raise FieldError(f"{expects}, got {_shown(value)}")
        return value

    return BeforeValidator(read)


def whole(minimum: int, maximum: int | None = None) -> Any:
    """A whole number from ``minimum`` to ``maximum``."""
    bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"

    def read(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError(f"must be a whole number, got {_shown(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            raise FieldError(f"must be {bound}, got {value}")
        return value

    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return Annotated[int, BeforeValidator(read), WithJsonSchema(schema)]


def number(minimum: float) -> Any:
    """A finite number of at least ``minimum``."""

    def read(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FieldError(f"must be a number, got {_shown(value)}")
        if not math.isfinite(value) or value < minimum:  # YAML .nan/.inf are floats too
            raise FieldError(f"must be a finite number >= {minimum:g}, got {value}")
        return float(value)

    return Annotated[
        float, BeforeValidator(read), WithJsonSchema({"type": "number", "minimum": minimum})
    ]


def first_problem(error: ValidationError) -> tuple[str, str]:
    """The first of pydantic's errors as ``(key, problem)``: ``("actions[0].at", "...")``.

    One line for the user; the rest usually follow from the first.
    """
    detail = error.errors(include_url=False)[0]
    loc = detail["loc"]
    # A mapping's key is followed by "[key]" in pydantic's path: it is a name, not an index.
    parts: list[str | int] = [
        str(part) if loc[index + 1 : index + 2] == ("[key]",) else part
        for index, part in enumerate(loc)
        if part != "[key]"
    ]
    cause = (detail.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        problem = str(cause)
        if cause.key:
            parts.append(cause.key)
    elif detail["type"] == "missing":
        problem = "required"
    elif isinstance(cause, Exception):
        problem = str(cause)
    else:
        problem = detail["msg"]
    return _key(parts), problem


def _key(parts: list[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith("["):  # a FieldError key that is an index: "[0].at"
            text += str(part)
        else:
            text += f".{part}" if text else str(part)
    return text
