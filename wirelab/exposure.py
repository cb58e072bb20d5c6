"""Whether a listening address is reachable from beyond this machine.

Anything that can change the lab (the admin port drains and drops a target process; the
Locust web UI starts and stops load) may listen without credentials on loopback only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

__all__ = ["WEB_PASSWORD_ENV", "WEB_USER_ENV", "is_loopback", "web_login_missing"]

#: The web UI's login (``wirelab.webauth``), from the environment only (a Secret in the chart).
WEB_USER_ENV = "WIRELAB_WEB_USER"
WEB_PASSWORD_ENV = "WIRELAB_WEB_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` and ``localhost``; anything else (``0.0.0.0``, a name) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def web_login_missing(env: Mapping[str, str]) -> str | None:
    """Why the web UI's login cannot work with ``env`` (``None``: it can)."""
    if env.get(WEB_USER_ENV) and env.get(WEB_PASSWORD_ENV):
        return None
    return f"set {WEB_USER_ENV} and {WEB_PASSWORD_ENV} for the web UI's login"
