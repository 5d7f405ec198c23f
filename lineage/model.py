"""The lineage graph's records, as the core sees them; stores map these onto nodes and edges.

Times are integer microseconds since the epoch (see :func:`lineage.events.micros`).
Taint lives on *copies*: one record per (identifier, dataset, origin), so purpose travels with
the copy and not with the person.
"""

from __future__ import annotations

import bisect
import functools
import sys
from dataclasses import dataclass, field

from lineage.identifiers import Category


@dataclass(frozen=True, slots=True, order=True)
class Origin:
    """Where and why an identifier was first collected; every copy downstream inherits it."""

    dataset: str
    purpose: str
    key: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once and interned: millions of copies share a handful of origins.
        # Stores filter on the part before the first '@' (purpose keys never contain one).
        object.__setattr__(self, "key", sys.intern(f"{self.purpose}@{self.dataset}"))

    @classmethod
    def parse(cls, key: str) -> Origin:
        """Stores read origins back by the million and there are only a handful: share them."""
        return _parse_origin(key)

    @classmethod
    def of(cls, dataset: str, purpose: str) -> Origin:
        """The shared origin of a collection: one object (and one dataset string, which its
        first copy reuses) for the millions of collections of a handful of origins."""
        return _parse_origin(f"{purpose}@{dataset}")


#: The epoch of a copy no erasure precedes (times are bounded to 1970..2100, so >= 0).
NO_EPOCH = -1


def epoch_of(erasures: tuple[int, ...], at: int) -> int:
    """The life an event at ``at`` belongs to: the latest erasure strictly before it."""
    index = bisect.bisect_left(erasures, at)
    return erasures[index - 1] if index > 0 else NO_EPOCH


def alive_until(erasures: tuple[int, ...], since: int) -> int | None:
    """The first erasure at or after ``since``: a copy present at ``since`` dies then."""
    index = bisect.bisect_left(erasures, since)
    return erasures[index] if index < len(erasures) else None


@dataclass(frozen=True, slots=True)
class Copy:
    """Identifier ``identifier`` is present in ``dataset`` since ``since``, carrying ``origin``.

    ``event_id``/``source``/``job`` say how it got here: the evidence chain runs backwards
    through ``source`` until a copy with no source (the collection).
    """

    identifier: str
    dataset: str
    origin: Origin
    since: int
    event_id: str
    source: str | None = None
    job: str | None = None
    hops: int = 0
    epoch: int = NO_EPOCH

    @property
    def rank(self) -> tuple[int, int, str]:
        """Earlier wins; at one instant fewer same-time hops win (a copy never ranks before its
        source), then the event id, so every processing order agrees (docs/semantics.md)."""
        return (self.since, self.hops, self.event_id)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.identifier, self.dataset, self.origin.key, self.epoch)


@dataclass(frozen=True, slots=True, order=True)
class Run:
    at: int
    event_id: str


def insert_run(runs: list[Run], run: Run) -> tuple[bool, int | None]:
    """Insert keeping order; returns (inserted, latest run time strictly before ``run``).

    Every store uses this one rule: ``previous_run`` bounds the copies a new run must carry
    (those that arrived after it), so the stores have to agree to the microsecond.
    """
    index = bisect.bisect_left(runs, run)
    if index < len(runs) and runs[index] == run:
        return False, None
    before = bisect.bisect_left(runs, Run(run.at, ""))
    runs.insert(index, run)
    return True, runs[before - 1].at if before > 0 else None


@dataclass(frozen=True, slots=True)
class FlowEdge:
    """Whole-dataset flow source -> target by a job; each run copies what the source held then."""

    source: str
    target: str
    job: str
    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class UseEdge:
    """Whole-dataset use by a job for a purpose, one run per event."""

    dataset: str
    job: str
    purpose: str
    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class ReadEdge:
    """A job that read a whole dataset without writing one or declaring a use: one run per
    event (``DataRead``)."""

    dataset: str
    job: str
    runs: tuple[Run, ...]


@dataclass(frozen=True, slots=True)
class CarriedFlow:
    """A flow that carried one listed identifier."""

    identifier: str
    source: str
    target: str
    job: str
    at: int
    event_id: str


@dataclass(frozen=True, slots=True)
class SpecificUse:
    """A use of one listed identifier (e.g. one audience match hit)."""

    identifier: str
    dataset: str
    job: str
    purpose: str
    at: int
    event_id: str


@dataclass(frozen=True, slots=True)
class IdentifierNode:
    ref: str
    category: Category
    display: str | None
    subjects: frozenset[str] = field(default_factory=frozenset)
    erasures: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Collection:
    identifier: str
    dataset: str
    purpose: str
    at: int
    event_id: str


@functools.lru_cache(maxsize=4096)
def _parse_origin(key: str) -> Origin:
    purpose, _, dataset = key.partition("@")
    return Origin(dataset=dataset, purpose=purpose)
