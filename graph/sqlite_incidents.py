"""The embedded store's reads for incidents (``lineage.incidents.IncidentReader``).

One SQL statement over the active alerts (the purposes and the use out of the JSON body, as
``route_examples`` reads them; the route is the ``route`` column), the identifier's accounts
beside each; grouping happens in ``lineage.incidents.fold``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from lineage.events import INCIDENT_EVENT_ADAPTER, IncidentEvent, from_micros, micros
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.incidents import Action, IncidentKey, Member, action_of
from lineage.queries import people_of
from lineage.report import Route


def members(db: sqlite3.Connection, as_of: int | None) -> list[Member]:
    where, params = "", ()
    if as_of is not None:
        where, params = " AND a.occurred_at <= ?", (from_micros(as_of).isoformat(),)  # type: ignore[assignment]
    rows = db.execute(
        "SELECT a.rule, i.ref, a.alert_id, json_extract(a.body, '$.origin_dataset', "
        "'$.origin_purpose', '$.use_dataset', '$.use_job', '$.use_purpose'), a.route, "
        "a.occurred_at, "
        "(SELECT json_group_array(s.subject) FROM subjects s WHERE s.ident = a.ident) "
        "FROM alerts a JOIN identifiers i ON i.id = a.ident "
        f"WHERE a.status = 'active'{where}",
        params,
    ).fetchall()
    routes: dict[str, Route] = {}  # few distinct routes and times: parse each once
    times: dict[str, int] = {}
    keys: dict[tuple[str, str, str], IncidentKey] = {}
    found: list[Member] = []
    for rule, ref, alert_id, fields, route, at, subjects in rows:
        if route not in routes:
            routes[route] = tuple((d, j) for d, j in json.loads(route))
        if at not in times:
            times[at] = micros(datetime.fromisoformat(at))
        if (rule, fields, route) not in keys:
            origin_dataset, origin_purpose, use_dataset, use_job, use_purpose = json.loads(fields)
            keys[rule, fields, route] = IncidentKey(
                rule, origin_dataset, origin_purpose, routes[route], use_dataset, use_job,
                use_purpose,
            )  # fmt: skip
        accounts = json.loads(subjects)
        dataset_level = DATASET_LEVEL_SUBJECT in accounts
        found.append(
            Member(keys[rule, fields, route], alert_id, ref,
                   () if dataset_level else people_of(accounts, ref), dataset_level, times[at])
        )  # fmt: skip
    return found


def watermark(db: sqlite3.Connection, as_of: int | None) -> int | None:
    """The latest event time of a run or a collection (at or before ``as_of``)."""
    bound = (1 << 62) if as_of is None else as_of
    (latest,) = db.execute(
        "SELECT max(m) FROM (SELECT max(at) AS m FROM runs WHERE at <= ?1 "
        "UNION ALL SELECT max(at) FROM collections WHERE at <= ?1)",
        (bound,),
    ).fetchone()
    return int(latest) if latest is not None else None


#: One of the projection's tables (``SqliteStore``'s schema): the actions are events in the
#: log, so ``lineage replay`` empties it and records them again from the log.
ACTIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS incident_actions (event_id TEXT PRIMARY KEY, "
    "incident_id TEXT NOT NULL, kind TEXT NOT NULL, by TEXT NOT NULL, why TEXT NOT NULL, "
    "at INTEGER NOT NULL, body TEXT NOT NULL) WITHOUT ROWID"
)


def actions(db: sqlite3.Connection) -> list[Action]:
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incident_actions'"
    ).fetchone()
    if not exists:
        return []
    return [
        Action(event_id, incident_id, kind, by, why, at)
        for event_id, incident_id, kind, by, why, at in db.execute(
            "SELECT event_id, incident_id, kind, by, why, at FROM incident_actions "
            "ORDER BY at, event_id"
        )
    ]


def action_events(db: sqlite3.Connection) -> list[IncidentEvent]:
    """The recorded actions as events (their kept JSON), in time order."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'incident_actions'"
    ).fetchone()
    if not exists:
        return []
    rows = db.execute("SELECT body FROM incident_actions ORDER BY at, event_id")
    return [INCIDENT_EVENT_ADAPTER.validate_json(body) for (body,) in rows]


def record_actions(db: sqlite3.Connection, events: Sequence[IncidentEvent]) -> None:
    """Idempotent: keyed by the event id (recording an action again is a no-op); the event's
    JSON is kept beside its columns. Call inside the store's unit (``SqliteStore.atomically``):
    it joins the transaction that appends and projects the action."""
    rows = []
    for event in events:
        a = action_of(event)
        rows.append((a.event_id, a.incident_id, a.kind, a.by, a.why, a.at,
                     event.model_dump_json()))  # fmt: skip
    db.execute(ACTIONS_TABLE)
    db.executemany("INSERT OR IGNORE INTO incident_actions VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
