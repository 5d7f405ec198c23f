"""Shared work done once: the first-run decisions of whole-dataset flows and uses, made once
per (dataset, since) group against once per copy, in one run (issue 16, "Shared work is done
once").

A whole-dataset flow or use reaches every copy in its source dataset. Which of its runs applies
(the first at or after the copy's time) is the same for every copy with the same (dataset,
since); the erasure window is then checked per copy, against that run. The core asks the state
for the decision once per group and pass (``lineage.propagation._Reads`` caches it); the
baseline, ``per copy``, asks the state again for every copy it relaxes, as a design keyed by
identifier would. Same events, same in-memory state (``PartitionState``), same units, same core
otherwise; the harness fails unless both variants end in the same state.

Reported per variant: wall seconds for the whole ingest through the core, seconds inside the
state's decision (``PartitionState._first_runs``), the decisions made, and the relaxations
(copies whose flows and uses were looked at). Run:
``python -m bench.shared_decisions --users 50000 [--json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from bench.propagation import _events
from lineage import propagation
from lineage.events import Event
from lineage.partition_state import PartitionState
from lineage.ports import FirstRun, Request
from lineage.tracker import Tracker
from runtime.batching import EVENTS
from runtime.wiring import default_policy, default_taxonomy


@dataclasses.dataclass
class Counted:
    decisions: int = 0
    relaxations: int = 0
    decision_s: float = 0.0


@contextlib.contextmanager
def counting(counted: Counted) -> Iterator[None]:
    """Count and time the state's decisions, and count the copies relaxed."""
    decide, relax = PartitionState._first_runs, propagation.PropagationPass._relax

    def timed(self: PartitionState, kind: str, keys: Any) -> dict[Any, list[FirstRun]]:
        keys = list(keys)
        started = time.perf_counter()
        found = decide(self, kind, keys)
        counted.decision_s += time.perf_counter() - started
        counted.decisions += len(keys)
        return found

    def relaxing(self: propagation.PropagationPass, copy: Any) -> Any:
        counted.relaxations += 1
        return relax(self, copy)

    PartitionState._first_runs = timed  # type: ignore[method-assign]
    propagation.PropagationPass._relax = relaxing  # type: ignore[method-assign]
    try:
        yield
    finally:
        PartitionState._first_runs = decide  # type: ignore[method-assign]
        propagation.PropagationPass._relax = relax  # type: ignore[method-assign]


@contextlib.contextmanager
def per_copy() -> Iterator[None]:
    """The baseline: no group fetch; every relaxed copy asks the state for its own runs."""
    reads = propagation._Reads
    load, flows, uses = reads.load, reads.flows, reads.uses

    def load_without_runs(self: Any, request: Request) -> None:
        load(self, dataclasses.replace(request, flows=set(), uses=set()))

    def own(kind: str) -> Any:
        def decide(self: Any, dataset: str, since: int) -> list[FirstRun]:
            state: PartitionState = self._store
            return state._first_runs(kind, [(dataset, since)]).get((dataset, since), [])

        return decide

    reads.load = load_without_runs  # type: ignore[method-assign]
    reads.flows = own("flow")  # type: ignore[method-assign]
    reads.uses = own("use")  # type: ignore[method-assign]
    try:
        yield
    finally:
        reads.load, reads.flows, reads.uses = load, flows, uses  # type: ignore[method-assign]


def _ingest(events: Sequence[Event], baseline: bool) -> tuple[dict[str, Any], Any]:
    state = PartitionState()
    tracker = Tracker(state, default_policy(default_taxonomy()))
    counted = Counted()
    variant = per_copy() if baseline else contextlib.nullcontext()
    gc.collect()
    with variant, counting(counted):
        started = time.perf_counter()
        for start in range(0, len(events), EVENTS):
            tracker.apply(events[start : start + EVENTS])
        wall = time.perf_counter() - started
    row = {
        "variant": "per copy" if baseline else "once per (dataset, since) group",
        "seconds": round(wall, 3),
        "events_per_s": round(len(events) / wall),
        "decision_seconds": round(counted.decision_s, 3),
        "decisions": counted.decisions,
        "relaxations": counted.relaxations,
    }
    return row, state.snapshot()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=2, help="alternating pairs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = _events(args.users)
    rows = []
    for _ in range(args.runs):
        group, group_state = _ingest(events, baseline=False)
        copy, copy_state = _ingest(events, baseline=True)
        if group_state != copy_state:
            raise SystemExit("the two variants ended in different states")
        rows += [group, copy]
        del group_state, copy_state
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    summary = {
        "users": args.users,
        "events": len(events),
        "unit_events": EVENTS,
        "rows": rows,
        "speedup": [round(c["seconds"] / g["seconds"], 3) for g, c in pairs],
        "decision_share_per_copy": [
            round(c["decision_seconds"] / c["seconds"], 3) for _, c in pairs
        ],
        "same_state": True,  # reached only when every pair ended in the same state
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{args.users:,} users, {len(events):,} events, units of {EVENTS:,} events")
    for row in rows:
        print(
            f"  {row['variant']:<34} {row['seconds']:>8.2f} s {row['events_per_s']:>8,} ev/s"
            f"  decisions {row['decisions']:>9,} ({row['decision_seconds']:.2f} s)"
            f"  relaxations {row['relaxations']:>9,}"
        )
    print(f"  per copy / per group (wall): {summary['speedup']}; same state: yes")


if __name__ == "__main__":
    main()
