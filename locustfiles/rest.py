"""REST: CRUD with ETag/If-Match and Idempotency-Key retries, plus ``POST /echo``.

locust -f locustfiles/rest.py --host http://127.0.0.1:8080
locust -f locustfiles/rest.py --host http://127.0.0.1:8080 --rate 200/s   # open model
"""

from wirelab.users import RestUser


class Rest(RestUser):
    """One API client; see ``wirelab.users.RestUser`` for what it does and what to override."""
