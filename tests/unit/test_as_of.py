"""Time travel: "as of D" on the full store equals the store built from the events up to D.

docs/time-travel.md argues why filtering the stored facts by their event times gives the
lineage as it stood at D. Here the claim is checked on hypothesis-generated histories (erasures,
re-collections, same-time ties, cycles, listed and whole-dataset flows and uses; D drawn on and
between event times): every query, the trace of every identifier and the report's tally on the
full store as of D equal the same answers, without ``as_of``, from a fresh embedded store that
applied only the events with ``event_time <= D`` (whose own result the brute-force oracle
checks first). People are left out of that comparison: an identifier's link to an account
carries no time, so as-of counts use the accounts known now (the one documented difference;
``test_people_are_counted_with_the_accounts_known_now`` pins it).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage import queries as q
from lineage.events import Event, from_micros, micros
from lineage.policy import Policy
from lineage.report import Tally
from lineage.trace import Trace, build_trace
from lineage.tracker import Tracker
from tests import factories as f
from tests.histories import MAX_HOUR, histories
from tests.oracle import expected
from tests.unit.test_order_independence import _profile, alert_contents, copy_rows

EMBEDDED_EXAMPLES = int(os.environ.get("AS_OF_EXAMPLES", "150"))
NEO4J_EXAMPLES = int(os.environ.get("AS_OF_NEO4J_EXAMPLES", "15"))



def _without_people(value: Any) -> Any:
    """Rows (dataclasses) with their people counts zeroed, for comparison."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **({"people": 0} if "people" in fields else {}))
    return value


def answers(store: GraphStore, policy: Policy, refs: list[str], as_of: int | None) -> Any:
    """Every query's whole answer, every trace (without the identifier's accounts), the tally."""
    pages: dict[str, Any] = {
        "paths": q.paths(store, as_of),
        "affected": q.affected(store, as_of),
        "collections": q.collections(store, as_of),
        "erasure-gaps": q.erasure_gaps(store, as_of),
    }
    for start in ["auth:db", "crm:news", "lake:raw", "ads:t", "j1", "j2"]:
        pages[f"blast-radius {start}"] = q.blast_radius(store, start, as_of)
    rows = {
        name: None if page is None else [_without_people(r) for r in page.rows]
        for name, page in pages.items()
    }
    traces: dict[str, Trace | None] = {}
    for ref in refs:
        trace = build_trace(store, policy, ref, as_of)
        if trace is not None and trace.origins:
            trace.identifier = dataclasses.replace(trace.identifier, subjects=frozenset())
            traces[ref] = trace
        else:  # as of D, an identifier only listed by a flow or use then has no trace either
            traces[ref] = None
    tally: Tally = store.tally(as_of)
    tally.people, tally.people_by_job = 0, {}
    return rows, traces, tally


def test_as_of_equals_the_store_built_from_events_up_to_then(
    store: GraphStore, policy: Policy
) -> None:
    neo4j = type(store).__module__.startswith("graph.neo4j")

    @_profile(NEO4J_EXAMPLES if neo4j else EMBEDDED_EXAMPLES)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        history = data.draw(histories(), label="history")
        hour = data.draw(st.integers(-1, MAX_HOUR + 1) | st.floats(-1, MAX_HOUR + 1), label="D")
        as_of = micros(f.at(hour))
        store.clear()
        Tracker(store, policy).apply(list(history))
        before: list[Event] = [e for e in history if micros(e.event_time) <= as_of]
        rebuilt = SqliteStore(":memory:")
        Tracker(rebuilt, policy).apply(before)
        oracle = expected(before)  # the rebuilt store is the result of the events up to D
        assert copy_rows(rebuilt) == oracle.copies
        assert alert_contents(rebuilt.alerts()) == oracle.alerts
        refs = sorted({e.identifier.ref for e in history if hasattr(e, "identifier")})
        assert answers(store, policy, refs, as_of) == answers(rebuilt, policy, refs, None)
        # ``lineage report --as-of D`` reads the window up to D + 1 µs: the same tally
        until = from_micros(as_of) + timedelta(microseconds=1)
        assert store.tally_between(None, until) == store.tally(as_of)

    check()


def test_people_are_counted_with_the_accounts_known_now(
    store: GraphStore, policy: Policy
) -> None:
    """ann (account acct) and bob (no account yet) reach the ad use at 1; at 5 bob is
    collected again, now with acct. As of 2 the full store counts one person (both are acct's,
    as known now); the store built from the events up to 2 counts two."""
    events: list[Event] = [
        f.collected("c1", "ann", "auth:db", f.SECURITY, 0, owner="acct"),
        f.collected("c2", "bob", "auth:db", f.SECURITY, 0),
        f.flowed("f1", "auth:db", "ads:t", 0.5),
        f.used("u1", "ads:t", f.ADS, 1),
        f.collected("c3", "bob", "auth:db", f.SECURITY, 5, owner="acct"),
    ]
    Tracker(store, policy).apply(events)
    then = micros(f.at(2))
    assert [(r.identifiers, r.people) for r in q.paths(store, then).rows] == [(2, 1)]
    assert store.tally(then).people == 1
    rebuilt = SqliteStore(":memory:")
    Tracker(rebuilt, policy).apply(events[:4])
    assert [(r.identifiers, r.people) for r in q.paths(rebuilt).rows] == [(2, 2)]
    assert rebuilt.tally().people == 2
