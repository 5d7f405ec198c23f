"""Hypothesis strategies for event histories and for the ways they can be delivered.

A history mixes collections of emails and phones (security, recovery, newsletter purposes),
whole-dataset and listed flows (dataset cycles included), whole-dataset and listed uses (ads,
analytics), erasures and re-collections after them, many same-time ties (hours 0..6) and
redelivered duplicates. Event ids are short random strings, so their order says nothing about
time. A delivery is a permutation cut into batches, optionally applied by separate openings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hypothesis import strategies as st

from lineage.events import DataFlowed, DataUsed, Event, IdentifierCollected, IdentifierErased
from lineage.identifiers import Category, IdentifierRef
from tests import factories as f

#: name -> category; names are distinct so refs never collide across categories.
PEOPLE: dict[str, Category] = {"ann": "email", "bob": "email", "p1": "phone", "p2": "phone"}
OWNERS = ["acct-1", "acct-2"]
DATASETS = ["auth:db", "crm:news", "lake:raw", "ads:t"]
COLLECT_PURPOSES = [f.SECURITY, f.RECOVERY, f.NEWSLETTER]
USE_PURPOSES = [f.ADS, "marketing.advertising.profiling", f.ANALYTICS]
JOBS = ["j1", "j2"]
MAX_HOUR = 6
ID_ALPHABET = "abcxyz"
#: Every id of one or two letters: drawn in random order, so id order is unrelated to time.
ID_POOL = sorted({a + b for a in ID_ALPHABET for b in ["", *ID_ALPHABET]})

When = datetime | float


def _time(when: When) -> datetime:
    return when if isinstance(when, datetime) else f.at(when)


def ident(name: str) -> IdentifierRef:
    """Email or phone ref of a test person (a fake hash, never a raw value)."""
    category = PEOPLE.get(name, "phone" if name.startswith("p") else "email")
    base = f.ref(name, category)
    if category == "phone":
        return base.model_copy(update={"display": f"+1 ***-***-{len(name):04d}"})
    return base


def collected(
    eid: str, who: str, dataset: str, purpose: str, when: When, owner: str | None = None
) -> IdentifierCollected:
    moment = _time(when)
    return IdentifierCollected(
        event_id=eid,
        event_time=moment,
        observed_time=moment,
        producer="test",
        dataset=f.ds(dataset),
        purpose=purpose,
        identifier=ident(who),
        subject=f.subject(owner) if owner else None,
    )


def flowed(
    eid: str, source: str, target: str, when: When, who: list[str] | None = None, job: str = "j1"
) -> DataFlowed:
    moment = _time(when)
    return DataFlowed(
        event_id=eid,
        event_time=moment,
        observed_time=moment,
        producer="test",
        source=f.ds(source),
        target=f.ds(target),
        job=job,
        identifiers=[ident(w) for w in who] if who is not None else None,
    )


def used(
    eid: str, dataset: str, purpose: str, when: When, who: list[str] | None = None, job: str = "j1"
) -> DataUsed:
    moment = _time(when)
    return DataUsed(
        event_id=eid,
        event_time=moment,
        observed_time=moment,
        producer="test",
        dataset=f.ds(dataset),
        job=job,
        purpose=purpose,
        identifiers=[ident(w) for w in who] if who is not None else None,
    )


def erased(eid: str, who: str, when: When) -> IdentifierErased:
    moment = _time(when)
    return IdentifierErased(
        event_id=eid,
        event_time=moment,
        observed_time=moment,
        producer="test",
        identifier=ident(who),
    )


# -- strategies -----------------------------------------------------------------------------
hours = st.integers(min_value=0, max_value=MAX_HOUR)
people = st.sampled_from(sorted(PEOPLE))
datasets = st.sampled_from(DATASETS)


def other_than(dataset: str) -> st.SearchStrategy[str]:
    return st.sampled_from([d for d in DATASETS if d != dataset])


class History(list[Event]):
    """A list of events that prints one readable line per event (falsifying examples)."""

    def __repr__(self) -> str:
        return "History([\n" + "".join(f"    {describe(e)}\n" for e in self) + "])"


class Batches(list[list[Event]]):
    """Batches in delivery order, printed one readable line per event."""

    def __repr__(self) -> str:
        lines = ["Batches(["]
        for number, batch in enumerate(self):
            lines.append(f"  batch {number}:")
            lines += [f"    {describe(event)}" for event in batch]
        return "\n".join([*lines, "])"])


@st.composite
def histories(draw: st.DrawFn, max_events: int = 20) -> History:
    """A set of distinct events, then some of them again (redeliveries).

    Flows, uses and erasures lean towards the datasets and people already in the history
    (so most histories reach a use), but may name any.
    """
    n_collect = draw(st.integers(1, 4))
    n_cycle = draw(st.integers(0, 1))
    n_flow = draw(st.integers(0, 5))
    n_use = draw(st.integers(1, 4))
    n_erase = draw(st.integers(0, 2))
    n_recollect = draw(st.integers(0, 2)) if n_erase else 0
    total = min(n_collect + 2 * n_cycle + n_flow + n_use + n_erase + n_recollect, max_events)
    ids = iter(draw(st.permutations(ID_POOL))[:total])
    made: list[Event] = []
    reached: set[str] = set()  # datasets something was collected into or flowed to
    seen: dict[str, str] = {}  # person -> a dataset they were collected into

    def room() -> bool:
        return len(made) < total

    def known_dataset() -> str:
        known = st.sampled_from(sorted(reached))
        return draw(st.one_of(known, known, known, datasets))

    def known_people() -> list[str] | None:
        return draw(
            st.none() | st.lists(st.sampled_from(sorted(seen)) | people, min_size=1, max_size=2,
                                 unique=True)
        )  # fmt: skip

    for _ in range(n_collect):
        if room():
            who, dataset = draw(people), draw(datasets)
            made.append(
                collected(
                    next(ids),
                    who,
                    dataset,
                    draw(st.sampled_from(COLLECT_PURPOSES)),
                    draw(hours),
                    owner=draw(st.none() | st.sampled_from(OWNERS)),
                )
            )
            reached.add(dataset)
            seen.setdefault(who, dataset)
    for _ in range(n_cycle):  # a dataset cycle a -> b -> a, often at one instant
        if room():
            a = known_dataset()
            b = draw(other_than(a))
            when = draw(hours)
            made.append(flowed(next(ids), a, b, when, job=draw(st.sampled_from(JOBS))))
            reached.add(b)
            if room():
                back = draw(st.just(when) | hours)
                made.append(flowed(next(ids), b, a, back, job=draw(st.sampled_from(JOBS))))
    for _ in range(n_flow):
        if room():
            source = known_dataset()
            target = draw(other_than(source))
            made.append(
                flowed(
                    next(ids),
                    source,
                    target,
                    draw(hours),
                    who=known_people(),
                    job=draw(st.sampled_from(JOBS)),
                )
            )
            reached.add(target)
    for _ in range(n_use):
        if room():
            made.append(
                used(
                    next(ids),
                    known_dataset(),
                    draw(st.sampled_from(USE_PURPOSES)),
                    draw(hours),
                    who=known_people(),
                    job=draw(st.sampled_from(JOBS)),
                )
            )
    erased_people: list[tuple[str, int]] = []
    for _ in range(n_erase):
        if room():
            who, when = draw(st.sampled_from(sorted(seen)) | people), draw(hours)
            made.append(erased(next(ids), who, when))
            erased_people.append((who, when))
    for _ in range(n_recollect):  # a new life: collected again at or after the erasure
        if room() and erased_people:
            who, when = draw(st.sampled_from(erased_people))
            made.append(
                collected(
                    next(ids),
                    who,
                    draw(st.sampled_from([seen[who]] if who in seen else DATASETS) | datasets),
                    draw(st.sampled_from(COLLECT_PURPOSES)),
                    draw(st.integers(when, MAX_HOUR)),
                    owner=draw(st.none() | st.sampled_from(OWNERS)),
                )
            )
    repeats = draw(st.lists(st.sampled_from(made), max_size=3))
    return History(made + repeats)


@dataclass(frozen=True)
class Delivery:
    """How a history reaches the tracker: batches in order; ``reopen`` = a separate opening
    of the service (close, then open again) between batches."""

    batches: list[list[Event]]
    reopen: bool


@st.composite
def batchings(draw: st.DrawFn, events: list[Event]) -> Batches:
    """An arbitrary permutation cut into arbitrary (non-empty) batches."""
    order = draw(st.permutations(events))
    cuts = draw(st.lists(st.booleans(), min_size=max(len(order) - 1, 0), max_size=len(order)))
    batches: list[list[Event]] = [[]]
    for index, event in enumerate(order):
        batches[-1].append(event)
        if index < len(cuts) and cuts[index] and index < len(order) - 1:
            batches.append([])
    return Batches(batches)


@st.composite
def deliveries(draw: st.DrawFn, events: list[Event]) -> Delivery:
    return Delivery(batches=draw(batchings(events)), reopen=draw(st.booleans()))


def _hours(moment: datetime) -> str:
    delta = moment - f.T0
    value = delta.total_seconds() / 3600
    return f"{value:g}h" if abs(value) < 10_000 else moment.isoformat()


def _who(refs: list[IdentifierRef] | None) -> str:
    if refs is None:
        return "*"
    names = {ident(name).ref: name for name in PEOPLE}
    return ",".join(names.get(r.ref, r.ref[:8]) for r in refs)


def describe(event: Event) -> str:
    """One line per event, for failure messages and reports."""
    when = _hours(event.event_time)
    match event:
        case IdentifierCollected():
            who = _who([event.identifier])
            return (
                f"{event.event_id}: collect {who} -> {event.dataset.key} "
                f"for {event.purpose} @{when}"
            )
        case DataFlowed():
            return (
                f"{event.event_id}: flow {event.source.key} -> {event.target.key} "
                f"[{_who(event.identifiers)}] job={event.job} @{when}"
            )
        case DataUsed():
            return (
                f"{event.event_id}: use {event.dataset.key} [{_who(event.identifiers)}] "
                f"for {event.purpose} job={event.job} @{when}"
            )
        case IdentifierErased():
            return f"{event.event_id}: erase {_who([event.identifier])} @{when}"
    raise AssertionError(type(event).__name__)  # pragma: no cover
