"""Why embedded mode calls ``gc.freeze()`` after each batch: the tracker's rate with and
without it, on the same events in the same process. Run: ``python -m bench.gc_freeze 150000``.
"""

from __future__ import annotations

import gc
import json
import sys
import time

from bench.propagation import _events
from graph.networkx_store import NetworkxStore
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy

BATCH = 1_000


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    policy = default_policy(default_taxonomy())
    events = _events(users)
    rates: dict[str, float] = {}
    for mode in ("gc as is", "gc.freeze per batch"):
        gc.collect()
        gc.unfreeze()
        tracker = Tracker(NetworkxStore(), policy)
        started = time.perf_counter()
        for offset in range(0, len(events), BATCH):
            tracker.apply(events[offset : offset + BATCH])
            if mode != "gc as is":
                gc.freeze()
        rates[mode] = len(events) / (time.perf_counter() - started)
        del tracker
    print(
        json.dumps(
            {
                "users": users,
                "events": len(events),
                **{f"{mode} events/s": round(rate) for mode, rate in rates.items()},
                "ratio": round(rates["gc.freeze per batch"] / rates["gc as is"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
