"""The read API: lineage as nodes and edges, an identifier's trace, the officers' queries, the
report and the alerts, each ``as_of`` an event time. JSON only, the same documents the CLI's
``--json`` prints (one rendering: the console and ``lineage report`` cannot disagree).

The identifier of a trace comes in a POST body, never a URL (URLs end up in logs and browser
histories); answers carry its masked form and keyed-hash ref only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from graph.drawing import dataset_picture, neighbourhood
from graph.drawing.picture import Picture
from graph.drawing.render import colours
from lineage.errors import LineageError
from lineage.identifiers import guess_category
from lineage.queries import QUERIES
from runtime.audit import restricted_origins
from runtime.service import LineageService

#: Nodes of a lineage answer: Marquez's ``nodeId`` prefixes, and ``use:`` for a use purpose.
NODE_TYPES = {"dataset": "DATASET", "job": "JOB", "use": "USE", "identifier": "IDENTIFIER"}
MAX_DEPTH = 20


class BadRequestError(Exception):
    """A parameter the caller got wrong: 400 with this text."""


def moment(value: str | None, name: str = "as_of") -> datetime | None:
    """An ISO 8601 date or time as UTC (naive: UTC), as the CLI's ``--as-of`` reads it."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequestError(
            f"{name}: not an ISO 8601 date or time (e.g. 2020-01-31 or 2020-01-31T12:00:00Z)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _micros(when: datetime | None) -> int | None:
    from lineage.events import micros

    return None if when is None else micros(when)


def picture_as_of(service: LineageService, as_of: datetime | None) -> Picture:
    """The dataset/job/use graph as it stood at ``as_of``, coloured by origin purpose and marked
    by the violations up to then (the report's picture, unabridged)."""
    store = service.store
    when = _micros(as_of)
    edges = store.edges() if when is None else store.dataset_edges(when)
    carried = store.carried_origins(when)
    until = None if as_of is None else as_of + timedelta(microseconds=1)
    routes = store.route_examples(None, until)
    return dataset_picture(edges, carried, routes, restricted_origins(service.policy, carried))


def graph_document(picture: Picture) -> dict[str, Any]:
    """Marquez's lineage shape (``{"graph": [{id, type, data, inEdges, outEdges}]}``); each
    edge also says its kind, the origin purposes it carried and the rules it broke, and each
    origin purpose has the colour the report's picture gives it."""
    incoming: dict[str, list[dict[str, Any]]] = {n.id: [] for n in picture.nodes}
    outgoing: dict[str, list[dict[str, Any]]] = {n.id: [] for n in picture.nodes}
    for e in picture.edges:
        edge = {
            "origin": e.source,
            "destination": e.target,
            "kind": e.kind,
            "origins": list(e.origins),
            "violating": list(e.violating),
            "onRoute": e.on_route,
        }
        outgoing[e.source].append(edge)
        incoming[e.target].append(edge)
    return {
        "graph": [
            {
                "id": n.id,
                "type": NODE_TYPES[n.kind],
                "data": {"name": n.label, "detail": n.detail},
                "inEdges": incoming[n.id],
                "outEdges": outgoing[n.id],
            }
            for n in picture.nodes
        ],
        "restrictedOrigins": sorted(picture.restricted),
        "origins": picture.origins(),
        "colours": colours(picture),  # the report picture's: restricted origins warm
    }


def lineage(
    service: LineageService, node_id: str | None, depth: int, as_of: datetime | None
) -> dict[str, Any] | None:
    """Within ``depth`` steps of ``node_id`` (``dataset:<system:name>`` or ``job:<name>``),
    either direction; the whole graph without a node. None: no such node then."""
    if not 0 <= depth <= MAX_DEPTH:
        raise BadRequestError(f"depth: 0 to {MAX_DEPTH}")
    picture = picture_as_of(service, as_of)
    if node_id is None:
        return graph_document(picture)
    kind = node_id.split(":", 1)[0]
    if kind not in ("dataset", "job", "use"):
        raise BadRequestError("nodeId: dataset:<system:name>, job:<name> or use:<purpose>")
    if not any(n.id == node_id for n in picture.nodes):
        return None
    return graph_document(neighbourhood(picture, node_id, depth))


def trace(service: LineageService, raw: str, as_of: datetime | None) -> dict[str, Any]:
    """The trace of a typed phone number or email: masked, with dates and evidence event ids."""
    from cli.render import masked_text, to_json

    try:
        ref = service.pseudonymizer.identifier(guess_category(raw), raw)
    except LineageError as exc:
        raise BadRequestError(masked_text(str(exc))) from None
    found = service.trace(raw, as_of)
    return {
        "identifier": {"category": ref.category, "display": ref.display, "ref": ref.ref},
        "as_of": as_of.isoformat() if as_of else None,
        "found": found is not None,
        "trace": json.loads(to_json(found)) if found is not None else None,
    }


def query(
    service: LineageService,
    name: str,
    target: str | None,
    as_of: datetime | None,
    limit: int | None,
) -> dict[str, Any] | None:
    from cli.query_commands import page_json

    if name not in QUERIES:
        raise BadRequestError(f"unknown query {name!r}; known: {', '.join(QUERIES)}")
    try:
        page = service.query(name, target, as_of, limit)
    except LineageError as exc:
        raise BadRequestError(str(exc)) from None
    result: dict[str, Any] | None = None if page is None else json.loads(page_json(page, limit))
    return result


def report(
    service: LineageService,
    as_of: datetime | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    """``lineage report --format json`` with the same options: as of D, the violations up to
    D included and the graph as it was."""
    from cli.report_formats import to_json

    end = until
    if as_of is not None:
        end = min(end or datetime.max.replace(tzinfo=UTC), as_of + timedelta(microseconds=1))
    document: dict[str, Any] = json.loads(to_json(service.audit(since, end, None, as_of)))
    document["as_of"] = as_of.isoformat() if as_of else None
    return document


def alerts(service: LineageService, as_of: datetime | None, limit: int | None) -> dict[str, Any]:
    """Active alerts whose first violating use is at or before ``as_of``, as they stand now."""
    from cli.render import alerts_json

    found = service.alerts()
    if as_of is not None:
        found = [a for a in found if a.occurred_at <= as_of]
    document: dict[str, Any] = json.loads(alerts_json(found, limit))
    return document
