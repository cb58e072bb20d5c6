"""Before users spawn: every wirelab user class has a target and a TLS setting that works,
and the source addresses the users bind to (``--source-addresses``) parse.

Registered on Locust's ``init`` event when :mod:`wirelab.users` is imported. It sits above
:mod:`.options` (where targets come from) and :mod:`.tls` (how they are trusted), which
know nothing of each other's checks.
"""

from __future__ import annotations

import logging
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from ..exitcodes import EXIT_USAGE
from ..source_addresses import parse_source_addresses
from .options import MissingTargetError, grpc_endpoints, setting, target_urls
from .tls import TlsConfigError, check_grpc_tls, tls_settings

__all__ = ["check_targets"]

log = logging.getLogger(__name__)


@events.init.add_listener
def _on_init(environment: Any, runner: Any = None, **_: Any) -> None:
    if runner is not None and not isinstance(runner, WorkerRunner):
        environment.events.test_start.add_listener(lambda **_: check_targets(environment))


def check_targets(environment: Any) -> list[str]:
    """Every wirelab user class must have a target address (and a TLS setting that can
    work: a valid ``--tls-insecure``, and ``--ca-file`` for TLS gRPC in insecure mode).

    A missing one is a configuration error: one line per class, exit code 2, and a
    distributed master stops at once instead of running workers that cannot connect.
    (Each user would stop the test anyway, with less to say.)
    """
    problems = []
    source_addresses = setting(environment, "source_addresses")
    if source_addresses:
        try:
            parse_source_addresses(source_addresses)
        except ValueError as exc:
            problems.append(str(exc))
    for user_class in getattr(environment, "user_classes", None) or ():
        spec = getattr(user_class, "wirelab_target", None)
        if spec is None:
            continue
        dest, attribute, kind = spec
        class_value = getattr(user_class, attribute, None)
        host = user_class.host or environment.host
        try:
            settings = tls_settings(environment)
            if kind == "grpc":
                _, tls = grpc_endpoints(environment, class_value, host)
                if tls:
                    check_grpc_tls(settings)
            else:
                target_urls(environment, dest, class_value, host, kind)
        except (MissingTargetError, TlsConfigError) as exc:
            problems.append(f"{user_class.__name__}: {exc}")
    if problems:
        for problem in problems:
            log.error("%s", problem)
        environment.process_exit_code = EXIT_USAGE
        if isinstance(environment.runner, MasterRunner):
            gevent.spawn(environment.runner.quit)
    return problems
