"""What the core needs from a graph store; ``graph.store.GraphStore`` extends it for adapters.

Rules every implementation keeps (the contract suite in ``tests/contract`` checks them):
- ``apply`` merges: a mutation already present changes nothing and is not reported;
- ``put_copies`` keeps, per (identifier, dataset, origin), the copy of lowest ``rank`` (so
  concurrent workers cannot replace an earlier arrival with a later one); ``add_alerts`` merges
  by ``alert_id``;
- ``atomically`` runs a unit of work as one transaction where the backend has them, so a crash
  never leaves graph facts stored without the copies and alerts derived from them;
- reads return what earlier writes stored, in any order unless a method says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from lineage.alerts import Alert
from lineage.model import (
    Copy,
    FlowEdge,
    IdentifierFacts,
    IdentifierNode,
    SpecificUse,
    UseEdge,
)
from lineage.projection import Change, Mutation

T = TypeVar("T")


class LineageStore(Protocol):
    def atomically(self, work: Callable[[], T]) -> T:
        """Run ``work`` (which calls this store) as one all-or-nothing unit, retried as a whole
        on transient failures; reads inside it see its own writes."""

    def apply(self, mutations: Sequence[Mutation]) -> list[Change]:
        """Merge mutations; return those that changed the graph, in order."""

    def identifier(self, ref: str) -> IdentifierNode | None: ...

    def identifier_facts(self, refs: Sequence[str]) -> dict[str, IdentifierFacts]:
        """Node, copies, carried flows and specific uses of each ref, in one read; refs never
        seen are absent from the result."""

    def copies_of_identifier(self, identifier: str) -> list[Copy]: ...

    def copies_in(self, dataset: str, after: int | None, upto: int) -> Iterable[Copy]:
        """Copies in ``dataset`` whose ``since`` is in (after, upto]; after=None means -inf."""

    def flows_from(self, dataset: str) -> list[FlowEdge]: ...

    def uses_of(self, dataset: str) -> list[UseEdge]: ...

    def specific_uses(self, identifier: str, dataset: str) -> list[SpecificUse]: ...

    def put_copies(self, copies: Sequence[Copy]) -> None: ...

    def add_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Store alerts not seen before (by ``alert_id``); return exactly those."""

    def alerts(self) -> list[Alert]: ...
