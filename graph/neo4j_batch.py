"""Replay the networkx merge rules over stored state: a batch's Changes and the rows to write.

``Neo4jStore.apply`` reads the state of every key a batch touches in one query; :func:`plan`
walks the mutations in order over that state in memory with exactly the rules of
``NetworkxStore`` (so the Changes, their order and ``previous_run`` agree, even when a key
repeats inside one batch) and returns only the final value of each changed key, as rows for
one ``UNWIND`` per kind. Pure Python: no driver types in or out.

One deliberate difference, only reachable by hand-built batches (projection always puts an
identifier or dataset before any edge on it): a node that an edge created without a put
counts as absent, so a later put reports a Change and stores the attributes, where the
networkx store keeps an attribute-less node that its own reads then fail on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lineage.errors import StoreError
from lineage.model import Run, insert_run
from lineage.projection import (
    AddCarriedFlow,
    AddCollection,
    AddFlowRun,
    AddSpecificUse,
    AddUseRun,
    Change,
    MarkErased,
    Mutation,
    PutDataset,
    PutIdentifier,
    PutJob,
)

CollectionKey = tuple[str, str, str]  # identifier, dataset, purpose
FlowKey = tuple[str, str, str]  # source, target, job
UseKey = tuple[str, str, str]  # dataset, purpose, job
# carried flows and specific uses are keyed by the whole record, as in the networkx store
CarriedKey = tuple[str, str, str, str, int, str]  # identifier, target, source, job, at, event_id
SpecificKey = tuple[str, str, str, str, int, str]  # identifier, purpose, dataset, job, at, eid
Row = dict[str, Any]


def _carried_key(m: AddCarriedFlow) -> CarriedKey:
    f = m.flow
    return (f.identifier, f.target, f.source, f.job, f.at, f.event_id)


def _specific_key(m: AddSpecificUse) -> SpecificKey:
    u = m.use
    return (u.identifier, u.purpose, u.dataset, u.job, u.at, u.event_id)


def keys_of(mutations: Sequence[Mutation]) -> dict[str, list[Any]]:
    """Parameters of ``PREPARE``: every node and edge key the batch touches, nodes sorted.

    Nodes are those an edge hangs on (a carried flow's source and a specific use's dataset
    are edge properties, not endpoints); sorting fixes the order the locks are taken in.
    """
    identifiers: set[str] = set()
    datasets: set[str] = set()
    jobs: set[str] = set()
    collections: set[CollectionKey] = set()
    flows: set[FlowKey] = set()
    uses: set[UseKey] = set()
    carried: set[CarriedKey] = set()
    specific: set[SpecificKey] = set()
    for m in mutations:
        match m:
            case PutIdentifier() | MarkErased():
                identifiers.add(m.ref if isinstance(m, PutIdentifier) else m.identifier)
            case PutDataset():
                datasets.add(m.key)
            case PutJob():
                jobs.add(m.name)
            case AddCollection(collection=c):
                identifiers.add(c.identifier)
                datasets.add(c.dataset)
                collections.add((c.identifier, c.dataset, c.purpose))
            case AddFlowRun():
                datasets.update((m.source, m.target))
                jobs.add(m.job)
                flows.add((m.source, m.target, m.job))
            case AddUseRun():
                datasets.add(m.dataset)
                jobs.add(m.job)
                uses.add((m.dataset, m.purpose, m.job))
            case AddCarriedFlow(flow=f):
                identifiers.add(f.identifier)
                datasets.add(f.target)
                carried.add(_carried_key(m))
            case AddSpecificUse(use=u):
                identifiers.add(u.identifier)
                specific.add(_specific_key(m))
    return {
        "identifiers": sorted(identifiers),
        "datasets": sorted(datasets),
        "jobs": sorted(jobs),
        "collections": [list(k) for k in sorted(collections)],
        "flows": [list(k) for k in sorted(flows)],
        "uses": [list(k) for k in sorted(uses)],
        "carried": [list(k) for k in sorted(carried)],
        "specific": [list(k) for k in sorted(specific)],
    }


@dataclass
class NodeState:
    """``existed``: the node is in the graph as the networkx store counts it: an identifier or
    dataset once put (one that only anchors edges, e.g. a copy's, has no attributes and does
    not count), a job once put or run.
    """

    existed: bool
    erased_at: int | None = None
    subjects: set[str] = field(default_factory=set)


def _runs(run_at: Sequence[int] | None, event_ids: Sequence[str] | None) -> list[Run]:
    return [Run(at, eid) for at, eid in zip(run_at or (), event_ids or (), strict=True)]


@dataclass
class State:
    """What the store holds for the touched keys, as ``PREPARE`` returned it."""

    identifiers: dict[str, NodeState]
    datasets: dict[str, NodeState]
    jobs: dict[str, NodeState]
    collections: dict[CollectionKey, tuple[int, str]]
    flows: dict[FlowKey, list[Run]]
    uses: dict[UseKey, list[Run]]
    carried: set[CarriedKey]
    specific: set[SpecificKey]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> State:
        return cls(
            identifiers={
                n["ref"]: NodeState(n["initialised"], n["erased_at"], set(n["subjects"]))
                for n in record["identifiers"]
            },
            datasets={n["key"]: NodeState(n["initialised"]) for n in record["datasets"]},
            jobs={n["name"]: NodeState(not n["created"]) for n in record["jobs"]},
            collections={(k[0], k[1], k[2]): (at, eid) for k, at, eid in record["collections"]},
            flows={(k[0], k[1], k[2]): _runs(at, eids) for k, at, eids in record["flows"]},
            uses={(k[0], k[1], k[2]): _runs(at, eids) for k, at, eids in record["uses"]},
            carried={(k[0], k[1], k[2], k[3], k[4], k[5]) for k in record["carried"]},
            specific={(k[0], k[1], k[2], k[3], k[4], k[5]) for k in record["specific"]},
        )


@dataclass
class Plan:
    """The Changes to report and the ``WRITE`` parameters that make them durable."""

    changes: list[Change]
    rows: dict[str, list[Row]]

    @property
    def writes(self) -> bool:
        return any(self.rows.values())


class _Planner:
    def __init__(self, state: State) -> None:
        self.s = state
        self.identifier_init: dict[str, Row] = {}
        self.subjects: list[Row] = []
        self.erased: dict[str, int] = {}
        self.dataset_init: dict[str, Row] = {}
        self.collections: dict[CollectionKey, tuple[int, str]] = {}
        self.flows: set[FlowKey] = set()
        self.uses: set[UseKey] = set()
        self.runs: list[Row] = []
        self.carried: list[Row] = []
        self.specific: list[Row] = []

    def apply(self, m: Mutation) -> Change | None:
        s = self.s
        match m:
            case PutIdentifier():
                node = s.identifiers[m.ref]
                changed = not node.existed
                if changed:
                    node.existed = True
                    row = {"ref": m.ref, "category": m.category, "display": m.display}
                    self.identifier_init[m.ref] = row
                if m.subject is not None and m.subject not in node.subjects:
                    node.subjects.add(m.subject)
                    self.subjects.append({"ref": m.ref, "subject": m.subject})
                    changed = True
                return Change(m) if changed else None
            case PutDataset():
                node = s.datasets[m.key]
                if node.existed:
                    return None
                node.existed = True
                self.dataset_init[m.key] = {"key": m.key, "system": m.system, "name": m.name}
                return Change(m)
            case PutJob():
                if s.jobs[m.name].existed:
                    return None
                s.jobs[m.name].existed = True
                return Change(m)
            case AddCollection(collection=c):
                key = (c.identifier, c.dataset, c.purpose)
                stored = s.collections.get(key)
                if stored is not None and stored <= (c.at, c.event_id):
                    return None
                s.collections[key] = self.collections[key] = (c.at, c.event_id)
                return Change(m)
            case AddFlowRun():
                s.jobs[m.job].existed = True
                key = (m.source, m.target, m.job)
                if key not in s.flows:
                    s.flows[key] = []
                    self.runs.append({"job": m.job, "dataset": m.source, "mode": "reads"})
                    self.runs.append({"job": m.job, "dataset": m.target, "mode": "writes"})
                return self._add_run(m, s.flows[key], m.run, key, self.flows)
            case AddUseRun():
                s.jobs[m.job].existed = True
                key = (m.dataset, m.purpose, m.job)
                if key not in s.uses:
                    s.uses[key] = []
                    self.runs.append({"job": m.job, "dataset": m.dataset, "mode": "reads"})
                return self._add_run(m, s.uses[key], m.run, key, self.uses)
            case AddCarriedFlow(flow=f):
                carried = _carried_key(m)
                if carried in s.carried:
                    return None
                s.carried.add(carried)
                self.carried.append({
                    "ref": f.identifier, "target": f.target, "source": f.source,
                    "job": f.job, "at": f.at, "event_id": f.event_id,
                })  # fmt: skip
                return Change(m)
            case AddSpecificUse(use=u):
                specific = _specific_key(m)
                if specific in s.specific:
                    return None
                s.specific.add(specific)
                self.specific.append({
                    "ref": u.identifier, "purpose": u.purpose, "dataset": u.dataset,
                    "job": u.job, "at": u.at, "event_id": u.event_id,
                })  # fmt: skip
                return Change(m)
            case MarkErased():
                node = s.identifiers[m.identifier]
                if not node.existed:
                    raise StoreError(
                        f"cannot erase identifier {m.identifier}: it was never stored "
                        "(put the identifier before marking it erased)"
                    )
                if node.erased_at is not None and node.erased_at <= m.at:
                    return None
                node.erased_at = self.erased[m.identifier] = m.at
                return Change(m)
        raise AssertionError(f"unhandled mutation {m!r}")  # pragma: no cover

    @staticmethod
    def _add_run(
        m: Mutation, runs: list[Run], run: Run, key: tuple[str, str, str], dirty: set[Any]
    ) -> Change | None:
        inserted, previous = insert_run(runs, run)
        if not inserted:
            return None
        dirty.add(key)
        return Change(m, previous)

    def rows(self) -> dict[str, list[Row]]:
        s = self.s
        return {
            "identifier_init": list(self.identifier_init.values()),
            "subjects": self.subjects,
            "erased": [{"ref": ref, "at": at} for ref, at in self.erased.items()],
            "dataset_init": list(self.dataset_init.values()),
            "collections": [
                {"ref": k[0], "dataset": k[1], "purpose": k[2], "at": at, "event_id": eid}
                for k, (at, eid) in self.collections.items()
            ],
            "flows": [
                {"source": k[0], "target": k[1], "job": k[2], **_run_lists(s.flows[k])}
                for k in sorted(self.flows)
            ],
            "uses": [
                {"dataset": k[0], "purpose": k[1], "job": k[2], **_run_lists(s.uses[k])}
                for k in sorted(self.uses)
            ],
            "runs": self.runs,
            "carried": self.carried,
            "specific": self.specific,
        }


def _run_lists(runs: list[Run]) -> Row:
    return {"run_at": [r.at for r in runs], "run_event_ids": [r.event_id for r in runs]}


def plan(mutations: Sequence[Mutation], state: State) -> Plan:
    """Changes exactly as ``NetworkxStore.apply`` reports them, plus the rows to persist them.

    ``state`` is updated in place, so later mutations of the batch see earlier ones.
    """
    planner = _Planner(state)
    changes = [c for m in mutations if (c := planner.apply(m)) is not None]
    return Plan(changes, planner.rows())
