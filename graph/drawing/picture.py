"""A backend-neutral picture of a lineage subgraph, built from what the stores already answer.

Nodes are datasets, jobs, uses (one per use purpose) and, for an identifier's picture, the
identifier itself (masked: only its display form is ever put in a picture). A flow of data
from ``S`` to ``T`` by job ``J`` is drawn ``S -> J -> T``; a use of ``D`` by ``J`` for purpose
``P`` is ``D -> J -> P``. Each edge lists the origin purposes of the data it carried (which
copies came that way, not which could), and two marks come from the active alerts' evidence:
``violating`` on both edges of a use that broke a rule, ``on_route`` on the flows that carried
the violating data there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

import networkx as nx

from lineage.audit import CarriedOrigin, RouteExample
from lineage.trace import Trace, TraceNode

NodeKind = Literal["identifier", "dataset", "job", "use"]
EdgeKind = Literal["collected", "flow", "use", "read"]


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    label: str
    detail: str = ""  # more lines ("\n"), e.g. the purposes a dataset collects for


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    origins: tuple[str, ...] = ()  # origin purposes of the data carried, sorted
    violating: tuple[str, ...] = ()  # rules this use broke (both edges of the use)
    on_route: bool = False  # carried violating data towards a violating use
    label: str = ""


@dataclass(frozen=True)
class Picture:
    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    restricted: frozenset[str] = field(default_factory=frozenset)  # origins a rule tracks
    focus: str | None = None  # the node a neighbourhood is drawn around

    def origins(self) -> list[str]:
        """Every origin purpose shown, restricted ones first (they get the warm colours)."""
        found = {o for e in self.edges for o in e.origins}
        return sorted(found, key=lambda o: (o not in self.restricted, o))

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def edge_text(edge: Edge) -> str:
    """The text on an edge: a violating use names its rules on its edge into the use."""
    if edge.violating:
        return "violates " + ", ".join(edge.violating) if edge.target.startswith("use:") else ""
    return edge.label


def dataset_id(key: str) -> str:
    return f"dataset:{key}"


def job_id(name: str) -> str:
    return f"job:{name}"


def use_id(purpose: str) -> str:
    return f"use:{purpose}"


class _Builder:
    """Accumulates nodes and edges, merging repeated edges (their origins and marks)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: dict[tuple[str, str], Edge] = {}

    def node(self, node: Node) -> str:
        known = self.nodes.get(node.id)
        if known is None or (node.detail and not known.detail):
            self.nodes[node.id] = node
        return node.id

    def dataset(self, key: str, detail: str = "") -> str:
        return self.node(Node(dataset_id(key), "dataset", key, detail))

    def job(self, name: str) -> str:
        return self.node(Node(job_id(name), "job", name))

    def use(self, purpose: str) -> str:
        return self.node(Node(use_id(purpose), "use", purpose))

    def edge(self, edge: Edge) -> None:
        key = (edge.source, edge.target)
        known = self.edges.get(key)
        if known is not None:
            edge = replace(
                known,
                origins=tuple(sorted({*known.origins, *edge.origins})),
                violating=tuple(sorted({*known.violating, *edge.violating})),
                on_route=known.on_route or edge.on_route,
                label=known.label or edge.label,
            )
        self.edges[key] = edge

    def picture(self, title: str, restricted: Iterable[str], focus: str | None = None) -> Picture:
        return Picture(
            title,
            tuple(sorted(self.nodes.values(), key=lambda n: n.id)),
            tuple(sorted(self.edges.values(), key=lambda e: (e.source, e.target))),
            frozenset(restricted),
            focus,
        )


def dataset_picture(
    edges: Iterable[tuple[str, str, str, str]],
    carried: Iterable[CarriedOrigin],
    examples: Iterable[RouteExample],
    restricted: Iterable[str],
    title: str = "Lineage of personal data",
) -> Picture:
    """The whole dataset/job graph (``GraphStore.edges``), coloured by ``carried_origins``,
    marked by the evidence of ``route_examples``. A use is coloured by the origins its
    dataset holds; a dataset's second line names the purposes it collects for."""
    held: dict[str, set[str]] = {}
    by_flow: dict[tuple[str, str, str], set[str]] = {}
    collects: dict[str, set[str]] = {}
    for c in carried:
        held.setdefault(c.dataset, set()).add(c.origin_purpose)
        if c.source is None or c.job is None:
            collects.setdefault(c.dataset, set()).add(c.origin_purpose)
        else:
            by_flow.setdefault((c.source, c.dataset, c.job), set()).add(c.origin_purpose)
    violating: dict[tuple[str, str, str], set[str]] = {}
    routed: set[tuple[str, str, str]] = set()
    for example in examples:
        for step in example.example.evidence:
            if step.kind == "flowed" and step.source is not None and step.job is not None:
                routed.add((step.source, step.dataset, step.job))
        alert = example.example
        use = (alert.use_dataset, alert.use_job, alert.use_purpose)
        violating.setdefault(use, set()).add(alert.rule)
    b = _Builder()
    for dataset, purposes in collects.items():
        b.dataset(dataset, "\n".join(["collects for:", *sorted(purposes)]))
    for kind, a, target, job in sorted(set(edges)):
        source, j = b.dataset(a), b.job(job)
        if kind in ("use", "specific"):
            origins = tuple(sorted(held.get(a, ())))
            rules = tuple(sorted(violating.get((a, job, target), ())))
            u = b.use(target)
            b.edge(Edge(source, j, "use", origins, rules))
            b.edge(Edge(j, u, "use", origins, rules))
        elif kind == "read":  # the job read the dataset and wrote none: the edge ends at it
            b.edge(Edge(source, j, "read", tuple(sorted(held.get(a, ())))))
        else:
            origins = tuple(sorted(by_flow.get((a, target, job), ())))
            on_route = (a, target, job) in routed
            b.edge(Edge(source, j, "flow", origins, on_route=on_route))
            b.edge(Edge(j, b.dataset(target), "flow", origins, on_route=on_route))
    return b.picture(title, restricted)


def _when(node: TraceNode) -> str:
    return node.since.strftime("%Y-%m-%d")


def _reaches_violation(node: TraceNode) -> bool:
    return any(u.violates for u in node.uses) or any(_reaches_violation(c) for c in node.children)


def _walk(
    b: _Builder, node: TraceNode, at: str, purpose: str, level: int, depth: int | None
) -> None:
    """``node``'s uses and flows, then its children's, while within ``depth`` steps."""
    if depth is not None and level >= depth:
        return
    for use in node.uses:
        j, u = b.job(use.job), b.use(use.purpose)
        label = f"{use.at:%Y-%m-%d}"
        b.edge(Edge(at, j, "use", (purpose,), use.violates))
        b.edge(Edge(j, u, "use", (purpose,), use.violates, label=label))
    for child in node.children:
        j, target = b.job(child.job or "?"), b.dataset(child.dataset)
        on_route = _reaches_violation(child)
        b.edge(Edge(at, j, "flow", (purpose,), on_route=on_route))
        b.edge(Edge(j, target, "flow", (purpose,), on_route=on_route, label=_when(child)))
        _walk(b, child, target, purpose, level + 1, depth)


def trace_picture(trace: Trace, restricted: Iterable[str], depth: int | None = None) -> Picture:
    """One identifier's downstream tree (``lineage.trace``), per origin, to ``depth`` steps
    from the identifier (the collection is the first). The identifier shows its masked
    display form only, and is named by the first 16 characters of its keyed hash."""
    ident = trace.identifier
    shown = ident.display or f"{ident.category} {ident.ref[:8]}"
    b = _Builder()
    me = b.node(Node(f"identifier:{ident.ref[:16]}", "identifier", shown, ident.category))
    for origin in trace.origins:
        purpose, root = origin.origin.purpose, origin.root
        start = b.dataset(root.dataset)
        b.edge(Edge(me, start, "collected", (purpose,), label=_when(root)))
        _walk(b, root, start, purpose, 1, depth)
    return b.picture(f"Lineage of {shown}", restricted, focus=me)


def neighbourhood(picture: Picture, focus: str, depth: int) -> Picture:
    """The nodes within ``depth`` steps of ``focus``, upstream or downstream, and the edges
    among them. A step is a flow ``S -> J -> T``, a use ``D -> J -> P`` or a collection: it
    goes through a job from one of its inputs to one of its outputs (two inputs of one job
    are not a step apart), and a job is kept when an input and an output of it are, or, for
    a job that only read (no output), when an input is."""
    kinds = {n.id: n.kind for n in picture.nodes}
    inputs: dict[str, set[str]] = {}
    outputs: dict[str, set[str]] = {}
    steps: nx.Graph[str] = nx.Graph()
    steps.add_nodes_from(n for n, kind in kinds.items() if kind != "job")
    for e in picture.edges:
        if kinds[e.target] == "job":
            inputs.setdefault(e.target, set()).add(e.source)
        elif kinds[e.source] == "job":
            outputs.setdefault(e.source, set()).add(e.target)
        else:
            steps.add_edge(e.source, e.target)
    for job, sources in inputs.items():
        steps.add_edges_from((s, t) for s in sources for t in outputs.get(job, ()))
    if focus not in steps:
        return replace(picture, nodes=(), edges=(), focus=focus)
    kept = set(nx.single_source_shortest_path_length(steps, focus, cutoff=depth))
    kept |= {
        job
        for job, sources in inputs.items()
        if sources & kept and (job not in outputs or outputs[job] & kept)
    }
    return replace(
        picture,
        nodes=tuple(n for n in picture.nodes if n.id in kept),
        edges=tuple(e for e in picture.edges if e.source in kept and e.target in kept),
        focus=focus,
    )
