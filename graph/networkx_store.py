"""Embedded ``GraphStore`` on a networkx MultiDiGraph, with side indexes for the hot reads.

Nodes are ``(label, key)`` tuples; edges are keyed ``(type, discriminator)`` so a merge is a
dictionary lookup. The whole object pickles, which is how embedded mode checkpoints it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

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
    IdentifierNode,
    Run,
    SpecificUse,
    UseEdge,
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


def _ident(ref: str) -> Node:
    return ("Identifier", ref)


def _dataset(key: str) -> Node:
    return ("Dataset", key)


def _insert_run(runs: list[Run], run: Run) -> tuple[bool, int | None]:
    """Insert keeping order; returns (inserted, latest run time strictly before ``run``)."""
    index = bisect.bisect_left(runs, run)
    if index < len(runs) and runs[index] == run:
        return False, None
    before = bisect.bisect_left(runs, Run(run.at, ""))
    runs.insert(index, run)
    return True, runs[before - 1].at if before > 0 else None


class NetworkxStore:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.graph: nx.MultiDiGraph[Node] = nx.MultiDiGraph()
        self._since: defaultdict[str, SortedList] = defaultdict(SortedList)
        self._copies: dict[tuple[str, str], dict[str, Copy]] = {}
        self._carried: defaultdict[tuple[str, str], list[CarriedFlow]] = defaultdict(list)
        self._specific: defaultdict[tuple[str, str], list[SpecificUse]] = defaultdict(list)
        self._alerts: dict[str, Alert] = {}
        self._unpublished: dict[str, None] = {}

    def close(self) -> None:
        pass

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
                    g.add_node(node, category=m.category, display=m.display, erased_at=None)
                if m.subject is not None and not g.has_edge(node, ("Subject", m.subject)):
                    g.add_edge(node, ("Subject", m.subject), key=("BELONGS_TO", ""))
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
                key = ("CARRIED_TO", f"{f.event_id}|{f.source}")
                if g.has_edge(_ident(f.identifier), _dataset(f.target), key):
                    return None
                g.add_edge(_ident(f.identifier), _dataset(f.target), key, flow=f)
                self._carried[(f.identifier, f.source)].append(f)
                return Change(m)
            case AddSpecificUse(use=u):
                key = ("USED_IN", f"{u.event_id}|{u.dataset}|{u.job}")
                if g.has_edge(_ident(u.identifier), ("Purpose", u.purpose), key):
                    return None
                g.add_edge(_ident(u.identifier), ("Purpose", u.purpose), key, use=u)
                self._specific[(u.identifier, u.dataset)].append(u)
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
        inserted, previous = _insert_run(g.edges[src, dst, key]["runs"], run)
        return Change(m, previous) if inserted else None

    def put_copies(self, copies: Sequence[Copy]) -> None:
        for copy in copies:
            by_origin = self._copies.setdefault((copy.identifier, copy.dataset), {})
            old = by_origin.get(copy.origin.key)
            index = self._since[copy.dataset]
            if old is not None:
                index.remove((old.since, old.identifier, old.origin.key))
            by_origin[copy.origin.key] = copy
            index.add((copy.since, copy.identifier, copy.origin.key))
            self.graph.add_edge(
                _ident(copy.identifier),
                _dataset(copy.dataset),
                ("COPY_IN", copy.origin.key),
                copy=copy,
            )

    def add_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        fresh = [a for a in alerts if a.alert_id not in self._alerts]
        for alert in fresh:
            self._alerts[alert.alert_id] = alert
            self._unpublished[alert.alert_id] = None
            self.graph.add_edge(("Alert", alert.alert_id), _ident(alert.identifier), ("ABOUT", ""))
        return fresh

    # -- reads -----------------------------------------------------------------------------
    def identifier(self, ref: str) -> IdentifierNode | None:
        node = _ident(ref)
        if node not in self.graph:
            return None
        attrs = self.graph.nodes[node]
        subjects = frozenset(
            dst[1]
            for _, dst, key in self.graph.out_edges(node, keys=True)
            if key[0] == "BELONGS_TO"
        )
        category: Category = attrs["category"]
        return IdentifierNode(ref, category, attrs["display"], subjects, attrs["erased_at"])

    def copies_of(self, identifier: str, dataset: str) -> list[Copy]:
        return list(self._copies.get((identifier, dataset), {}).values())

    def copies_of_identifier(self, identifier: str) -> list[Copy]:
        node = _ident(identifier)
        if node not in self.graph:
            return []
        return [
            data["copy"]
            for _, _, key, data in self.graph.out_edges(node, keys=True, data=True)
            if key[0] == "COPY_IN"
        ]

    def copies_in(self, dataset: str, after: int | None, upto: int) -> Iterator[Copy]:
        index = self._since.get(dataset)
        if not index:
            return iter(())
        low = (after, "\uffff", "\uffff") if after is not None else None
        entries = list(index.irange(low, (upto, "\uffff", "\uffff"), inclusive=(False, True)))
        return (self._copies[(ident, dataset)][okey] for _, ident, okey in entries)

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

    def carried_from(self, identifier: str, dataset: str) -> list[CarriedFlow]:
        return list(self._carried.get((identifier, dataset), ()))

    def specific_uses(self, identifier: str, dataset: str) -> list[SpecificUse]:
        return list(self._specific.get((identifier, dataset), ()))

    def alerts(self) -> list[Alert]:
        return sorted(self._alerts.values(), key=lambda a: (a.occurred_at, a.alert_id))

    def alert(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        pending = [self._alerts[aid] for aid in self._unpublished]
        return sorted(pending, key=lambda a: (a.occurred_at, a.alert_id))[:limit]

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
            carried=frozenset(a["flow"] for *_, a in edges["CARRIED_TO"]),
            specific_uses=frozenset(a["use"] for *_, a in edges["USED_IN"]),
            copies=frozenset(c for by in self._copies.values() for c in by.values()),
            alerts=frozenset(self._alerts),
        )
