"""Embedded ``GraphStore``: the projection in SQLite tables beside the event log.

It shares the log's connection (``streams/local_log.py``), so a batch's append and its
projection commit in one transaction: log and graph never disagree, there is no whole-state
checkpoint, and opening a home costs nothing in its size. Every table is keyed the way
propagation reads it (``WITHOUT ROWID`` primary keys), so a read is an index seek and its cost
depends on what an event touches, not on the history behind it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any, TypeVar, cast

from graph import sqlite_incidents, sqlite_queries
from graph.store import GraphSnapshot
from lineage.alerts import Alert
from lineage.audit import CarriedOrigin, RouteExample, carried_order, order_examples
from lineage.errors import StoreError
from lineage.event_identity import Claim
from lineage.events import IncidentEvent, from_micros
from lineage.identifiers import DATASET_LEVEL_SUBJECT, Category
from lineage.incidents import Action, Member
from lineage.model import (
    CarriedFlow,
    Collection,
    Copy,
    FlowEdge,
    IdentifierNode,
    Origin,
    ReadEdge,
    Run,
    SpecificUse,
    UseEdge,
)
from lineage.partition_state import PartitionState
from lineage.planner import EdgeKey, FactRows, RunKey
from lineage.ports import Facts, FirstRun, History, Request, Window, Writes
from lineage.queries import CollectionGroup, ErasedCopy, Holding, Violation
from lineage.report import Tally, route_of
from runtime.faults import fault_point

T = TypeVar("T")

FORMAT = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identifiers (
    id INTEGER PRIMARY KEY, ref TEXT NOT NULL UNIQUE, category TEXT NOT NULL, display TEXT);
CREATE TABLE IF NOT EXISTS subjects (
    ident INTEGER NOT NULL, subject TEXT NOT NULL, PRIMARY KEY (ident, subject)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erasures (
    ident INTEGER NOT NULL, at INTEGER NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (ident, at)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS datasets (
    key TEXT PRIMARY KEY, system TEXT NOT NULL, name TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS collections (
    ident INTEGER NOT NULL, dataset TEXT NOT NULL, purpose TEXT NOT NULL, at INTEGER NOT NULL,
    event_id TEXT NOT NULL, PRIMARY KEY (ident, dataset, purpose, at, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS edges (
    kind TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, job TEXT NOT NULL,
    PRIMARY KEY (kind, a, b, job)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    kind TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, job TEXT NOT NULL,
    at INTEGER NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (kind, a, b, job, at, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS carried (
    ident INTEGER NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL, job TEXT NOT NULL,
    at INTEGER NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (ident, source, target, job, at, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS specific (
    ident INTEGER NOT NULL, dataset TEXT NOT NULL, purpose TEXT NOT NULL, job TEXT NOT NULL,
    at INTEGER NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (ident, dataset, purpose, job, at, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS copies (
    ident INTEGER NOT NULL, dataset TEXT NOT NULL, origin TEXT NOT NULL, epoch INTEGER NOT NULL,
    since INTEGER NOT NULL, hops INTEGER NOT NULL, event_id TEXT NOT NULL,
    source TEXT, job TEXT, PRIMARY KEY (ident, dataset, origin, epoch)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS copies_arrival ON copies (dataset, since);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE, ident INTEGER,
    revision INTEGER NOT NULL, status TEXT NOT NULL, occurred_at TEXT NOT NULL,
    rule TEXT NOT NULL, category TEXT NOT NULL, route TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_ident ON alerts (ident);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (status, occurred_at, alert_id);
CREATE INDEX IF NOT EXISTS alerts_tally ON alerts (
    status, category, ident, rule, occurred_at, route);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL UNIQUE,
    revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, digest TEXT NOT NULL) WITHOUT ROWID;
"""
SCHEMA += f"{sqlite_incidents.ACTIONS_TABLE};\n"  # officers' actions: from the log, like the rest

PROJECTION_TABLES = (
    "identifiers", "subjects", "erasures", "datasets", "jobs", "collections", "edges", "runs",
    "carried", "specific", "copies", "alerts", "outbox", "claims", "incident_actions",
)  # fmt: skip

_COPY_FIELDS = "dataset, origin, epoch, since, hops, event_id, source, job"
_COPY = f"ident, {_COPY_FIELDS}"
_COPY_C = ", ".join(f"c.{c.strip()}" for c in _COPY.split(","))
#: A copy row led by its identifier's ref, from ``copies c JOIN identifiers i``.
_COPY_REF = "i.ref, " + ", ".join(f"c.{c.strip()}" for c in _COPY_FIELDS.split(","))
#: Keys per statement of a batched read (SQLite allows 32,766 parameters per statement).
CHUNK = 500


def _copy(ref: str, row: Sequence[Any]) -> Copy:
    """A copy from a ``_COPY`` row whose first column (identifier id or ref) is ``ref``."""
    _, dataset, origin, epoch, since, hops, event_id, source, job = row
    return Copy(ref, dataset, Origin.parse(origin), since, event_id, source, job, hops, epoch)


def _copy_row(ident: int, c: Copy) -> tuple[Any, ...]:
    return (ident, c.dataset, c.origin.key, c.epoch, c.since, c.hops, c.event_id,
            c.source, c.job)  # fmt: skip


def _refs_of(pairs: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    return (pair[0] for pair in pairs)


def _by_id(keys: Iterable[tuple[Any, ...]], ids: dict[str, int]) -> list[tuple[Any, ...]]:
    """Keys led by an identifier ref, led by its row id instead (unknown refs have no rows)."""
    return [(ids[key[0]], *key[1:]) for key in keys if key[0] in ids]


def _is_index(statement: str) -> bool:
    return statement.strip().startswith("CREATE INDEX")


#: Later than any event time (events end before 2100).
MAX_TIME = 1 << 62


class _JournalAlerts:
    """The state's alert bodies: the ``alerts`` table (written with the rest of a unit)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def get(self, alert_ids: Iterable[str]) -> dict[str, Alert]:
        return {
            aid: Alert.model_validate_json(body)
            for aid, body in self._store._keyed(
                ((a,) for a in alert_ids), 1,
                "SELECT a.alert_id, a.body FROM k JOIN alerts a ON a.alert_id = k.c0")
        }  # fmt: skip

    def put(self, alerts: Sequence[Alert]) -> None:
        """Nothing: ``SqliteStore.write`` puts them in the same transaction."""


class SqliteStore:
    """A ``GraphStore`` on one SQLite connection (shared with the local event log).

    A writer (``create``) keeps the working state in memory
    (:class:`lineage.partition_state.PartitionState`), loaded from the tables in bulk when
    first needed: propagation reads only memory, and the tables are its journal, appended in
    the same transaction as the log. A unit that fails drops the memory, which is loaded again
    from what SQLite committed (so a crash or a rollback cannot leave memory ahead of the
    journal). A read-only opening (``create=False``) holds no state and answers the
    operators' reads (a trace's ``fetch`` included) from the tables; ``working_state=True``
    lets it load the state all the same (what a restarted writer would hold).
    """

    def __init__(
        self,
        db: sqlite3.Connection | str = ":memory:",
        create: bool = True,
        working_state: bool = False,
    ) -> None:
        if isinstance(db, str):
            db = sqlite3.connect(db, isolation_level=None)
        self._db = db
        self._memory = create or working_state
        self._held: PartitionState | None = None
        self._deferred = False  # in a bulk rebuild (``begin_rebuild(bulk=True)``)
        try:
            if create:
                self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the projection tables: {exc}") from exc

    @staticmethod
    def initialised(db: sqlite3.Connection) -> bool:
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'outbox'"
        ).fetchone()
        return row is not None

    # -- units of work -----------------------------------------------------------------
    def atomically(self, work: Callable[[], T]) -> T:
        """One transaction; nested calls join the open one (the service's append + apply)."""
        if self._db.in_transaction:
            try:
                return work()
            except BaseException:
                self._held = None  # reloaded from the journal, this unit's writes included
                raise
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work()
            fault_point("commit")
            self._db.execute("COMMIT")
        except BaseException:
            self._held = None
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return result

    # -- the working state -----------------------------------------------------------------
    def working_state(self) -> PartitionState:
        """The state in memory, loaded from the tables on first use."""
        if self._held is None:
            if self._deferred:  # memory was all there was of the rebuild's projection
                raise StoreError("a unit of the rebuild failed: run `lineage replay` again")
            self._held = self._load()
        return self._held

    def _load(self) -> PartitionState:
        """One scan per table, in primary-key order (rows of one identifier together)."""
        state = PartitionState(_JournalAlerts(self))
        db = self._db
        for ident, ref, category, display in db.execute(
            "SELECT id, ref, category, display FROM identifiers ORDER BY id"
        ):
            state.add_identifier(ident, ref, category, display)
        state.load_subjects(db.execute("SELECT ident, subject FROM subjects"))
        state.load_erasures(db.execute("SELECT ident, at, event_id FROM erasures"))
        state.load_collections(
            db.execute("SELECT ident, dataset, purpose, at, event_id FROM collections")
        )
        state.load_copies((r[0], _copy("", r)) for r in db.execute(f"SELECT {_COPY} FROM copies"))
        state.load_carried(
            db.execute("SELECT ident, source, target, job, at, event_id FROM carried")
        )
        state.load_specific(
            db.execute("SELECT ident, dataset, purpose, job, at, event_id FROM specific")
        )
        state.load_alerts(db.execute("SELECT alert_id, ident FROM alerts"))
        state.load_names(
            (k for (k,) in db.execute("SELECT key FROM datasets")),
            (j for (j,) in db.execute("SELECT name FROM jobs")),
        )
        state.load_edges(
            cast(EdgeKey, tuple(r))
            for r in db.execute("SELECT kind, a, b, job FROM edges WHERE kind IN ('flow', 'use')")
        )
        state.load_runs(
            cast(RunKey, tuple(r))
            for r in db.execute("SELECT kind, a, b, job, at, event_id FROM runs")
        )
        state.load_claims(db.execute("SELECT key, digest FROM claims"))
        state.loaded()
        return state

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, params).fetchall()

    # -- the port: reads ---------------------------------------------------------------
    def _keyed(self, keys: Iterable[tuple[Any, ...]], width: int, sql: str) -> list[Sequence[Any]]:
        """Rows of ``sql`` joined to the keys as ``k(c0..)``: one statement per chunk of keys
        instead of one per key (each still an index seek)."""
        items = list(keys)
        names = ", ".join(f"c{i}" for i in range(width))
        row = "(" + ", ".join("?" for _ in range(width)) + ")"
        rows: list[Sequence[Any]] = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            values = ", ".join(row for _ in chunk)
            params = [v for item in chunk for v in item]
            sql_chunk = f"WITH k({names}) AS (VALUES {values}) {sql}"
            rows += self._db.execute(sql_chunk, params).fetchall()
        return rows

    def _ids(self, refs: Iterable[str]) -> dict[str, int]:
        """The row id of each known identifier among ``refs``. Every other table is keyed by
        it rather than by the ref (a keyed hash): ids grow with arrival, so the rows of new
        identifiers append at the end of each B-tree instead of dirtying a random page each."""
        if self._memory:
            return self.working_state().ids(refs)
        return {
            ref: ident
            for ref, ident in self._keyed(
                ((r,) for r in set(refs)),
                1,
                "SELECT k.c0, i.id FROM k JOIN identifiers i ON i.ref = k.c0",
            )
        }

    def fetch(self, request: Request) -> Facts:
        if self._memory:
            return self.working_state().fetch(request)
        if request.state is not None:  # the merge rules' reads: a writer's, from memory
            raise StoreError("a read-only opening of the projection answers no state request")
        facts = Facts()
        ids = self._ids(
            chain(
                request.identifiers,
                _refs_of(request.copies),
                _refs_of(request.carried),
                _refs_of(request.specific),
                request.histories,
            )
        )
        refs = {i: r for r, i in ids.items()}
        facts.identifiers = self._nodes(request.identifiers, ids)
        for r in self._keyed(
            _by_id(request.copies, ids),
            2,
            f"SELECT {_COPY_C} FROM k JOIN copies c ON c.ident = k.c0 AND c.dataset = k.c1",
        ):
            ref = refs[r[0]]
            facts.copies.setdefault((ref, r[1]), []).append(_copy(ref, r))
        for r in self._keyed(
            _by_id(request.carried, ids),
            2,
            "SELECT c.ident, c.source, "
            "c.target, c.job, c.at, c.event_id FROM k JOIN carried c "
            "ON c.ident = k.c0 AND c.source = k.c1",
        ):
            ref = refs[r[0]]
            facts.carried.setdefault((ref, r[1]), []).append(CarriedFlow(ref, *r[1:]))
        for r in self._keyed(
            _by_id(request.specific, ids),
            2,
            "SELECT c.ident, c.dataset, "
            "c.purpose, c.job, c.at, c.event_id FROM k JOIN specific c "
            "ON c.ident = k.c0 AND c.dataset = k.c1",
        ):
            ref = refs[r[0]]
            facts.specific.setdefault((ref, r[1]), []).append(
                SpecificUse(ref, r[1], r[3], r[2], r[4], r[5])
            )
        facts.flows = self._first_runs("flow", request.flows)
        facts.uses = self._first_runs("use", request.uses)
        for window in request.arrivals:
            facts.arrivals[window] = self._arrivals(window)
        facts.histories = self._histories(request.histories, ids)
        for aid, body in self._keyed(
            ((a,) for a in request.alerts),
            1,
            "SELECT a.alert_id, a.body FROM k JOIN alerts a ON a.alert_id = k.c0",
        ):
            facts.alerts[aid] = Alert.model_validate_json(body)
        return facts  # fmt: skip

    def _arrivals(self, window: Window) -> list[Copy]:
        """One index range on (dataset, since); the origin filter runs in SQLite, so copies a
        use cannot violate never become Python objects."""
        dataset, after, upto, purposes = window
        params: list[Any] = [dataset, after if after is not None else -(2**62), upto]
        sql = (
            f"SELECT {_COPY_REF} FROM copies c JOIN identifiers i ON i.id = c.ident "
            "WHERE c.dataset = ? AND c.since > ? AND c.since <= ?"
        )
        if purposes is not None:
            if not purposes:
                return []
            marks = ", ".join("?" for _ in purposes)
            sql += f" AND substr(c.origin, 1, instr(c.origin, '@') - 1) IN ({marks})"
            params.extend(purposes)
        return [_copy(r[0], r) for r in self._q(sql, params)]

    def _nodes(self, refs: Iterable[str], ids: dict[str, int]) -> dict[str, IdentifierNode]:
        keys = [(ids[r],) for r in refs if r in ids]
        if not keys:
            return {}
        found = {
            ident: (ref, category, display)
            for ident, ref, category, display in self._keyed(
                keys, 1, "SELECT i.id, i.ref, i.category, i.display FROM k JOIN identifiers i "
                "ON i.id = k.c0")
        }  # fmt: skip
        subjects: dict[int, set[str]] = {}
        for ident, subject in self._keyed(
            keys, 1, "SELECT s.ident, s.subject FROM k JOIN subjects s ON s.ident = k.c0"
        ):
            subjects.setdefault(ident, set()).add(subject)
        erasures: dict[int, list[int]] = {}
        for ident, at in self._keyed(
            keys, 1, "SELECT e.ident, e.at FROM k JOIN erasures e ON e.ident = k.c0"
        ):
            erasures.setdefault(ident, []).append(at)
        return {
            ref: IdentifierNode(ref, cast(Category, category), display,
                                frozenset(subjects.get(ident, ())),
                                tuple(sorted(erasures.get(ident, ()))))
            for ident, (ref, category, display) in found.items()
        }  # fmt: skip

    def _first_runs(
        self, kind: str, keys: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], list[FirstRun]]:
        """The first run at or after each time of every edge of each dataset."""
        found: dict[tuple[str, int], list[FirstRun]] = {}
        first = (
            "SELECT {col} FROM runs r WHERE r.kind = e.kind AND r.a = e.a AND r.b = e.b "
            "AND r.job = e.job AND r.at >= k.c1 ORDER BY r.at, r.event_id LIMIT 1"
        )
        sql = (
            f"SELECT * FROM (SELECT k.c0, k.c1, e.b, e.job, ({first.format(col='r.at')}) AS at, "
            f"({first.format(col='r.event_id')}) AS eid FROM k JOIN edges e "
            f"ON e.kind = '{kind}' AND e.a = k.c0) WHERE at IS NOT NULL"
        )
        for dataset, since, b, job, at, eid in self._keyed(keys, 2, sql):
            found.setdefault((dataset, since), []).append(FirstRun(b, job, Run(at, eid)))
        return found

    def _histories(self, wanted: Iterable[str], ids: dict[str, int]) -> dict[str, History]:
        collections: dict[str, list[Collection]] = {r: [] for r in wanted}
        copies: dict[str, list[Copy]] = {r: [] for r in collections}
        alert_ids: dict[str, list[str]] = {r: [] for r in collections}
        refs = {ids[r]: r for r in collections if r in ids}
        keys = [(ident,) for ident in refs]
        for r in self._keyed(
            keys,
            1,
            "SELECT c.ident, c.dataset, c.purpose, c.at, c.event_id "
            "FROM k JOIN collections c ON c.ident = k.c0",
        ):
            collections[refs[r[0]]].append(Collection(refs[r[0]], *r[1:]))
        for r in self._keyed(keys, 1, f"SELECT {_COPY_C} FROM k JOIN copies c ON c.ident = k.c0"):
            copies[refs[r[0]]].append(_copy(refs[r[0]], r))
        for ident, aid in self._keyed(
            keys, 1, "SELECT a.ident, a.alert_id FROM k JOIN alerts a ON a.ident = k.c0"
        ):
            alert_ids[refs[ident]].append(aid)
        return {
            ref: History(tuple(collections[ref]), tuple(copies[ref]), tuple(alert_ids[ref]))
            for ref in collections
        }  # fmt: skip

    # -- the port: event identity (a unit holds SQLite's one write lock: nothing to lock) -----
    def read_claims(self, keys: Sequence[str]) -> dict[str, str]:
        if self._memory:
            return self.working_state().read_claims(keys)
        rows = self._keyed(
            ((k,) for k in keys), 1, "SELECT c.key, c.digest FROM k JOIN claims c ON c.key = k.c0"
        )
        return {key: value for key, value in rows}

    def write_claims(self, fresh: Sequence[Claim], absent: Sequence[str]) -> None:
        if self._memory:
            self.working_state().write_claims(fresh, absent)
        self._db.executemany(
            "INSERT INTO claims (key, digest) VALUES (?, ?)", [(c.key, c.digest) for c in fresh]
        )

    # -- the port: writes --------------------------------------------------------------
    def write(self, writes: Writes) -> None:
        db = self._db
        if self._memory:
            self.working_state().write(writes)  # first: it numbers new identifiers
        try:
            if writes.facts:
                self._write_facts(writes.facts)
            if self._deferred:  # a bulk rebuild writes identifiers' rows at its end
                self._put_alerts(writes.alerts, self._ids(a.identifier for a in writes.alerts))
                return
            ids = self._ids(
                chain(
                    writes.dropped,
                    (c.identifier for c in writes.copies),
                    (a.identifier for a in writes.alerts),
                )
            )
            db.executemany(
                "DELETE FROM copies WHERE ident = ?",
                [(ids[r],) for r in writes.dropped if r in ids],
            )
            db.executemany(
                f"INSERT INTO copies ({_COPY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (ident, dataset, origin, epoch) DO UPDATE SET "
                "since = excluded.since, hops = excluded.hops, event_id = excluded.event_id, "
                "source = excluded.source, job = excluded.job "
                "WHERE (excluded.since, excluded.hops, excluded.event_id) "
                "<= (copies.since, copies.hops, copies.event_id)",
                [_copy_row(ids[c.identifier], c) for c in writes.copies],
            )
            self._put_alerts(writes.alerts, ids)
        except sqlite3.Error as exc:
            raise StoreError(f"projection write failed: {exc}") from exc  # fmt: skip

    def _write_facts(self, rows: FactRows) -> None:
        """The fact rows, keyed by the row ids the state numbered (``write`` applied them to
        memory first); in a bulk rebuild only the dataset-level ones (the rest at its end)."""
        db = self._db
        if not self._deferred:
            numbered = self._ids(r["ref"] for r in rows.identifiers)
            db.executemany(
                "INSERT OR IGNORE INTO identifiers (id, ref, category, display) "
                "VALUES (?, ?, ?, ?)",
                [(numbered[r["ref"]], r["ref"], r["category"], r["display"])
                 for r in rows.identifiers],
            )  # fmt: skip
        plain: list[tuple[str, str, list[dict[str, Any]]]] = [
            ("datasets", "key, system, name", rows.datasets),
            ("jobs", "name", rows.jobs),
            ("edges", "kind, a, b, job", rows.edges),
            ("runs", "kind, a, b, job, at, event_id", rows.runs),
        ]
        keyed: list[tuple[str, str, list[dict[str, Any]]]] = (
            []
            if self._deferred
            else [
                ("subjects", "ref, subject", rows.subjects),
                ("erasures", "ref, at, event_id", rows.erasures),
                ("collections", "ref, dataset, purpose, at, event_id", rows.collections),
                ("carried", "ref, source, target, job, at, event_id", rows.carried),
                ("specific", "ref, dataset, purpose, job, at, event_id", rows.specific),
            ]
        )
        ids = self._ids(r["ref"] for _, _, items in keyed for r in items)
        # The small dataset/job graph (``edges()``) also names datasets linked only by flows or
        # uses of listed identifiers: one row per (source, target, job), not per event.
        db.executemany(
            "INSERT OR IGNORE INTO edges (kind, a, b, job) VALUES ('carried', ?, ?, ?)",
            {(r["source"], r["target"], r["job"]) for r in rows.carried},
        )
        db.executemany(
            "INSERT OR IGNORE INTO edges (kind, a, b, job) VALUES ('specific', ?, ?, ?)",
            {(r["dataset"], r["purpose"], r["job"]) for r in rows.specific},
        )
        for table, columns, items in plain + keyed:
            if not items:
                continue
            names = [c.strip() for c in columns.split(",")]
            marks = ", ".join("?" for _ in names)
            values = [tuple(item[n] for n in names) for item in items]
            if names[0] == "ref":
                columns = "ident" + columns[3:]
                values = [(ids[v[0]], *v[1:]) for v in values]
            db.executemany(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", values)

    def _put_alerts(self, alerts: Sequence[Alert], ids: dict[str, int]) -> None:
        """Upsert keeping the higher revision; what was written enters the outbox. The
        columns beside the JSON body are what ``tally`` aggregates without parsing it.
        ``ident`` is null only for an alert withdrawn by a rebuild that no longer holds its
        identifier (``replay --until`` before its collection)."""
        self._db.executemany(
            "INSERT INTO alerts (alert_id, ident, revision, status, occurred_at, rule, "
            "category, route, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (alert_id) DO UPDATE SET "
            "revision = excluded.revision, status = excluded.status, "
            "occurred_at = excluded.occurred_at, route = excluded.route, body = excluded.body "
            "WHERE excluded.revision > alerts.revision",
            [(a.alert_id, ids.get(a.identifier), a.revision, a.status, a.occurred_at.isoformat(),
              a.rule, a.category, json.dumps(route_of(a)), a.model_dump_json())
             for a in alerts],
        )  # fmt: skip
        self._db.executemany(
            "INSERT OR REPLACE INTO outbox (alert_id, revision) SELECT alert_id, revision "
            "FROM alerts WHERE alert_id = ? AND revision = ?",
            [(a.alert_id, a.revision) for a in alerts],
        )

    # -- operators' reads ----------------------------------------------------------------
    def alerts(self, include_withdrawn: bool = False) -> list[Alert]:
        where = "" if include_withdrawn else "WHERE status = 'active' "
        return [
            Alert.model_validate_json(body)
            for (body,) in self._q(f"SELECT body FROM alerts {where}ORDER BY occurred_at, alert_id")
        ]

    def alert(self, alert_id: str) -> Alert | None:
        row = self._db.execute("SELECT body FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return Alert.model_validate_json(row[0]) if row is not None else None

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        return [
            Alert.model_validate_json(body)
            for (body,) in self._q(
                "SELECT a.body FROM outbox o JOIN alerts a USING (alert_id) ORDER BY o.id LIMIT ?",
                (limit,),
            )
        ]

    def mark_published(self, alerts: Sequence[Alert]) -> None:
        """Joins an open transaction (the service piggybacks marks on the next batch)."""
        if not alerts:
            return
        self.atomically(
            lambda: self._db.executemany(
                "DELETE FROM outbox WHERE alert_id = ? AND revision = ?",
                [(a.alert_id, a.revision) for a in alerts],
            )
        )

    def counts(self) -> dict[str, int]:
        return {t: int(self._q(f"SELECT count(*) FROM {t}")[0][0]) for t in PROJECTION_TABLES}

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def snapshot(self) -> GraphSnapshot:
        def runs(kind: str, a: str, b: str, job: str) -> tuple[Run, ...]:
            return tuple(Run(at, e) for at, e in self._q(
                "SELECT at, event_id FROM runs WHERE kind = ? AND a = ? AND b = ? AND job = ? "
                "ORDER BY at, event_id", (kind, a, b, job)))  # fmt: skip

        ids = dict(self._q("SELECT ref, id FROM identifiers"))
        edges = self._q("SELECT kind, a, b, job FROM edges")
        join = "c JOIN identifiers i ON i.id = c.ident"
        return GraphSnapshot(
            identifiers=frozenset(self._nodes(ids, ids).values()),
            datasets=frozenset(tuple(r) for r in self._q("SELECT key, system, name FROM datasets")),
            jobs=frozenset(j for (j,) in self._q("SELECT name FROM jobs")),
            collections=frozenset(Collection(*r) for r in self._q(
                f"SELECT i.ref, c.dataset, c.purpose, c.at, c.event_id FROM collections {join}")),
            flows=frozenset(FlowEdge(a, b, job, runs(k, a, b, job))
                            for k, a, b, job in edges if k == "flow"),
            uses=frozenset(UseEdge(a, job, b, runs(k, a, b, job))
                           for k, a, b, job in edges if k == "use"),
            reads=frozenset(ReadEdge(a, job, runs(k, a, b, job))
                            for k, a, b, job in edges if k == "read"),
            carried=frozenset(CarriedFlow(*r) for r in self._q(
                f"SELECT i.ref, c.source, c.target, c.job, c.at, c.event_id FROM carried {join}")),
            specific_uses=frozenset(
                SpecificUse(r[0], r[1], r[3], r[2], r[4], r[5]) for r in self._q(
                f"SELECT i.ref, c.dataset, c.purpose, c.job, c.at, c.event_id "
                f"FROM specific {join}")),
            copies=frozenset(_copy(r[0], r) for r in self._q(
                f"SELECT {_COPY_REF} FROM copies {join}")),
            alerts=frozenset(a for (a,) in self._q(
                "SELECT alert_id FROM alerts WHERE status = 'active'")),
        )  # fmt: skip

    def tally(self, as_of: int | None = None) -> Tally:
        """The report's inputs in a few aggregate queries over indexed columns: a report on
        a million alerts reads no alert JSON. ``as_of``: only violations up to that time."""
        if as_of is None:
            return self._tally("", ())
        return self._tally(" AND occurred_at <= ?", (from_micros(as_of).isoformat(),))

    def _tally(self, where: str, params: tuple[Any, ...]) -> Tally:
        active = f"FROM alerts WHERE status = 'active'{where}"
        counted = Tally()
        (counted.alerts,) = self._q(f"SELECT count(*) {active}", params)[0]
        if not counted.alerts:
            return counted
        counted.identifiers_by_category = dict(
            self._q(f"SELECT category, count(DISTINCT ident) {active} GROUP BY category", params)
        )
        first, last = self._q(f"SELECT min(occurred_at), max(occurred_at) {active}", params)[0]
        counted.first, counted.last = (datetime.fromisoformat(first), datetime.fromisoformat(last))
        counted.by_rule = dict(self._q(f"SELECT rule, count(*) {active} GROUP BY rule", params))
        counted.by_year = dict(
            self._q(f"SELECT substr(occurred_at, 1, 4), count(*) {active} GROUP BY 1", params)
        )
        routes = {route: n for route, n in self._q(
            f"SELECT route, count(*) {active} GROUP BY route", params)}  # fmt: skip
        parsed = {route: tuple((d, j) for d, j in json.loads(route)) for route in routes}
        counted.routes = {parsed[route]: n for route, n in routes.items()}
        # The use job is the last evidence step's job: the few distinct routes name it, so
        # people per job come from the same pass as people overall (no alert JSON is read).
        # Distinct people in Python: SQLite's count(DISTINCT) sorts a million subject strings
        # in a temp B-tree (2.2 s at 1M identifiers; a set takes 0.7 s).
        job_of = {route: str(steps[-1][1]) for route, steps in parsed.items() if steps}
        jobs = set(job_of.values())
        people: set[str] = set()
        by_job: dict[str, set[str]] = {}
        dataset_level: dict[int, str] = {}  # OpenLineage's pseudo-identifiers: no person
        if len(jobs) == 1 and len(job_of) == len(parsed):  # one violating job: all people
            rows = self._q(
                f"SELECT a.ident, NULL, a.category, s.subject FROM (SELECT DISTINCT ident, "
                f"category {active}) a LEFT JOIN subjects s ON s.ident = a.ident",
                params,
            )
        else:
            rows = self._q(
                f"SELECT a.ident, a.route, a.category, s.subject FROM (SELECT DISTINCT ident, "
                f"route, category {active}) a LEFT JOIN subjects s ON s.ident = a.ident",
                params,
            )
        for ident, route, category, subject in rows:
            if subject == DATASET_LEVEL_SUBJECT:
                dataset_level[ident] = category
                continue
            # an identifier with no known owner counts as one person
            owner = subject if subject is not None else f"\x00{ident}"
            people.add(owner)
            if route in job_of:
                by_job.setdefault(job_of[route], set()).add(owner)
        for category in dataset_level.values():
            counted.identifiers_by_category[category] -= 1
        counted.identifiers_by_category = {
            c: n for c, n in counted.identifiers_by_category.items() if n
        }
        counted.people = len(people)
        counted.people_by_job = {job: len(owners) for job, owners in by_job.items()}
        if len(jobs) == 1 and not by_job and counted.people:
            counted.people_by_job = {jobs.pop(): counted.people}
        return counted  # fmt: skip

    # -- the audit report's reads ------------------------------------------------------
    @staticmethod
    def _window(since: datetime | None, until: datetime | None) -> tuple[str, str]:
        """Bounds on the ``occurred_at`` column: UTC ISO strings compare in time order (the
        fraction, when present, follows the seconds and sorts after the '+' of the offset);
        '' is below every time and '9' above."""
        return (
            "" if since is None else since.astimezone(UTC).isoformat(),
            "9" if until is None else until.astimezone(UTC).isoformat(),
        )

    def tally_between(self, since: datetime | None, until: datetime | None) -> Tally:
        """``tally`` restricted to violations in [since, until) (the covering index
        ``alerts_tally`` still serves the aggregate queries)."""
        if since is None and until is None:
            return self.tally()
        return self._tally(" AND occurred_at >= ? AND occurred_at < ?", self._window(since, until))

    def route_examples(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[RouteExample]:
        """One grouped scan of the active alerts in the window; the purposes come out of the
        JSON body (measured: 237 ms for 49,632 alerts). With a lone ``min()``, SQLite takes
        the bare ``body`` from the row holding the minimum: the earliest alert of each group
        by time, then id (no stored time is a prefix of another, so the ids decide ties)."""
        rows = self._q(
            "SELECT route, body ->> '$.origin_purpose', body ->> '$.use_purpose', count(*), "
            "min(occurred_at || '|' || alert_id), body FROM alerts "
            "WHERE status = 'active' AND occurred_at >= ? AND occurred_at < ? GROUP BY 1, 2, 3",
            self._window(since, until),
        )
        return order_examples(
            RouteExample(
                tuple((d, j) for d, j in json.loads(route)),
                origin,
                use,
                count,
                Alert.model_validate_json(body),
            )
            for route, origin, use, count, _, body in rows
        )

    def carried_origins(self, as_of: int | None = None) -> list[CarriedOrigin]:
        """A scan of every copy (an operator's read, never on the write path)."""
        found: list[CarriedOrigin] = []
        for source, dataset, job, key in self._q(
            "SELECT DISTINCT source, dataset, job, origin FROM copies WHERE since <= ?",
            (MAX_TIME if as_of is None else as_of,),
        ):
            origin = Origin.parse(key)
            found.append(CarriedOrigin(source, dataset, job, origin.dataset, origin.purpose))
        return sorted(found, key=carried_order)

    # -- incidents (lineage.incidents.IncidentReader; SQL in graph/sqlite_incidents) ------
    def incident_members(self, as_of: int | None) -> list[Member]:
        return sqlite_incidents.members(self._db, as_of)

    def incident_actions(self) -> list[Action]:
        return sqlite_incidents.actions(self._db)

    def incident_watermark(self, as_of: int | None) -> int | None:
        return sqlite_incidents.watermark(self._db, as_of)

    def record_incident_actions(self, events: Sequence[IncidentEvent]) -> None:
        self.atomically(lambda: sqlite_incidents.record_actions(self._db, events))

    # -- the query layer's reads (lineage.queries.QueryReader; SQL in graph/sqlite_queries) --
    def violations(self, as_of: int) -> list[Violation]:
        return sqlite_queries.violations(self._db, as_of)

    def dataset_edges(self, as_of: int) -> list[tuple[str, str, str, str]]:
        return sqlite_queries.dataset_edges(self._db, as_of)

    def holdings(self, datasets: Sequence[str], as_of: int) -> list[Holding]:
        return sqlite_queries.holdings(self._db, datasets, as_of)

    def collection_groups(self, as_of: int) -> list[CollectionGroup]:
        return sqlite_queries.collection_groups(self._db, as_of)

    def erased_copies(self, as_of: int) -> list[ErasedCopy]:
        return sqlite_queries.erased_copies(self._db, as_of)

    # -- rebuilding from the log -------------------------------------------------------
    def begin_rebuild(self, bulk: bool = False) -> None:
        """Empty the projection in this version's schema, keeping what sinks were sent (an
        interrupted rebuild keeps the first copy: it is what they saw).

        ``bulk`` (a writer holding its state in memory): until ``finish_rebuild``, units
        write only the small dataset tables and the alerts; the identifiers' rows are
        computed in memory and bulk-inserted at the end in key order, and the secondary
        indexes are built after them."""
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS previous_alerts AS "
            "SELECT alert_id, revision, status, body FROM alerts"
        )
        for table in PROJECTION_TABLES:
            db.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in SCHEMA.split(";"):
            if statement.strip() and not (bulk and _is_index(statement)):
                db.execute(statement)
        self.set_meta("replaying", "1")
        self._held = PartitionState(_JournalAlerts(self)) if bulk else None
        self._deferred = bulk

    def _write_held(self) -> None:
        """The end of a bulk rebuild: memory's identifier rows, then the indexes."""
        db = self._db
        rows = self.working_state().journal_rows()
        db.executemany(
            "INSERT INTO identifiers (id, ref, category, display) VALUES (?, ?, ?, ?)",
            rows.identifiers(),
        )
        db.executemany("INSERT INTO subjects (ident, subject) VALUES (?, ?)", rows.subjects())
        db.executemany(
            "INSERT INTO erasures (ident, at, event_id) VALUES (?, ?, ?)", rows.erasures()
        )
        db.executemany(
            "INSERT INTO collections (ident, dataset, purpose, at, event_id) "
            "VALUES (?, ?, ?, ?, ?)",
            rows.collections(),
        )
        db.executemany(
            f"INSERT INTO copies ({_COPY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_copy_row(ident, c) for ident, c in rows.copies()),
        )
        db.executemany(
            "INSERT INTO carried (ident, source, target, job, at, event_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows.carried(),
        )
        db.executemany(
            "INSERT INTO specific (ident, dataset, purpose, job, at, event_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows.specific(),
        )
        for statement in SCHEMA.split(";"):
            if _is_index(statement):
                db.execute(statement)
        self._deferred = False

    def finish_rebuild(self) -> None:
        """Continue each alert's revision numbering across the rebuild: consumers keep the
        highest revision, so a changed alert is a revision, an unchanged one is not re-sent,
        and one that no longer holds is sent withdrawn."""
        db = self._db
        if self._deferred:
            self._write_held()
        # The same JSON is the same alert, revision included: not re-sent, nothing to restamp
        # (most alerts of a rebuild; decided here without loading a million of them).
        db.execute(
            "DELETE FROM outbox WHERE alert_id IN (SELECT a.alert_id FROM alerts a "
            "JOIN previous_alerts p USING (alert_id) WHERE a.body = p.body)"
        )
        rows = self._q(
            "SELECT a.body, p.revision, p.body FROM alerts a "
            "JOIN previous_alerts p USING (alert_id) WHERE a.body != p.body"
        )
        for body, revision, old_body in rows:
            fresh = Alert.model_validate_json(body)
            old = Alert.model_validate_json(old_body)
            if fresh.same_content(old):
                restamped = fresh.model_copy(update={"revision": revision})
                db.execute("DELETE FROM outbox WHERE alert_id = ?", (fresh.alert_id,))
            else:
                restamped = fresh.model_copy(update={"revision": revision + 1})
                db.execute("UPDATE outbox SET revision = ? WHERE alert_id = ?",
                           (restamped.revision, fresh.alert_id))  # fmt: skip
            db.execute(
                "UPDATE alerts SET revision = ?, body = ? WHERE alert_id = ?",
                (restamped.revision, restamped.model_dump_json(), fresh.alert_id),
            )
        gone = self._q(
            "SELECT body FROM previous_alerts WHERE status = 'active' AND alert_id NOT IN "
            "(SELECT alert_id FROM alerts)"
        )
        for (old_body,) in gone:
            old = Alert.model_validate_json(old_body)
            gone_alert = old.model_copy(
                update={"status": "withdrawn", "revision": old.revision + 1}
            )
            self._put_alerts([gone_alert], self._ids([old.identifier]))  # fmt: skip
        db.execute("DROP TABLE previous_alerts")
        self.set_meta("replaying", None)
        self.set_meta("format", str(FORMAT))

    def edges(self) -> list[tuple[str, str, str, str]]:
        """The small dataset/job graph: (kind, from, to, job) for every flow and use, of
        whole datasets (``flow``/``use``) or of listed identifiers (``carried``/``specific``),
        and every read (``read``); a use's ``to`` is its purpose, a read's its job."""
        return [(k, a, b, j) for k, a, b, j in self._q("SELECT kind, a, b, job FROM edges")]

    def clear(self) -> None:
        def work() -> None:
            for table in PROJECTION_TABLES:
                self._db.execute(f"DELETE FROM {table}")

        self.atomically(work)
        self._held = None

    def close(self) -> None:
        """The connection belongs to whoever opened it (the event log, in embedded mode)."""
