"""wirelab's live view in Locust's web UI.

A page at ``/wirelab/`` of Locust's web UI (and two tabs inside Locust's own UI) showing what
wirelab measures while a run happens: every stream's integrity (delivered, lost, gaps,
duplicates, out of order, resets, reconnects) and lag percentiles from the exact merged
histograms; every request name's p50/p99/p99.9 from the same histograms beside Locust's own
figures; each worker's CPU, memory, connections, loop lag and the generator's verdict; the
scenario's actions on a timeline as they happen; and each threshold's state now. The page
asks for ``live.json`` about once a second; both sit behind the web UI's login when it is on.

- :mod:`.settings`: how the run's thresholds reach the master (``WIRELAB_THRESHOLDS``);
- :mod:`.figures`: the live figures, computed from the master's merged aggregate;
- :mod:`.plugin`: the Flask blueprint and Locust's tabs (import it from a locustfile; the
  locustfiles ``wirelab run`` and ``wirelab up`` write do).
"""
