"""Shared test setup: fixtures that run real components live in ``tests/fixtures``."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.influxdb",
    "tests.fixtures.targets",
    "tests.fixtures.pki",
    "tests.fixtures.containers",
    "tests.fixtures.runs",
]
