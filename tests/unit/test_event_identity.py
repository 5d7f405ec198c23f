"""A reused ``event_id`` on the Kafka path: the worker applies the first content under an id,
takes a redelivery as a no-op, and dead-letters other content, whole or in parts, exactly as
the embedded log refuses it. The graphs are compared whole with the embedded service's."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph.sqlite_store import SqliteStore
from graph.store import GraphStore
from lineage.errors import InvalidEventError
from lineage.event_identity import Claim, Part, claims_of, decide
from lineage.events import DataFlowed, Event, dump_event
from lineage.inbound import InboundParser
from lineage.policy import Policy
from lineage.reference_case import generate
from lineage.tracker import Tracker
from runtime.service import LineageService
from runtime.settings import Settings
from streams.kafka_log import event_messages
from streams.projector import Inbound, Projector, Retry, consume
from streams.topics import PART_HEADER
from tests.conftest import TEST_KEY
from tests.unit.test_worker_errors import FakeConsumer, FakeOutlet, Record


@pytest.fixture(scope="module")
def events(parser: InboundParser) -> list[Event]:
    """Enough users for a flow listing a dozen identifiers."""
    case = generate(users=80)
    observed = datetime.now(UTC)
    return [parser.parse_record(record, observed) for record in case.records]


def messages(events: Sequence[Event], limit: int | None = None) -> list[Inbound]:
    """What ``KafkaEventLog.append`` sends: each event whole, or in parts with the header."""
    out: list[Inbound] = []
    for event in events:
        for body, part in event_messages(event, limit):
            header = None if part is None else part.header()
            out.append(Inbound(body, f"events:0:{len(out)}", event.event_id.encode(), header))
    return out


def project(policy: Policy, batches: Sequence[Sequence[Inbound]]) -> tuple[SqliteStore, FakeOutlet]:
    store, outlet = SqliteStore(":memory:"), FakeOutlet()
    worker = Projector(store, policy, outlet, Retry(first_s=0.001, max_s=0.01))
    for batch in batches:
        worker.handle(batch)
    return store, outlet


def embedded(tmp_path: Path, events: Sequence[Event]) -> LineageService:
    """The embedded service recording the same events, one at a time as a log would."""
    service = LineageService.open(Settings(home=tmp_path / "home", key=TEST_KEY))
    for event in events:
        service.record([event])
    return service


def reused(event: Event, **update: object) -> Event:
    return event.model_copy(update=update)


def a_flow_with_identifiers(events: Sequence[Event]) -> DataFlowed:
    return max(
        (e for e in events if isinstance(e, DataFlowed) and e.identifiers),
        key=lambda e: len(e.identifiers or ()),
    )


# -- the pure decision -------------------------------------------------------------------------


def test_the_part_header_is_bounded_and_never_echoed() -> None:
    assert Part.parse(b"2/3") == Part(2, 3)
    assert Part.parse(Part(2, 3).header()) == Part(2, 3)
    for bad in (b"0/3", b"4/3", b"1/5000", b"a/b", b"1/2 ", "1/\u0663".encode(), b"\xff/1"):
        with pytest.raises(InvalidEventError) as error:
            Part.parse(bad)
        assert bad.decode(errors="replace") not in error.value.reason


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("xy")), max_size=12))
def test_the_first_content_owns_an_id_and_a_refused_message_owns_nothing(
    sent: list[tuple[str, str]],
) -> None:
    """Against a model: each id belongs to the first content sent under it, in order."""
    stored = {"c": "x"}
    decision = decide([[Claim(key, digest)] for key, digest in sent], stored)
    owner = dict(stored)
    for (key, digest), ok in zip(sent, decision.accepted, strict=True):
        owner.setdefault(key, digest)
        assert ok == (owner[key] == digest)
    assert {c.key: c.digest for c in decision.fresh} == {
        k: v for k, v in owner.items() if k not in stored
    }


def test_a_message_is_refused_whole_when_any_claim_disagrees() -> None:
    decision = decide(
        [[Claim("e", "env"), Claim("e#2", "p2")], [Claim("e", "other"), Claim("e#1", "p1")]], {}
    )
    assert decision.accepted == [True, False]
    assert decision.fresh == [Claim("e", "env"), Claim("e#2", "p2")]  # not e#1


def test_a_whole_event_and_a_split_one_with_one_id_never_agree(events: list[Event]) -> None:
    flow = a_flow_with_identifiers(events)
    listed = flow.identifiers or []
    assert len(listed) >= 2
    whole = claims_of(flow)
    middle = len(listed) // 2
    halves = [reused(flow, identifiers=ids) for ids in (listed[:middle], listed[middle:])]
    first, second = (claims_of(h, Part(n, 2)) for n, h in enumerate(halves, start=1))
    assert first[0] == second[0]  # one envelope
    assert first[0].key == whole[0].key and first[0].digest != whole[0].digest
    assert claims_of(reused(flow, observed_time=datetime(2030, 1, 1, tzinfo=UTC))) == whole
    elsewhere = flow.event_time.astimezone(timezone(timedelta(hours=-9, minutes=-30)))
    assert claims_of(reused(flow, event_time=elsewhere)) == whole  # one instant, one time
    later = flow.event_time + timedelta(microseconds=1)
    assert claims_of(reused(flow, event_time=later))[0].digest != whole[0].digest


# -- the projector, graphs compared with the embedded log's -------------------------------------


def test_a_reused_id_is_dead_lettered_and_the_graph_is_the_embedded_one(
    events: list[Event], policy: Policy, tmp_path: Path
) -> None:
    collection = events[0]
    other = reused(collection, event_time=collection.event_time.replace(year=2014))
    sent = [*events, other]
    store, outlet = project(policy, [messages(sent)])

    (letter,) = outlet.letters
    assert letter.raw == dump_event(other).encode()
    assert letter.reason == f"event id {collection.event_id!r} reused with other content"

    service = embedded(tmp_path, sent)
    assert store.snapshot() == service.store.snapshot()
    assert sorted(a.model_dump_json() for a in store.alerts()) == sorted(
        a.model_dump_json() for a in service.store.alerts()
    )


def test_the_first_content_wins_across_batches_and_redelivery_is_a_no_op(
    events: list[Event], policy: Policy
) -> None:
    collection = events[0]
    other = reused(collection, event_time=collection.event_time.replace(year=2014))
    batches = [messages(events[:10]), messages([other]), messages(events[:10])]
    store, outlet = project(policy, batches)
    assert [letter.raw for letter in outlet.letters] == [dump_event(other).encode()]

    clean, _ = project(policy, [messages(events[:10])])
    assert store.snapshot() == clean.snapshot()


def test_split_events_give_the_whole_events_graph_and_a_reused_split_id_is_refused(
    events: list[Event], policy: Policy
) -> None:
    flow = a_flow_with_identifiers(events)
    listed = flow.identifiers or []
    assert len(listed) >= 8
    limit = len(dump_event(reused(flow, identifiers=listed[: len(listed) // 4])))
    rest = [e for e in events if e is not flow]
    split = [*messages(rest), *messages([flow], limit)]
    assert sum(m.part is not None for m in split) >= 4
    store, outlet = project(policy, [split[::-1], split])  # any order, and redelivered
    assert outlet.letters == []
    whole, _ = project(policy, [messages(events)])
    assert store.snapshot() == whole.snapshot()

    # the same id with one identifier fewer: its parts disagree with the owned envelope
    trimmed = reused(flow, identifiers=listed[1:])
    more, outlet = project(policy, [split, messages([trimmed], limit)])
    assert outlet.letters and all("reused with other content" in r.reason for r in outlet.letters)
    assert more.snapshot() == whole.snapshot()


def test_claims_are_all_or_nothing_with_the_unit(events: list[Event], policy: Policy) -> None:
    """A unit that fails keeps no claim: the batch's redelivery is decided afresh."""
    store: GraphStore = SqliteStore(":memory:")
    tracker = Tracker(store, policy)
    batch = [(e, claims_of(e)) for e in events[:5]]

    def failing() -> None:
        tracker.apply_claimed(batch)
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        store.atomically(failing)
    assert store.read_claims([e.event_id for e in events[:5]]) == {}
    assert tracker.apply_claimed(batch).reused == []


def test_the_consumer_loop_reads_the_part_header(events: list[Event], policy: Policy) -> None:
    """Through ``consume``: the parts of a split flow and a reused split id, as records with
    kafka-python's headers; without the header the parts would be refused as reused ids."""
    flow = a_flow_with_identifiers(events)
    listed = flow.identifiers or []
    limit = len(dump_event(reused(flow, identifiers=listed[: len(listed) // 4])))
    sent = [*messages([e for e in events if e is not flow]), *messages([flow], limit)]
    stream = [
        Record("events", 0, n, m.key, m.raw or b"", [(PART_HEADER, m.part)] if m.part else [])
        for n, m in enumerate(sent)
    ]
    stop = threading.Event()
    store, outlet = SqliteStore(":memory:"), FakeOutlet()
    worker = Projector(store, policy, outlet, Retry(first_s=0.001, max_s=0.01))
    consume(FakeConsumer([stream, None], stop), worker, stop)
    assert outlet.letters == []
    whole, _ = project(policy, [messages(events)])
    assert store.snapshot() == whole.snapshot()
