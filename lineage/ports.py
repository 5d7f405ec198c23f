"""What the core needs from a store: a unit of work, one batched read, one batched write.

The core decides everything (merge rules in :mod:`lineage.planner`, taint and alerts in
:mod:`lineage.propagation`); a store only answers keyed reads and applies rows. Rules every
implementation keeps (the contract suite in ``tests/contract`` checks them):

- ``atomically`` runs a unit of work as one transaction, retried as a whole on transient
  failures; reads inside it see its own writes. On a store shared by several processes, the
  reads of a unit lock what they read (identifiers and datasets), so two units that could
  each miss the other's write are serialized instead.
- ``fetch`` answers every key of a :class:`Request` in one go; keys with nothing stored are
  absent from (or empty in) the :class:`Facts`.
- ``write`` applies fact rows (they are already merged), drops the copies of recomputed
  identifiers, puts copies keeping the lower ``rank`` per ``Copy.key``, and upserts alerts
  keeping the higher ``revision``; every alert written enters the outbox.
- ``read_claims``/``write_claims`` keep who owns an event id (:mod:`lineage.event_identity`):
  inside a unit, the keys read are locked until it ends, so two units claiming one id
  serialize and the second sees the first's claims.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from lineage.alerts import Alert
from lineage.event_identity import Claim
from lineage.events import IncidentEvent
from lineage.model import CarriedFlow, Collection, Copy, IdentifierNode, Run, SpecificUse
from lineage.planner import FactRows, State, StateKeys

T = TypeVar("T")

Pair = tuple[str, str]  # (identifier, dataset)
Since = tuple[str, int]  # (dataset, time)
#: Copies that arrived in a dataset in (after, upto] (after None = -inf) whose origin purpose
#: is one of ``purposes`` (None = any): a use reads only the origins it could violate.
Window = tuple[str, int | None, int, tuple[str, ...] | None]


@dataclass(frozen=True, slots=True)
class FirstRun:
    """The first run at or after a time of one whole-dataset flow (``to`` = target dataset)
    or use (``to`` = purpose) by ``job``."""

    to: str
    job: str
    run: Run


@dataclass(frozen=True, slots=True)
class History:
    """Everything stored about one identifier: what a recompute starts from."""

    collections: tuple[Collection, ...] = ()
    copies: tuple[Copy, ...] = ()
    alert_ids: tuple[str, ...] = ()


@dataclass
class Request:
    identifiers: set[str] = field(default_factory=set)
    copies: set[Pair] = field(default_factory=set)
    carried: set[Pair] = field(default_factory=set)  # (identifier, source dataset)
    specific: set[Pair] = field(default_factory=set)  # (identifier, used dataset)
    flows: set[Since] = field(default_factory=set)
    uses: set[Since] = field(default_factory=set)
    arrivals: set[Window] = field(default_factory=set)
    histories: set[str] = field(default_factory=set)
    alerts: set[str] = field(default_factory=set)
    state: StateKeys | None = None

    def __bool__(self) -> bool:
        return self.state is not None or any(
            (self.identifiers, self.copies, self.carried, self.specific, self.flows,
             self.uses, self.arrivals, self.histories, self.alerts)
        )  # fmt: skip


@dataclass
class Facts:
    identifiers: dict[str, IdentifierNode] = field(default_factory=dict)
    copies: dict[Pair, list[Copy]] = field(default_factory=dict)
    carried: dict[Pair, list[CarriedFlow]] = field(default_factory=dict)
    specific: dict[Pair, list[SpecificUse]] = field(default_factory=dict)
    flows: dict[Since, list[FirstRun]] = field(default_factory=dict)
    uses: dict[Since, list[FirstRun]] = field(default_factory=dict)
    arrivals: dict[Window, list[Copy]] = field(default_factory=dict)
    histories: dict[str, History] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    state: State | None = None


@dataclass
class Writes:
    facts: FactRows | None = None
    dropped: set[str] = field(default_factory=set)  # identifiers whose copies are recomputed
    copies: list[Copy] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)


class LineageStore(Protocol):
    def atomically(self, work: Callable[[], T]) -> T:
        """Run ``work`` (which calls this store) as one all-or-nothing unit."""

    def fetch(self, request: Request) -> Facts:
        """Answer every key of ``request`` in one read."""

    def write(self, writes: Writes) -> None:
        """Apply rows the core computed (see the module docstring for the merge rules)."""

    def read_claims(self, keys: Sequence[str]) -> dict[str, str]:
        """Inside a unit: the stored digest of each key that has one, the keys locked."""

    def write_claims(self, fresh: Sequence[Claim], absent: Sequence[str]) -> None:
        """Inside the unit whose ``read_claims`` found no digest for ``absent``: store
        ``fresh`` (a subset of those keys); the others stay unclaimed."""

    def record_incident_actions(self, events: Sequence[IncidentEvent]) -> None:
        """Keep officers' actions (idempotent by event id), in the open unit if there is one."""
