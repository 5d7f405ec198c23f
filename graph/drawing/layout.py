"""A layered left-to-right layout in pure Python (networkx), so no Graphviz is needed.

Layers follow the longest path from a source once each cycle of flows has one edge set aside
(that edge is drawn as an arc running back below the nodes); within a layer, nodes are
ordered by a few barycentre sweeps to cut crossings.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from graph.drawing.picture import Node, Picture, edge_text

CHAR_WIDTH = 7.0  # px per character at the 12 px sans-serif font the renderers use
PADDING = 24.0
ROW_HEIGHT = 34.0
DETAIL_HEIGHT = 14.0
GAP_X = 110.0
GAP_Y = 26.0
MARGIN = 20.0
SWEEPS = 4


@dataclass(frozen=True)
class Box:
    """A node's rectangle: (x, y) is its top-left corner."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True)
class Layout:
    boxes: dict[str, Box]
    layers: dict[str, int]
    width: float
    height: float


def node_size(node: Node) -> tuple[float, float]:
    lines = node.detail.splitlines()
    text = max([len(node.label), *(int(len(line) * 0.85) for line in lines)])
    height = ROW_HEIGHT + DETAIL_HEIGHT * len(lines)
    return max(60.0, text * CHAR_WIDTH + PADDING), height


def _feedback_edges(graph: nx.DiGraph[str], roots: list[str]) -> set[tuple[str, str]]:
    """The edges a depth-first search from ``roots`` (then every other node, sorted) finds
    running back to a node on its stack: without them the graph has no cycle, and a cycle
    is cut where it returns towards where its data was collected."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    back: set[tuple[str, str]] = set()
    for root in [*roots, *sorted(graph.nodes)]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(sorted(graph.successors(root))))]
        while stack:
            node, successors = stack[-1]
            following = next(successors, None)
            if following is None:
                state[node] = 2
                stack.pop()
            elif state.get(following) == 1:
                back.add((node, following))
            elif following not in state:
                state[following] = 1
                stack.append((following, iter(sorted(graph.successors(following)))))
    return back


def _layers(graph: nx.DiGraph[str], roots: list[str]) -> dict[str, int]:
    """Longest path from a source once the feedback edges are set aside: they are drawn as
    arcs running back, every other edge points right."""
    back = _feedback_edges(graph, roots)
    acyclic: nx.DiGraph[str] = nx.DiGraph()
    acyclic.add_nodes_from(graph.nodes)
    acyclic.add_edges_from(e for e in graph.edges if e not in back)
    level: dict[str, int] = {}
    for node in nx.lexicographical_topological_sort(acyclic):
        level[node] = max((level[p] + 1 for p in acyclic.predecessors(node)), default=0)
    return level


def _order(
    graph: nx.DiGraph[str], layers: dict[str, int], names: dict[str, str]
) -> list[list[str]]:
    count = max(layers.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(count)]
    for node in sorted(layers, key=lambda n: names[n]):
        rows[layers[node]].append(node)
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        indices = range(1, count) if forward else range(count - 2, -1, -1)
        for i in indices:
            position = {n: p for row in rows for p, n in enumerate(row)}
            near_of = graph.predecessors if forward else graph.successors
            ranked = []
            for node in rows[i]:
                near = [position[m] for m in near_of(node) if layers[m] != i]
                centre = sum(near) / len(near) if near else float(position[node])
                ranked.append((centre, names[node], node))
            rows[i] = [node for _, _, node in sorted(ranked)]
    return rows


def layout(picture: Picture) -> Layout:
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(n.id for n in picture.nodes)
    graph.add_edges_from((e.source, e.target) for e in picture.edges)
    # Cycles are cut where they run back towards where data was collected.
    identifiers = sorted(n.id for n in picture.nodes if n.kind == "identifier")
    collecting = sorted(n.id for n in picture.nodes if n.kind == "dataset" and n.detail)
    sources = sorted(n for n in graph.nodes if graph.in_degree(n) == 0)
    layers = _layers(graph, [*identifiers, *collecting, *sources])
    names = {n.id: f"{n.kind}:{n.label}" for n in picture.nodes}
    rows = _order(graph, layers, names)
    sizes = {n.id: node_size(n) for n in picture.nodes}
    heights = [sum(sizes[n][1] for n in row) + GAP_Y * max(len(row) - 1, 0) for row in rows]
    tallest = max(heights, default=0.0)
    # The gap before a layer fits the longest text on the edges entering it.
    gaps = [GAP_X] * len(rows)
    for e in picture.edges:
        text = edge_text(e)
        if text and layers[e.target] > layers[e.source]:
            gap = len(text) * CHAR_WIDTH * 0.9 + 30
            gaps[layers[e.target]] = max(gaps[layers[e.target]], gap)
    boxes: dict[str, Box] = {}
    x = MARGIN
    for index, (row, height) in enumerate(zip(rows, heights, strict=True)):
        x += gaps[index] - GAP_X if index else 0.0
        width = max((sizes[n][0] for n in row), default=0.0)
        y = MARGIN + (tallest - height) / 2
        for node in row:
            w, h = sizes[node]
            boxes[node] = Box(x + (width - w) / 2, y, w, h)
            y += h + GAP_Y
        x += width + GAP_X
    # Arcs between nodes of one layer (cycles) bulge below the tallest column.
    return Layout(boxes, layers, max(x - GAP_X + MARGIN, 2 * MARGIN), tallest + 2 * MARGIN + 60)
