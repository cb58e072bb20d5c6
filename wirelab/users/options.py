"""wirelab's Locust command-line options, each also readable from the environment.

Registered on Locust's ``init_command_line_parser`` event when :mod:`wirelab.users` is
imported, so ``locust -f locustfiles/all.py --help`` lists them, the web UI shows them in its
start form, and the master forwards them to every worker with the spawn message (Locust
does that for custom options). Resolution order for each: the command line (or web UI),
then the environment variable, then the user class's own attribute, then Locust's
``--host`` where the scheme fits.

========================  ====================  ===========================================
option                    environment           why
========================  ====================  ===========================================
``--rest-url``            WIRELAB_REST_URL      REST API base (``http://host:port``); also
                                                used by the polling users
``--sse-url``             WIRELAB_SSE_URL       SSE base URL; comma-separated replicas are
                                                rotated through on reconnect
``--ws-url``              WIRELAB_WS_URL        WebSocket base URL (``ws://host:port``);
                                                comma-separated replicas, as for SSE
``--grpc-target``         WIRELAB_GRPC_TARGET   ``host:port``; several comma-separated are
                                                balanced client-side (round_robin)
``--reconnect``           WIRELAB_RECONNECT     reconnect policy spec of stream users, e.g.
                                                ``full_jitter:base=0.5,cap=10``
``--rate``                WIRELAB_RATE          open model: arrival rate of each
                                                request/response user class, total across
                                                workers (``500/s``, ``3000/m``); unset:
                                                closed model
``--open-concurrency``    WIRELAB_OPEN_CONC...  open model: operations one user may have in
                                                flight (pool = users x this)
``--open-max-wait``       WIRELAB_OPEN_MAX_...  open model: how long a start may wait for a
                                                free lane (its latency still counts from
                                                the intended start) before it is dropped
``--payload-size``        WIRELAB_PAYLOAD_SIZE  bytes of payload in echo and item bodies
``--deliver-sample``      WIRELAB_DELIVER_SA... fraction of delivered events also fired as
                                                Locust ``<protocol> deliver`` events (their
                                                figures are always recorded in full)
``--source-addresses``    WIRELAB_SOURCE_AD...  local addresses to connect from (a list or a
                                                CIDR), rotated per connection; loopback
                                                targets spread over 127.0.0.0/8 unasked
                                                (see :mod:`wirelab.users.source_addresses`)
``--grpc-streams-per...`` WIRELAB_GRPC_STRE...  gRPC users sharing one channel (HTTP/2
                                                connection), default 100; 1: one each
``--ca-file``             WIRELAB_CA_FILE       PEM bundle the users trust *instead of* the
                                                default roots, for every protocol (see
                                                :mod:`wirelab.users.tls`)
``--tls-insecure``        WIRELAB_TLS_INSECURE  a flag (env: ``1``/``true``): skip certificate
                                                verification (REST, polling, SSE, WS; gRPC
                                                cannot, and then needs ``--ca-file``); warns
========================  ====================  ===========================================

TLS is chosen by the address: ``https://`` (REST, polling, SSE), ``wss://`` (WebSocket) and
``grpcs://host:port`` (gRPC; ``host:port`` stays plaintext). Users verify the certificate
unless told not to.

A bearer token comes only from the environment (``WIRELAB_TOKEN``): never from a command
line (visible in ``ps``) or a URL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from locust import events
from locust.exception import StopTest

from ..capacity import GRPC_STREAMS_PER_CHANNEL, GRPC_STREAMS_PER_CHANNEL_ENV
from ..protocols import URL_VARIABLES
from ..reconnect import ReconnectPolicy
from ..source_addresses import SOURCE_ADDRESSES_ENV

# parse_rate is handed on: the options that take a rate read it with the one grammar.
from ..units import parse_rate, parse_size

__all__ = [
    "OPTIONS",
    "MissingTargetError",
    "Option",
    "grpc_endpoints",
    "parse_rate",
    "reconnect_policy",
    "setting",
    "split_urls",
    "stop_test_on_bad_config",
    "target_urls",
    "token",
]

TOKEN_ENV = "WIRELAB_TOKEN"  # noqa: S105 - the name of a variable, not a secret


@dataclass(frozen=True, slots=True)
class Option:
    """One wirelab option: its flag, environment variable and one sentence of why."""

    dest: str
    flag: str
    env: str
    help: str
    default: str | None = None
    #: A flag that takes no value on the command line: present means this string.
    const: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option(
        "rest_url", "--rest-url", URL_VARIABLES["rest"], "REST target base URL (http://host:port)."
    ),
    Option(
        "sse_url",
        "--sse-url",
        URL_VARIABLES["sse"],
        "SSE target base URL; several, comma-separated, are rotated through on reconnect.",
    ),
    Option(
        "ws_url",
        "--ws-url",
        URL_VARIABLES["ws"],
        "WebSocket target base URL (ws://host:port); several, comma-separated, rotate.",
    ),
    Option(
        "grpc_target",
        "--grpc-target",
        URL_VARIABLES["grpc"],
        "gRPC target host:port; several, comma-separated, are balanced round_robin.",
    ),
    Option(
        "reconnect",
        "--reconnect",
        "WIRELAB_RECONNECT",
        "Stream users' reconnect policy: immediate, fixed:delay=1, exponential, full_jitter, "
        "decorrelated, server_hint (each takes base=,cap= in seconds).",
        "server_hint:base=0.5,cap=30",
    ),
    Option(
        "rate",
        "--rate",
        "WIRELAB_RATE",
        "Open model: starts per second of each request/response user class, total across "
        "workers (e.g. 500/s). Unset: closed model.",
    ),
    Option(
        "open_concurrency",
        "--open-concurrency",
        "WIRELAB_OPEN_CONCURRENCY",
        "Open model: operations one user may have in flight; the pool is users x this.",
        "1",
    ),
    Option(
        "open_max_wait",
        "--open-max-wait",
        "WIRELAB_OPEN_MAX_WAIT",
        "Open model: how long a start may wait for a free lane before it is dropped and "
        "counted (its latency counts from the intended start either way); 0 drops at once.",
        "10s",
    ),
    Option(
        "payload_size",
        "--payload-size",
        "WIRELAB_PAYLOAD_SIZE",
        "Bytes of payload in echo messages and item bodies (64, 4KiB).",
        "64",
    ),
    Option(
        "deliver_sample",
        "--deliver-sample",
        "WIRELAB_DELIVER_SAMPLE",
        "Fraction of delivered events also fired as Locust 'deliver' request events "
        "(gaps and duplicates always are; wirelab's own figures always count every event).",
        "1.0",
    ),
    Option(
        "source_addresses",
        "--source-addresses",
        SOURCE_ADDRESSES_ENV,
        "Local addresses the clients connect from, rotated per connection: comma-separated "
        "addresses or a CIDR (10.1.0.0/24). Unset: clients of a loopback target spread over "
        "127.0.0.0/8 by themselves (a block per worker); others let the kernel choose.",
    ),
    Option(
        "grpc_streams_per_channel",
        "--grpc-streams-per-channel",
        GRPC_STREAMS_PER_CHANNEL_ENV,
        "gRPC users that share one channel (one HTTP/2 connection) in a worker; 1 gives "
        "every user its own channel and TCP connection.",
        str(GRPC_STREAMS_PER_CHANNEL),
    ),
    Option(
        "ca_file",
        "--ca-file",
        "WIRELAB_CA_FILE",
        "PEM CA bundle the users trust instead of the default roots (https, wss, grpcs).",
    ),
    Option(
        "tls_insecure",
        "--tls-insecure",
        "WIRELAB_TLS_INSECURE",
        "Skip TLS certificate verification, self-signed labs only (gRPC cannot: it needs "
        "--ca-file); the env var takes 1/true.",
        const="1",
    ),
)
_BY_DEST = {option.dest: option for option in OPTIONS}


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("wirelab", "wirelab targets and load model")
    for option in OPTIONS:
        # default=None on the parser: an unset option must fall through to the environment
        # variable read at run time (on the worker, where the user runs).
        help_text = f"{option.help} Env: {option.env}." + (
            f" Default: {option.default}." if option.default else ""
        )
        if option.const is not None:
            action = group.add_argument(
                option.flag,
                dest=option.dest,
                action="store_const",
                const=option.const,
                default=None,
                help=help_text,
            )
        else:
            action = group.add_argument(
                option.flag, dest=option.dest, type=str, default=None, help=help_text
            )
        # What Locust's own add_argument sets (a group's does not): the web UI's start form
        # lists the option.
        action.include_in_web_ui = True
        action.is_secret = action.is_required = action.is_multiple = False


def setting(environment: Any, dest: str, fallback: str | None = None) -> str | None:
    """The value of a wirelab option: command line / web UI, environment, ``fallback``,
    then the option's default."""
    option = _BY_DEST[dest]
    parsed = getattr(environment, "parsed_options", None) if environment is not None else None
    value = getattr(parsed, dest, None) if parsed is not None else None
    if value not in (None, ""):
        return str(value)
    value = os.environ.get(option.env)
    if value:
        return value
    if fallback not in (None, ""):
        return fallback
    return option.default


def token() -> str | None:
    """The bearer token for targets that want one (``WIRELAB_TOKEN``), else ``None``."""
    return os.environ.get(TOKEN_ENV) or None


def split_urls(value: str) -> list[str]:
    """``"a,b , c"`` -> ``["a", "b", "c"]`` (a list of replicas of one service)."""
    return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]


def payload_size(environment: Any, fallback: int | None = None) -> int:
    """``--payload-size`` in bytes."""
    text = setting(environment, "payload_size", None if fallback is None else str(fallback))
    return parse_size(text or "64")


def reconnect_policy(environment: Any, fallback: str | None = None) -> ReconnectPolicy:
    """A fresh policy (its own RNG and state) for one connection, from ``--reconnect``."""
    spec = setting(environment, "reconnect", fallback) or "server_hint"
    return ReconnectPolicy.from_spec(spec)


def deliver_sample_every(environment: Any) -> int:
    """``--deliver-sample`` as "fire every Nth event" (1 = all; 0 = only anomalies)."""
    text = setting(environment, "deliver_sample") or "1"
    try:
        fraction = float(text)
    except ValueError:
        raise ValueError(f"--deliver-sample must be a fraction 0..1, got {text!r}") from None
    if not 0 <= fraction <= 1:
        raise ValueError(f"--deliver-sample must be a fraction 0..1, got {text!r}")
    return 0 if fraction == 0 else max(1, round(1 / fraction))


def grpc_streams_per_channel(environment: Any, fallback: int | None = None) -> int:
    """``--grpc-streams-per-channel``: users per shared gRPC channel (1: one each).

    Raises:
        ValueError: not a whole number of at least 1.
    """
    text = setting(
        environment, "grpc_streams_per_channel", None if fallback is None else str(fallback)
    )
    try:
        value = int(text or "100")
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"--grpc-streams-per-channel must be a whole number >= 1, got {text!r}")
    return value


class MissingTargetError(ValueError):
    """A user class has no address for its protocol."""


@contextlib.contextmanager
def stop_test_on_bad_config(user: Any) -> Iterator[None]:
    """Inside: a missing target or a setting that cannot work (any ``ValueError``, e.g. an
    unreadable ``--ca-file``) stops the test with one line naming the user class, instead of
    a traceback per spawned user."""
    try:
        yield
    except ValueError as exc:
        raise StopTest(f"{type(user).__name__}: {exc}") from None


_SCHEMES = {
    "http": {"ws": "http", "wss": "https", "http": "http", "https": "https"},
    "ws": {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"},
}


def target_urls(
    environment: Any, dest: str, class_value: str | None, host: str | None, kind: str
) -> list[str]:
    """The replica URLs of one protocol: the option, its env var, the class, then ``--host``.

    ``kind`` is ``http`` or ``ws``: a URL of the other family (``--host ws://...`` for a
    REST user) is turned into this one on the same host and port, since one server often
    speaks both. ``grpc`` takes ``host:port`` (a ``grpc://``, ``grpcs://``, ``http://`` or
    ``https://`` prefix is dropped; :func:`grpc_endpoints` tells whether it meant TLS).

    Raises:
        MissingTargetError: nothing names a target; the message lists what would.
    """
    value = setting(environment, dest, class_value) or host
    option = _BY_DEST[dest]
    if not value:
        protocol = dest.split("_", maxsplit=1)[0].upper()
        raise MissingTargetError(
            f"no {protocol} target: give {option.flag} (or {option.env}), or --host"
        )
    urls = []
    for url in split_urls(value):
        if kind == "grpc":
            urls.append(_grpc_scheme(url)[1])
            continue
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = ("ws" if kind == "ws" else "http"), url
        mapped = _SCHEMES[kind].get(scheme.lower())
        if mapped is None:
            raise MissingTargetError(f"{option.flag}: unsupported URL scheme in {url!r}")
        urls.append(f"{mapped}://{rest}")
    return urls


_GRPC_TLS_SCHEMES = frozenset({"grpcs", "https"})
_GRPC_PLAIN_SCHEMES = frozenset({"", "grpc", "http"})
#: gRPC's own name-resolver prefixes: part of the channel target, not a URL scheme. The
#: chart's `dns:///<name>-headless:port` makes the channel resolve every pod of a headless
#: Service.
_GRPC_RESOLVERS = ("dns:", "ipv4:", "ipv6:", "unix:")


def _grpc_scheme(url: str) -> tuple[str, str]:
    """``(scheme, channel target)`` of one gRPC target: ``grpcs://dns:///x:1`` is TLS to
    ``dns:///x:1``; ``dns:///x:1`` alone is plaintext."""
    if url.lower().startswith(_GRPC_RESOLVERS):
        return "", url
    scheme, sep, rest = url.partition("://")
    return (scheme.lower(), rest) if sep else ("", url)


def grpc_endpoints(
    environment: Any, class_value: str | None, host: str | None
) -> tuple[list[str], bool]:
    """The gRPC ``host:port`` replicas and whether to speak TLS to them.

    ``grpcs://host:port`` (or ``https://``) means TLS; ``host:port`` (or ``grpc://``,
    ``http://``) plaintext, the default. All replicas must agree.

    Raises:
        MissingTargetError: no target, or replicas that mix TLS and plaintext.
    """
    targets = target_urls(environment, "grpc_target", class_value, host, "grpc")
    value = setting(environment, "grpc_target", class_value) or host or ""
    schemes = {_grpc_scheme(url)[0] for url in split_urls(value)}
    unknown = schemes - _GRPC_TLS_SCHEMES - _GRPC_PLAIN_SCHEMES
    if unknown:
        raise MissingTargetError(f"--grpc-target: unsupported scheme {sorted(unknown)[0]!r}")
    tls = bool(schemes & _GRPC_TLS_SCHEMES)
    if tls and schemes & _GRPC_PLAIN_SCHEMES:
        raise MissingTargetError("--grpc-target: replicas mix grpcs:// (TLS) and plaintext")
    return targets, tls
