"""State partitioned by identifier gives the one store's answers (issue 17, origins never
interact), and the changes each partition hands the served view rebuild that view exactly.

Histories (``tests.histories``) are routed as the Kafka log routes them
(:mod:`streams.partitioning`: identifiers' events to their partition, listed flows and uses
split into parts, whole-dataset ones copied to every partition), each partition applied in
its own :class:`PartitionStore` in the delivered order and batching, and:

- the union of the partitions' graphs equals the graph of one store that applied the whole
  history (identifiers, copies, alerts, runs, everything in ``GraphSnapshot``);
- a view fed only the partitions' changes (decoded from their wire form, some sent twice,
  partitions interleaved, units cut into several changes under a small size limit) holds
  that same graph and the same alerts;
- a partition reopened from its file holds the state and position it committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.partition_store import PartitionStore
from graph.sqlite_store import SqliteStore
from graph.store import GraphSnapshot
from lineage.changes import UnitChange, coalesce, decode, encode, encode_pieces
from lineage.event_identity import claims_of
from lineage.events import DataFlowed, Event
from lineage.policy import Policy
from lineage.ports import Writes
from lineage.tracker import Tracker
from streams.partitioning import Routed, partition_of, route
from tests.histories import batchings, histories
from tests.oracle import normalize_alert


def _union(snapshots: Iterable[GraphSnapshot]) -> GraphSnapshot:
    names = [f.name for f in fields(GraphSnapshot)]
    merged: dict[str, frozenset[object]] = {n: frozenset() for n in names}
    for snap in snapshots:
        for n in names:
            merged[n] |= getattr(snap, n)
    return GraphSnapshot(**merged)  # type: ignore[arg-type]


def _apply_partition(store: PartitionStore, policy: Policy, batches: list[list[Routed]]) -> None:
    tracker = Tracker(store, policy)
    offset = 0
    for batch in batches:
        offset += len(batch)
        store.stage_position(offset)
        tracker.apply_claimed([(r.event, claims_of(r.event, r.part)) for r in batch])


def _alerts(store: SqliteStore) -> dict[str, object]:
    return {a.alert_id: normalize_alert(a.model_dump()) for a in store.alerts()}


def _feed(view: SqliteStore, changes: list[UnitChange], chunk: int) -> None:
    """What the sink does to Neo4j, on a SQLite view: batches of changes, each change once
    (a repeat sent after a crash is dropped by its seq), the batch's rows coalesced."""
    applied: dict[int, int] = {}
    for start in range(0, len(changes), chunk):
        fresh = []
        for change in changes[start : start + chunk]:
            if change.seq > applied.get(change.partition, 0):
                fresh.append(change)
                applied[change.partition] = change.seq

        def unit(batch: list[UnitChange] = fresh) -> None:
            for w in coalesce([w for c in batch for w in c.writes]):
                view.write(w)
            claims = list({cl.key: cl for c in batch for cl in c.claims}.values())
            keys = [cl.key for cl in claims]
            known = view.read_claims(keys)
            view.write_claims([cl for cl in claims if cl.key not in known], keys)

        view.atomically(unit)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    partitions=st.sampled_from([1, 2, 3, 4]),
    chunk=st.integers(1, 6),
    limit=st.sampled_from([3_000, 6_000, 1 << 20]),
)
def test_partitions_answer_as_one_store(
    data: st.DataObject,
    partitions: int,
    chunk: int,
    limit: int,
    policy: Policy,
    tmp_path_factory: object,
) -> None:
    history = data.draw(histories(), label="history")
    batches = data.draw(batchings(history), label="batches")
    whole = SqliteStore(":memory:")
    for batch in batches:
        Tracker(whole, policy).apply_claimed([(e, claims_of(e)) for e in batch])

    directory = Path(tmp_path_factory.mktemp("partitions"))  # type: ignore[attr-defined]
    # a small change limit: units travel as several changes, which the view applies in order
    stores = [PartitionStore(directory / f"p{p}.sqlite", p, limit) for p in range(partitions)]
    for p, store in enumerate(stores):
        routed = [[r for e in batch for r in route(e, partitions) if r.partition == p]
                  for batch in batches]  # fmt: skip
        _apply_partition(store, policy, [b for b in routed if b])

    assert _union(s.snapshot() for s in stores) == whole.snapshot()
    merged: dict[str, object] = {}
    for s in stores:
        merged.update(_alerts(s))
    assert merged == _alerts(whole)

    # the view, fed the wire form, partitions interleaved, the first change of each twice
    outboxes = [[decode(encode(c)) for c in s.unpublished_changes(10_000)] for s in stores]
    interleaved = [c for group in zip(*outboxes, strict=False) for c in group]
    interleaved += [c for box in outboxes for c in box[len(interleaved) // partitions :]]
    again = [box[0] for box in outboxes if box]
    view = SqliteStore(":memory:")
    _feed(view, again + interleaved + again, chunk)
    assert view.snapshot() == whole.snapshot()
    assert _alerts(view) == _alerts(whole)

    # reopened from its file: the state and the position it committed
    for p, store in enumerate(stores):
        snap, position = store.snapshot(), store.position
        store.close()
        again_open = PartitionStore(directory / f"p{p}.sqlite", p)
        assert again_open.working_state().snapshot() == store_state(again_open)
        assert again_open.snapshot() == snap
        assert again_open.position == position
        again_open.close()


def store_state(store: PartitionStore) -> object:
    store._held = None  # load again from the journal, to compare
    return store.working_state().snapshot()


def test_routing_keeps_an_identifiers_events_together() -> None:
    from tests import factories as f
    from tests.histories import PEOPLE, collected, erased, flowed

    c = collected("c1", "ann", "auth:db", f.SECURITY, 1)
    e = erased("x1", "ann", 2)
    listed = flowed("f1", "auth:db", "ads:t", 3, who=sorted(PEOPLE))
    whole = flowed("f2", "auth:db", "ads:t", 4)
    for n in (1, 2, 4, 7):
        home = partition_of(c.identifier.ref, n)
        assert [r.partition for r in route(c, n)] == [home]
        assert [r.partition for r in route(e, n)] == [home]
        assert sorted(r.partition for r in route(whole, n)) == list(range(n))
        parts = route(listed, n)
        shares = [r.event for r in parts if isinstance(r.event, DataFlowed)]
        names = [ref.ref for e in shares for ref in e.identifiers or ()]
        assert sorted(names) == sorted(ref.ref for ref in listed.identifiers or ())
        for r in parts:
            assert isinstance(r.event, DataFlowed)
            assert all(partition_of(x.ref, n) == r.partition for x in r.event.identifiers or ())
        if len(parts) > 1:
            assert [r.part.index for r in parts if r.part] == list(range(1, len(parts) + 1))


def _events(batches: list[list[Event]]) -> int:
    return sum(len(b) for b in batches)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), limit=st.sampled_from([1_500, 2_500, 4_000]))
def test_a_unit_cut_into_pieces_applies_as_the_whole(
    data: st.DataObject, limit: int, policy: Policy
) -> None:
    """Each ``Writes`` of a unit cut down to pieces under ``limit`` bytes, applied in order,
    gives the store the whole writes give (facts before drops, drops before copies)."""
    history = data.draw(histories(), label="history")
    recorded = PartitionStore(":memory:", 0, 1 << 20)
    Tracker(recorded, policy).apply_claimed([(e, claims_of(e)) for e in history])
    (change,) = recorded.unpublished_changes(10)
    whole, cut = SqliteStore(":memory:"), SqliteStore(":memory:")
    _write_all(whole, change.writes)
    pieces = [decode(p, 0, n) for w in change.writes
              for n, p in enumerate(encode_pieces([w], [], limit))]  # fmt: skip
    for piece in pieces:
        _write_all(cut, piece.writes)
    assert cut.snapshot() == whole.snapshot()
    assert _alerts(cut) == _alerts(whole)


def _write_all(store: SqliteStore, writes: Iterable[Writes]) -> None:
    def unit() -> None:
        for w in writes:
            store.write(w)

    store.atomically(unit)
