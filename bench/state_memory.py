"""Bytes per identifier of the working state in memory, by the type that holds them.

The core ingests the reference case into a ``PartitionState`` (nothing persisted); the harness
then walks every object the state reaches, alert bodies left out (the embedded journal and a
partition's store keep those in SQLite), and sums ``sys.getsizeof`` by type. Shared objects
count once. This is the figure that peak memory at a million identifiers scales with
(BENCHMARKS.md, "Peak memory"). Run: ``python -m bench.state_memory --users 100000 [--json]``;
compare two commits by running it in each tree.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
from collections import Counter
from typing import Any

from bench.propagation import _events
from lineage.partition_state import PartitionState
from lineage.tracker import Tracker
from runtime.batching import EVENTS
from runtime.wiring import default_policy, default_taxonomy

SKIPPED = (type, type(sys), type(len), type(_events))


def footprint(state: PartitionState) -> tuple[Counter[str], Counter[str]]:
    """(bytes, objects) by type name, over what the state reaches without its alert bodies."""
    seen = {id(state.bodies)}
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    stack: list[Any] = [v for k, v in vars(state).items() if k != "bodies"]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, SKIPPED):
            continue
        seen.add(id(item))
        name = type(item).__name__
        sizes[name] += sys.getsizeof(item)
        counts[name] += 1
        stack.extend(gc.get_referents(item))
    return sizes, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = _events(args.users)
    state = PartitionState()
    tracker = Tracker(state, default_policy(default_taxonomy()))
    for start in range(0, len(events), EVENTS):
        tracker.apply(events[start : start + EVENTS])
    del events, tracker
    gc.collect()
    sizes, counts = footprint(state)
    identifiers = state.counts().identifiers
    summary = {
        "users": args.users,
        "identifiers": identifiers,
        "bytes_per_identifier": round(sum(sizes.values()) / identifiers, 1),
        "by_type": {
            name: {"objects": counts[name], "bytes_per_identifier": round(size / identifiers, 1)}
            for name, size in sizes.most_common(12)
        },
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{args.users:,} users, {identifiers:,} identifiers: "
        f"{summary['bytes_per_identifier']:,} bytes per identifier "
        f"(peak RSS {summary['peak_rss_mib']:,} MiB, events included)"
    )
    for name, row in summary["by_type"].items():
        print(f"  {name:<16} {row['objects']:>10,} objects {row['bytes_per_identifier']:>8} B")


if __name__ == "__main__":
    main()
