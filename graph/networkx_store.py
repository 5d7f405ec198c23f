"""Embedded ``GraphStore``: the lineage structure in a networkx MultiDiGraph, per-identifier
facts in compact side tables.

Nodes are ``(label, key)`` tuples; edges are keyed ``(type, discriminator)`` so a merge is a
dictionary lookup. The graph holds identifiers, subjects, datasets, jobs, purposes and the
edges between them that people query (BELONGS_TO, COLLECTED_INTO, FLOWS_TO, USED_FOR, RUNS).
The high-volume per-identifier records (COPY_IN taint, CARRIED_TO, USED_IN, alerts) live in
plain dicts of small lists keyed by identifier: a networkx edge costs ~1 KB, and embedded mode
must hold a million identifiers on one machine. The whole object pickles (the checkpoint).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, TypeVar

import networkx as nx
from sortedcontainers import SortedList

from graph.store import GraphSnapshot
from lineage.alerts import Alert
from lineage.identifiers import Category
from lineage.model import (
    CarriedFlow,
    Collection,
    Copy,
    FlowEdge,
    IdentifierFacts,
    IdentifierNode,
    Run,
    SpecificUse,
    UseEdge,
    insert_run,
)
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

Node = tuple[str, str]
T = TypeVar("T")


def _ident(ref: str) -> Node:
    return ("Identifier", ref)


def _dataset(key: str) -> Node:
    return ("Dataset", key)


class NetworkxStore:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.graph: nx.MultiDiGraph[Node] = nx.MultiDiGraph()
        self._since: defaultdict[str, SortedList] = defaultdict(SortedList)
        self._copies: dict[str, list[Copy]] = {}
        self._carried: dict[str, list[CarriedFlow]] = {}
        self._specific: dict[str, list[SpecificUse]] = {}
        self._alerts: dict[str, bytes] = {}
        self._unpublished: dict[str, None] = {}

    def close(self) -> None:
        pass

    def atomically(self, work: Callable[[], T]) -> T:
        """In memory, one process: nothing to coordinate. Crash safety comes from the
        checkpoint being written only between units (see runtime.checkpoint)."""
        return work()

    # -- writes ----------------------------------------------------------------------------
    def apply(self, mutations: Sequence[Mutation]) -> list[Change]:
        changes: list[Change] = []
        for mutation in mutations:
            change = self._apply_one(mutation)
            if change is not None:
                changes.append(change)
        return changes

    def _apply_one(self, m: Mutation) -> Change | None:
        g = self.graph
        match m:
            case PutIdentifier():
                node = _ident(m.ref)
                changed = node not in g
                if changed:
                    g.add_node(
                        node,
                        category=m.category,
                        display=m.display,
                        erased_at=None,
                        subjects=frozenset(),
                    )
                attrs = g.nodes[node]
                if m.subject is not None and m.subject not in attrs["subjects"]:
                    g.add_edge(node, ("Subject", m.subject), key=("BELONGS_TO", ""))
                    attrs["subjects"] = attrs["subjects"] | {m.subject}
                    changed = True
                return Change(m) if changed else None
            case PutDataset():
                if _dataset(m.key) in g:
                    return None
                g.add_node(_dataset(m.key), system=m.system, name=m.name)
                return Change(m)
            case PutJob():
                if ("Job", m.name) in g:
                    return None
                g.add_node(("Job", m.name))
                return Change(m)
            case AddCollection(collection=c):
                key = ("COLLECTED_INTO", c.purpose)
                data = g.get_edge_data(_ident(c.identifier), _dataset(c.dataset), key)
                if data is not None and (data["at"], data["event_id"]) <= (c.at, c.event_id):
                    return None
                g.add_edge(
                    _ident(c.identifier), _dataset(c.dataset), key, at=c.at, event_id=c.event_id
                )
                return Change(m)
            case AddFlowRun():
                return self._add_run(
                    m,
                    _dataset(m.source),
                    _dataset(m.target),
                    ("FLOWS_TO", m.job),
                    ("Job", m.job),
                    m.run,
                )
            case AddUseRun():
                return self._add_run(
                    m,
                    _dataset(m.dataset),
                    ("Purpose", m.purpose),
                    ("USED_FOR", m.job),
                    ("Job", m.job),
                    m.run,
                )
            case AddCarriedFlow(flow=f):
                carried = self._carried.setdefault(f.identifier, [])
                if f in carried:
                    return None
                carried.append(f)
                return Change(m)
            case AddSpecificUse(use=u):
                specific = self._specific.setdefault(u.identifier, [])
                if u in specific:
                    return None
                specific.append(u)
                return Change(m)
            case MarkErased():
                attrs = g.nodes[_ident(m.identifier)]
                if attrs["erased_at"] is not None and attrs["erased_at"] <= m.at:
                    return None
                attrs["erased_at"] = m.at
                return Change(m)
        raise AssertionError(f"unhandled mutation {m!r}")  # pragma: no cover

    def _add_run(
        self, m: Mutation, src: Node, dst: Node, key: tuple[str, str], job: Node, run: Run
    ) -> Change | None:
        g = self.graph
        if not g.has_edge(src, dst, key):
            g.add_edge(src, dst, key, runs=[])
            g.add_edge(job, src, ("RUNS", "reads"))
            if dst[0] == "Dataset":
                g.add_edge(job, dst, ("RUNS", "writes"))
        inserted, previous = insert_run(g.edges[src, dst, key]["runs"], run)
        return Change(m, previous) if inserted else None

    def put_copies(self, copies: Sequence[Copy]) -> None:
        for copy in copies:
            held = self._copies.setdefault(copy.identifier, [])
            index = self._since[copy.dataset]
            for position, old in enumerate(held):
                if old.dataset == copy.dataset and old.origin == copy.origin:
                    if old.rank <= copy.rank:
                        break  # keep the earliest arrival
                    index.remove((old.since, old.identifier, old.origin.key))
                    held[position] = copy
                    index.add((copy.since, copy.identifier, copy.origin.key))
                    break
            else:
                held.append(copy)
                index.add((copy.since, copy.identifier, copy.origin.key))

    def add_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        fresh: list[Alert] = []
        for alert in alerts:
            if alert.alert_id not in self._alerts:
                self._alerts[alert.alert_id] = alert.model_dump_json().encode()
                self._unpublished[alert.alert_id] = None
                fresh.append(alert)
        return fresh

    # -- reads -----------------------------------------------------------------------------
    def identifier(self, ref: str) -> IdentifierNode | None:
        node = _ident(ref)
        if node not in self.graph:
            return None
        attrs = self.graph.nodes[node]
        category: Category = attrs["category"]
        return IdentifierNode(
            ref, category, attrs["display"], attrs["subjects"], attrs["erased_at"]
        )

    def identifier_facts(self, refs: Sequence[str]) -> dict[str, IdentifierFacts]:
        facts: dict[str, IdentifierFacts] = {}
        for ref in refs:
            node = self.identifier(ref)
            if node is not None or ref in self._copies:
                facts[ref] = IdentifierFacts(
                    node,
                    tuple(self._copies.get(ref, ())),
                    tuple(self._carried.get(ref, ())),
                    tuple(self._specific.get(ref, ())),
                )
        return facts

    def copies_of(self, identifier: str, dataset: str) -> list[Copy]:
        return [c for c in self._copies.get(identifier, ()) if c.dataset == dataset]

    def copies_of_identifier(self, identifier: str) -> list[Copy]:
        return list(self._copies.get(identifier, ()))

    def copies_in(self, dataset: str, after: int | None, upto: int) -> Iterator[Copy]:
        index = self._since.get(dataset)
        if not index:
            return iter(())
        low = (after, "\uffff", "\uffff") if after is not None else None
        entries = list(index.irange(low, (upto, "\uffff", "\uffff"), inclusive=(False, True)))
        return (
            c
            for _, ident, okey in entries
            for c in self._copies[ident]
            if c.dataset == dataset and c.origin.key == okey
        )

    def collections_of(self, identifier: str) -> list[Collection]:
        node = _ident(identifier)
        if node not in self.graph:
            return []
        return [
            Collection(identifier, dst[1], key[1], data["at"], data["event_id"])
            for _, dst, key, data in self.graph.out_edges(node, keys=True, data=True)
            if key[0] == "COLLECTED_INTO"
        ]

    def _runs_out(self, src: Node, kind: str) -> Iterator[tuple[Node, str, list[Run]]]:
        if src not in self.graph:
            return
        for _, dst, key, data in self.graph.out_edges(src, keys=True, data=True):
            if key[0] == kind:
                yield dst, key[1], data["runs"]

    def flows_from(self, dataset: str) -> list[FlowEdge]:
        return [
            FlowEdge(dataset, dst[1], job, tuple(runs))
            for dst, job, runs in self._runs_out(_dataset(dataset), "FLOWS_TO")
        ]

    def uses_of(self, dataset: str) -> list[UseEdge]:
        return [
            UseEdge(dataset, job, dst[1], tuple(runs))
            for dst, job, runs in self._runs_out(_dataset(dataset), "USED_FOR")
        ]

    def specific_uses(self, identifier: str, dataset: str) -> list[SpecificUse]:
        return [u for u in self._specific.get(identifier, ()) if u.dataset == dataset]

    def _alerts_sorted(self, ids: Iterable[str]) -> list[Alert]:
        found = [Alert.model_validate_json(self._alerts[aid]) for aid in ids]
        return sorted(found, key=lambda a: (a.occurred_at, a.alert_id))

    def alerts(self) -> list[Alert]:
        return self._alerts_sorted(self._alerts)

    def alert(self, alert_id: str) -> Alert | None:
        raw = self._alerts.get(alert_id)
        return Alert.model_validate_json(raw) if raw is not None else None

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        return self._alerts_sorted(islice(self._unpublished, limit))  # in order raised

    def mark_published(self, alert_ids: Sequence[str]) -> None:
        for alert_id in alert_ids:
            self._unpublished.pop(alert_id, None)

    def snapshot(self) -> GraphSnapshot:
        g = self.graph
        nodes: dict[str, list[Any]] = defaultdict(list)
        for label, key in g.nodes:
            nodes[label].append(key)
        edges: dict[str, list[Any]] = defaultdict(list)
        for src, dst, key, data in g.edges(keys=True, data=True):
            edges[key[0]].append((src, dst, key, data))
        return GraphSnapshot(
            identifiers=frozenset(
                node for ref in nodes["Identifier"] if (node := self.identifier(ref))
            ),
            datasets=frozenset(
                (key, g.nodes[("Dataset", key)]["system"], g.nodes[("Dataset", key)]["name"])
                for key in nodes["Dataset"]
            ),
            jobs=frozenset(nodes["Job"]),
            collections=frozenset(
                Collection(s[1], d[1], k[1], a["at"], a["event_id"])
                for s, d, k, a in edges["COLLECTED_INTO"]
            ),
            flows=frozenset(
                FlowEdge(s[1], d[1], k[1], tuple(a["runs"])) for s, d, k, a in edges["FLOWS_TO"]
            ),
            uses=frozenset(
                UseEdge(s[1], k[1], d[1], tuple(a["runs"])) for s, d, k, a in edges["USED_FOR"]
            ),
            carried=frozenset(f for flows in self._carried.values() for f in flows),
            specific_uses=frozenset(u for uses in self._specific.values() for u in uses),
            copies=frozenset(c for held in self._copies.values() for c in held),
            alerts=frozenset(self._alerts),
        )
