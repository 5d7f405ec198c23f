"""Where did this identifier go? The downstream tree of one identifier, per origin.

Built from the store's copies alone: each copy points at the dataset it came from, so the
copies of one origin form a tree rooted at the collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lineage.events import from_micros
from lineage.model import Copy, IdentifierNode, Origin, first_run_from
from lineage.policy import Policy
from lineage.ports import LineageStore


@dataclass(frozen=True)
class UseHit:
    job: str
    purpose: str
    at: datetime
    event_id: str
    violates: tuple[str, ...]


@dataclass
class TraceNode:
    dataset: str
    since: datetime
    event_id: str
    job: str | None
    uses: list[UseHit] = field(default_factory=list)
    children: list[TraceNode] = field(default_factory=list)


@dataclass
class OriginTrace:
    origin: Origin
    tracked: bool
    root: TraceNode


@dataclass
class Trace:
    identifier: IdentifierNode
    origins: list[OriginTrace]

    @property
    def violations(self) -> int:
        def count(node: TraceNode) -> int:
            own = sum(1 for use in node.uses if use.violates)
            return own + sum(count(child) for child in node.children)

        return sum(count(o.root) for o in self.origins)


def _uses(store: LineageStore, policy: Policy, copy: Copy) -> list[UseHit]:
    """The first use of this copy by each (job, purpose), dataset-wide or of this identifier."""
    candidates: list[tuple[int, str, str, str]] = []
    for use in store.uses_of(copy.dataset):
        run = first_run_from(use.runs, copy.since)
        if run is not None:
            candidates.append((run.at, run.event_id, use.job, use.purpose))
    candidates += [
        (u.at, u.event_id, u.job, u.purpose)
        for u in store.specific_uses(copy.identifier, copy.dataset)
        if u.at >= copy.since
    ]
    first: dict[tuple[str, str], UseHit] = {}
    for at, event_id, job, purpose in sorted(candidates):
        if (job, purpose) not in first:
            rules = tuple(r.id for r in policy.violated(copy.origin.purpose, purpose))
            first[(job, purpose)] = UseHit(job, purpose, from_micros(at), event_id, rules)
    return list(first.values())


def build_trace(store: LineageStore, policy: Policy, ref: str) -> Trace | None:
    node = store.identifier(ref)
    if node is None:
        return None
    copies = store.copies_of_identifier(ref)
    by_origin: dict[Origin, list[Copy]] = {}
    for copy in copies:
        by_origin.setdefault(copy.origin, []).append(copy)
    origins: list[OriginTrace] = []
    for origin, group in sorted(by_origin.items()):
        nodes = {
            c.dataset: TraceNode(
                c.dataset, from_micros(c.since), c.event_id, c.job, _uses(store, policy, c)
            )
            for c in group
        }
        root: TraceNode | None = None
        for copy in sorted(group, key=lambda c: c.rank):
            if copy.source is None:
                root = nodes[copy.dataset]
            elif copy.source in nodes:
                nodes[copy.source].children.append(nodes[copy.dataset])
        if root is not None:
            origins.append(OriginTrace(origin, policy.is_tracked_origin(origin.purpose), root))
    return Trace(node, origins)
