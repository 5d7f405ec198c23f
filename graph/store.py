"""The ``GraphStore`` protocol: the core's ``LineageStore`` plus what operators and tests need.

Every backend passes the one contract suite in ``tests/contract``; driver types never leak out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lineage.alerts import Alert
from lineage.audit import CarriedOrigin, RouteExample
from lineage.incidents import IncidentReader
from lineage.model import (
    CarriedFlow,
    Collection,
    Copy,
    FlowEdge,
    IdentifierNode,
    ReadEdge,
    SpecificUse,
    UseEdge,
)
from lineage.ports import LineageStore
from lineage.queries import QueryReader
from lineage.report import Tally


@dataclass(frozen=True)
class GraphSnapshot:
    """A backend-neutral picture of the whole graph, for equality checks across stores.

    ``datasets`` holds (key, system, name); the runs of ``FlowEdge``, ``UseEdge`` and
    ``ReadEdge`` are sorted; ``alerts`` holds the ids of *active* alerts (withdrawn ones are
    left out).
    """

    identifiers: frozenset[IdentifierNode] = field(default_factory=frozenset)
    datasets: frozenset[tuple[str, str, str]] = field(default_factory=frozenset)
    jobs: frozenset[str] = field(default_factory=frozenset)
    collections: frozenset[Collection] = field(default_factory=frozenset)
    flows: frozenset[FlowEdge] = field(default_factory=frozenset)
    uses: frozenset[UseEdge] = field(default_factory=frozenset)
    reads: frozenset[ReadEdge] = field(default_factory=frozenset)
    carried: frozenset[CarriedFlow] = field(default_factory=frozenset)
    specific_uses: frozenset[SpecificUse] = field(default_factory=frozenset)
    copies: frozenset[Copy] = field(default_factory=frozenset)
    alerts: frozenset[str] = field(default_factory=frozenset)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}


class GraphStore(LineageStore, QueryReader, IncidentReader, Protocol):
    """Adds what operators and tests read, beyond what propagation needs (and the query
    layer's reads, ``lineage.queries.QueryReader``)."""

    def snapshot(self) -> GraphSnapshot: ...

    def alerts(self, include_withdrawn: bool = False) -> list[Alert]:
        """Stored alerts (latest revision of each), sorted by (occurred_at, alert_id);
        withdrawn ones only when asked."""
        ...

    def alert(self, alert_id: str) -> Alert | None:
        """The latest stored revision of one alert, withdrawn or not."""
        ...

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        """Stored alerts not yet confirmed delivered to the sinks (a transactional outbox:
        an alert is stored with the graph change, published after, then marked), oldest
        first, the latest revision of each."""
        ...

    def mark_published(self, alerts: Sequence[Alert]) -> None:
        """Take alerts out of the outbox, each only if the outbox still holds that very
        revision (a newer revision written meanwhile stays to be published)."""
        ...

    def tally(self, as_of: int | None = None) -> Tally:
        """What ``lineage.report.report_from`` needs, over the active alerts (those that
        occurred at or before ``as_of``, when given)."""
        ...

    def edges(self) -> list[tuple[str, str, str, str]]:
        """The small dataset/job graph: (kind, from, to, job) for every flow (``flow``: whole
        dataset, ``carried``: of listed identifiers), use (``use``/``specific``; ``to`` is
        the purpose) and read (``read``: ``to`` is the job), each once.
        ``graph.dataset_graph`` turns it into networkx."""
        ...

    def tally_between(self, since: datetime | None, until: datetime | None) -> Tally:
        """``tally`` over the active alerts whose ``occurred_at`` lies in [since, until);
        with neither bound, exactly ``tally()``."""
        ...

    def route_examples(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[RouteExample]:
        """The active alerts in [since, until) grouped by (route, origin purpose, use
        purpose), each group's count and earliest alert (``lineage.audit.route_examples``)."""
        ...

    def carried_origins(self, as_of: int | None = None) -> list[CarriedOrigin]:
        """Each distinct (source, dataset, job, origin) over the stored copies (those arrived
        by ``as_of``, when given), sorted: which origin purposes each dataset edge carried."""
        ...

    def clear(self) -> None:
        """Delete everything (an empty graph for a replay)."""
        ...

    def close(self) -> None: ...
