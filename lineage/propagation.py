"""Incremental taint propagation: touch only what a change makes reachable earlier.

State is one ``Copy`` per (identifier, dataset, origin, epoch) holding the least
``rank = (since, hops, event_id)`` over every derivation (docs/semantics.md). A change (a
collection, a flow run, a carried identifier, a use) seeds candidates; a worklist relaxes them
along flows and keeps a candidate when it ranks lower than what is stored, or re-processes the
copy when it ranks equal (its chain changed upstream, so its evidence must follow). Edges are
monotone and strictly increasing in rank, so the fixpoint is unique: the result is a function of
the set of events, whatever their order or batching. An erasure or a new subject recomputes
that one identifier from its collections instead.

The worklist runs in waves: each wave's reads go to the store as one batched ``fetch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lineage.alerts import Alert, EvidenceStep, alert_id
from lineage.errors import StoreError
from lineage.events import from_micros, micros
from lineage.model import (
    CarriedFlow,
    Copy,
    IdentifierNode,
    Origin,
    SpecificUse,
    alive_until,
    epoch_of,
)
from lineage.policy import Policy, Rule
from lineage.ports import Facts, FirstRun, LineageStore, Request, Window, Writes
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddSpecificUse,
    AddUseRun,
    Change,
    MarkErased,
    PutIdentifier,
)

#: Evidence chains strictly decrease in rank, so they end; this only guards a corrupt store.
MAX_EVIDENCE_STEPS = 100_000

CopySlot = tuple[str, int]  # (origin key, epoch) within one (identifier, dataset)


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


class _Reads:
    """The pass's view: stored facts (fetched in batches, cached) under its own writes."""

    def __init__(self, store: LineageStore) -> None:
        self._store = store
        self.cache = Facts()
        self.overlay: dict[tuple[str, str], dict[CopySlot, Copy]] = {}
        self.dropped: set[str] = set()
        self._absent_nodes: set[str] = set()
        self._absent_alerts: set[str] = set()

    def load(self, request: Request) -> None:
        c = self.cache
        missing = Request(
            identifiers=request.identifiers - c.identifiers.keys() - self._absent_nodes,
            copies=request.copies - c.copies.keys(),
            carried=request.carried - c.carried.keys(),
            specific=request.specific - c.specific.keys(),
            flows=request.flows - c.flows.keys(),
            uses=request.uses - c.uses.keys(),
            arrivals=request.arrivals - c.arrivals.keys(),
            histories=request.histories - c.histories.keys(),
            alerts=request.alerts - c.alerts.keys() - self._absent_alerts,
        )
        if not missing:
            return
        found = self._store.fetch(missing)
        c.identifiers.update(found.identifiers)
        self._absent_nodes |= missing.identifiers - found.identifiers.keys()
        c.alerts.update(found.alerts)
        self._absent_alerts |= missing.alerts - found.alerts.keys()
        for pair in missing.copies:
            c.copies[pair] = found.copies.get(pair, [])
        for pair in missing.carried:
            c.carried[pair] = found.carried.get(pair, [])
        for pair in missing.specific:
            c.specific[pair] = found.specific.get(pair, [])
        for since in missing.flows:
            c.flows[since] = found.flows.get(since, [])
        for since in missing.uses:
            c.uses[since] = found.uses.get(since, [])
        for window in missing.arrivals:
            c.arrivals[window] = found.arrivals.get(window, [])
        for ref in missing.histories:
            if ref in found.histories:
                c.histories[ref] = found.histories[ref]

    def node(self, identifier: str) -> IdentifierNode | None:
        return self.cache.identifiers.get(identifier)

    def erasures(self, identifier: str) -> tuple[int, ...]:
        node = self.node(identifier)
        return node.erasures if node is not None else ()

    def copies_at(self, identifier: str, dataset: str) -> dict[CopySlot, Copy]:
        merged: dict[CopySlot, Copy] = {}
        if identifier not in self.dropped:
            merged = {
                (c.origin.key, c.epoch): c for c in self.cache.copies[(identifier, dataset)]
            }
        merged.update(self.overlay.get((identifier, dataset), {}))
        return merged

    def current(self, copy: Copy) -> Copy | None:
        return self.copies_at(copy.identifier, copy.dataset).get((copy.origin.key, copy.epoch))

    def overlaid(self, copy: Copy) -> bool:
        """Changed in this pass (and so relaxed on its own)."""
        slot = (copy.origin.key, copy.epoch)
        return slot in self.overlay.get((copy.identifier, copy.dataset), {})

    def carried(self, identifier: str, source: str) -> list[CarriedFlow]:
        return self.cache.carried[(identifier, source)]

    def specific(self, identifier: str, dataset: str) -> list[SpecificUse]:
        return self.cache.specific[(identifier, dataset)]

    def flows(self, dataset: str, since: int) -> list[FirstRun]:
        return self.cache.flows[(dataset, since)]

    def uses(self, dataset: str, since: int) -> list[FirstRun]:
        return self.cache.uses[(dataset, since)]

    def arrivals(self, window: Window) -> list[Copy]:
        return [c for c in self.cache.arrivals[window] if c.identifier not in self.dropped]


def _within(limit: int | None, at: int) -> bool:
    return limit is None or at <= limit


class PropagationPass:
    """One propagation over a batch of changes; returns the alert writes it decided."""

    def __init__(self, store: LineageStore, policy: Policy) -> None:
        self._store = store
        self._policy = policy
        self._reads = _Reads(store)
        self._violations: dict[str, _Violation] = {}

    # -- the worklist ------------------------------------------------------------------
    def _offer(self, candidate: Copy) -> bool:
        """Keep a lower-ranked candidate; re-process an equal one (same derivation, whose
        parent changed in this pass: its evidence must follow)."""
        current = self._reads.current(candidate)
        if current is not None and current.rank < candidate.rank:
            return False
        pair = (candidate.identifier, candidate.dataset)
        slot = (candidate.origin.key, candidate.epoch)
        self._reads.overlay.setdefault(pair, {})[slot] = candidate
        return True

    def _settle(self, candidates: list[Copy]) -> None:
        reads = self._reads
        while candidates:
            reads.load(
                Request(
                    identifiers={c.identifier for c in candidates},
                    copies={(c.identifier, c.dataset) for c in candidates},
                )
            )
            accepted = {c.key: c for c in candidates if self._offer(c)}
            live = [c for c in accepted.values() if reads.current(c) is c]
            reads.load(
                Request(
                    flows={(c.dataset, c.since) for c in live},
                    uses={(c.dataset, c.since) for c in live},
                    carried={(c.identifier, c.dataset) for c in live},
                    specific={(c.identifier, c.dataset) for c in live},
                )
            )
            candidates = [hop for copy in live for hop in self._relax(copy)]

    def _relax(self, copy: Copy) -> Iterable[Copy]:
        reads = self._reads
        limit = alive_until(reads.erasures(copy.identifier), copy.since)
        for flow in reads.flows(copy.dataset, copy.since):
            if _within(limit, flow.run.at):
                yield self._hop(copy, flow.to, flow.job, flow.run.at, flow.run.event_id)
        for carried in reads.carried(copy.identifier, copy.dataset):
            if carried.at >= copy.since and _within(limit, carried.at):
                yield self._hop(copy, carried.target, carried.job, carried.at, carried.event_id)
        for use in reads.uses(copy.dataset, copy.since):
            if _within(limit, use.run.at):
                self._check_use(copy, use.job, use.to, use.run.at, use.run.event_id)
        for specific in reads.specific(copy.identifier, copy.dataset):
            if specific.at >= copy.since and _within(limit, specific.at):
                self._check_use(copy, specific.job, specific.purpose, specific.at,
                                specific.event_id)  # fmt: skip

    @staticmethod
    def _hop(copy: Copy, target: str, job: str, at: int, event_id: str) -> Copy:
        hops = copy.hops + 1 if at == copy.since else 0
        return Copy(copy.identifier, target, copy.origin, at, event_id, copy.dataset, job,
                    hops, copy.epoch)  # fmt: skip

    def _check_use(self, copy: Copy, job: str, purpose: str, at: int, event_id: str) -> None:
        for rule in self._policy.violated(copy.origin.purpose, purpose):
            aid = alert_id(rule.id, copy.identifier, copy.origin.key, copy.dataset, job, purpose)
            found = _Violation(copy, rule, job, purpose, at, event_id)
            known = self._violations.get(aid)
            if known is None or found.rank < known.rank or (
                found.rank == known.rank and found.copy.rank <= known.copy.rank
            ):
                self._violations[aid] = found

    # -- seeds from changes ------------------------------------------------------------
    def _recomputed(self, changes: Sequence[Change]) -> set[str]:
        """Identifiers whose erasures changed, or that gained a subject after something was
        derived from them: recompute them whole (a node created in this batch has nothing
        derived yet, so its seeds cover it)."""
        refs: set[str] = set()
        for change in changes:
            match change.mutation:
                case MarkErased(identifier=ref):
                    refs.add(ref)
                case PutIdentifier(ref=ref, subject=subject) if (
                    subject is not None and not change.created
                ):
                    refs.add(ref)
        return refs

    def _seed(self, changes: Sequence[Change]) -> list[Copy]:
        reads = self._reads
        recomputed = self._recomputed(changes)
        reads.load(Request(histories=recomputed, identifiers=set(recomputed)))
        reads.dropped |= recomputed
        windows: dict[Change, Window] = {}
        request = Request()
        for change in changes:
            match change.mutation:
                case AddCollection(collection=c):
                    request.identifiers.add(c.identifier)
                case AddFlowRun(source=dataset, run=run):
                    windows[change] = (dataset, change.previous_run, run.at, None)
                case AddUseRun(dataset=dataset, purpose=purpose, run=run):
                    # A use only matters to copies whose origin it violates: a use of a whole
                    # dataset of a million copies reads just those (often none).
                    origins = self._policy.violating_origins(purpose)
                    if origins:
                        windows[change] = (dataset, change.previous_run, run.at, origins)
                case AddCarriedFlow(flow=f):
                    request.identifiers.add(f.identifier)
                    request.copies.add((f.identifier, f.source))
                case AddSpecificUse(use=u):
                    request.identifiers.add(u.identifier)
                    request.copies.add((u.identifier, u.dataset))
        request.arrivals = set(windows.values())
        reads.load(request)
        arrived = {c.identifier for window in windows.values() for c in reads.arrivals(window)}
        reads.load(Request(identifiers=arrived))

        seeds: list[Copy] = []
        for ref in sorted(recomputed):
            history = reads.cache.histories.get(ref)
            erasures = reads.erasures(ref)
            for c in history.collections if history else ():
                origin = Origin.of(c.dataset, c.purpose)
                seeds.append(Copy(ref, origin.dataset, origin, c.at, c.event_id,
                                  epoch=epoch_of(erasures, c.at)))  # fmt: skip
        for change in changes:
            m = change.mutation
            match m:
                case AddCollection(collection=c) if c.identifier not in recomputed:
                    epoch = epoch_of(reads.erasures(c.identifier), c.at)
                    origin = Origin.of(c.dataset, c.purpose)
                    seeds.append(Copy(c.identifier, origin.dataset, origin, c.at, c.event_id,
                                      epoch=epoch))  # fmt: skip
                case AddFlowRun(target=target, job=job, run=run):
                    for copy in self._arrived(windows[change]):
                        seeds.append(self._hop(copy, target, job, run.at, run.event_id))
                case AddUseRun(job=job, purpose=purpose, run=run) if change in windows:
                    for copy in self._arrived(windows[change]):
                        self._check_use(copy, job, purpose, run.at, run.event_id)
                case AddCarriedFlow(flow=f) if f.identifier not in recomputed:
                    limit_of = reads.erasures(f.identifier)
                    for copy in reads.copies_at(f.identifier, f.source).values():
                        if copy.since <= f.at and _within(alive_until(limit_of, copy.since), f.at):
                            seeds.append(self._hop(copy, f.target, f.job, f.at, f.event_id))
                case AddSpecificUse(use=u) if u.identifier not in recomputed:
                    limit_of = reads.erasures(u.identifier)
                    for copy in reads.copies_at(u.identifier, u.dataset).values():
                        if copy.since <= u.at and _within(alive_until(limit_of, copy.since), u.at):
                            self._check_use(copy, u.job, u.purpose, u.at, u.event_id)
        return seeds

    def _arrived(self, window: Window) -> Iterable[Copy]:
        """Stored copies a new whole-dataset run reaches that were still alive then (those
        changed in this pass are relaxed on their own, against every run)."""
        reads = self._reads
        at = window[2]
        for copy in reads.arrivals(window):
            if not reads.overlaid(copy) and _within(
                alive_until(reads.erasures(copy.identifier), copy.since), at
            ):
                yield copy

    # -- the pass ------------------------------------------------------------------------
    def run(self, changes: Sequence[Change]) -> Writes:
        self._settle(self._seed(changes))
        writes = Writes(dropped=set(self._reads.dropped))
        writes.copies = [c for by in self._reads.overlay.values() for c in by.values()]
        writes.alerts = self._decide_alerts()
        return writes

    def _decide_alerts(self) -> list[Alert]:
        reads = self._reads
        withdrawn_ids = {
            aid
            for ref in reads.dropped
            if (history := reads.cache.histories.get(ref)) is not None
            for aid in history.alert_ids
        }
        reads.load(Request(alerts=set(self._violations) | withdrawn_ids))
        rendered = self._render({
            aid: v for aid, v in self._violations.items() if self._may_change(aid, v)
        })  # fmt: skip
        decided: list[Alert] = []
        for aid in sorted(set(self._violations) | withdrawn_ids):
            stored = reads.cache.alerts.get(aid)
            fresh = rendered.get(aid)
            if fresh is None and aid in self._violations:
                continue  # a later violation of a standing alert: nothing to revise
            if fresh is None:  # a recomputed identifier no longer violates here
                if stored is not None and stored.status == "active":
                    decided.append(
                        stored.model_copy(update={"status": "withdrawn",
                                                  "revision": stored.revision + 1})
                    )  # fmt: skip
                continue
            if stored is None:
                decided.append(fresh)
                continue
            if not (fresh.identifier in reads.dropped or stored.status == "withdrawn"
                    or self._wins(fresh, stored)):  # fmt: skip
                continue
            if not fresh.same_content(stored):
                decided.append(fresh.model_copy(update={"revision": stored.revision + 1}))
        return decided

    def _may_change(self, aid: str, violation: _Violation) -> bool:
        """Rendering costs; a violation later than a standing alert's changes nothing."""
        stored = self._reads.cache.alerts.get(aid)
        if stored is None or stored.status != "active":
            return True
        if violation.copy.identifier in self._reads.dropped:
            return True
        return violation.rank <= (micros(stored.occurred_at), stored.evidence[-1].event_id)

    @staticmethod
    def _wins(fresh: Alert, stored: Alert) -> bool:
        """Strictly earlier, or the same violation whose evidence may have changed."""
        ranks = [(micros(a.occurred_at), a.evidence[-1].event_id) for a in (fresh, stored)]
        return ranks[0] <= ranks[1]

    # -- evidence ------------------------------------------------------------------------
    def _render(self, violations: dict[str, _Violation]) -> dict[str, Alert]:
        reads = self._reads
        reads.load(Request(copies={(v.copy.identifier, v.copy.dataset)
                                   for v in violations.values()}))  # fmt: skip
        chains = {aid: [reads.current(v.copy) or v.copy] for aid, v in violations.items()}
        open_chains = dict(chains)
        steps = 0
        while open_chains:
            steps += 1
            if steps > MAX_EVIDENCE_STEPS:
                raise StoreError("evidence chain does not end at a collection")
            reads.load(
                Request(
                    copies={
                        (ch[-1].identifier, ch[-1].source)
                        for ch in open_chains.values()
                        if ch[-1].source is not None
                    }
                )
            )
            still: dict[str, list[Copy]] = {}
            for aid, chain in open_chains.items():
                last = chain[-1]
                if last.source is None:
                    continue
                slot = (last.origin.key, last.epoch)
                parent = reads.copies_at(last.identifier, last.source).get(slot)
                if parent is None or parent.rank >= last.rank:
                    raise StoreError(
                        f"broken evidence chain for alert {aid} at {last.dataset}"
                    )
                chain.append(parent)
                still[aid] = chain
            open_chains = still
        reads.load(Request(identifiers={v.copy.identifier for v in violations.values()}))
        return {aid: self._alert(aid, violations[aid], chain) for aid, chain in chains.items()}

    def _alert(self, aid: str, violation: _Violation, chain: list[Copy]) -> Alert:
        copy = violation.copy
        node = self._reads.node(copy.identifier)
        if node is None:  # projection always writes the identifier before its copies
            raise StoreError(f"store lost identifier node {copy.identifier}")
        evidence = [_step(c) for c in reversed(chain)]
        evidence.append(
            EvidenceStep.model_construct(
                kind="used", event_id=violation.event_id, at=from_micros(violation.at),
                dataset=copy.dataset, source=None, job=violation.job, purpose=violation.purpose)
        )  # fmt: skip
        # Built from stored facts the models already validated: constructed, not re-validated
        # (a test checks that validating them changes nothing).
        return Alert.model_construct(
            schema_version=1,
            alert_id=aid,
            revision=0,
            status="active",
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
            evidence=evidence,
        )


def _step(copy: Copy) -> EvidenceStep:
    at = from_micros(copy.since)
    if copy.source is None:
        return EvidenceStep.model_construct(
            kind="collected", event_id=copy.event_id, at=at, dataset=copy.dataset, source=None,
            job=None, purpose=copy.origin.purpose)  # fmt: skip
    return EvidenceStep.model_construct(
        kind="flowed", event_id=copy.event_id, at=at, dataset=copy.dataset, source=copy.source,
        job=copy.job, purpose=None)  # fmt: skip
