"""``GraphStore`` on a Neo4j 5 server through the official driver.

The core decides everything (:mod:`lineage.planner`, :mod:`lineage.propagation`); this store
answers keyed reads and applies rows. Each ``fetch`` is one Cypher statement whatever it asks
(a ``CALL`` subquery per key kind, each an ``UNWIND`` over its keys seeking an index), and each
``write`` is one statement (an ``UNWIND`` per row kind). Driver errors become
:class:`lineage.errors.StoreError`, classified by what helps (:mod:`graph.errors`: transient,
permanent, oversize, fatal); driver types never leave this module. The graph model is
documented in :mod:`graph.neo4j_cypher` and the README.

Concurrency. Several workers share one database, and Neo4j reads are *read committed*: a read
takes no lock and sees only committed data. Two units of work can therefore each miss the
other's uncommitted write and both commit a wrong result: worker A applies a collection whose
copy propagates into dataset X and reads X's uses (none yet), while worker B adds a
whole-dataset use of X and reads X's copies (A's is not committed): no alert, ever. So inside
``atomically`` every fetch first takes exclusive locks on the nodes its reads are *about*, and
only then reads:

- datasets: of ``flows``, ``uses`` and ``arrivals`` keys (whole-dataset facts are read and
  written under the dataset's lock), and every dataset of a batch's state keys;
- identifiers: of ``identifiers``, ``histories``, and the identifier of ``copies``,
  ``carried`` and ``specific`` pairs (per-identifier facts, copies included, are read and
  written under the identifier's lock), and every identifier of a batch's state keys.

Every fact is written by a unit that first read it (or its absence) under the same lock (a copy
in a dataset is written only after reading the dataset's flows and uses; dropping an
identifier's copies for a recompute locks their datasets in the write), so two units that touch
a common key serialize: the second blocks until the first commits, then reads what it wrote.
In the example both lock X (A to read X's uses, B to read X's arrivals), so whichever comes
second sees the other's work and raises the alert.

Units lock datasets before identifiers, sorted, within a fetch; across the waves of a
propagation the order can still cross, and Neo4j then aborts one unit with a transient
``DeadlockDetected`` error: the driver's ``execute_write`` retries the whole unit (the
tracker's unit is a pure function of what it reads, so re-running it is safe). The lock is a
scratch property set and removed (the documented Cypher idiom; Neo4j 5 Community has no lock
procedure; the write lock is held until the transaction ends); state keys are MERGEd first, so
a node that does not exist yet is locked through the unique constraint. Neo4j's own locks
(taken when a relationship is created or deleted) cover only some interleavings:
``tests/integration/test_neo4j_concurrency.py`` holds one unit open between its reads and its
commit and shows the example's violation is missed without these locks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final, LiteralString, TypeVar, cast
from urllib.parse import urlsplit

from neo4j import (
    READ_ACCESS,
    WRITE_ACCESS,
    Driver,
    GraphDatabase,
    ManagedTransaction,
    NotificationMinimumSeverity,
    Record,
    Session,
)
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConnectionPoolError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    UnsupportedServerProduct,
)
from neo4j.exceptions import ConfigurationError as DriverConfigurationError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from graph import neo4j_cypher as cypher
from graph import neo4j_incidents, neo4j_queries
from graph.errors import (
    ClassifiedStoreError,
    FatalStoreError,
    PermanentStoreError,
    TransientStoreError,
)
from graph.neo4j_alerts import alert_of, alert_props
from graph.store import GraphSnapshot
from lineage.alerts import Alert
from lineage.audit import CarriedOrigin, RouteExample, carried_order, route_examples
from lineage.errors import StoreError
from lineage.event_identity import Claim
from lineage.events import IncidentEvent, micros
from lineage.identifiers import Category
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
from lineage.planner import FactRows, NodeState, Row, State, StateKeys
from lineage.ports import Facts, FirstRun, History, Request, Window, Writes
from lineage.queries import CollectionGroup, ErasedCopy, Holding, Violation
from lineage.report import Tally, tally

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Rows per inner transaction of ``clear``: bounded memory however big the graph is.
CLEAR_BATCH: Final = 10_000
#: Bolt only: a unit of work needs a multi-statement transaction, which the HTTP API lacks.
SCHEMES: Final = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})
SCHEMA_TIMEOUT_SECONDS: Final = 300
#: An auto-commit read is retried on transient errors this many times in all (tenacity,
#: exponential backoff from this delay). Longer outages are the caller's to wait out.
READ_ATTEMPTS: Final = 3
READ_RETRY_DELAY_SECONDS: Final = 0.1
#: How long the driver's managed transactions (``execute_write``) retry transient errors
#: (deadlocks, a lost connection, a leader switch) before giving up with a
#: :class:`TransientStoreError`; the worker's own bounded, logged retries take over from there.
UNIT_RETRY_SECONDS: Final = 10.0
#: Server codes that mean "this transaction is too big (for the server's memory, or its
#: timeout)": the same work fails again (the driver would retry the pool one as transient),
#: smaller pieces may pass.
OVERSIZE_CODES: Final = frozenset(
    {
        "Neo.ClientError.General.TransactionOutOfMemoryError",
        "Neo.ClientError.Transaction.TransactionTimedOut",
        "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration",
        "Neo.TransientError.General.MemoryPoolOutOfMemoryError",
        "Neo.TransientError.General.TransactionMemoryLimit",
        "Neo.TransientError.General.OutOfMemoryError",
    }
)
#: A transaction the server killed (an administrator, or a server shutting down): client
#: errors since Neo4j 5, but nothing the work did; retry it.
TERMINATED_CODES: Final = frozenset(
    {
        "Neo.ClientError.Transaction.Terminated",
        "Neo.ClientError.Transaction.LockClientStopped",
    }
)
#: Server codes no retry and no dead letter can fix (besides every ``Neo.ClientError.Security``
#: code but the one the driver itself treats as transient).
FATAL_CODES: Final = frozenset(
    {
        "Neo.ClientError.Database.DatabaseNotFound",
        "Neo.ClientError.Database.ExistingDatabaseFound",
    }
)
#: Below every event time (1970..2100): an arrivals window with no lower bound.
NO_LOWER_BOUND: Final = -(2**62)


def _copy(ref: str, f: Sequence[Any]) -> Copy:
    dataset, origin, epoch, since, hops, event_id, source, job = f
    return Copy(ref, dataset, Origin.parse(origin), since, event_id, source, job, hops, epoch)


def _copy_row(c: Copy) -> Row:
    return {
        "identifier": c.identifier, "dataset": c.dataset, "origin": c.origin.key,
        "epoch": c.epoch, "since": c.since, "hops": c.hops, "event_id": c.event_id,
        "source": c.source, "job": c.job,
    }  # fmt: skip


def _node(ref: str, category: str, display: str | None, erasures: list[int],
          subjects: list[str]) -> IdentifierNode:  # fmt: skip
    return IdentifierNode(
        ref, cast(Category, category), display, frozenset(subjects), tuple(sorted(erasures))
    )


def _state_params(keys: StateKeys) -> dict[str, list[Any]]:
    flow_runs = [[a, b, job, at, eid] for kind, a, b, job, at, eid in keys.runs if kind == "flow"]
    use_runs = [[a, b, job, at, eid] for kind, a, b, job, at, eid in keys.runs if kind == "use"]
    read_runs = [[a, job, at, eid] for kind, a, _, job, at, eid in keys.runs if kind == "read"]
    return {
        "identifiers": keys.identifiers,
        "datasets": keys.datasets,
        "jobs": keys.jobs,
        "collections": [list(k) for k in keys.collections],
        "flow_edges": sorted({(a, b, job) for a, b, job, _, _ in flow_runs}),
        "use_edges": sorted({(a, b, job) for a, b, job, _, _ in use_runs}),
        "flow_runs": flow_runs,
        "use_runs": use_runs,
        "read_runs": read_runs,
        "carried": [list(k) for k in keys.carried],
        "specific": [list(k) for k in keys.specific],
    }


def _state_locks(keys: StateKeys) -> tuple[set[str], set[str]]:
    """(datasets, identifiers) a batch's state keys name: the nodes its write will change."""
    datasets = set(keys.datasets)
    identifiers = set(keys.identifiers)
    for ref, dataset, *_ in keys.collections:
        identifiers.add(ref)
        datasets.add(dataset)
    for kind, a, b, *_ in keys.runs:
        datasets.add(a)
        if kind == "flow":
            datasets.add(b)
    for ref, source, target, *_ in keys.carried:
        identifiers.add(ref)
        datasets |= {source, target}
    for ref, dataset, *_ in keys.specific:
        identifiers.add(ref)
        datasets.add(dataset)
    return datasets, identifiers


def _lock_params(request: Request, held: tuple[set[str], set[str]]) -> dict[str, list[str]]:
    """What to lock before this fetch's reads: the nodes it is about, less those the unit
    already locked (``held``: datasets, identifiers; a lock lasts until the transaction ends,
    so locking again would only repeat the property writes); ``held`` is updated."""
    datasets = {d for d, _ in request.flows} | {d for d, _ in request.uses}
    datasets |= {window[0] for window in request.arrivals}
    identifiers = request.identifiers | request.histories
    for pairs in (request.copies, request.carried, request.specific):
        identifiers |= {ref for ref, _ in pairs}
    merge_datasets: set[str] = set()
    merge_identifiers: set[str] = set()
    if request.state is not None:
        merge_datasets, merge_identifiers = _state_locks(request.state)
    held_datasets, held_identifiers = held
    params = {
        "merge_datasets": sorted(merge_datasets - held_datasets),
        "datasets": sorted(datasets - merge_datasets - held_datasets),
        "merge_identifiers": sorted(merge_identifiers - held_identifiers),
        "identifiers": sorted(identifiers - merge_identifiers - held_identifiers),
    }
    held_datasets |= merge_datasets | datasets
    held_identifiers |= merge_identifiers | identifiers
    return params


def _fact_params(rows: FactRows | None) -> dict[str, list[Row]]:
    if rows is None:
        rows = FactRows()
    erasures: dict[str, list[int]] = {}
    for row in rows.erasures:  # one row per identifier: its SET must see every new time
        erasures.setdefault(row["ref"], []).append(row["at"])
    return {
        "identifiers": rows.identifiers,
        "subjects": rows.subjects,
        "erasures": [{"ref": ref, "ats": ats} for ref, ats in sorted(erasures.items())],
        "datasets": rows.datasets,
        "jobs": rows.jobs,
        "collections": rows.collections,
        "flow_edges": [r for r in rows.edges if r["kind"] == "flow"],
        "use_edges": [r for r in rows.edges if r["kind"] == "use"],
        "flow_runs": [r for r in rows.runs if r["kind"] == "flow"],
        "use_runs": [r for r in rows.runs if r["kind"] == "use"],
        "read_runs": [r for r in rows.runs if r["kind"] == "read"],  # no edge relationship
        "carried": rows.carried,
        "specific": rows.specific,
    }


def _code(exc: Neo4jError | DriverError) -> str:
    code = exc.code if isinstance(exc, Neo4jError) else None
    return code or type(exc).__name__


def _kind(exc: Neo4jError | DriverError) -> str:
    """``fatal``, ``oversize``, ``permanent`` or ``transient`` (see :mod:`graph.errors`).

    Transient: the connection-level driver errors (unreachable, session expired, a commit whose
    outcome is unknown: re-running a unit is safe, it re-reads under its locks what it writes
    and creates only facts it found absent, the rest are keyed MERGEs), the pool, and
    every error the driver marks retryable (``TransientError``: deadlocks, leader switches),
    except running out of transaction memory. A ``DatabaseError`` (the server failed, not the
    request) is retried too: it is never the event's fault, so it must not dead-letter one.
    Permanent: every other ``ClientError`` (constraint violations, type errors, a timeout the
    transaction hit) and driver usage errors.
    """
    code = exc.code if isinstance(exc, Neo4jError) else None
    if code in OVERSIZE_CODES:
        return "oversize"
    if isinstance(exc, AuthError | DriverConfigurationError | UnsupportedServerProduct):
        return "fatal"
    if code is not None and (
        code in FATAL_CODES
        or (code.startswith("Neo.ClientError.Security.") and not exc.is_retryable())
    ):
        return "fatal"
    if isinstance(exc, ServiceUnavailable | SessionExpired | ConnectionPoolError):
        return "transient"  # IncompleteCommit (a ServiceUnavailable) included, see above
    if exc.is_retryable():
        return "transient"
    if code in TERMINATED_CODES:
        return "transient"
    if isinstance(exc, ClientError | DriverError):
        return "permanent"
    return "transient"  # DatabaseError, or a server error class this driver does not know


def _retry_read(exc: BaseException) -> bool:
    return isinstance(exc, Neo4jError | DriverError) and _kind(exc) == "transient"


class Neo4jStore:
    """A ``GraphStore`` backed by one Neo4j database; safe to share across threads."""

    def __init__(self, uri: str, user: str, password: str, database: str = "neo4j") -> None:
        self._uri = uri
        self._unit = threading.local()  # the open unit-of-work transaction, per thread
        self._user = user
        self._database = database
        scheme = urlsplit(uri).scheme
        if scheme not in SCHEMES:
            expected = ", ".join(f"{s}://" for s in sorted(SCHEMES))
            raise StoreError(f"invalid Neo4j settings for {uri!r}: expected one of {expected}")
        try:
            self._driver: Driver = GraphDatabase.driver(
                uri,
                auth=(user, password),
                max_transaction_retry_time=UNIT_RETRY_SECONDS,
                # the server skips building notifications nobody reads
                notifications_min_severity=NotificationMinimumSeverity.OFF,
            )
        except (ValueError, Neo4jError, DriverError) as exc:
            raise StoreError(f"invalid Neo4j settings for {uri!r}: {exc}") from exc
        # every session shares one bookmark manager: reads see earlier writes, even on a cluster
        self._bookmarks = GraphDatabase.bookmark_manager()
        try:
            with self._translated("connecting"):
                try:
                    self._driver.verify_connectivity()
                except ValueError as exc:  # the driver resolves the address only now
                    raise StoreError(f"invalid Neo4j settings for {uri!r}: {exc}") from exc
            self._ensure_schema()
        except BaseException:
            self._driver.close()
            raise

    # -- plumbing --------------------------------------------------------------------------
    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """One error family for callers, classified by what the caller should do about it
        (:mod:`graph.errors`); the driver's exception stays chained as the cause."""
        try:
            yield
        except (Neo4jError, DriverError) as exc:
            raise self._classified(action, exc) from exc

    def _classified(self, action: str, exc: Neo4jError | DriverError) -> ClassifiedStoreError:
        where = f"Neo4j at {self._uri} (database {self._database!r})"
        code = _code(exc)
        if isinstance(exc, AuthError):
            return FatalStoreError(
                f"{where} rejected the credentials of user {self._user!r} while {action}: "
                "check the Neo4j user and password",
                code,
            )
        kind = _kind(exc)
        if kind == "fatal":
            return FatalStoreError(f"{where} cannot serve this client while {action}: {exc}", code)
        if kind == "oversize":
            return PermanentStoreError(
                f"{where} refused a transaction too large for its memory limit while {action}"
                f": {exc}",
                code,
                oversize=True,
            )
        if kind == "permanent":
            return PermanentStoreError(f"{where} refused the work while {action}: {exc}", code)
        if isinstance(exc, ServiceUnavailable | SessionExpired):
            return TransientStoreError(f"{where} is unreachable while {action}: {exc}", code)
        return TransientStoreError(f"{where} failed while {action}: {exc}", code)

    def _session(self, mode: str = WRITE_ACCESS) -> Session:
        return self._driver.session(
            database=self._database, default_access_mode=mode, bookmark_manager=self._bookmarks
        )

    def _current(self) -> ManagedTransaction | None:
        return cast(ManagedTransaction | None, getattr(self._unit, "tx", None))

    def atomically(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one write transaction: every fetch and write this store makes on
        this thread meanwhile goes through it (fetches lock what they read, see the module
        docstring), so facts, copies and alerts commit together or not at all. The driver
        retries the whole unit on transient errors, deadlocks included; nested calls join."""
        if self._current() is not None:
            return work()

        def unit(tx: ManagedTransaction) -> T:
            self._unit.tx = tx
            self._unit.held = (set(), set())  # nodes this attempt has locked
            try:
                return work()
            except Neo4jError as exc:
                if _kind(exc) == "oversize":  # not retryable by the driver, whatever its class
                    raise self._classified("running a unit of work", exc) from exc
                raise
            finally:
                self._unit.tx = None

        with self._translated("running a unit of work"), self._session() as session:
            return session.execute_write(unit)

    def _read(self, action: str, query: LiteralString, **params: Any) -> list[Record]:
        """One auto-commit query: a single round trip, where a managed transaction takes two
        (BEGIN+RUN, COMMIT). Transient errors are retried briefly (tenacity). Inside
        ``atomically`` it runs in the unit's transaction (and sees its writes)."""
        tx = self._current()
        if tx is not None:  # driver errors reach the unit's retry loop untranslated
            return list(tx.run(query, params))
        retrying = Retrying(
            stop=stop_after_attempt(READ_ATTEMPTS),
            wait=wait_exponential(multiplier=READ_RETRY_DELAY_SECONDS),
            retry=retry_if_exception(_retry_read),
            before_sleep=lambda state: log.warning(
                "%s failed (attempt %d: %s), retrying in %.1fs",
                action,
                state.attempt_number,
                type(state.outcome.exception()).__name__ if state.outcome else "?",
                state.upcoming_sleep,
            ),
            reraise=True,
        )
        with self._translated(action):
            for attempt in retrying:
                with attempt, self._session(READ_ACCESS) as session:
                    return list(session.run(query, params))
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _write(self, action: str, query: LiteralString, **params: Any) -> None:
        """One statement in the open unit, or in its own retried write transaction."""
        tx = self._current()
        if tx is not None:
            tx.run(query, params).consume()
            return

        def work(own: ManagedTransaction) -> None:
            own.run(query, params).consume()

        with self._translated(action), self._session() as session:
            session.execute_write(work)

    def _ensure_schema(self) -> None:
        """Constraints and indexes, idempotent; waits until they are online so seeks are real."""
        with self._translated("creating constraints and indexes"), self._session() as session:
            for statement in cypher.SCHEMA:
                session.run(statement).consume()
            session.run(cypher.AWAIT_INDEXES, seconds=SCHEMA_TIMEOUT_SECONDS).consume()

    def close(self) -> None:
        with self._translated("closing the driver"):
            self._driver.close()

    def clear(self) -> None:
        """Delete every node and relationship in batches; constraints and indexes stay."""
        with self._translated("clearing the graph"), self._session() as session:
            session.run(cypher.CLEAR, batch=CLEAR_BATCH).consume()

    # -- the port: fetch -------------------------------------------------------------------
    def fetch(self, request: Request) -> Facts:
        """Every key of ``request`` in one statement; inside a unit it locks first."""
        if not request:
            return Facts()
        windows = {
            (dataset, NO_LOWER_BOUND if after is None else after, upto, purposes): (
                dataset, after, upto, purposes)
            for dataset, after, upto, purposes in request.arrivals
        }  # fmt: skip
        params: dict[str, Any] = {
            "state": _state_params(request.state or StateKeys()),
            "identifiers": sorted(request.identifiers),
            "copies": sorted(request.copies),
            "carried": sorted(request.carried),
            "specific": sorted(request.specific),
            "flows": sorted(request.flows),
            "uses": sorted(request.uses),
            "arrivals": sorted(windows, key=repr),
            "histories": sorted(request.histories),
            "alerts": sorted(request.alerts),
        }
        if self._current() is not None:
            params["lock"] = _lock_params(request, self._unit.held)
            query = cypher.FETCH_LOCKING
        else:
            query = cypher.FETCH
        (r,) = self._read("reading the graph", query, r=params)
        facts = Facts()
        for ref, category, display, erasures, subjects in r["identifiers"]:
            facts.identifiers[ref] = _node(ref, category, display, erasures, subjects)
        for ref, fields in r["copies"]:
            copy = _copy(ref, fields)
            facts.copies.setdefault((ref, copy.dataset), []).append(copy)
        for ref, source, target, job, at, eid in r["carried"]:
            flow = CarriedFlow(ref, source, target, job, at, eid)
            facts.carried.setdefault((ref, source), []).append(flow)
        for ref, dataset, job, purpose, at, eid in r["specific"]:
            use = SpecificUse(ref, dataset, job, purpose, at, eid)
            facts.specific.setdefault((ref, dataset), []).append(use)
        for into, rows in ((facts.flows, r["flows"]), (facts.uses, r["uses"])):
            for dataset, since, to, job, at, eid in rows:
                into.setdefault((dataset, since), []).append(FirstRun(to, job, Run(at, eid)))
        for key, ref, fields in r["arrivals"]:
            purposes = tuple(key[3]) if key[3] is not None else None
            window: Window = windows[(key[0], key[1], key[2], purposes)]
            facts.arrivals.setdefault(window, []).append(_copy(ref, fields))
        for ref, collections, copies, alert_ids in r["histories"]:
            facts.histories[ref] = History(
                tuple(Collection(ref, *c) for c in collections),
                tuple(_copy(ref, c) for c in copies),
                tuple(sorted(alert_ids)),
            )
        for props in r["alerts"]:
            alert = alert_of(props)
            facts.alerts[alert.alert_id] = alert
        if request.state is not None:
            facts.state = self._state(r)
        return facts

    @staticmethod
    def _state(r: Record) -> State:
        state = State(
            identifiers={
                ref: NodeState(set(erasures), set(subjects))
                for ref, erasures, subjects in r["s_identifiers"]
            },
            datasets=set(r["s_datasets"]),
            jobs=set(r["s_jobs"]),
            collections={cast(Any, tuple(k)) for k in r["s_collections"]},
            carried={cast(Any, tuple(k)) for k in r["s_carried"]},
            specific={cast(Any, tuple(k)) for k in r["s_specific"]},
        )
        state.edges = {("flow", a, b, job) for a, b, job in r["s_flow_edges"]}
        state.edges |= {("use", a, b, job) for a, b, job in r["s_use_edges"]}
        for kind, column in (("flow", "s_flow_runs"), ("use", "s_use_runs")):
            for (a, b, job, at, eid), present, previous in r[column]:
                key = (kind, a, b, job, at, eid)
                if present:
                    state.runs.add(key)
                else:
                    state.previous[key] = previous[0] if previous else None
        for dataset, job, at, eid in r["s_read_runs"]:
            state.edges.add(("read", dataset, job, job))
            state.runs.add(("read", dataset, job, job, at, eid))
        return state

    # -- the port: event identity ----------------------------------------------------------
    def read_claims(self, keys: Sequence[str]) -> dict[str, str]:
        """Locks the keys (see ``cypher.READ_CLAIMS``); meant for a unit, makes its own."""
        if not keys:
            return {}
        if self._current() is None:
            return self.atomically(lambda: self.read_claims(keys))
        records = self._read("reading event claims", cypher.READ_CLAIMS, keys=list(keys))
        return {r["key"]: r["digest"] for r in records if r["digest"] is not None}

    def write_claims(self, fresh: Sequence[Claim], absent: Sequence[str]) -> None:
        """Fills the empty claims ``read_claims`` created for ``absent`` keys, drops the rest;
        nothing to do for a redelivered batch (no key absent)."""
        if not absent:
            return
        rows = [[c.key, c.digest] for c in fresh]
        self._write("writing event claims", cypher.WRITE_CLAIMS, fresh=rows, absent=list(absent))

    # -- the served view: what a sink writes besides the units' rows -----------------------
    def put_claims(self, claims: Sequence[Claim]) -> None:
        """The claims a partition decided (the view decides nothing)."""
        if claims:
            rows = [[c.key, c.digest] for c in claims]
            self._write("writing event claims", cypher.PUT_CLAIMS, rows=rows)

    def sink_positions(self, topic: str) -> dict[int, int]:
        """The last change applied per partition of ``topic``."""
        records = self._read("reading the sink's positions", cypher.SINK_POSITIONS, topic=topic)
        return {int(r["partition"]): int(r["seq"]) for r in records}

    def set_sink_positions(self, topic: str, positions: dict[int, int]) -> None:
        rows = [[p, s] for p, s in sorted(positions.items())]
        self._write("moving the sink's positions", cypher.SET_SINK_POSITIONS, topic=topic,
                    rows=rows)  # fmt: skip

    # -- the port: write -------------------------------------------------------------------
    def write(self, writes: Writes) -> None:
        """Facts, then dropped and derived copies, then alerts: one statement."""
        copies: dict[tuple[str, str, str, int], Copy] = {}
        for c in writes.copies:  # the lowest rank of a key, as the statement keeps it
            known = copies.get(c.key)
            if known is None or c.rank <= known.rank:
                copies[c.key] = c
        alerts: dict[str, Alert] = {}
        for a in writes.alerts:
            if a.alert_id not in alerts or a.revision > alerts[a.alert_id].revision:
                alerts[a.alert_id] = a
        if not (writes.facts or writes.dropped or copies or alerts):
            return
        params: dict[str, Any] = _fact_params(writes.facts)
        params["dropped"] = sorted(writes.dropped)
        # sorted, so concurrent writers lock relationships' nodes in one order
        params["copies"] = [_copy_row(copies[k]) for k in sorted(copies)]
        params["alerts"] = [
            {"alert_id": a.alert_id, "revision": a.revision, "index": n, "props": alert_props(a)}
            for n, a in enumerate(alerts.values())
        ]
        self._write("writing to the graph", cypher.WRITE, w=params)

    # -- operators -------------------------------------------------------------------------
    def alerts(self, include_withdrawn: bool = False) -> list[Alert]:
        records = self._read("reading alerts", cypher.ALERTS, withdrawn=include_withdrawn)
        return [alert_of(r["alert"]) for r in records]

    def alert(self, alert_id: str) -> Alert | None:
        records = self._read("reading an alert", cypher.ALERT, alert_id=alert_id)
        return alert_of(records[0]["alert"]) if records else None

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        records = self._read("reading the alert outbox", cypher.UNPUBLISHED_ALERTS, limit=limit)
        return [alert_of(r["alert"]) for r in records]

    def mark_published(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        rows = [{"alert_id": a.alert_id, "revision": a.revision} for a in alerts]
        self._write("marking alerts published", cypher.MARK_PUBLISHED, rows=rows)

    def tally(self, as_of: int | None = None) -> Tally:
        """Counted in Python over the active alerts (one read); ``as_of``: only violations
        up to that time."""
        alerts = self.alerts()
        if as_of is not None:
            alerts = [a for a in alerts if micros(a.occurred_at) <= as_of]
        return tally(alerts)

    # -- the query layer's reads (lineage.queries.QueryReader; Cypher in graph/neo4j_queries) -
    def incident_members(self, as_of: int | None) -> list[Member]:
        return neo4j_incidents.members(self._read, as_of)

    def incident_actions(self) -> list[Action]:
        return neo4j_incidents.actions(self._read)

    def incident_watermark(self, as_of: int | None) -> int | None:
        return neo4j_incidents.watermark(self._read, as_of)

    def record_incident_actions(self, events: Sequence[IncidentEvent]) -> None:
        neo4j_incidents.record_actions(self._write, events)

    def violations(self, as_of: int) -> list[Violation]:
        return neo4j_queries.violations(self._read, as_of)

    def dataset_edges(self, as_of: int) -> list[tuple[str, str, str, str]]:
        return neo4j_queries.dataset_edges(self._read, as_of)

    def holdings(self, datasets: Sequence[str], as_of: int) -> list[Holding]:
        return neo4j_queries.holdings(self._read, datasets, as_of)

    def collection_groups(self, as_of: int) -> list[CollectionGroup]:
        return neo4j_queries.collection_groups(self._read, as_of)

    def erased_copies(self, as_of: int) -> list[ErasedCopy]:
        return neo4j_queries.erased_copies(self._read, as_of)

    def edges(self) -> list[tuple[str, str, str, str]]:
        records = self._read("reading the dataset graph", cypher.EDGES)
        return [(r["kind"], r["a"], r["b"], r["job"]) for r in records]

    # -- the audit report's reads (counted in Python, like ``tally``) ----------------------
    def _alerts_between(self, since: datetime | None, until: datetime | None) -> list[Alert]:
        records = self._read(
            "reading alerts in a window",
            """
            MATCH (a:Alert) WHERE a.status = 'active'
              AND ($since IS NULL OR a.occurred_at >= $since)
              AND ($until IS NULL OR a.occurred_at < $until)
            RETURN a {.*} AS alert ORDER BY a.occurred_at, a.alert_id
            """,
            since=None if since is None else micros(since),
            until=None if until is None else micros(until),
        )
        return [alert_of(r["alert"]) for r in records]

    def tally_between(self, since: datetime | None, until: datetime | None) -> Tally:
        if since is None and until is None:
            return self.tally()
        return tally(self._alerts_between(since, until))

    def route_examples(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[RouteExample]:
        return route_examples(self._alerts_between(since, until))

    def carried_origins(self, as_of: int | None = None) -> list[CarriedOrigin]:
        """A scan of every COPY_IN relationship (an operator's read)."""
        records = self._read(
            "reading the origins each edge carried",
            """
            MATCH ()-[c:COPY_IN]->(d:Dataset)
            WHERE $as_of IS NULL OR c.since <= $as_of
            RETURN DISTINCT c.source AS source, d.key AS dataset, c.job AS job,
                   c.origin AS origin
            """,
            as_of=as_of,
        )
        found = []
        for r in records:
            origin = Origin.parse(r["origin"])
            found.append(
                CarriedOrigin(r["source"], r["dataset"], r["job"], origin.dataset, origin.purpose)
            )
        return sorted(found, key=carried_order)

    def snapshot(self) -> GraphSnapshot:
        """The whole graph from one read transaction, so the parts are mutually consistent."""

        def work(tx: ManagedTransaction) -> dict[str, list[Record]]:
            return {name: list(tx.run(query)) for name, query in cypher.SNAPSHOT.items()}

        with self._translated("reading a snapshot"), self._session(READ_ACCESS) as session:
            parts = session.execute_read(work)

        def runs(r: Record) -> tuple[Run, ...]:
            return tuple(sorted(Run(at, eid) for at, eid in r["runs"]))

        return GraphSnapshot(
            identifiers=frozenset(
                _node(r["ref"], r["category"], r["display"], r["erasures"], r["subjects"])
                for r in parts["identifiers"]
            ),
            datasets=frozenset((r["key"], r["system"], r["name"]) for r in parts["datasets"]),
            jobs=frozenset(r["name"] for r in parts["jobs"]),
            collections=frozenset(
                Collection(r["identifier"], r["dataset"], r["purpose"], r["at"], r["event_id"])
                for r in parts["collections"]
            ),
            flows=frozenset(
                FlowEdge(r["source"], r["target"], r["job"], runs(r)) for r in parts["flows"]
            ),
            uses=frozenset(
                UseEdge(r["dataset"], r["job"], r["purpose"], runs(r)) for r in parts["uses"]
            ),
            reads=frozenset(ReadEdge(r["dataset"], r["job"], runs(r)) for r in parts["reads"]),
            carried=frozenset(
                CarriedFlow(
                    r["identifier"], r["source"], r["target"], r["job"], r["at"], r["event_id"]
                )
                for r in parts["carried"]
            ),
            specific_uses=frozenset(
                SpecificUse(
                    r["identifier"], r["dataset"], r["job"], r["purpose"], r["at"], r["event_id"]
                )
                for r in parts["specific_uses"]
            ),
            copies=frozenset(_copy(r["identifier"], r["copy"]) for r in parts["copies"]),
            alerts=frozenset(r["alert_id"] for r in parts["alerts"]),
        )
