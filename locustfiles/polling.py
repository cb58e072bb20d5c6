"""Polling the feed: short polls every second (+-20%) and long polls, with freshness lag.

locust -f locustfiles/polling.py --host http://127.0.0.1:8080
"""

from wirelab.users import LongPollUser, ShortPollUser


class ShortPoll(ShortPollUser):
    """``GET /events?since=`` every ``poll_interval`` seconds with If-None-Match."""


class LongPoll(LongPollUser):
    """``GET /events?since=&wait=20``: the server answers when there is news."""
