"""Property tests: projection is idempotent, and incremental propagation in any order raises
exactly the alerts a brute-force reachability computation over the final graph finds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from graph.networkx_store import NetworkxStore
from lineage.alerts import alert_id
from lineage.events import DataFlowed, DataUsed, Event, IdentifierCollected, micros
from lineage.model import Origin
from lineage.policy import Policy
from lineage.projection import project
from lineage.tracker import Tracker
from tests import factories as f

PEOPLE = ["ann", "bob", "cy"]
DATASETS = ["auth:db", "crm:news", "lake:raw", "ads:t"]
ORIGINS = [f.SECURITY, f.RECOVERY, f.NEWSLETTER]
USES = [f.ADS, "marketing.advertising.profiling", f.ANALYTICS]
JOBS = ["j1", "j2"]


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    count = draw(st.integers(min_value=1, max_value=14))
    made: list[Event] = []
    for n in range(count):
        kind = draw(st.sampled_from(["collect", "flow", "use"]))
        hours = draw(st.integers(min_value=0, max_value=12))
        eid = f"e{n}"
        who = draw(
            st.none() | st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=2, unique=True)
        )
        if kind == "collect":
            made.append(
                f.collected(
                    eid,
                    draw(st.sampled_from(PEOPLE)),
                    draw(st.sampled_from(DATASETS)),
                    draw(st.sampled_from(ORIGINS)),
                    hours,
                )
            )
        elif kind == "flow":
            source, target = draw(
                st.lists(st.sampled_from(DATASETS), min_size=2, max_size=2, unique=True)
            )
            made.append(
                f.flowed(eid, source, target, hours, who=who, job=draw(st.sampled_from(JOBS)))
            )
        else:
            made.append(
                f.used(
                    eid,
                    draw(st.sampled_from(DATASETS)),
                    draw(st.sampled_from(USES)),
                    hours,
                    who=who,
                    job=draw(st.sampled_from(JOBS)),
                )
            )
    return made


def brute_force_alert_keys(history: list[Event], policy: Policy) -> set[str]:
    """Earliest arrival by naive fixpoint iteration over all facts, then every violation."""
    best: dict[tuple[str, str, Origin], int] = {}
    for e in history:
        if isinstance(e, IdentifierCollected):
            key = (e.identifier.ref, e.dataset.key, Origin(e.dataset.key, e.purpose))
            best[key] = min(best.get(key, 10**20), micros(e.event_time))
    flows = [e for e in history if isinstance(e, DataFlowed)]
    uses = [e for e in history if isinstance(e, DataUsed)]
    changed = True
    while changed:
        changed = False
        for (ident, dataset, origin), since in list(best.items()):
            for flow in flows:
                at = micros(flow.event_time)
                carries = flow.identifiers is None or ident in {r.ref for r in flow.identifiers}
                if flow.source.key == dataset and carries and at >= since:
                    key = (ident, flow.target.key, origin)
                    if at < best.get(key, 10**20):
                        best[key] = at
                        changed = True
    keys = set()
    for (ident, dataset, origin), since in best.items():
        for use in uses:
            hits = use.identifiers is None or ident in {r.ref for r in use.identifiers}
            if use.dataset.key == dataset and hits and micros(use.event_time) >= since:
                for rule in policy.violated(origin.purpose, use.purpose):
                    keys.add(alert_id(rule.id, ident, origin.key, dataset, use.job, use.purpose))
    return keys


@settings(max_examples=150, deadline=None)
@given(history=events(), data=st.data())
def test_incremental_alerts_equal_brute_force_in_any_order(
    history: list[Event], data: st.DataObject, policy: Policy
) -> None:
    expected = brute_force_alert_keys(history, policy)
    delivered = data.draw(
        st.permutations(history + data.draw(st.lists(st.sampled_from(history), max_size=4)))
    )  # reordered, with redeliveries
    tracker = Tracker(NetworkxStore(), policy)
    raised: list[str] = []
    for event in delivered:
        raised += [a.alert_id for a in tracker.apply([event])]
    assert len(raised) == len(set(raised)), "an alert was raised twice"
    assert set(raised) == expected

    in_order = Tracker(NetworkxStore(), policy)
    in_order.apply(history)
    assert tracker.store.snapshot() == in_order.store.snapshot()  # type: ignore[attr-defined]


@settings(max_examples=100, deadline=None)
@given(history=events())
def test_projection_is_idempotent(history: list[Event], policy: Policy) -> None:
    store = NetworkxStore()
    tracker = Tracker(store, policy)
    tracker.apply(history)
    before = store.snapshot()
    assert store.apply([m for e in history for m in project(e)]) == []
    assert tracker.apply(history) == []
    for event in history:
        assert tracker.apply([event]) == []
    assert store.snapshot() == before
