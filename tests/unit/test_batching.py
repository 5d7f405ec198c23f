"""Units of work are bounded by events and by identifiers named."""

from __future__ import annotations

from lineage.events import Event
from runtime.batching import Gauge, batched
from tests import factories as f


def test_listed_flows_weigh_one_per_identifier() -> None:
    who = [f"p{i}" for i in range(30)]
    events: list[Event] = [
        f.collected(f"c{i}", w, "auth:db", f.SECURITY, i) for i, w in enumerate(who)
    ]
    events += [f.flowed(f"s{i}", "auth:db", "ads:t", 40 + i, who=who) for i in range(4)]
    events.append(f.flowed("whole", "auth:db", "ads:t", 50))
    units = list(batched(events, events_per_unit=1000, identifiers_per_unit=45))
    # 30 collections weigh 30; each listed flow 31; the whole-dataset flow 1.
    assert [len(u) for u in units] == [31, 2, 2]
    assert [e for u in units for e in u] == events


def test_the_event_bound_still_holds() -> None:
    events = [f.collected(f"c{i}", f"p{i}", "auth:db", f.SECURITY, i) for i in range(7)]
    assert [len(u) for u in batched(events, events_per_unit=3)] == [3, 3, 1]
    gauge = Gauge(events=2, identifiers=10**6)
    assert [gauge.add(e) for e in events[:2]] == [False, True]
