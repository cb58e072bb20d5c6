"""``wirelab-bench``: the protocol shoot-out, measured on this machine.

Each part is a module of its own: :mod:`.request` (request/response), :mod:`.push` (the same
feed over five push mechanisms), :mod:`.connections` (memory per idle connection),
:mod:`.peers` (the generator against wrk, h2load, artillery and plain Locust) and
:mod:`.scaling` (workers 1 → 2 → 8 and a model of the cluster). Shared mechanisms: the lab's
processes and the generator (:mod:`.lab`), bytes on the wire (:mod:`.wire`), repetitions
(:mod:`.stats`), the claims table (:mod:`.claims`) and the page (:mod:`.page`).
"""
