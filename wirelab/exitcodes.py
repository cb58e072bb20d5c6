"""The exit codes of a headless run, defined once for every command and every role.

Documented for users in docs/exit-codes.md and the README (tests/test_docs.py holds the
README to these values); CI pipelines gate on them.
"""

from __future__ import annotations

__all__ = [
    "EXIT_GENERATOR_BOUND",
    "EXIT_INCOMPLETE",
    "EXIT_OK",
    "EXIT_THRESHOLD_FAILED",
    "EXIT_USAGE",
    "UsageError",
]

#: Every threshold held and the generator kept up.
EXIT_OK = 0
#: A threshold failed.
EXIT_THRESHOLD_FAILED = 1
#: Usage or configuration error: one line on stderr naming the problem, no traceback.
EXIT_USAGE = 2
#: The run could not complete (target unreachable, workers lost, sink failure).
EXIT_INCOMPLETE = 3
#: Every threshold held, but the load generator was saturated while it measured, so its
#: latency and lag figures are partly its own: not a pass.
EXIT_GENERATOR_BOUND = 4


class UsageError(ValueError):
    """Bad input from the user: the command reports it as one line and exits with
    :data:`EXIT_USAGE`, never with a traceback."""
