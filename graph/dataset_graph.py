"""The small dataset/job graph in networkx: what it is good at (reachability, drawing).

Identifiers number in the millions and live in the stores; datasets, jobs and purposes number in
the hundreds, so their graph fits in memory and networkx answers "what is downstream of this
dataset" directly. Nodes are ``("dataset", key)``, ``("purpose", key)`` and ``("job", name)``
(a job that only read: its read ends there); each edge carries its ``job`` and ``kind`` (see
``GraphStore.edges``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

Node = tuple[str, str]


def build(edges: Iterable[tuple[str, str, str, str]]) -> nx.MultiDiGraph[Node]:
    graph: nx.MultiDiGraph[Node] = nx.MultiDiGraph()
    for kind, a, b, job in edges:
        target = (
            ("purpose", b) if kind in ("use", "specific")
            else ("job", b) if kind == "read"
            else ("dataset", b)
        )  # fmt: skip
        graph.add_edge(("dataset", a), target, key=(kind, job), kind=kind, job=job)
    return graph


@dataclass(frozen=True)
class Downstream:
    datasets: list[str]
    jobs: list[str]
    uses: list[tuple[str, str, str]]  # (dataset, job, purpose)


def downstream(graph: nx.MultiDiGraph[Node], dataset: str) -> Downstream:
    """Everything data in ``dataset`` can reach, by any flow, and every use on the way."""
    start = ("dataset", dataset)
    if start not in graph:
        return Downstream([], [], [])
    reached = nx.descendants(graph, start) | {start}
    datasets = sorted(key for label, key in reached if label == "dataset" and key != dataset)
    jobs: set[str] = set()
    uses: set[tuple[str, str, str]] = set()
    for source, target, data in graph.edges(reached, data=True):
        jobs.add(data["job"])
        if target[0] == "purpose":
            uses.add((source[1], data["job"], target[1]))
    return Downstream(datasets, sorted(jobs), sorted(uses))
