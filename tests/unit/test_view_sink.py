"""The view's sink (``streams.view_sink.ViewSink``) without Neo4j: a fake store that keeps
what each committed transaction wrote, and refuses a transaction over a size, as Neo4j does
when a transaction outgrows its memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from graph.errors import PermanentStoreError
from graph.partition_store import PartitionStore
from lineage.changes import UnitChange, decode, encode, encode_pieces
from lineage.event_identity import Claim
from lineage.events import IncidentAcknowledged
from lineage.ports import Writes
from lineage.tracker import Tracker
from runtime.wiring import default_policy, default_taxonomy
from streams.projector import Retry
from streams.view_sink import ViewSink

T = TypeVar("T")


class FakeView:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # claims per transaction
        self.committed: list[list[str]] = []
        self.positions: dict[int, int] = {}
        self._unit: list[str] | None = None
        self._moved: dict[int, int] | None = None

    def sink_positions(self, topic: str) -> dict[int, int]:
        return dict(self.positions)

    def atomically(self, work: Callable[[], T]) -> T:
        self._unit, self._moved = [], None
        result = work()
        if len(self._unit) > self.limit:  # rolled back: nothing of it stays
            raise PermanentStoreError("too large for memory", "MemoryPoolOutOfMemory", True)
        self.committed.append(self._unit)
        if self._moved is not None:
            self.positions = self._moved
        return result

    def write(self, writes: Writes) -> None:
        pass

    def put_claims(self, claims: list[Claim]) -> None:
        assert self._unit is not None
        self._unit += [c.key for c in claims]

    def mark_published(self, alerts: Any) -> None:
        pass

    def record_incident_actions(self, events: Any) -> None:
        assert self._unit is not None
        self._unit += [e.event_id for e in events]

    def set_sink_positions(self, topic: str, positions: dict[int, int]) -> None:
        self._moved = dict(positions)


def _changes(partition: int, seqs: range) -> list[UnitChange]:
    return [UnitChange(partition, s, (), (Claim(f"e{partition}-{s}", "d"),)) for s in seqs]


def test_each_change_once_even_when_sent_again() -> None:
    view = FakeView(limit=100)
    sink = ViewSink(view, "t", Retry(budget_s=0))  # type: ignore[arg-type]
    assert sink.apply(_changes(0, range(1, 4)) + _changes(1, range(1, 3))) == 5
    assert sink.apply(_changes(0, range(2, 6))) == 2  # 2, 3 again: dropped
    assert [k for unit in view.committed for k in unit] == [
        "e0-1", "e0-2", "e0-3", "e1-1", "e1-2", "e0-4", "e0-5",
    ]  # fmt: skip
    assert view.positions == {0: 5, 1: 2}


def test_a_batch_too_large_for_one_transaction_is_written_in_halves() -> None:
    view = FakeView(limit=2)
    sink = ViewSink(view, "t", Retry(budget_s=0))  # type: ignore[arg-type]
    assert sink.apply(_changes(0, range(1, 8))) == 7
    assert [k for unit in view.committed for k in unit] == [f"e0-{s}" for s in range(1, 8)]
    assert all(len(unit) <= 2 for unit in view.committed)
    assert view.positions == {0: 7}


def test_one_change_too_large_stops_the_sink() -> None:
    view = FakeView(limit=0)
    sink = ViewSink(view, "t", Retry(budget_s=0))  # type: ignore[arg-type]
    with pytest.raises(PermanentStoreError):
        sink.apply(_changes(0, range(1, 3)))
    assert view.committed == [] and view.positions == {}


def _ack(n: int) -> IncidentAcknowledged:
    at = datetime(2020, 1, 1, tzinfo=UTC)
    return IncidentAcknowledged(event_id=f"ack-{n}", event_time=at, observed_time=at,
                                producer="console", incident_id="ab" * 16, by="dpo",
                                why="seen " + "x" * 200)  # fmt: skip


def test_officers_actions_reach_the_view_with_their_unit(tmp_path: Path) -> None:
    """An acknowledge routed to a processor's partition is recorded there and travels in the
    unit's change, so the view (where officers read incidents) has it too."""
    store = PartitionStore(tmp_path / "p0.db", 0)
    tracker = Tracker(store, default_policy(default_taxonomy()))
    tracker.apply([_ack(1)])
    store.record_incident_actions([_ack(2)])  # outside a tracker unit: a unit of its own
    changes = [decode(encode(c)) for c in store.unpublished_changes()]
    assert [a.event_id for c in changes for a in c.actions] == ["ack-1", "ack-2"]
    view = FakeView(limit=100)
    ViewSink(view, "t", Retry(budget_s=0)).apply(changes)  # type: ignore[arg-type]
    assert [k for unit in view.committed for k in unit] == ["ack-1", "ack-2"]
    store.close()


def test_actions_over_the_size_limit_travel_in_pieces() -> None:
    actions = [_ack(n) for n in range(8)]
    pieces = encode_pieces([], [Claim("k", "d")], 800, actions)
    assert len(pieces) > 2 and all(len(p) <= 800 for p in pieces)
    decoded = [decode(p) for p in pieces]
    assert [a for c in decoded for a in c.actions] == actions
    assert [c.key for d in decoded for c in d.claims] == ["k"]
