"""The view's sink (``streams.view_sink.ViewSink``) without Neo4j: a fake store that keeps
what each committed transaction wrote, and refuses a transaction over a size, as Neo4j does
when a transaction outgrows its memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from graph.errors import PermanentStoreError
from lineage.changes import UnitChange
from lineage.event_identity import Claim
from lineage.ports import Writes
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
