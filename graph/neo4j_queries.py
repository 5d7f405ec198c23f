"""The Neo4j store's answers to the query layer's reads (``lineage.queries.QueryReader``).

Each read is one Cypher statement filtered by event time (``$as_of``, epoch microseconds);
docs/queries.md shows them for Neo4j Browser. Counts of identifiers and people are aggregated
in Cypher; grouping and paging happen in the core. An identifier without an account counts as
one person (``'#' + i.ref`` never equals an account ref, both being hex digests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, LiteralString

from graph.neo4j_alerts import route_of
from lineage.model import Copy, Origin
from lineage.queries import CollectionGroup, ErasedCopy, Holding, Violation, people_of

#: ``Neo4jStore._read``: (action, query, **params) -> records.
Read = Callable[..., list[Any]]

VIOLATIONS: Final = """
MATCH (a:Alert)-[:ABOUT]->(i:Identifier)
WHERE a.status = 'active' AND a.occurred_at <= $as_of
RETURN i.ref AS identifier, a.category AS category, a.origin_dataset AS origin_dataset,
       a.origin_purpose AS origin_purpose, a.use_dataset AS use_dataset, a.use_job AS use_job,
       a.use_purpose AS use_purpose, a.occurred_at AS at,
       a {.evidence_datasets, .evidence_jobs, .use_job, .json} AS alert,
       COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref } AS subjects
"""

DATASET_EDGES: Final = """
CALL () {
  MATCH ()-[r:FLOW_RUN]->() WHERE r.at <= $as_of
  RETURN DISTINCT 'flow' AS kind, r.source AS a, r.target AS b, r.job AS job
  UNION
  MATCH ()-[r:USE_RUN]->() WHERE r.at <= $as_of
  RETURN DISTINCT 'use' AS kind, r.dataset AS a, r.purpose AS b, r.job AS job
  UNION
  MATCH ()-[c:CARRIED_TO]->(t:Dataset) WHERE c.at <= $as_of
  RETURN DISTINCT 'carried' AS kind, c.source AS a, t.key AS b, c.job AS job
  UNION
  MATCH ()-[u:USED_IN]->(p:Purpose) WHERE u.at <= $as_of
  RETURN DISTINCT 'specific' AS kind, u.dataset AS a, p.key AS b, u.job AS job
  UNION
  MATCH ()-[r:READ_RUN]->() WHERE r.at <= $as_of
  RETURN DISTINCT 'read' AS kind, r.dataset AS a, r.job AS b, r.job AS job
}
RETURN kind, a, b, job
"""

HOLDINGS: Final = """
UNWIND $datasets AS key
MATCH (i:Identifier)-[c:COPY_IN]->(:Dataset {key: key})
WHERE c.since <= $as_of
OPTIONAL MATCH (i)-[:BELONGS_TO]->(s:Subject)
RETURN key AS dataset, c.origin AS origin, count(DISTINCT i) AS identifiers,
       count(DISTINCT coalesce(s.ref, '#' + i.ref)) AS people
"""

COLLECTIONS: Final = """
MATCH (i:Identifier)-[c:COLLECTED_INTO]->(d:Dataset)
WHERE c.at <= $as_of
OPTIONAL MATCH (i)-[:BELONGS_TO]->(s:Subject)
RETURN d.key AS dataset, i.category AS category, c.purpose AS purpose,
       count(DISTINCT i) AS identifiers, count(DISTINCT coalesce(s.ref, '#' + i.ref)) AS people,
       min(c.at) AS first, max(c.at) AS last
"""

ERASED_COPIES: Final = """
MATCH (i:Identifier)-[c:COPY_IN]->(d:Dataset)
WHERE size(coalesce(i.erasures, [])) > 0 AND c.source IS NOT NULL AND c.since <= $as_of
WITH i, c, d, [e IN i.erasures WHERE e <= $as_of] AS erasures
WHERE size(erasures) > 0
RETURN i.ref AS identifier, i.display AS display, i.category AS category, erasures,
       [d.key, c.origin, c.epoch, c.since, c.hops, c.event_id, c.source, c.job] AS copy
"""


def _run(read: Read, action: str, query: LiteralString, **params: Any) -> list[Any]:
    return read(action, query, **params)


def violations(read: Read, as_of: int) -> list[Violation]:
    """The route is the alert's evidence path, read from the node's lists."""
    found: list[Violation] = []
    for r in _run(read, "reading violations", VIOLATIONS, as_of=as_of):
        route = route_of(r["alert"])
        found.append(
            Violation(
                r["identifier"],
                r["category"],
                r["origin_dataset"],
                r["origin_purpose"],
                route,
                r["use_dataset"],
                r["use_job"],
                r["use_purpose"],
                r["at"],
                people_of(r["subjects"], r["identifier"]),
            )
        )
    return found


def dataset_edges(read: Read, as_of: int) -> list[tuple[str, str, str, str]]:
    records = _run(read, "reading the dataset graph", DATASET_EDGES, as_of=as_of)
    return [(r["kind"], r["a"], r["b"], r["job"]) for r in records]


def holdings(read: Read, datasets: Sequence[str], as_of: int) -> list[Holding]:
    records = _run(read, "reading holdings", HOLDINGS, datasets=list(datasets), as_of=as_of)
    return [Holding(r["dataset"], r["origin"], r["identifiers"], r["people"]) for r in records]


def collection_groups(read: Read, as_of: int) -> list[CollectionGroup]:
    return [
        CollectionGroup(r["dataset"], r["category"], r["purpose"], r["identifiers"],
                        r["people"], r["first"], r["last"])
        for r in _run(read, "reading collections", COLLECTIONS, as_of=as_of)
    ]  # fmt: skip


def erased_copies(read: Read, as_of: int) -> list[ErasedCopy]:
    found: list[ErasedCopy] = []
    for r in _run(read, "reading erased copies", ERASED_COPIES, as_of=as_of):
        dataset, origin, epoch, since, hops, event_id, source, job = r["copy"]
        copy = Copy(r["identifier"], dataset, Origin.parse(origin), since, event_id, source, job,
                    hops, epoch)  # fmt: skip
        found.append(ErasedCopy(r["display"], r["category"], tuple(sorted(r["erasures"])), copy))
    return found
