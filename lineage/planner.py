"""The merge rules, once: a batch's mutations over the stored state of the keys they touch
become the Changes to propagate and the rows each store writes (SQL or ``UNWIND``).

Every fact is a set member keyed on what the event says (a collection, a run, a carried
identifier, a use, an erasure), so re-applying an event changes nothing and replay or
redelivery is a no-op. Pure: stores read :class:`State` for :class:`StateKeys` and write
:class:`FactRows`; no driver type comes in or goes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lineage.errors import StoreError
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddReadRun,
    AddSpecificUse,
    AddUseRun,
    Change,
    MarkErased,
    Mutation,
    PutDataset,
    PutIdentifier,
    PutJob,
)

CollectionKey = tuple[str, str, str, int, str]  # identifier, dataset, purpose, at, event_id
#: kind ("flow" | "use" | "read"), source|dataset, target|purpose|job, job: a read's ``b`` is
#: its job, as in ``GraphStore.edges``.
EdgeKey = tuple[str, str, str, str]
RunKey = tuple[str, str, str, str, int, str]  # EdgeKey + (at, event_id)
CarriedKey = tuple[str, str, str, str, int, str]  # identifier, source, target, job, at, eid
SpecificKey = tuple[str, str, str, str, int, str]  # identifier, dataset, purpose, job, at, eid
Row = dict[str, Any]


def _run_key(m: AddFlowRun | AddUseRun | AddReadRun) -> RunKey:
    if isinstance(m, AddFlowRun):
        return ("flow", m.source, m.target, m.job, m.run.at, m.run.event_id)
    if isinstance(m, AddReadRun):
        return ("read", m.dataset, m.job, m.job, m.run.at, m.run.event_id)
    return ("use", m.dataset, m.purpose, m.job, m.run.at, m.run.event_id)


def _carried_key(m: AddCarriedFlow) -> CarriedKey:
    f = m.flow
    return (f.identifier, f.source, f.target, f.job, f.at, f.event_id)


def _specific_key(m: AddSpecificUse) -> SpecificKey:
    u = m.use
    return (u.identifier, u.dataset, u.purpose, u.job, u.at, u.event_id)


def _collection_key(m: AddCollection) -> CollectionKey:
    c = m.collection
    return (c.identifier, c.dataset, c.purpose, c.at, c.event_id)


@dataclass
class StateKeys:
    """Every key a batch touches; sorted lists so lock order is fixed on shared stores."""

    identifiers: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    collections: list[CollectionKey] = field(default_factory=list)
    runs: list[RunKey] = field(default_factory=list)
    carried: list[CarriedKey] = field(default_factory=list)
    specific: list[SpecificKey] = field(default_factory=list)


def keys_of(mutations: Sequence[Mutation]) -> StateKeys:
    identifiers: set[str] = set()
    datasets: set[str] = set()
    jobs: set[str] = set()
    collections: set[CollectionKey] = set()
    runs: set[RunKey] = set()
    carried: set[CarriedKey] = set()
    specific: set[SpecificKey] = set()
    for m in mutations:
        match m:
            case PutIdentifier():
                identifiers.add(m.ref)
            case MarkErased():
                identifiers.add(m.identifier)
            case PutDataset():
                datasets.add(m.key)
            case PutJob():
                jobs.add(m.name)
            case AddCollection():
                collections.add(_collection_key(m))
            case AddFlowRun() | AddUseRun() | AddReadRun():
                runs.add(_run_key(m))
            case AddCarriedFlow():
                carried.add(_carried_key(m))
            case AddSpecificUse():
                specific.add(_specific_key(m))
    return StateKeys(
        sorted(identifiers), sorted(datasets), sorted(jobs), sorted(collections),
        sorted(runs), sorted(carried), sorted(specific),
    )  # fmt: skip


@dataclass
class NodeState:
    erasures: set[int] = field(default_factory=set)
    subjects: set[str] = field(default_factory=set)


@dataclass
class State:
    """What the store holds for the touched keys. ``edges`` are the (kind, a, b, job) of
    existing flow/use/read edges among the runs' edges; ``previous`` maps each flow or use run
    key that is not stored yet to the latest stored run time of its edge strictly before it
    (or None); a read's is not needed (nothing propagates along it)."""

    identifiers: dict[str, NodeState] = field(default_factory=dict)
    datasets: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    collections: set[CollectionKey] = field(default_factory=set)
    edges: set[EdgeKey] = field(default_factory=set)
    runs: set[RunKey] = field(default_factory=set)
    previous: dict[RunKey, int | None] = field(default_factory=dict)
    carried: set[CarriedKey] = field(default_factory=set)
    specific: set[SpecificKey] = field(default_factory=set)


@dataclass
class FactRows:
    identifiers: list[Row] = field(default_factory=list)  # ref, category, display
    subjects: list[Row] = field(default_factory=list)  # ref, subject
    erasures: list[Row] = field(default_factory=list)  # ref, at, event_id
    datasets: list[Row] = field(default_factory=list)  # key, system, name
    jobs: list[Row] = field(default_factory=list)  # name
    collections: list[Row] = field(default_factory=list)  # ref, dataset, purpose, at, event_id
    edges: list[Row] = field(default_factory=list)  # kind, a, b, job
    runs: list[Row] = field(default_factory=list)  # kind, a, b, job, at, event_id
    carried: list[Row] = field(default_factory=list)  # ref, source, target, job, at, event_id
    specific: list[Row] = field(default_factory=list)  # ref, dataset, purpose, job, at, eid

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass
class Plan:
    changes: list[Change]
    rows: FactRows


class _Planner:
    def __init__(self, state: State) -> None:
        self.s = state
        self.rows = FactRows()
        self.batch_runs: dict[tuple[str, str, str, str], list[int]] = {}
        self.created: set[str] = set()

    def apply(self, m: Mutation) -> Change | None:
        s, rows = self.s, self.rows
        match m:
            case PutIdentifier():
                node = s.identifiers.get(m.ref)
                fresh = node is None
                if node is None:
                    self.created.add(m.ref)
                    node = s.identifiers[m.ref] = NodeState()
                    rows.identifiers.append(
                        {"ref": m.ref, "category": m.category, "display": m.display}
                    )
                if m.subject is not None and m.subject not in node.subjects:
                    node.subjects.add(m.subject)
                    rows.subjects.append({"ref": m.ref, "subject": m.subject})
                    return Change(m, created=m.ref in self.created)
                return Change(m, created=True) if fresh else None
            case PutDataset():
                if m.key in s.datasets:
                    return None
                s.datasets.add(m.key)
                rows.datasets.append({"key": m.key, "system": m.system, "name": m.name})
                return Change(m)
            case PutJob():
                if m.name in s.jobs:
                    return None
                s.jobs.add(m.name)
                rows.jobs.append({"name": m.name})
                return Change(m)
            case AddCollection(collection=c):
                ckey = _collection_key(m)
                if ckey in s.collections:
                    return None
                s.collections.add(ckey)
                rows.collections.append(
                    {"ref": c.identifier, "dataset": c.dataset, "purpose": c.purpose,
                     "at": c.at, "event_id": c.event_id}
                )  # fmt: skip
                return Change(m)
            case AddFlowRun() | AddUseRun() | AddReadRun():
                return self._run(m)
            case AddCarriedFlow(flow=f):
                fkey = _carried_key(m)
                if fkey in s.carried:
                    return None
                s.carried.add(fkey)
                rows.carried.append(
                    {"ref": f.identifier, "source": f.source, "target": f.target,
                     "job": f.job, "at": f.at, "event_id": f.event_id}
                )  # fmt: skip
                return Change(m)
            case AddSpecificUse(use=u):
                ukey = _specific_key(m)
                if ukey in s.specific:
                    return None
                s.specific.add(ukey)
                rows.specific.append(
                    {"ref": u.identifier, "dataset": u.dataset, "purpose": u.purpose,
                     "job": u.job, "at": u.at, "event_id": u.event_id}
                )  # fmt: skip
                return Change(m)
            case MarkErased():
                erased = s.identifiers.get(m.identifier)
                if erased is None:
                    raise StoreError(
                        f"cannot erase identifier {m.identifier}: it was never stored "
                        "(put the identifier before marking it erased)"
                    )
                if m.at in erased.erasures:
                    return None
                erased.erasures.add(m.at)
                rows.erasures.append({"ref": m.identifier, "at": m.at, "event_id": m.event_id})
                return Change(m)
        raise AssertionError(f"unhandled mutation {m!r}")  # pragma: no cover

    def _run(self, m: AddFlowRun | AddUseRun | AddReadRun) -> Change | None:
        s, rows = self.s, self.rows
        rkey = _run_key(m)
        if rkey in s.runs:
            return None
        s.runs.add(rkey)
        edge = rkey[:4]
        kind, a, b, job = edge
        if edge not in s.edges:
            s.edges.add(edge)
            rows.edges.append({"kind": kind, "a": a, "b": b, "job": job})
        rows.runs.append({"kind": kind, "a": a, "b": b, "job": job, "at": m.run.at,
                          "event_id": m.run.event_id})  # fmt: skip
        if isinstance(m, AddReadRun):
            return Change(m)  # nothing propagates along a read: no earlier run is needed
        # Any lower bound of the latest earlier run is safe (a copy is carried by its first
        # run at or after it; a wider window only offers candidates that lose).
        at = m.run.at
        stored = s.previous.get(rkey)
        earlier = [t for t in self.batch_runs.setdefault(edge, []) if t < at]
        if stored is not None:
            earlier.append(stored)
        self.batch_runs[edge].append(at)
        return Change(m, max(earlier) if earlier else None)


def plan(mutations: Sequence[Mutation], state: State) -> Plan:
    """The Changes (in mutation order) and the rows that make them durable; ``state`` is
    updated in place, so later mutations of the batch see earlier ones."""
    planner = _Planner(state)
    changes = [c for m in mutations if (c := planner.apply(m)) is not None]
    return Plan(changes, planner.rows)
