"""Where did this identifier go? The downstream tree of one identifier, per origin.

Built from the store's copies alone: each copy points at the dataset it came from, so the
copies of one origin (in one life of the identifier, between erasures) form a tree rooted at
the collection.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from lineage.events import from_micros
from lineage.model import NO_EPOCH, Copy, IdentifierNode, Origin, alive_until
from lineage.policy import Policy
from lineage.ports import Facts, LineageStore, Request


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
    epoch: int = NO_EPOCH  # the erasure this life follows, if any


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


def _uses(facts: Facts, policy: Policy, copy: Copy, as_of: int | None) -> list[UseHit]:
    """The first use of this copy by each (job, purpose), dataset-wide or of this identifier,
    while the copy lived (until the identifier's next erasure), up to ``as_of``."""
    limit = alive_until(facts.identifiers[copy.identifier].erasures, copy.since)
    candidates: list[tuple[int, str, str, str]] = [
        (u.run.at, u.run.event_id, u.job, u.to) for u in facts.uses[(copy.dataset, copy.since)]
    ]
    candidates += [
        (u.at, u.event_id, u.job, u.purpose)
        for u in facts.specific[(copy.identifier, copy.dataset)]
        if u.at >= copy.since
    ]
    first: dict[tuple[str, str], UseHit] = {}
    for at, event_id, job, purpose in sorted(candidates):
        if (limit is not None and at > limit) or (as_of is not None and at > as_of):
            continue
        if (job, purpose) not in first:
            rules = tuple(r.id for r in policy.violated(copy.origin.purpose, purpose))
            first[(job, purpose)] = UseHit(job, purpose, from_micros(at), event_id, rules)
    return list(first.values())


def build_trace(
    store: LineageStore, policy: Policy, ref: str, as_of: int | None = None
) -> Trace | None:
    """Two batched reads: the identifier's history, then the uses of each of its copies.

    ``as_of`` (event time): the tree as it stood then, from the copies that had arrived, the
    uses and erasures up to it (docs/time-travel.md); None when nothing had been collected.
    """
    found = store.fetch(Request(identifiers={ref}, histories={ref}))
    node = found.identifiers.get(ref)
    if node is None:
        return None
    copies = found.histories[ref].copies
    if as_of is not None:
        copies = tuple(c for c in copies if c.since <= as_of)
        if not copies:
            return None
        node = replace(node, erasures=tuple(e for e in node.erasures if e <= as_of))
    facts = store.fetch(
        Request(
            identifiers={ref},
            uses={(c.dataset, c.since) for c in copies},
            specific={(ref, c.dataset) for c in copies},
        )
    )
    for c in copies:
        facts.uses.setdefault((c.dataset, c.since), [])
        facts.specific.setdefault((ref, c.dataset), [])
    by_origin: dict[tuple[Origin, int], list[Copy]] = {}
    for copy in copies:
        by_origin.setdefault((copy.origin, copy.epoch), []).append(copy)
    origins: list[OriginTrace] = []
    for (origin, epoch), group in sorted(by_origin.items()):
        nodes = {
            c.dataset: TraceNode(
                c.dataset, from_micros(c.since), c.event_id, c.job,
                _uses(facts, policy, c, as_of),
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
            tracked = policy.is_tracked_origin(origin.purpose)
            origins.append(OriginTrace(origin, tracked, root, epoch))
    return Trace(node, origins)
