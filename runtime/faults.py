"""Crash fault injection: kill this process at a named point of the embedded write path.

Why: the embedded mode claims that a crash at *any* moment loses nothing and duplicates
nothing (the log append and the graph projection commit together; alerts go through an outbox,
so a crash before they are marked published re-delivers them). Claims like that are only as
good as a test that actually crashes there. ``tests/unit/test_crash_anywhere.py`` runs
``lineage ingest`` with ``LINEAGE_FAULT`` set, lets it die, recovers, and compares the alerts
with a run that never crashed.

``LINEAGE_FAULT=NAME:N`` (or ``NAME``, meaning ``N = 1``) makes the N-th call of
:func:`fault_point` with that name, in this process, send SIGKILL to the process itself. SIGKILL
cannot be caught: no ``finally``, ``atexit`` or ``close()`` runs and unflushed userspace buffers
are lost, exactly as when the OOM killer or an operator's ``kill -9`` strikes. (The kernel's page
cache survives, so this is a process crash, not a power loss: it cannot test fsync ordering.)

Named points, in the order one batch of the embedded write path passes them:

``append``
    before the batch is appended to the durable log (nothing of the batch is stored yet).
``project``
    after the log append, in the middle of projecting the batch into the graph store, inside
    the open transaction (the append must roll back with the projection).
``commit``
    just before the transaction's COMMIT (everything written, nothing durable).
``committed``
    right after the COMMIT, before the batch's alerts are published (the outbox holds them).
``publish``
    after the alerts were delivered to the sinks, before they are marked published (they will
    be delivered again: sinks see every alert at least once, consumers key on ``alert_id``).

Unset (the normal case) a call costs one global load and one comparison: the variable is read
once, at import.
"""

from __future__ import annotations

import os
import signal
from typing import Final

#: The environment variable that arms a fault.
ENV: Final = "LINEAGE_FAULT"

#: The points the embedded write path calls, in order (see the module docstring).
POINTS: Final = ("append", "project", "commit", "committed", "publish")


def parse(spec: str | None) -> tuple[str, int] | None:
    """``"NAME:N"`` / ``"NAME"`` -> ``(NAME, N)``; ``None`` or blank -> ``None`` (disarmed).

    A typo must not silently disarm a crash test, so anything else is an error.
    """
    if spec is None or not spec.strip():
        return None
    name, sep, count = spec.strip().partition(":")
    if name not in POINTS:
        raise ValueError(
            f"{ENV}={spec!r}: unknown fault point {name!r}; known: {', '.join(POINTS)}"
        )
    if not sep:
        return name, 1
    try:
        nth = int(count)
    except ValueError:
        raise ValueError(f"{ENV}={spec!r}: N must be a positive integer") from None
    if nth < 1:
        raise ValueError(f"{ENV}={spec!r}: N must be a positive integer")
    return name, nth


_ARMED: Final = parse(os.environ.get(ENV))
_calls: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Die here (SIGKILL to this process) if ``LINEAGE_FAULT`` names this point and this is
    its N-th call in this process; otherwise do nothing."""
    if _ARMED is None or _ARMED[0] != name:
        return
    seen = _calls.get(name, 0) + 1
    _calls[name] = seen
    if seen == _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
