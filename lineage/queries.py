"""The privacy officer's questions, answered the same way on every store.

A store implements the small read port :class:`QueryReader` (a few reads, each filtered by
event time ``as_of`` in the store's own language); everything else (grouping, people counts
over accounts, reachability, which copy an erasure left behind, ordering, paging) is computed
here once, so the embedded and the Neo4j modes give identical answers.

Time travel (docs/time-travel.md): "as of D" keeps the stored facts whose event time is at or
before D (copies by arrival ``since``, alerts by ``occurred_at``, collections, runs and
erasures by their times). For copies and alerts this equals the result of the events up to D
alone (tests/unit/test_as_of.py checks it against the oracle); people are counted with the
accounts an identifier is known to belong to now (the link to an account carries no time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from lineage.events import from_micros
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.model import Copy, alive_until
from lineage.report import Route

#: 2100-01-01T00:00:00Z, above every event time (they are bounded to 1970..2100): "as of now".
NOW = 4_102_444_800_000_000

R = TypeVar("R")
K = TypeVar("K")

QUERIES = ("paths", "blast-radius", "affected", "collections", "erasure-gaps")


# -- what a store answers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    """One active alert as the queries need it; ``people`` are the identifier's accounts, or
    ``("identifier:<ref>",)`` when it has none (it then counts as one person)."""

    identifier: str
    category: str
    origin_dataset: str
    origin_purpose: str
    route: Route
    use_dataset: str
    use_job: str
    use_purpose: str
    at: int
    people: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Holding:
    """Copies in ``dataset`` of one origin (``purpose@dataset``): distinct identifiers and
    people (accounts; an identifier without one counts as one)."""

    dataset: str
    origin: str
    identifiers: int
    people: int


@dataclass(frozen=True, slots=True)
class CollectionGroup:
    dataset: str
    category: str
    purpose: str
    identifiers: int
    people: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class ErasedCopy:
    """A copy not made by a collection, of an identifier with ``erasures`` (those <= as_of)."""

    display: str | None
    category: str
    erasures: tuple[int, ...]
    copy: Copy


def people_of(subjects: Iterable[str], ref: str) -> tuple[str, ...]:
    """An identifier's accounts, or itself as one person when it has none."""
    found = tuple(sorted(subjects))
    return found or (f"identifier:{ref}",)


class QueryReader(Protocol):
    """Reads every store answers for the queries; ``as_of`` is an event time (microseconds)
    and each read keeps only facts at or before it (``NOW``: everything)."""

    def violations(self, as_of: int) -> list[Violation]:
        """Active alerts with ``occurred_at <= as_of``."""
        ...

    def dataset_edges(self, as_of: int) -> list[tuple[str, str, str, str]]:
        """(kind, from, to, job) like ``GraphStore.edges``, for edges with a run (or a listed
        flow or use) at or before ``as_of``."""
        ...

    def holdings(self, datasets: Sequence[str], as_of: int) -> list[Holding]:
        """Per (dataset, origin) among ``datasets``: copies with ``since <= as_of``."""
        ...

    def collection_groups(self, as_of: int) -> list[CollectionGroup]:
        """Per (dataset, category, purpose): collections with ``at <= as_of``."""
        ...

    def erased_copies(self, as_of: int) -> list[ErasedCopy]:
        """Copies with a source and ``since <= as_of`` of identifiers erased by ``as_of``."""
        ...


# -- what the queries return --------------------------------------------------------------------


@dataclass(frozen=True)
class Page(Generic[R]):
    """Some rows of a query: ``total`` rows exist, ``truncated`` says whether some were left
    out (never silently: the CLI says "showing N of M")."""

    query: str
    as_of: datetime | None
    total: int
    truncated: bool
    rows: list[R]


@dataclass(frozen=True)
class PathGroup:
    """Violations of one (origin, route, use): ``route`` is the evidence's (dataset, job)."""

    origin_dataset: str
    origin_purpose: str
    route: list[tuple[str, str | None]]
    use_dataset: str
    use_job: str
    use_purpose: str
    alerts: int
    identifiers: int
    people: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class BlastRow:
    """A node downstream and what it holds from one origin. ``kind`` ``dataset``: the copies
    in ``dataset``; ``job``: a flow job, or a job that only read (``DataRead``), with what
    the dataset it reads holds; ``use``: a use
    (``name`` = job, ``purpose``), with what the dataset it uses holds. A node holding nothing
    has one row with no origin and zeros."""

    kind: Literal["dataset", "job", "use"]
    name: str
    dataset: str
    purpose: str | None
    origin: str | None
    identifiers: int
    people: int


@dataclass(frozen=True)
class AffectedRow:
    """People affected per violating use (``use_dataset``/``use_purpose`` set) or per
    violating job (both None: every use by that job)."""

    kind: Literal["use", "job"]
    use_job: str
    use_dataset: str | None
    use_purpose: str | None
    alerts: int
    identifiers: int
    people: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class CollectionRow:
    system: str
    dataset: str
    category: str
    purpose: str
    identifiers: int
    people: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class ErasureGap:
    """An identifier erased at ``erased_at`` still held downstream by a copy that was there
    at the erasure (its life ended then: nothing after is derived from it)."""

    identifier: str
    display: str | None
    category: str
    erased_at: datetime
    dataset: str
    origin_dataset: str
    origin_purpose: str
    since: datetime
    source: str | None
    job: str | None
    event_id: str


@dataclass
class _Group:
    alerts: int = 0
    identifiers: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    first: int = NOW
    last: int = -NOW

    def add(self, v: Violation) -> None:
        """A dataset-level pseudo-identifier (OpenLineage) is no person and no identifier: its
        alert counts as an alert only, as in ``lineage.report.tally``."""
        self.alerts += 1
        self.first = min(self.first, v.at)
        self.last = max(self.last, v.at)
        if DATASET_LEVEL_SUBJECT in v.people:
            return
        self.identifiers.add(v.identifier)
        self.people.update(v.people)


def _page(
    name: str,
    as_of: int | None,
    rows: list[R],
    limit: int | None,
    sort: Callable[[R], tuple[Any, ...]],
) -> Page[R]:
    ordered = sorted(rows, key=sort)
    shown = ordered if limit is None else ordered[: max(limit, 0)]
    when = from_micros(as_of) if as_of is not None else None
    return Page(name, when, len(ordered), len(shown) < len(ordered), shown)


def _grouped(violations: Iterable[Violation], key: Callable[[Violation], K]) -> dict[K, _Group]:
    groups: dict[K, _Group] = {}
    for v in violations:
        groups.setdefault(key(v), _Group()).add(v)
    return groups


def paths(
    store: QueryReader, as_of: int | None = None, limit: int | None = None
) -> Page[PathGroup]:
    """Every route from a restricted-origin identifier to a restricted use, most alerts first."""
    groups = _grouped(
        store.violations(NOW if as_of is None else as_of),
        lambda v: (
            v.origin_dataset,
            v.origin_purpose,
            v.route,
            v.use_dataset,
            v.use_job,
            v.use_purpose,
        ),
    )
    rows = [
        PathGroup(
            k[0],
            k[1],
            list(k[2]),
            k[3],
            k[4],
            k[5],
            g.alerts,
            len(g.identifiers),
            len(g.people),
            from_micros(g.first),
            from_micros(g.last),
        )
        for k, g in groups.items()
    ]
    return _page(
        "paths",
        as_of,
        rows,
        limit,
        lambda r: (
            -r.alerts,
            r.origin_dataset,
            r.origin_purpose,
            [(d, j or "") for d, j in r.route],
            r.use_dataset,
            r.use_job,
            r.use_purpose,
        ),
    )


def affected(
    store: QueryReader, as_of: int | None = None, limit: int | None = None
) -> Page[AffectedRow]:
    """People and identifiers per violating use, then per violating job, with the first and
    last violation of each."""
    violations = store.violations(NOW if as_of is None else as_of)
    rows: list[AffectedRow] = []
    for (job, dataset, purpose), g in _grouped(
        violations, lambda v: (v.use_job, v.use_dataset, v.use_purpose)
    ).items():
        rows.append(
            AffectedRow(
                "use",
                job,
                dataset,
                purpose,
                g.alerts,
                len(g.identifiers),
                len(g.people),
                from_micros(g.first),
                from_micros(g.last),
            )
        )
    for job, g in _grouped(violations, lambda v: v.use_job).items():
        rows.append(
            AffectedRow(
                "job",
                job,
                None,
                None,
                g.alerts,
                len(g.identifiers),
                len(g.people),
                from_micros(g.first),
                from_micros(g.last),
            )
        )
    return _page(
        "affected",
        as_of,
        rows,
        limit,
        lambda r: (r.kind != "use", -r.people, r.use_job, r.use_dataset or "", r.use_purpose or ""),
    )


def collections(
    store: QueryReader, as_of: int | None = None, limit: int | None = None
) -> Page[CollectionRow]:
    """Which systems collect which categories of identifier for which purposes."""
    rows = [
        CollectionRow(
            g.dataset.split(":", 1)[0],
            g.dataset,
            g.category,
            g.purpose,
            g.identifiers,
            g.people,
            from_micros(g.first),
            from_micros(g.last),
        )
        for g in store.collection_groups(NOW if as_of is None else as_of)
    ]
    return _page(
        "collections", as_of, rows, limit, lambda r: (r.system, r.dataset, r.category, r.purpose)
    )


def erasure_gaps(
    store: QueryReader, as_of: int | None = None, limit: int | None = None
) -> Page[ErasureGap]:
    """For each erasure, the downstream copies (made by a flow) that held the identifier when
    it was erased: the places an erasure request must still reach."""
    rows: list[ErasureGap] = []
    for found in store.erased_copies(NOW if as_of is None else as_of):
        c = found.copy
        erased = alive_until(found.erasures, c.since)
        if erased is None:
            continue  # a later life, not erased (yet)
        rows.append(
            ErasureGap(
                c.identifier,
                found.display,
                found.category,
                from_micros(erased),
                c.dataset,
                c.origin.dataset,
                c.origin.purpose,
                from_micros(c.since),
                c.source,
                c.job,
                c.event_id,
            )
        )
    return _page(
        "erasure-gaps",
        as_of,
        rows,
        limit,
        lambda r: (r.erased_at, r.identifier, r.dataset, r.origin_dataset, r.origin_purpose),
    )


def blast_radius(
    store: QueryReader, start: str, as_of: int | None = None, limit: int | None = None
) -> Page[BlastRow] | None:
    """Everything downstream of a dataset (itself included), jobs that only read included, or
    of a job (its own flows, uses and reads, then everything downstream of its targets); None
    when no such dataset or job."""
    when = NOW if as_of is None else as_of
    edges = store.dataset_edges(when)
    flows = [(a, b, job) for kind, a, b, job in edges if kind in ("flow", "carried")]
    uses = [(a, b, job) for kind, a, b, job in edges if kind in ("use", "specific")]
    reads = [(a, job) for kind, a, _, job in edges if kind == "read"]
    datasets = {a for a, _, _ in flows} | {b for _, b, _ in flows} | {a for a, _, _ in uses}
    datasets |= {a for a, _ in reads}
    holdings_known = {h.dataset for h in store.holdings([start], when)}
    if start in datasets or start in holdings_known:
        frontier = [start]
        jobs_seen: set[tuple[str, str]] = set()
    else:
        own = [(a, b, job) for a, b, job in flows if job == start]
        own_uses = [(a, b, job) for a, b, job in uses if job == start]
        own_reads = [(job, a) for a, job in reads if job == start]
        if not own and not own_uses and not own_reads:
            return None
        frontier = [b for _, b, _ in own]
        jobs_seen = {(job, a) for a, _, job in own} | set(own_reads)
    reached: set[str] = set()
    while frontier:
        dataset = frontier.pop()
        if dataset in reached:
            continue
        reached.add(dataset)
        for a, b, job in flows:
            if a == dataset:
                jobs_seen.add((job, a))
                frontier.append(b)
    jobs_seen |= {(job, a) for a, job in reads if a in reached}  # jobs that only read
    used = {
        (a, job, purpose)
        for a, purpose, job in uses
        if a in reached or (job == start and start not in datasets)
    }
    wanted = sorted(reached | {a for _, a in jobs_seen} | {a for a, _, _ in used})
    held: dict[str, list[Holding]] = {}
    for h in store.holdings(wanted, when):
        held.setdefault(h.dataset, []).append(h)

    def rows_for(
        kind: Literal["dataset", "job", "use"], name: str, dataset: str, purpose: str | None
    ) -> list[BlastRow]:
        return [
            BlastRow(kind, name, dataset, purpose, h.origin, h.identifiers, h.people)
            for h in held.get(dataset, [])
        ] or [BlastRow(kind, name, dataset, purpose, None, 0, 0)]

    rows: list[BlastRow] = []
    for dataset in reached:
        rows += rows_for("dataset", dataset, dataset, None)
    for job, source in jobs_seen:
        rows += rows_for("job", job, source, None)
    for dataset, job, purpose in used:
        rows += rows_for("use", job, dataset, purpose)
    order = {"dataset": 0, "job": 1, "use": 2}
    return _page(
        "blast-radius",
        as_of,
        rows,
        limit,
        lambda r: (order[r.kind], r.name, r.dataset, r.purpose or "", r.origin or ""),
    )
