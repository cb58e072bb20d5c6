"""The event feed every push protocol serves: ``{seq, ts, data}``, resumable by seq."""

from .base import Feed, Page, Subscription
from .event import Event, Reset, now_us
from .memory import MemoryFeed

__all__ = ["Event", "Feed", "MemoryFeed", "Page", "Reset", "Subscription", "now_us"]
