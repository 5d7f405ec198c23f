"""Incremental taint propagation: touch only what a change makes reachable earlier.

State is one ``Copy`` per (identifier, dataset, origin) holding the earliest time that origin's
copy of the identifier can be in the dataset. A change (a collection, a flow run, a carried
identifier, a use) seeds candidate copies; a worklist relaxes them along flows, keeping a
candidate only when it is strictly earlier than what is stored (Dijkstra-style earliest arrival).
The fixpoint does not depend on the order events arrive in, which the property tests check
against a brute-force computation over the final graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lineage.alerts import Alert, EvidenceStep, alert_id
from lineage.errors import StoreError
from lineage.events import from_micros
from lineage.model import (
    Copy,
    FlowEdge,
    IdentifierFacts,
    IdentifierNode,
    Origin,
    UseEdge,
    first_run_from,
)
from lineage.policy import Policy, Rule
from lineage.ports import LineageStore
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddSpecificUse,
    AddUseRun,
    Change,
)

MAX_EVIDENCE_STEPS = 10_000
_UNKNOWN = IdentifierFacts(node=None)


def _identifier_of(change: Change) -> str | None:
    match change.mutation:
        case AddCollection(collection=c):
            return c.identifier
        case AddCarriedFlow(flow=f):
            return f.identifier
        case AddSpecificUse(use=u):
            return u.identifier
    return None


@dataclass(frozen=True, slots=True)
class _Violation:
    copy: Copy
    rule: Rule
    job: str
    purpose: str
    at: int
    event_id: str

    @property
    def rank(self) -> tuple[int, str]:
        return (self.at, self.event_id)


class PropagationPass:
    """One propagation over a batch of changes; holds read-your-writes state until flushed."""

    def __init__(self, store: LineageStore, policy: Policy) -> None:
        self._store = store
        self._policy = policy
        self._overlay: dict[tuple[str, str], dict[str, Copy]] = {}
        self._loaded: dict[tuple[str, str], dict[str, Copy]] = {}
        self._flows: dict[str, list[FlowEdge]] = {}
        self._uses: dict[str, list[UseEdge]] = {}
        self._facts: dict[str, IdentifierFacts] = {}
        self._queue: deque[Copy] = deque()
        self._violations: dict[str, _Violation] = {}

    # -- reads through the overlay -------------------------------------------------------
    def _prefetch(self, identifiers: Iterable[str]) -> None:
        """Read everything about many identifiers in one store call, not six calls each."""
        missing = [ref for ref in dict.fromkeys(identifiers) if ref not in self._facts]
        if missing:
            found = self._store.identifier_facts(missing)
            for ref in missing:
                self._facts[ref] = found.get(ref, _UNKNOWN)

    def _about(self, identifier: str) -> IdentifierFacts:
        facts = self._facts.get(identifier)
        if facts is None:
            self._prefetch((identifier,))
            facts = self._facts[identifier]
        return facts

    def _stored(self, identifier: str, dataset: str) -> dict[str, Copy]:
        pair = (identifier, dataset)
        found = self._loaded.get(pair)
        if found is None:
            copies = self._about(identifier).copies
            found = self._loaded[pair] = {c.origin.key: c for c in copies if c.dataset == dataset}
        return found

    def _copy(self, identifier: str, dataset: str, origin_key: str) -> Copy | None:
        overlaid = self._overlay.get((identifier, dataset))
        if overlaid and origin_key in overlaid:
            return overlaid[origin_key]
        return self._stored(identifier, dataset).get(origin_key)

    def _copies(self, identifier: str, dataset: str) -> list[Copy]:
        merged = dict(self._stored(identifier, dataset))
        merged.update(self._overlay.get((identifier, dataset), {}))
        return list(merged.values())

    def _node(self, identifier: str) -> IdentifierNode | None:
        return self._about(identifier).node

    def _erased_before(self, identifier: str, at: int) -> bool:
        node = self._node(identifier)
        return node is not None and node.erased_at is not None and at > node.erased_at

    def _flows_from(self, dataset: str) -> list[FlowEdge]:
        if dataset not in self._flows:
            self._flows[dataset] = self._store.flows_from(dataset)
        return self._flows[dataset]

    def _uses_of(self, dataset: str) -> list[UseEdge]:
        if dataset not in self._uses:
            self._uses[dataset] = self._store.uses_of(dataset)
        return self._uses[dataset]

    # -- the worklist --------------------------------------------------------------------
    def offer(self, candidate: Copy) -> None:
        if self._erased_before(candidate.identifier, candidate.since):
            return
        current = self._copy(candidate.identifier, candidate.dataset, candidate.origin.key)
        if current is not None and current.rank <= candidate.rank:
            return
        pair = (candidate.identifier, candidate.dataset)
        self._overlay.setdefault(pair, {})[candidate.origin.key] = candidate
        self._queue.append(candidate)

    def _hop(self, copy: Copy, target: str, job: str, at: int, event_id: str) -> None:
        self.offer(Copy(copy.identifier, target, copy.origin, at, event_id, copy.dataset, job))

    def _check_use(self, copy: Copy, job: str, purpose: str, at: int, event_id: str) -> None:
        if self._erased_before(copy.identifier, at):
            return
        for rule in self._policy.violated(copy.origin.purpose, purpose):
            aid = alert_id(rule.id, copy.identifier, copy.origin.key, copy.dataset, job, purpose)
            found = _Violation(copy, rule, job, purpose, at, event_id)
            known = self._violations.get(aid)
            if known is None or found.rank < known.rank:
                self._violations[aid] = found

    def _relax(self, copy: Copy) -> None:
        for flow in self._flows_from(copy.dataset):
            run = first_run_from(flow.runs, copy.since)
            if run is not None:
                self._hop(copy, flow.target, flow.job, run.at, run.event_id)
        facts = self._about(copy.identifier)
        for carried in facts.carried:
            if carried.source == copy.dataset and carried.at >= copy.since:
                self._hop(copy, carried.target, carried.job, carried.at, carried.event_id)
        for use in self._uses_of(copy.dataset):
            run = first_run_from(use.runs, copy.since)
            if run is not None:
                self._check_use(copy, use.job, use.purpose, run.at, run.event_id)
        for specific in facts.specific:
            if specific.dataset == copy.dataset and specific.at >= copy.since:
                self._check_use(
                    copy, specific.job, specific.purpose, specific.at, specific.event_id
                )

    # -- seeds from changes --------------------------------------------------------------
    def seed(self, change: Change) -> None:
        mutation = change.mutation
        match mutation:
            case AddCollection(collection=c):
                origin = Origin(c.dataset, c.purpose)
                self.offer(Copy(c.identifier, c.dataset, origin, c.at, c.event_id))
            case AddFlowRun(source=source, target=target, job=job, run=run):
                for copy in self._arrived(source, change.previous_run, run.at):
                    self._hop(copy, target, job, run.at, run.event_id)
            case AddUseRun(dataset=dataset, job=job, purpose=purpose, run=run):
                for copy in self._arrived(dataset, change.previous_run, run.at):
                    self._check_use(copy, job, purpose, run.at, run.event_id)
            case AddCarriedFlow(flow=f):
                for copy in self._copies(f.identifier, f.source):
                    if copy.since <= f.at:
                        self._hop(copy, f.target, f.job, f.at, f.event_id)
            case AddSpecificUse(use=u):
                for copy in self._copies(u.identifier, u.dataset):
                    if copy.since <= u.at:
                        self._check_use(copy, u.job, u.purpose, u.at, u.event_id)
            case _:
                pass

    def _arrived(self, dataset: str, after: int | None, upto: int) -> list[Copy]:
        copies = list(self._store.copies_in(dataset, after, upto))
        self._prefetch(c.identifier for c in copies)
        return copies

    def run(self, changes: Sequence[Change]) -> list[Alert]:
        self._prefetch(ident for change in changes if (ident := _identifier_of(change)) is not None)
        for change in changes:
            self.seed(change)
            while self._queue:
                self._relax(self._queue.popleft())
        candidates = [self._alert(aid, v) for aid, v in sorted(self._violations.items())]
        if self._overlay:
            self._store.put_copies([c for by in self._overlay.values() for c in by.values()])
        return candidates

    # -- evidence ------------------------------------------------------------------------
    def _evidence(self, copy: Copy) -> list[EvidenceStep]:
        steps: list[EvidenceStep] = []
        current: Copy | None = copy
        while current is not None and len(steps) < MAX_EVIDENCE_STEPS:
            if current.source is None:
                steps.append(
                    EvidenceStep(
                        kind="collected",
                        event_id=current.event_id,
                        at=from_micros(current.since),
                        dataset=current.dataset,
                        purpose=current.origin.purpose,
                    )
                )
                break
            steps.append(
                EvidenceStep(
                    kind="flowed",
                    event_id=current.event_id,
                    at=from_micros(current.since),
                    dataset=current.dataset,
                    source=current.source,
                    job=current.job,
                )
            )
            current = self._copy(current.identifier, current.source, current.origin.key)
        steps.reverse()
        return steps

    def _alert(self, aid: str, violation: _Violation) -> Alert:
        copy = violation.copy
        node = self._node(copy.identifier)
        if node is None:  # projection always writes the identifier before its copies
            raise StoreError(f"store lost identifier node {copy.identifier}")
        use = EvidenceStep(
            kind="used",
            event_id=violation.event_id,
            at=from_micros(violation.at),
            dataset=copy.dataset,
            job=violation.job,
            purpose=violation.purpose,
        )
        return Alert(
            alert_id=aid,
            rule=violation.rule.id,
            severity=violation.rule.severity,
            identifier=copy.identifier,
            category=node.category,
            display=node.display,
            subjects=sorted(node.subjects),
            origin_dataset=copy.origin.dataset,
            origin_purpose=copy.origin.purpose,
            use_dataset=copy.dataset,
            use_job=violation.job,
            use_purpose=violation.purpose,
            occurred_at=from_micros(violation.at),
            evidence=[*self._evidence(copy), use],
        )
