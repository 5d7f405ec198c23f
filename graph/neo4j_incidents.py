"""The Neo4j store's reads for incidents (``lineage.incidents.IncidentReader``): one Cypher
over the active alerts and their identifiers' accounts (the route out of the alert's evidence
lists, :func:`graph.neo4j_alerts.route_of`, as ``neo4j_queries.violations`` reads it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from graph.neo4j_alerts import route_of
from lineage.events import IncidentEvent
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.incidents import Action, IncidentKey, Member, action_of
from lineage.queries import people_of

#: ``Neo4jStore._read``: (action, query, **params) -> records.
Read = Callable[..., list[Any]]
#: ``Neo4jStore._write``-like: (action, query, **params) -> None.
Write = Callable[..., Any]

MEMBERS: Final = """
MATCH (a:Alert {status: 'active'})-[:ABOUT]->(i:Identifier)
WHERE $as_of IS NULL OR a.occurred_at <= $as_of
RETURN a.rule AS rule, a.alert_id AS alert_id, i.ref AS identifier,
       a.origin_dataset AS origin_dataset, a.origin_purpose AS origin_purpose,
       a.use_dataset AS use_dataset, a.use_job AS use_job, a.use_purpose AS use_purpose,
       a.occurred_at AS at,
       a {.evidence_datasets, .evidence_jobs, .use_job, .json} AS alert,
       COLLECT { MATCH (i)-[:BELONGS_TO]->(s:Subject) RETURN s.ref } AS subjects
"""

WATERMARK: Final = """
CALL () {
  MATCH ()-[r:FLOW_RUN]->() WHERE $as_of IS NULL OR r.at <= $as_of RETURN max(r.at) AS m
  UNION ALL
  MATCH ()-[r:USE_RUN]->() WHERE $as_of IS NULL OR r.at <= $as_of RETURN max(r.at) AS m
  UNION ALL
  MATCH ()-[c:COLLECTED_INTO]->() WHERE $as_of IS NULL OR c.at <= $as_of RETURN max(c.at) AS m
}
RETURN max(m) AS latest
"""

ACTIONS: Final = """
MATCH (x:IncidentAction)
RETURN x.event_id AS event_id, x.incident_id AS incident_id, x.kind AS kind, x.by AS by,
       x.why AS why, x.at AS at
ORDER BY at, event_id
"""

RECORD_ACTIONS: Final = """
UNWIND $rows AS row
MERGE (x:IncidentAction {event_id: row.event_id})
ON CREATE SET x.incident_id = row.incident_id, x.kind = row.kind, x.by = row.by,
              x.why = row.why, x.at = row.at, x.json = row.json
"""


def members(read: Read, as_of: int | None) -> list[Member]:
    found: list[Member] = []
    for r in read("reading incident members", MEMBERS, as_of=as_of):
        route = route_of(r["alert"])
        key = IncidentKey(
            r["rule"], r["origin_dataset"], r["origin_purpose"],
            route,
            r["use_dataset"], r["use_job"], r["use_purpose"],
        )  # fmt: skip
        accounts = list(r["subjects"])
        dataset_level = DATASET_LEVEL_SUBJECT in accounts
        people = () if dataset_level else people_of(accounts, r["identifier"])
        found.append(Member(key, r["alert_id"], r["identifier"], people, dataset_level, r["at"]))
    return found


def watermark(read: Read, as_of: int | None) -> int | None:
    records = read("reading the latest event time", WATERMARK, as_of=as_of)
    latest = records[0]["latest"] if records else None
    return int(latest) if latest is not None else None


def actions(read: Read) -> list[Action]:
    return [
        Action(r["event_id"], r["incident_id"], r["kind"], r["by"], r["why"], r["at"])
        for r in read("reading incident actions", ACTIONS)
    ]


def record_actions(write: Write, events: Sequence[IncidentEvent]) -> None:
    rows = []
    for event in events:
        a = action_of(event)
        row = {"event_id": a.event_id, "incident_id": a.incident_id, "kind": a.kind, "by": a.by}
        rows.append({**row, "why": a.why, "at": a.at, "json": event.model_dump_json()})
    write("recording incident actions", RECORD_ACTIONS, rows=rows)
