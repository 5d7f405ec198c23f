"""The embedded store's answers to the query layer's reads (``lineage.queries.QueryReader``).

Each read is one SQL statement filtered by event time in SQLite; counts of identifiers and
people are aggregated here, grouping and paging happen in the core. An identifier without an
account counts as one person (``char(0) || ident`` never equals an account ref).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from lineage.events import from_micros, micros
from lineage.model import Copy, Origin
from lineage.queries import CollectionGroup, ErasedCopy, Holding, Violation, people_of
from lineage.report import Route

#: One SQL parameter list per statement stays far below SQLite's 32,766.
_CHUNK = 500

_PERSON = "coalesce(s.subject, char(0) || CAST(c.ident AS TEXT))"


def violations(db: sqlite3.Connection, as_of: int) -> list[Violation]:
    """Alert fields beside the JSON body are read with one ``json_extract`` (in SQLite's C
    code); the route is the ``route`` column."""
    rows = db.execute(
        "SELECT i.ref, a.category, json_extract(a.body, '$.origin_dataset', "
        "'$.origin_purpose', '$.use_dataset', '$.use_job', '$.use_purpose'), a.route, "
        "a.occurred_at, "
        "(SELECT json_group_array(s.subject) FROM subjects s WHERE s.ident = a.ident) "
        "FROM alerts a JOIN identifiers i ON i.id = a.ident "
        "WHERE a.status = 'active' AND a.occurred_at <= ?",
        (from_micros(as_of).isoformat(),),
    ).fetchall()
    routes: dict[str, Route] = {}  # few distinct routes: parse each once
    times: dict[str, int] = {}
    found: list[Violation] = []
    for ref, category, fields, route, at, subjects in rows:
        origin_dataset, origin_purpose, use_dataset, use_job, use_purpose = json.loads(fields)
        if route not in routes:
            routes[route] = tuple((d, j) for d, j in json.loads(route))
        if at not in times:
            times[at] = micros(datetime.fromisoformat(at))
        found.append(
            Violation(ref, category, origin_dataset, origin_purpose, routes[route], use_dataset,
                      use_job, use_purpose, times[at], people_of(json.loads(subjects), ref))
        )  # fmt: skip
    return found


def dataset_edges(db: sqlite3.Connection, as_of: int) -> list[tuple[str, str, str, str]]:
    """Edges with a run or a listed flow/use at or before ``as_of`` (a scan of the fact tables,
    where the plain ``edges()`` reads the small edges table)."""
    rows = db.execute(
        "SELECT DISTINCT kind, a, b, job FROM runs WHERE at <= ?1 "
        "UNION SELECT DISTINCT 'carried', source, target, job FROM carried WHERE at <= ?1 "
        "UNION SELECT DISTINCT 'specific', dataset, purpose, job FROM specific WHERE at <= ?1",
        (as_of,),
    ).fetchall()
    return [(k, a, b, j) for k, a, b, j in rows]


def holdings(db: sqlite3.Connection, datasets: Sequence[str], as_of: int) -> list[Holding]:
    found: list[Holding] = []
    wanted = list(datasets)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        marks = ", ".join("?" for _ in chunk)
        found += [
            Holding(dataset, origin, identifiers, people)
            for dataset, origin, identifiers, people in db.execute(
                f"SELECT c.dataset, c.origin, count(DISTINCT c.ident), count(DISTINCT {_PERSON}) "
                "FROM copies c LEFT JOIN subjects s ON s.ident = c.ident "
                f"WHERE c.dataset IN ({marks}) AND c.since <= ? GROUP BY c.dataset, c.origin",
                (*chunk, as_of),
            )
        ]
    return found


def collection_groups(db: sqlite3.Connection, as_of: int) -> list[CollectionGroup]:
    rows = db.execute(
        f"SELECT c.dataset, i.category, c.purpose, count(DISTINCT c.ident), "
        f"count(DISTINCT {_PERSON}), min(c.at), max(c.at) "
        "FROM collections c JOIN identifiers i ON i.id = c.ident "
        "LEFT JOIN subjects s ON s.ident = c.ident "
        "WHERE c.at <= ? GROUP BY c.dataset, i.category, c.purpose",
        (as_of,),
    ).fetchall()
    return [CollectionGroup(*row) for row in rows]


def erased_copies(db: sqlite3.Connection, as_of: int) -> list[ErasedCopy]:
    rows = db.execute(
        "SELECT i.ref, i.display, i.category, "
        "(SELECT json_group_array(e.at) FROM erasures e WHERE e.ident = c.ident AND e.at <= ?1), "
        "c.dataset, c.origin, c.epoch, c.since, c.hops, c.event_id, c.source, c.job "
        "FROM copies c JOIN identifiers i ON i.id = c.ident "
        "WHERE c.source IS NOT NULL AND c.since <= ?1 "
        "AND c.ident IN (SELECT ident FROM erasures WHERE at <= ?1)",
        (as_of,),
    ).fetchall()
    return [
        ErasedCopy(
            display,
            category,
            tuple(sorted(json.loads(erasures))),
            Copy(ref, dataset, Origin.parse(origin), since, event_id, source, job, hops, epoch),
        )
        for (ref, display, category, erasures, dataset, origin, epoch, since, hops, event_id,
             source, job) in rows
    ]  # fmt: skip
