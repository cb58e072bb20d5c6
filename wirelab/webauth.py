"""A login for Locust's web UI when it is reachable beyond loopback.

Locust 2.47's ``--web-login`` protects every route of the UI but leaves the check itself to a
plugin; this is that plugin. Credentials come from the environment only (a Secret in the
chart): ``WIRELAB_WEB_USER`` and ``WIRELAB_WEB_PASSWORD``. Without them, ``--web-login``
fails closed: the login page says so and nobody gets in. Sessions are signed with
``WIRELAB_WEB_SECRET`` (random per process when unset, so a restart logs everyone out).

After a login the browser goes back to the page that asked for it (the ``next`` of the login
page's address, when it is a path on this UI: ``/wirelab/`` for the live view), else to
Locust's UI.

Importing this module registers the plugin; it does nothing unless ``--web-login`` is on.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import redirect, request, session, url_for
from flask_login import UserMixin, login_user

from .exposure import WEB_PASSWORD_ENV as PASSWORD_ENV
from .exposure import WEB_USER_ENV as USER_ENV
from .listeners import on_init_once

__all__ = ["LOGIN_PATH", "PASSWORD_ENV", "USER_ENV", "register"]

SECRET_ENV = "WIRELAB_WEB_SECRET"  # noqa: S105 - the name of a variable, not a secret
#: Where the login form posts (Locust renders the form; this checks it).
LOGIN_PATH = "/wirelab/login"

log = logging.getLogger(__name__)


class _Operator(UserMixin):
    def __init__(self, name: str) -> None:
        self.id = name


def _next_page(referrer: str | None) -> str | None:
    """The ``next`` path of the login page the form was posted from, if it is a plain path
    on this server (never another site: ``//host``, ``https://``, a backslash)."""
    if not referrer:
        return None
    wanted = parse_qs(urlsplit(referrer).query).get("next", [""])[0]
    parts = urlsplit(wanted)
    if not wanted.startswith("/") or wanted.startswith("//") or "\\" in wanted:
        return None
    if parts.scheme or parts.netloc:
        return None
    return wanted


def _install(environment: Any, **_kwargs: Any) -> None:
    web_ui = getattr(environment, "web_ui", None)
    if web_ui is None or not web_ui.web_login:
        return
    user = os.environ.get(USER_ENV, "")
    password = os.environ.get(PASSWORD_ENV, "")
    if not user or not password:
        log.error("--web-login without %s and %s: nobody can log in", USER_ENV, PASSWORD_ENV)
    web_ui.app.config["SECRET_KEY"] = os.environ.get(SECRET_ENV) or secrets.token_hex(32)
    web_ui.auth_args = {"username_password_callback": LOGIN_PATH}

    @web_ui.login_manager.user_loader
    def _load(user_id: str) -> _Operator | None:
        return _Operator(user_id) if user and hmac.compare_digest(user_id, user) else None

    @web_ui.app.route(LOGIN_PATH, methods=["POST"])
    def _login() -> Any:
        name = request.form.get("username", "")
        given = request.form.get("password", "")
        # Both comparisons always run: the response time does not tell which one failed.
        name_ok = hmac.compare_digest(name.encode(), user.encode())
        password_ok = hmac.compare_digest(given.encode(), password.encode())
        if user and password and name_ok and password_ok:
            login_user(_Operator(user))
            return redirect(_next_page(request.referrer) or url_for("locust.index"))
        session["auth_error"] = "Invalid username or password"
        return redirect(url_for("locust.login"))


def register(events: Any = None) -> None:
    """Register the login on ``events`` (default ``locust.events``); idempotent."""
    on_init_once("_wirelab_webauth", _install, events)


register()
