"""Adding a plugin's ``init`` listener to Locust's events once, however often it is imported.

A locustfile may import a plugin under two names (``wirelab.webauth`` and a copy on another
path), or a test may reload it; each import must not add a second listener. The mark lives on
the ``Events`` object itself, so it holds across copies of the module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import locust

__all__ = ["on_init_once"]


def on_init_once(mark: str, listener: Callable[..., Any], events: Any = None) -> None:
    """Add ``listener`` to ``events.init`` (default ``locust.events``) unless a listener
    marked ``mark`` was added there already."""
    events = locust.events if events is None else events
    if getattr(events, mark, False):
        return
    setattr(events, mark, True)
    events.init.add_listener(listener)
