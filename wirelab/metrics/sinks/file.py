"""The embedded default sink: the run's points as line protocol in a local file.

Always on when the run has a report directory (``REPORT_DIR/timeseries.lp``); the report is
built from it and ``wirelab influx push`` loads it into an InfluxDB later. Appending one
interval's lines (a few KB) to the page cache takes microseconds, so it is written inline
rather than through a writer greenlet: gevent cannot make file I/O cooperative anyway, and
a buffer would only add a way to lose points.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from .buffer import SinkStats

__all__ = ["FileSink"]

logger = logging.getLogger("wirelab.metrics.sinks")


class FileSink:
    """Appends lines to ``path`` (created with its directory); flushed after every write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = f"file {self.path.name}"
        self.url = f"file://{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._stats = SinkStats(name=self.name, url=self.url, kind="file")

    def write(self, lines: Sequence[str]) -> None:
        """Append ``lines``; an I/O error (disk full) counts them as dropped and is logged."""
        if not lines:
            return
        if self._file.closed:
            self._stats.dropped += len(lines)
            self._stats.dropped_unsent += len(lines)
            return
        try:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
        except OSError as exc:
            self._stats.dropped += len(lines)
            self._stats.dropped_rejected += len(lines)
            self._stats.last_error = str(exc)
            logger.error("sink %s: cannot write %d points: %s", self.name, len(lines), exc)
            return
        self._stats.written += len(lines)

    def flush(self, timeout: float = 0.0) -> bool:
        """Everything written is already flushed to the OS; returns ``True``."""
        if not self._file.closed:
            self._file.flush()
        return True

    def close(self, timeout: float = 0.0) -> None:
        """Flush and close the file."""
        if not self._file.closed:
            self._file.flush()
            self._file.close()

    def stats(self) -> SinkStats:
        return self._stats
