"""``GraphStore`` on a Neo4j 5 server through the official driver.

Semantics are those of ``graph.networkx_store`` (the contract suite runs both): ``apply`` is
one write transaction of two statements (lock-and-read the touched keys, then write what
changed, each an ``UNWIND`` batch), and the merge rules run in Python over what was read
(:mod:`graph.neo4j_batch`). Hot-path reads are one round trip seeking unique-constraint
indexes; ``copies_in`` seeks a (dataset, since) relationship index. Driver errors become
:class:`lineage.errors.StoreError`; driver types never leave this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from neo4j.exceptions import AuthError, DriverError, Neo4jError, ServiceUnavailable

from graph import neo4j_cypher as cypher
from graph.neo4j_batch import State, keys_of, plan
from graph.store import GraphSnapshot
from lineage.alerts import Alert
from lineage.errors import StoreError
from lineage.events import micros
from lineage.identifiers import Category
from lineage.model import (
    CarriedFlow,
    Collection,
    Copy,
    FlowEdge,
    IdentifierFacts,
    IdentifierNode,
    Origin,
    Run,
    SpecificUse,
    UseEdge,
)
from lineage.projection import Change, Mutation

T = TypeVar("T")

#: Rows per inner transaction of ``clear``: bounded memory however big the graph is.
CLEAR_BATCH: Final = 10_000
#: Bolt only: ``apply`` needs a multi-statement transaction, which the HTTP Query API lacks.
SCHEMES: Final = frozenset({"bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc"})
SCHEMA_TIMEOUT_SECONDS: Final = 300
READ_ATTEMPTS: Final = 3
READ_RETRY_DELAY_SECONDS: Final = 0.1


def _copy(r: Record) -> Copy:
    return Copy(
        r["identifier"],
        r["dataset"],
        Origin.parse(r["origin"]),
        r["since"],
        r["event_id"],
        r["source"],
        r["job"],
    )


def _runs(r: Record) -> tuple[Run, ...]:
    return tuple(Run(a, e) for a, e in zip(r["run_at"], r["run_event_ids"], strict=True))


def _identifier(ref: str, r: Record) -> IdentifierNode:
    category = cast(Category, r["category"])
    return IdentifierNode(ref, category, r["display"], frozenset(r["subjects"]), r["erased_at"])


def _alert_props(alert: Alert) -> dict[str, Any]:
    """The fields worth querying in Cypher, plus the JSON that rebuilds the alert exactly."""
    return {
        "alert_id": alert.alert_id,
        "schema_version": alert.schema_version,
        "rule": alert.rule,
        "severity": alert.severity,
        "identifier": alert.identifier,
        "category": alert.category,
        "display": alert.display,
        "subjects": alert.subjects,
        "origin_dataset": alert.origin_dataset,
        "origin_purpose": alert.origin_purpose,
        "use_dataset": alert.use_dataset,
        "use_job": alert.use_job,
        "use_purpose": alert.use_purpose,
        "occurred_at": micros(alert.occurred_at),
        "json": alert.model_dump_json(),
    }


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
        """One error family for callers; the driver's exception stays chained as the cause."""
        where = f"Neo4j at {self._uri} (database {self._database!r})"
        try:
            yield
        except AuthError as exc:
            raise StoreError(
                f"{where} rejected the credentials of user {self._user!r} while {action}: "
                "check the Neo4j user and password"
            ) from exc
        except ServiceUnavailable as exc:
            raise StoreError(f"{where} is unreachable while {action}: {exc}") from exc
        except (Neo4jError, DriverError) as exc:
            raise StoreError(f"{where} failed while {action}: {exc}") from exc

    def _session(self, mode: str = WRITE_ACCESS) -> Session:
        return self._driver.session(
            database=self._database, default_access_mode=mode, bookmark_manager=self._bookmarks
        )

    def _current(self) -> ManagedTransaction | None:
        return cast(ManagedTransaction | None, getattr(self._unit, "tx", None))

    def atomically(self, work: Callable[[], T]) -> T:
        """Run ``work`` in one write transaction: every read and write this store makes on this
        thread meanwhile goes through it, so the tracker's apply, propagation and alerts commit
        together or not at all (a crash mid-way leaves nothing for redelivery to miss). The
        driver retries the whole unit on transient errors, deadlocks included."""
        if self._current() is not None:
            return work()

        def unit(tx: ManagedTransaction) -> T:
            self._unit.tx = tx
            try:
                return work()
            finally:
                self._unit.tx = None

        with self._translated("running a unit of work"), self._session() as session:
            return session.execute_write(unit)

    def _read(self, action: str, query: LiteralString, **params: Any) -> list[Record]:
        """One auto-commit query: a single round trip, where a managed transaction takes two
        (BEGIN+RUN, COMMIT); the propagation hot path is made of these. Errors the driver
        marks retryable (a leader switch, a dropped pooled connection) are retried briefly.
        Inside ``atomically`` it runs in the unit's transaction (and sees its writes)."""
        tx = self._current()
        if tx is not None:  # driver errors reach the unit's retry loop untranslated
            return list(tx.run(query, params))
        attempt = 1
        with self._translated(action):
            while True:
                try:
                    with self._session(READ_ACCESS) as session:
                        return list(session.run(query, params))
                except (Neo4jError, DriverError) as exc:
                    if attempt >= READ_ATTEMPTS or not exc.is_retryable():
                        raise
                time.sleep(READ_RETRY_DELAY_SECONDS * attempt)
                attempt += 1

    def _write(self, action: str, work: Callable[[ManagedTransaction], T]) -> T:
        """One write transaction; transient failures (deadlocks included) are retried."""
        tx = self._current()
        if tx is not None:
            return work(tx)
        with self._translated(action), self._session() as session:
            return session.execute_write(work)

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

    # -- writes ----------------------------------------------------------------------------
    def apply(self, mutations: Sequence[Mutation]) -> list[Change]:
        """One write transaction: PREPARE locks and reads the touched keys, the networkx rules
        run over that state, WRITE stores the result; a retried transaction redoes all three."""
        if not mutations:
            return []
        params = keys_of(mutations)

        def work(tx: ManagedTransaction) -> list[Change]:
            state = State.from_record(tx.run(cypher.PREPARE, batch=params).single(strict=True))
            result = plan(mutations, state)
            if result.writes:
                tx.run(cypher.WRITE, batch=result.rows).consume()
            return result.changes

        return self._write("applying mutations", work)

    def put_copies(self, copies: Sequence[Copy]) -> None:
        latest = {(c.identifier, c.dataset, c.origin.key): c for c in copies}  # last one wins
        if not latest:
            return
        rows = [
            {
                "identifier": c.identifier,
                "dataset": c.dataset,
                "origin": origin,
                "since": c.since,
                "event_id": c.event_id,
                "source": c.source,
                "job": c.job,
            }
            # sorted, so concurrent writers lock nodes in one order and rarely deadlock
            for (_, _, origin), c in sorted(latest.items(), key=lambda item: item[0])
        ]

        def work(tx: ManagedTransaction) -> None:
            tx.run(cypher.PUT_COPIES, rows=rows).consume()

        self._write("storing copies", work)

    def add_alerts(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Store unseen alerts as unpublished (the outbox); return exactly those."""
        first: dict[str, Alert] = {}
        for alert in alerts:
            first.setdefault(alert.alert_id, alert)  # one alert per id, even within a call
        if not first:
            return []
        rows = [
            {"alert_id": aid, "index": index, "props": _alert_props(a)}
            for index, (aid, a) in enumerate(first.items())
        ]

        def work(tx: ManagedTransaction) -> set[str]:
            result = tx.run(cypher.ADD_ALERTS, rows=rows)
            return {r["alert_id"] for r in result if r["fresh"]}

        fresh = self._write("storing alerts", work)
        return [a for aid, a in first.items() if aid in fresh]

    # -- reads -----------------------------------------------------------------------------
    def identifier(self, ref: str) -> IdentifierNode | None:
        """None also for a node that only anchors edges (e.g. copies) and was never put."""
        records = self._read("reading an identifier", cypher.IDENTIFIER, ref=ref)
        if not records or records[0]["category"] is None:  # absent, or only an edge's end
            return None
        return _identifier(ref, records[0])

    def identifier_facts(self, refs: Sequence[str]) -> dict[str, IdentifierFacts]:
        if not refs:
            return {}
        records = self._read("reading identifiers", cypher.IDENTIFIER_FACTS, refs=list(refs))
        facts: dict[str, IdentifierFacts] = {}
        for r in records:
            ref = r["ref"]
            node = _identifier(ref, r) if r["category"] is not None else None
            copies = tuple(
                Copy(ref, d, Origin.parse(o), since, eid, source, job)
                for d, o, since, eid, source, job in r["copies"]
            )
            carried = tuple(
                CarriedFlow(ref, source, target, job, at, eid)
                for source, target, job, at, eid in r["carried"]
            )
            specific = tuple(
                SpecificUse(ref, dataset, job, purpose, at, eid)
                for dataset, job, purpose, at, eid in r["specific"]
            )
            facts[ref] = IdentifierFacts(node, copies, carried, specific)
        return facts

    def copies_of(self, identifier: str, dataset: str) -> list[Copy]:
        records = self._read(
            "reading copies", cypher.COPIES_OF, identifier=identifier, dataset=dataset
        )
        return [_copy(r) for r in records]

    def copies_of_identifier(self, identifier: str) -> list[Copy]:
        records = self._read("reading copies", cypher.COPIES_OF_IDENTIFIER, identifier=identifier)
        return [_copy(r) for r in records]

    def copies_in(self, dataset: str, after: int | None, upto: int) -> list[Copy]:
        if after is None:
            records = self._read(
                "reading copies", cypher.COPIES_IN_UPTO, dataset=dataset, upto=upto
            )
        else:
            records = self._read(
                "reading copies", cypher.COPIES_IN_BETWEEN, dataset=dataset, after=after, upto=upto
            )
        return [_copy(r) for r in records]

    def collections_of(self, identifier: str) -> list[Collection]:
        records = self._read("reading collections", cypher.COLLECTIONS_OF, identifier=identifier)
        return [
            Collection(identifier, r["dataset"], r["purpose"], r["at"], r["event_id"])
            for r in records
        ]

    def flows_from(self, dataset: str) -> list[FlowEdge]:
        records = self._read("reading flows", cypher.FLOWS_FROM, dataset=dataset)
        return [FlowEdge(dataset, r["target"], r["job"], _runs(r)) for r in records]

    def uses_of(self, dataset: str) -> list[UseEdge]:
        records = self._read("reading uses", cypher.USES_OF, dataset=dataset)
        return [UseEdge(dataset, r["job"], r["purpose"], _runs(r)) for r in records]

    def specific_uses(self, identifier: str, dataset: str) -> list[SpecificUse]:
        records = self._read(
            "reading specific uses", cypher.SPECIFIC_USES, identifier=identifier, dataset=dataset
        )
        return [
            SpecificUse(identifier, dataset, r["job"], r["purpose"], r["at"], r["event_id"])
            for r in records
        ]

    def alerts(self) -> list[Alert]:
        records = self._read("reading alerts", cypher.ALERTS)
        return [Alert.model_validate_json(r["json"]) for r in records]

    def alert(self, alert_id: str) -> Alert | None:
        records = self._read("reading an alert", cypher.ALERT, alert_id=alert_id)
        return Alert.model_validate_json(records[0]["json"]) if records else None

    def unpublished_alerts(self, limit: int = 1_000) -> list[Alert]:
        records = self._read("reading the alert outbox", cypher.UNPUBLISHED_ALERTS, limit=limit)
        return [Alert.model_validate_json(r["json"]) for r in records]

    def mark_published(self, alert_ids: Sequence[str]) -> None:
        if not alert_ids:
            return
        ids = list(alert_ids)

        def work(tx: ManagedTransaction) -> None:
            tx.run(cypher.MARK_PUBLISHED, alert_ids=ids).consume()

        self._write("marking alerts published", work)

    def snapshot(self) -> GraphSnapshot:
        """The whole graph from one read transaction, so the parts are mutually consistent."""

        def work(tx: ManagedTransaction) -> dict[str, list[Record]]:
            return {name: list(tx.run(query)) for name, query in cypher.SNAPSHOT.items()}

        with self._translated("reading a snapshot"), self._session(READ_ACCESS) as session:
            parts = session.execute_read(work)
        return GraphSnapshot(
            identifiers=frozenset(_identifier(r["ref"], r) for r in parts["identifiers"]),
            datasets=frozenset((r["key"], r["system"], r["name"]) for r in parts["datasets"]),
            jobs=frozenset(r["name"] for r in parts["jobs"]),
            collections=frozenset(
                Collection(r["identifier"], r["dataset"], r["purpose"], r["at"], r["event_id"])
                for r in parts["collections"]
            ),
            flows=frozenset(
                FlowEdge(r["source"], r["target"], r["job"], _runs(r)) for r in parts["flows"]
            ),
            uses=frozenset(
                UseEdge(r["dataset"], r["job"], r["purpose"], _runs(r)) for r in parts["uses"]
            ),
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
            copies=frozenset(_copy(r) for r in parts["copies"]),
            alerts=frozenset(r["alert_id"] for r in parts["alerts"]),
        )
