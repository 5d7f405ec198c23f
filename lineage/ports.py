"""What the core needs from a graph store; ``graph.store.GraphStore`` extends it for adapters.

Rules every implementation keeps (the contract suite in ``tests/contract`` checks them):
- ``apply`` merges: a mutation already present changes nothing and is not reported;
- ``put_copies`` upserts by (identifier, dataset, origin); ``add_alerts`` by ``alert_id``;
- reads return what earlier writes stored, in any order unless a method says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from lineage.alerts import Alert
from lineage.model import (
    CarriedFlow,
    Collection,
    Copy,
    FlowEdge,
    IdentifierNode,
    SpecificUse,
    UseEdge,
)
from lineage.projection import Change, Mutation


class LineageStore(Protocol):
    def apply(self, mutations: Sequence[Mutation]) -> list[Change]:
        """Merge mutations; return those that changed the graph, in order."""

    def identifier(self, ref: str) -> IdentifierNode | None: ...

    def copies_of(self, identifier: str, dataset: str) -> list[Copy]: ...

    def copies_of_identifier(self, identifier: str) -> list[Copy]: ...

    def copies_in(self, dataset: str, after: int | None, upto: int) -> Iterable[Copy]:
        """Copies in ``dataset`` whose ``since`` is in (after, upto]; after=None means -inf."""

    def collections_of(self, identifier: str) -> list[Collection]: ...

    def flows_from(self, dataset: str) -> list[FlowEdge]: ...

    def uses_of(self, dataset: str) -> list[UseEdge]: ...

    def carried_from(self, identifier: str, dataset: str) -> list[CarriedFlow]: ...

    def specific_uses(self, identifier: str, dataset: str) -> list[SpecificUse]: ...

    def put_copies(self, copies: Sequence[Copy]) -> None: ...

    def add_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Store alerts not seen before (by ``alert_id``); return exactly those."""

    def alerts(self) -> list[Alert]: ...
