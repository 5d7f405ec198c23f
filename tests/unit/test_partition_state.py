"""The working state in memory and its SQLite journal (``lineage.partition_state``).

A writer's memory must always be a function of what SQLite committed: after a kill at any
unit boundary, the state loaded from the journal equals the memory of the run that went on
without interruption, and a unit that fails leaves neither memory nor journal changed. The
bulk rebuild (``replay``) must leave the same journal as applying the log unit by unit.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph.sqlite_store import SqliteStore
from lineage.errors import StoreError
from lineage.events import Event
from lineage.partition_state import PartitionState, StateSnapshot
from lineage.policy import Policy
from lineage.tracker import Tracker
from tests import factories as f
from tests.histories import batchings, collected, flowed, histories, used
from tests.unit.test_order_independence import EMBEDDED_EXAMPLES, _profile


def _journaled(db: sqlite3.Connection) -> SqliteStore:
    return SqliteStore(db, create=True)


def _loaded(db: sqlite3.Connection) -> StateSnapshot:
    """What a restarted writer holds: a fresh store on the same database, loaded in bulk."""
    return SqliteStore(db, create=False, working_state=True).working_state().snapshot()


def _tables(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    tables = ["identifiers", "subjects", "erasures", "datasets", "jobs", "collections",
              "edges", "runs", "carried", "specific", "copies"]  # fmt: skip
    found = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    found["alerts"] = sorted(
        db.execute("SELECT alert_id, revision, status, body FROM alerts").fetchall()
    )
    return found


@_profile(EMBEDDED_EXAMPLES)
@given(data=st.data())
def test_memory_loaded_from_the_journal_equals_the_live_memory_at_every_unit(
    data: st.DataObject, policy: Policy
) -> None:
    history = data.draw(histories(), label="history")
    batches = data.draw(batchings(history), label="batches")
    db = sqlite3.connect(":memory:", isolation_level=None)
    store = _journaled(db)
    tracker = Tracker(store, policy)
    for batch in batches:
        tracker.apply(batch)
        # a kill here: the next writer loads what SQLite committed
        assert _loaded(db) == store.working_state().snapshot()


@_profile(EMBEDDED_EXAMPLES // 2)
@given(data=st.data())
def test_a_bulk_rebuild_writes_the_journal_of_a_unit_by_unit_run(
    data: st.DataObject, policy: Policy
) -> None:
    history = data.draw(histories(), label="history")
    batches = data.draw(batchings(history), label="batches")
    by_unit = sqlite3.connect(":memory:", isolation_level=None)
    tracker = Tracker(_journaled(by_unit), policy)
    for batch in batches:
        tracker.apply(batch)

    bulk_db = sqlite3.connect(":memory:", isolation_level=None)
    bulk = _journaled(bulk_db)
    bulk.atomically(lambda: bulk.begin_rebuild(bulk=True))
    rebuilt = Tracker(bulk, policy)
    for batch in batches:
        rebuilt.apply(batch)
    bulk.atomically(bulk.finish_rebuild)

    assert _tables(bulk_db) == _tables(by_unit)
    assert _loaded(bulk_db) == bulk.working_state().snapshot()
    indexes = {n for (n,) in bulk_db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"copies_arrival", "alerts_ident", "alerts_time", "alerts_tally"} <= indexes


def _case() -> list[Event]:
    return [
        collected("c1", "ann", "auth:phones", f.SECURITY, 1),
        flowed("f1", "auth:phones", "ads:m", 2),
        used("u1", "ads:m", f.ADS, 3),
    ]


def test_a_failed_unit_changes_neither_memory_nor_journal(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    store = _journaled(db)
    tracker = Tracker(store, policy)
    tracker.apply(_case()[:1])
    before = store.working_state().snapshot()

    def broken(self: SqliteStore, alerts: object, ids: object) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(SqliteStore, "_put_alerts", broken)
        with pytest.raises(RuntimeError):
            tracker.apply(_case()[1:])
    assert store.working_state().snapshot() == before == _loaded(db)
    assert tracker.apply(_case()[1:]), "the unit applies once the fault is gone"


def test_a_failed_unit_of_a_bulk_rebuild_refuses_to_go_on(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory was all there was of the rebuild: nothing to reload, so it must start again."""
    store = _journaled(sqlite3.connect(":memory:", isolation_level=None))
    store.atomically(lambda: store.begin_rebuild(bulk=True))
    tracker = Tracker(store, policy)
    tracker.apply(_case()[:1])
    with monkeypatch.context() as patched:
        patched.setattr(SqliteStore, "_put_alerts", lambda self, alerts, ids: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            tracker.apply(_case()[1:])
    with pytest.raises(StoreError, match="run `lineage replay` again"):
        tracker.apply(_case()[1:])


def test_the_state_alone_is_a_lineage_store_that_refuses_use_after_a_failed_unit(
    policy: Policy,
) -> None:
    state = PartitionState()
    tracker = Tracker(state, policy)
    [alert] = tracker.apply(_case())
    assert alert.evidence[-1].event_id == "u1"
    assert state.counts().copies == 2

    def fail() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        state.atomically(fail)
    with pytest.raises(StoreError, match="reload"):
        tracker.apply(_case())
