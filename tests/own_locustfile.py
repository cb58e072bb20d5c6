"""A user's own small locustfile, for the tests of ``--locustfile`` and the chart's
``run.locustfile``: plain Locust, no wirelab classes."""

from __future__ import annotations

from pathlib import Path

#: The name its one kind of request is recorded under.
REQUEST_NAME = "own echo"

OWN_LOCUSTFILE = f"""\
import os

from locust import HttpUser, constant, task

from paths import ECHO  # a module beside the locustfile, not in the run directory


class Echo(HttpUser):
    host = os.environ["WIRELAB_REST_URL"]
    wait_time = constant(0.1)

    @task
    def echo(self):
        self.client.post(ECHO, json={{"payload": "x"}}, name="{REQUEST_NAME}")
"""


def write_own_locustfile(folder: Path, name: str = "my_users.py") -> Path:
    """The locustfile and the module beside it that it imports, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "paths.py").write_text('ECHO = "/echo"\n')
    path = folder / name
    path.write_text(OWN_LOCUSTFILE)
    return path
