"""The ``GraphStore`` protocol: the core's ``LineageStore`` plus what operators and tests need.

Every backend passes the one contract suite in ``tests/contract``; driver types never leak out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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
from lineage.ports import LineageStore

#: Node labels and relationship types, named once (the README documents them).
LABELS = ("Identifier", "Subject", "Dataset", "Job", "Purpose", "Alert")
RELATIONSHIPS = {
    "BELONGS_TO": "Identifier -> Subject: the pseudonymized account an identifier was given by",
    "COLLECTED_INTO": "Identifier -> Dataset {purpose, at, event_id}: a collection event",
    "COPY_IN": "Identifier -> Dataset {origin, since, event_id, source, job}: derived taint",
    "FLOWS_TO": "Dataset -> Dataset {job, runs}: whole-dataset flow runs",
    "CARRIED_TO": "Identifier -> Dataset {source, job, at, event_id}: a flow of listed ids",
    "USED_FOR": "Dataset -> Purpose {job, runs}: whole-dataset use runs",
    "USED_IN": "Identifier -> Purpose {dataset, job, at, event_id}: a use of listed ids",
    "RUNS": "Job -> Dataset: the job reads or writes the dataset",
    "ABOUT": "Alert -> Identifier: the identifier an alert concerns",
}


@dataclass(frozen=True)
class GraphSnapshot:
    """A backend-neutral picture of the whole graph, for equality checks across stores."""

    identifiers: frozenset[IdentifierNode] = field(default_factory=frozenset)
    datasets: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)
    jobs: frozenset[str] = field(default_factory=frozenset)
    collections: frozenset[Collection] = field(default_factory=frozenset)
    flows: frozenset[FlowEdge] = field(default_factory=frozenset)
    uses: frozenset[UseEdge] = field(default_factory=frozenset)
    carried: frozenset[CarriedFlow] = field(default_factory=frozenset)
    specific_uses: frozenset[SpecificUse] = field(default_factory=frozenset)
    copies: frozenset[Copy] = field(default_factory=frozenset)
    alerts: frozenset[str] = field(default_factory=frozenset)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}


class GraphStore(LineageStore, Protocol):
    """Adds what operators and tests read, beyond what propagation needs."""

    def copies_of(self, identifier: str, dataset: str) -> list[Copy]: ...

    def collections_of(self, identifier: str) -> list[Collection]: ...

    def snapshot(self) -> GraphSnapshot: ...

    def alert(self, alert_id: str) -> Alert | None: ...

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        """Stored alerts not yet confirmed delivered to the sinks (a transactional outbox:
        an alert is stored with the graph change, published after, then marked), oldest first."""

    def mark_published(self, alert_ids: Sequence[str]) -> None: ...

    def clear(self) -> None:
        """Delete everything (an empty graph for a replay)."""

    def close(self) -> None: ...
