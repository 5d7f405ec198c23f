"""The audit report and the pictures, assembled from the store's reads.

An ``AuditReport`` holds the summary of the violations in a window of ``occurred_at``, one
evidence example per route, the rules, and a picture of the lineage subgraph. It reads the
store four times (``tally_between``, ``route_examples``, ``edges``, ``carried_origins``):
``route_examples`` reads every alert in the window and ``carried_origins`` every copy, so the
report's cost grows with both, and the CLI shows its progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from graph.drawing import Picture, dataset_id, dataset_picture, neighbourhood, trace_picture
from graph.drawing.picture import job_id, use_id
from graph.store import GraphStore
from lineage.audit import CarriedOrigin, RouteExample
from lineage.policy import Policy, Rule
from lineage.report import ViolationReport, report_from
from lineage.trace import Trace

#: A report draws the whole dataset graph up to this many nodes; beyond, the routes of the
#: violations and whatever lies one step from them.
MAX_PICTURE_NODES = 80

Step = Callable[[str], None]


@dataclass(frozen=True)
class AuditReport:
    generated_at: datetime
    since: datetime | None
    until: datetime | None
    summary: ViolationReport
    rules: tuple[Rule, ...]
    routes: tuple[RouteExample, ...]
    picture: Picture
    whole_graph: bool  # False: the picture shows the violations' surroundings only


def restricted_origins(policy: Policy, carried: list[CarriedOrigin]) -> set[str]:
    return {c.origin_purpose for c in carried if policy.is_tracked_origin(c.origin_purpose)}


def _route_nodes(routes: tuple[RouteExample, ...]) -> set[str]:
    nodes: set[str] = set()
    for route in routes:
        alert = route.example
        for step in alert.evidence:
            nodes.add(dataset_id(step.dataset))
            if step.job is not None:
                nodes.add(job_id(step.job))
        nodes.add(use_id(alert.use_purpose))
    return nodes


def _around(picture: Picture, centres: set[str]) -> Picture:
    """The centres and what lies one step from any of them."""
    kept: set[str] = set()
    for centre in sorted(centres):
        kept |= {n.id for n in neighbourhood(picture, centre, 1).nodes}
    return Picture(
        picture.title + " (around the violations)",
        tuple(n for n in picture.nodes if n.id in kept),
        tuple(e for e in picture.edges if e.source in kept and e.target in kept),
        picture.restricted,
    )


def build_audit(
    store: GraphStore,
    policy: Policy,
    since: datetime | None = None,
    until: datetime | None = None,
    step: Step | None = None,
    as_of: int | None = None,
) -> AuditReport:
    """``step`` is told what is read next (four steps), for a progress display. ``as_of``
    (event time, micros) draws the dataset graph as it stood then; the caller bounds the
    violations with ``until``."""
    tell = step or (lambda _: None)
    tell("counting the violations")
    summary = report_from(store.tally_between(since, until))
    tell("choosing an evidence example per route")
    routes = tuple(store.route_examples(since, until))
    tell("reading the dataset graph")
    edges = store.edges() if as_of is None else store.dataset_edges(as_of)
    tell("reading which origins each edge carried")
    carried = store.carried_origins(as_of)
    picture = dataset_picture(edges, carried, routes, restricted_origins(policy, carried))
    whole = len(picture.nodes) <= MAX_PICTURE_NODES or not routes
    if not whole:
        picture = _around(picture, _route_nodes(routes))
    return AuditReport(
        datetime.now(UTC), since, until, summary, policy.rules, routes, picture, whole
    )


def dataset_neighbourhood(
    store: GraphStore, policy: Policy, dataset: str, depth: int
) -> Picture | None:
    """What lies within ``depth`` steps of ``dataset``, either direction; None when nothing
    collected into it, flowed to or from it, or used it."""
    carried = store.carried_origins()
    picture = dataset_picture(
        store.edges(),
        carried,
        store.route_examples(),
        restricted_origins(policy, carried),
        title=f"Lineage around {dataset}",
    )
    focus = dataset_id(dataset)
    if not any(n.id == focus for n in picture.nodes):
        return None
    return neighbourhood(picture, focus, depth)


def identifier_picture(trace: Trace, policy: Policy, depth: int | None = None) -> Picture:
    """One identifier's downstream tree (to ``depth`` steps, the collection being the first),
    shown masked."""
    restricted = {
        o.origin.purpose for o in trace.origins if policy.is_tracked_origin(o.origin.purpose)
    }
    return trace_picture(trace, restricted, depth)
