"""TLS for every wirelab user: one setting, one client context per process, gRPC credentials.

Two options (see :mod:`wirelab.users.options`) decide how the users trust a target:

- ``--ca-file`` / ``WIRELAB_CA_FILE``: a PEM bundle (one or more CA certificates, e.g. a
  mounted Secret). When given it is trusted **instead of** the default roots, for every
  protocol alike: gRPC's ``root_certificates`` can only replace its roots, and a lab that
  names its CA should not also trust the whole public store. To trust both, concatenate them
  into one bundle. Without it: the system store (OpenSSL's default paths; certifi's bundle
  when the system store is empty) for REST, polling, SSE and WebSocket, and grpcio's bundled
  roots for gRPC (``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` overrides them).
- ``--tls-insecure`` / ``WIRELAB_TLS_INSECURE`` (``1``/``true``/``yes``/``on``): skip
  verification of the chain and the host name, for self-signed labs only. Off by default;
  a warning is logged once per process when it is used. grpcio has no way to skip
  verification, so gRPC still verifies, against ``--ca-file``: insecure mode with a TLS gRPC
  target and no ``--ca-file`` is a configuration error (the run stops before users spawn).

A user class may opt out of verification on its own (``SseUser.verify_tls = False``,
``WebSocketUserBase.verify_tls = False``, ``RestUserBase.insecure = True``): that is the same
as ``--tls-insecure`` for that class only.

Contexts are costly (the CA store is parsed each time) and every connection of a process
shares one, so they are cached per setting.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .options import setting

__all__ = [
    "INSECURE_ENV",
    "TlsConfigError",
    "TlsSettings",
    "check_grpc_tls",
    "client_context",
    "configure_fasthttp",
    "env_insecure",
    "grpc_credentials",
    "parse_flag",
    "stream_tls",
    "tls_settings",
]

INSECURE_ENV = "WIRELAB_TLS_INSECURE"
log = logging.getLogger(__name__)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class TlsConfigError(ValueError):
    """The TLS settings cannot work: an unreadable ``--ca-file``, a bad flag value, or
    gRPC asked to skip verification without a CA to verify against."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How a user verifies its target: the CA bundle to trust (``None``: the default roots)
    and whether verification is skipped."""

    ca_file: str | None = None
    insecure: bool = False


def parse_flag(text: str | None, name: str = "--tls-insecure") -> bool:
    """``"1"``/``"true"``/``"yes"``/``"on"`` -> True; ``"0"``/``"false"``/``"no"``/``"off"``,
    empty or ``None`` -> False.

    Raises:
        TlsConfigError: anything else (a typo must not silently mean "verify" or "don't").
    """
    value = (text or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise TlsConfigError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {text!r}")


def env_insecure() -> bool:
    """``WIRELAB_TLS_INSECURE`` alone (for class attributes read at import); a value that is
    not a flag counts as off here and is reported when the users start."""
    try:
        return parse_flag(os.environ.get(INSECURE_ENV))
    except TlsConfigError:
        return False


def tls_settings(environment: Any, *, insecure: bool = False) -> TlsSettings:
    """The TLS setting of a run: ``--ca-file`` and ``--tls-insecure`` (command line / web UI,
    then environment); ``insecure=True`` is a user class's own opt-out.

    Raises:
        TlsConfigError: ``--tls-insecure`` is not a flag value.
    """
    ca_file = setting(environment, "ca_file") or None
    skip = parse_flag(setting(environment, "tls_insecure")) or insecure
    return TlsSettings(ca_file=ca_file, insecure=skip)


_contexts: dict[TlsSettings, ssl.SSLContext] = {}
_grpc_credentials: dict[str | None, Any] = {}
_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


def _warn_insecure() -> None:
    _warn_once(
        "insecure",
        "TLS certificate verification is OFF (--tls-insecure / %s): any server, "
        "including an impostor, is accepted. For self-signed labs only.",
        INSECURE_ENV,
    )


def _load_defaults(context: ssl.SSLContext) -> None:
    """The system store; certifi's bundle when the system has none (slim images)."""
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if context.cert_store_stats().get("x509_ca", 0):
        return
    try:
        import certifi  # noqa: PLC0415 - only for a system without a CA store
    except ImportError:
        return
    context.load_verify_locations(cafile=certifi.where())


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The client context (TLS 1.2+) for ``settings``, made once per process.

    Verifying: the chain against ``ca_file`` (or the default roots) and the host name.
    Insecure: neither (and a warning, once).

    Raises:
        TlsConfigError: ``ca_file`` cannot be read or holds no PEM certificate.
    """
    context = _contexts.get(settings)
    if context is not None:
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.insecure:
        _warn_insecure()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif settings.ca_file:
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"--ca-file {settings.ca_file}: cannot load: {exc}") from None
    else:
        _load_defaults(context)
    _contexts[settings] = context
    return context


def stream_tls(
    environment: Any, urls: list[str], *, secure_scheme: str, insecure: bool
) -> TlsSettings:
    """A stream user's TLS settings; when any of ``urls`` starts with ``secure_scheme`` the
    client context is made now, so an unreadable ``--ca-file`` stops the user before it
    connects.

    Raises:
        TlsConfigError: see :func:`tls_settings` and :func:`client_context`.
    """
    settings = tls_settings(environment, insecure=insecure)
    if any(url.startswith(secure_scheme) for url in urls):
        client_context(settings)
    return settings


def check_grpc_tls(settings: TlsSettings) -> None:
    """gRPC over TLS can work with ``settings`` (no file is read: the master may not have it).

    Raises:
        TlsConfigError: insecure mode without ``--ca-file``: grpcio cannot skip verification.
    """
    if settings.insecure and not settings.ca_file:
        raise TlsConfigError(
            "gRPC over TLS cannot skip certificate verification (grpcio has no such switch): "
            "give --ca-file (or WIRELAB_CA_FILE) with the CA or the server's self-signed "
            "certificate"
        )


def grpc_credentials(settings: TlsSettings) -> Any:
    """``grpc.ssl_channel_credentials`` trusting ``ca_file`` (or grpcio's roots), made once.

    In insecure mode gRPC still verifies, against ``ca_file`` (a warning says so, once).

    Raises:
        TlsConfigError: see :func:`check_grpc_tls`; or ``ca_file`` cannot be read.
    """
    check_grpc_tls(settings)
    if settings.insecure:
        _warn_once(
            "grpc", "gRPC over TLS still verifies certificates (against --ca-file): "
            "grpcio cannot skip verification"
        )  # fmt: skip
    credentials = _grpc_credentials.get(settings.ca_file)
    if credentials is not None:
        return credentials
    import grpc  # noqa: PLC0415 - gRPC only for gRPC users

    roots = None
    if settings.ca_file:
        try:
            roots = Path(settings.ca_file).read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"--ca-file {settings.ca_file}: cannot load: {exc}") from None
        if b"-----BEGIN CERTIFICATE-----" not in roots:
            raise TlsConfigError(f"--ca-file {settings.ca_file}: no PEM certificate in it")
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    _grpc_credentials[settings.ca_file] = credentials
    return credentials


def configure_fasthttp(user: Any, settings: TlsSettings) -> None:
    """Before ``FastHttpUser.__init__``: make an https user verify as ``settings`` say.

    Locust's FastHttpUser skips verification by default (``insecure = True``) and trusts
    certifi's bundle otherwise; this sets the instance's ``insecure`` and
    ``ssl_context_factory`` so that geventhttpclient uses the shared context.

    Raises:
        TlsConfigError: see :func:`client_context`.
    """
    user.insecure = settings.insecure
    if not str(user.host or "").lower().startswith("https://"):
        return
    context = client_context(settings)
    factory: Callable[..., ssl.SSLContext] = _SharedContext(context)
    user.ssl_context_factory = factory


class _SharedContext:
    """geventhttpclient calls its factory as ``factory(cafile=...)`` (its own bundle) for
    every connection pool: the shared context is returned, the bundle ignored."""

    __slots__ = ("context",)

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context

    def __call__(self, *_: Any, **__: Any) -> ssl.SSLContext:
        return self.context
