"""Property tests: projection is pure, and redelivery is a no-op on every store.

(The old alert-id-only comparison with a brute-force reachability is superseded by the whole
result compared with ``tests.oracle`` in ``test_order_independence.py``.)
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.store import GraphStore
from lineage.events import Event
from lineage.policy import Policy
from lineage.projection import project
from lineage.tracker import Tracker
from tests.histories import histories

EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "100"))
NEO4J_EXAMPLES = int(os.environ.get("ORACLE_NEO4J_EXAMPLES", "15"))


@settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(history=histories())
def test_projection_is_pure(history: list[Event]) -> None:
    assert [project(e) for e in history] == [project(e) for e in history]


def test_redelivery_changes_nothing(store: GraphStore, policy: Policy) -> None:
    examples = NEO4J_EXAMPLES if type(store).__module__.startswith("graph.neo4j") else EXAMPLES

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(history=histories(), data=st.data())
    def check(history: list[Event], data: st.DataObject) -> None:
        store.clear()
        tracker = Tracker(store, policy)
        tracker.apply(history)
        before = (store.snapshot(), store.alerts(include_withdrawn=True))
        again = data.draw(st.permutations(history), label="redelivered")
        assert tracker.apply(again) == []
        for event in again:
            assert tracker.apply([event]) == []
        assert (store.snapshot(), store.alerts(include_withdrawn=True)) == before

    check()
