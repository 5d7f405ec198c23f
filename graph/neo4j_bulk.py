"""Load Neo4j from the event log with Neo4j's offline bulk importer (``lineage rebuild``).

Why: the tracker writes Neo4j one unit of work at a time, with locks and MERGEs, about a
thousand events a second; a backfill of the whole log that way takes days. The importer
(``neo4j-admin database import full``) writes the store files directly from CSV, an order of
magnitude faster, but only into an empty database that no server has open. So a rebuild:

1. replays the log into an in-memory :class:`RebuildState` (the partition state the embedded
   store keeps, plus the few things only the graph holds: dataset names, edges' existence);
2. writes node and relationship CSVs of exactly the graph :mod:`graph.neo4j_cypher` describes
   (every label, property and relationship its statements read; ``EventClaim`` nodes too);
3. imports them into a fresh database directory (a staging ``NEO4J_HOME``);
4. swaps that directory in while the server is stopped (:func:`swap_in`), starts it, and lets
   :class:`graph.neo4j_store.Neo4jStore` create the constraints and indexes (its own
   ``SCHEMA`` statements, after the import: the importer then builds no index per row);
5. the caller sets the position a worker resumes from (the projector group's offsets).

What the log does not hold is carried over from the live database, read before the swap:
each alert's outbox state (an alert whose content sinks have seen stays published; a changed
one is a new revision, queued; one that no longer holds is queued withdrawn: the rules of
``SqliteStore.finish_rebuild``) and the officers' incident actions (written back by Cypher
after the start: they are few, and free text may span lines, which the importer parses
slowly). Identifiers are the pseudonymized refs the state holds: no raw value reaches a CSV.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from graph.neo4j_alerts import EVIDENCE_KEYS, alert_of, alert_props
from lineage.alerts import Alert
from lineage.errors import StoreError
from lineage.events import micros
from lineage.model import Copy, Run
from lineage.partition_state import MemoryAlertBodies, PartitionState
from lineage.planner import EdgeKey, FactRows

#: The database the launcher (and a default Neo4j server) serves.
DATABASE: Final = "neo4j"
#: Between array elements in the CSVs (the importer's default); refs and times never hold it.
ARRAY_DELIMITER: Final = ";"
#: The importer's JVM: its heap holds the id maps; page cache and buffers are off-heap.
IMPORT_HEAP: Final = os.environ.get("LINEAGE_IMPORT_HEAP", "1g")


class RebuildState(PartitionState):
    """The working state of a whole log, plus what only the graph keeps: each registered
    dataset's system and name. Alert bodies stay in memory (the CSV needs every one)."""

    def __init__(self) -> None:
        super().__init__(MemoryAlertBodies())
        self.dataset_names: dict[str, tuple[str, str]] = {}

    def write_facts(self, rows: FactRows) -> None:
        for r in rows.datasets:
            self.dataset_names[r["key"]] = (r["system"], r["name"])
        super().write_facts(rows)

    def alert_bodies(self) -> dict[str, Alert]:
        bodies = self.bodies
        assert isinstance(bodies, MemoryAlertBodies)
        return bodies.alerts

    def claims(self) -> dict[str, str]:
        return dict(self._claims)

    # What the CSVs are written from (the state's own compact records, not copies of them).
    def identifier_nodes(self) -> Iterable[Any]:
        return self._identifiers.values()

    def edge_runs(self) -> Iterable[tuple[EdgeKey, list[Run]]]:
        return self._runs.items()

    def datasets(self) -> set[str]:
        return set(self._datasets)

    def jobs(self) -> set[str]:
        return set(self._jobs)


@dataclass
class LiveAlert:
    """An alert as the live database holds it: its body and whether it still waits in the
    outbox (not yet confirmed sent)."""

    alert: Alert
    queued: bool


@dataclass
class PlannedAlert:
    alert: Alert
    queued: bool


def plan_alerts(rebuilt: dict[str, Alert], live: dict[str, LiveAlert]) -> list[PlannedAlert]:
    """Continue each alert's revisions across the rebuild, as ``SqliteStore.finish_rebuild``
    does: the same content keeps the live revision and outbox state (not re-sent); changed
    content is the next revision, queued; a live active alert the log no longer implies is
    queued withdrawn; a live withdrawn one stays as it is."""
    planned: list[PlannedAlert] = []
    for alert_id, fresh in rebuilt.items():
        known = live.get(alert_id)
        if known is None:
            planned.append(PlannedAlert(fresh, True))
        elif fresh.same_content(known.alert):
            planned.append(PlannedAlert(known.alert, known.queued))
        else:
            revision = known.alert.revision + 1
            planned.append(PlannedAlert(fresh.model_copy(update={"revision": revision}), True))
    for alert_id, known in live.items():
        if alert_id in rebuilt:
            continue
        if known.alert.status == "active":
            gone = known.alert.model_copy(
                update={"status": "withdrawn", "revision": known.alert.revision + 1}
            )
            planned.append(PlannedAlert(gone, True))
        else:
            planned.append(PlannedAlert(known.alert, known.queued))
    planned.sort(key=lambda p: (micros(p.alert.occurred_at), p.alert.alert_id))
    return planned


@dataclass
class CsvSet:
    """The files of one import, by label / relationship type, and what they hold."""

    directory: Path
    nodes: dict[str, Path] = field(default_factory=dict)
    relationships: dict[str, Path] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    multiline: bool = False  # some value spans lines: the importer must be told

    @property
    def node_count(self) -> int:
        return sum(self.counts[label] for label in self.nodes)

    @property
    def relationship_count(self) -> int:
        return sum(self.counts[kind] for kind in self.relationships)


class _Writer:
    """One CSV file: a header naming the importer's column types, then rows. ``None`` is
    written as an empty unquoted field (the importer reads it as no property), every string
    quoted with inner quotes doubled (RFC 4180), so an empty string stays a string."""

    def __init__(self, stack: ExitStack, path: Path, header: Sequence[str]) -> None:
        self._out = stack.enter_context(path.open("w", encoding="utf-8", buffering=1 << 20))
        self._out.write(",".join(header) + "\n")
        self.rows = 0
        self.multiline = False

    def row(self, values: Sequence[Any]) -> None:
        fields = []
        for v in values:
            if v is None:
                fields.append("")
            elif isinstance(v, str):
                if "\n" in v or "\r" in v:
                    self.multiline = True
                fields.append('"' + v.replace('"', '""') + '"')
            else:
                fields.append(str(v))
        self._out.write(",".join(fields) + "\n")
        self.rows += 1


#: The alert's scalar properties in the CSV's column order (``subjects`` between the two).
_ALERT_HEAD: Final = ("alert_id", "revision", "status", "schema_version", "rule", "severity",
                      "identifier", "category", "display")  # fmt: skip
_ALERT_TAIL: Final = ("origin_dataset", "origin_purpose", "use_dataset", "use_job",
                      "use_purpose", "occurred_at")  # fmt: skip


def _delimited(alert: Alert) -> bool:
    """An evidence string holding the array delimiter (event ids and names are the sender's)."""
    return any(
        ARRAY_DELIMITER in (value or "")
        for step in alert.evidence
        for value in (step.event_id, step.dataset, step.source, step.job)
    )


def _array(values: Iterable[Any]) -> str | None:
    joined = ARRAY_DELIMITER.join(str(v) for v in values)
    return joined or None


def _queued_at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_csvs(
    state: RebuildState, alerts: Sequence[PlannedAlert], directory: Path, now: datetime
) -> CsvSet:
    """Every node and relationship of the graph ``Neo4jStore`` writes for the same events,
    as import CSVs (ids are the nodes' own keys, in one id space per label)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = CsvSet(directory)
    nodes = state.identifier_nodes()
    with ExitStack() as stack:
        writers: dict[str, _Writer] = {}

        def open_(kind: str, is_node: bool, header: Sequence[str]) -> _Writer:
            path = directory / f"{kind.lower()}.csv"
            writers[kind] = _Writer(stack, path, header)
            (out.nodes if is_node else out.relationships)[kind] = path
            return writers[kind]

        ident = open_("Identifier", True, ["ref:ID(Identifier)", "category", "display",
                                           "erasures:long[]"])  # fmt: skip
        subject = open_("Subject", True, ["ref:ID(Subject)"])
        dataset = open_("Dataset", True, ["key:ID(Dataset)", "system", "name"])
        purpose = open_("Purpose", True, ["key:ID(Purpose)"])
        job = open_("Job", True, ["name:ID(Job)"])
        alert = open_("Alert", True, [
            "alert_id:ID(Alert)", "revision:long", "status", "schema_version:long", "rule",
            "severity", "identifier", "category", "display", "subjects:string[]",
            "origin_dataset", "origin_purpose", "use_dataset", "use_job", "use_purpose",
            "occurred_at:long", "evidence_event_ids:string[]", "evidence_at:long[]",
            "evidence_datasets:string[]", "evidence_jobs:string[]", "evidence_sources:string[]",
            "json", "queued_at:datetime", "queued_index:long",
        ])  # fmt: skip
        claim = open_("EventClaim", True, ["key:ID(EventClaim)", "digest"])
        belongs = open_("BELONGS_TO", False, [":START_ID(Identifier)", ":END_ID(Subject)"])
        collected = open_(
            "COLLECTED_INTO",
            False,
            [":START_ID(Identifier)", ":END_ID(Dataset)", "purpose", "at:long", "event_id"],
        )
        copy_in = open_("COPY_IN", False, [
            ":START_ID(Identifier)", ":END_ID(Dataset)", "dataset", "origin", "epoch:long",
            "since:long", "hops:long", "event_id", "source", "job"])  # fmt: skip
        flows_to = open_("FLOWS_TO", False, [":START_ID(Dataset)", ":END_ID(Dataset)", "job"])
        flow_run = open_("FLOW_RUN", False, [
            ":START_ID(Dataset)", ":END_ID(Dataset)", "source", "target", "job", "at:long",
            "event_id"])  # fmt: skip
        used_for = open_("USED_FOR", False, [":START_ID(Dataset)", ":END_ID(Purpose)", "job"])
        use_run = open_("USE_RUN", False, [
            ":START_ID(Dataset)", ":END_ID(Purpose)", "dataset", "purpose", "job", "at:long",
            "event_id"])  # fmt: skip
        carried = open_(
            "CARRIED_TO",
            False,
            [":START_ID(Identifier)", ":END_ID(Dataset)", "source", "job", "at:long", "event_id"],
        )
        used_in = open_("USED_IN", False, [
            ":START_ID(Identifier)", ":END_ID(Purpose)", "dataset", "job", "at:long",
            "event_id"])  # fmt: skip
        about = open_("ABOUT", False, [":START_ID(Alert)", ":END_ID(Identifier)"])

        # Nodes every relationship names exist once each (MERGE semantics of the live writes).
        datasets = state.datasets()
        purposes: set[str] = set()
        subjects: set[str] = set()
        refs: set[str] = set()

        def copy_row(c: Copy) -> list[Any]:
            return [c.identifier, c.dataset, c.dataset, c.origin.key, c.epoch, c.since, c.hops,
                    c.event_id, c.source, c.job]  # fmt: skip

        for n in nodes:
            refs.add(n.ref)
            ident.row([n.ref, n.category, n.display, _array(n.erasures)])
            for s in n.subjects:
                subjects.add(s)
                belongs.row([n.ref, s])
            for c in n.collections:
                datasets.add(c.dataset)
                collected.row([n.ref, c.dataset, c.purpose, c.at, c.event_id])
            for cp in n.copies:
                datasets.add(cp.dataset)
                copy_in.row(copy_row(cp))
            for f in n.carried:
                datasets.add(f.target)
                carried.row([n.ref, f.target, f.source, f.job, f.at, f.event_id])
            for u in n.specific:
                purposes.add(u.purpose)
                used_in.row([n.ref, u.purpose, u.dataset, u.job, u.at, u.event_id])
        for (kind, a, b, name), edge_runs in state.edge_runs():
            datasets.add(a)
            if kind == "flow":
                datasets.add(b)
                flows_to.row([a, b, name])
                for r in edge_runs:
                    flow_run.row([a, b, a, b, name, r.at, r.event_id])
            else:
                purposes.add(b)
                used_for.row([a, b, name])
                for r in edge_runs:
                    use_run.row([a, b, a, b, name, r.at, r.event_id])
        stamp = _queued_at(now)
        for index, planned in enumerate(alerts):
            al = planned.alert
            queued = [stamp, index] if planned.queued else [None, None]
            props = alert_props(al, lean=not _delimited(al))
            alert.row([
                *(props[k] for k in _ALERT_HEAD), _array(al.subjects),
                *(props[k] for k in _ALERT_TAIL),
                *(_array(props[k] or ()) for k in EVIDENCE_KEYS), props["json"], *queued,
            ])  # fmt: skip
            about.row([al.alert_id, al.identifier])
            if al.identifier not in refs:  # an alert about an identifier the log never named
                refs.add(al.identifier)
                ident.row([al.identifier, None, None, None])
        for d in sorted(datasets):
            dataset.row([d, *state.dataset_names.get(d, (None, None))])
        for p in sorted(purposes):
            purpose.row([p])
        for s in sorted(subjects):
            subject.row([s])
        for j in sorted(state.jobs()):
            job.row([j])
        for key, digest in sorted(state.claims().items()):
            claim.row([key, digest])
    out.counts = {kind: w.rows for kind, w in writers.items()}
    out.multiline = any(w.multiline for w in writers.values())
    return out


def import_command(libs: Path, csvs: CsvSet, home: Path) -> list[str]:
    """``neo4j-admin database import full`` as a plain JVM (the admin tool's own main)."""
    java = os.environ.get("JAVA_HOME")
    binary = str(Path(java) / "bin" / "java") if java else "java"
    command = [
        binary, f"-Xmx{IMPORT_HEAP}", "-XX:+UseParallelGC", "-cp", f"{libs}/*",
        # the database first: --nodes/--relationships take any number of files after them
        "org.neo4j.cli.AdminTool", "database", "import", "full", DATABASE,
        f"--array-delimiter={ARRAY_DELIMITER}", "--overwrite-destination=true",
        f"--report-file={home / 'import.report'}", "--high-parallel-io=auto",
    ]  # fmt: skip
    if csvs.multiline:
        command.append("--multiline-fields=true")
    command += [f"--nodes={label}={path}" for label, path in csvs.nodes.items()]
    command += [f"--relationships={kind}={path}" for kind, path in csvs.relationships.items()]
    return command


def run_import(libs: Path, csvs: CsvSet, home: Path) -> float:
    """Import into a fresh ``NEO4J_HOME`` (``home``); returns the seconds it took. Its output
    goes to ``home/import.log``, quoted in the error when it fails."""
    if not any(libs.glob("*.jar")):
        raise StoreError(f"no Neo4j admin jars in {libs}: run `services/svc admin-libs`")
    (home / "conf").mkdir(parents=True, exist_ok=True)
    (home / "conf" / "neo4j.conf").touch()
    log_path = home / "import.log"
    env = {**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    started = time.perf_counter()
    with log_path.open("w") as log:
        done = subprocess.run(
            import_command(libs, csvs, home),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise StoreError(f"the Neo4j import failed (exit {done.returncode}):\n{tail}")
    return time.perf_counter() - started


def database_dirs(home: Path) -> tuple[Path, Path]:
    """A Neo4j 5 home's store and transaction-log directories of ``DATABASE``."""
    data = home / "data"
    return data / "databases" / DATABASE, data / "transactions" / DATABASE


def swap_in(staged: Path, live: Path, stop: Callable[[], None], start: Callable[[], None]) -> Path:
    """Stop the server, move its database aside, move the imported one in, start it. The
    previous database is kept under ``staged/previous`` (delete it once the new one is
    checked); returns that path. If the start fails, the caller still has both."""
    previous = staged / "previous"
    new_store, new_tx = database_dirs(staged)
    old_store, old_tx = database_dirs(live)
    if not new_store.is_dir():
        raise StoreError(f"no imported database in {staged}")
    stop()
    keep_store, keep_tx = database_dirs(previous)
    for old, keep in ((old_store, keep_store), (old_tx, keep_tx)):
        if old.exists():
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(old, keep)
    for new, old in ((new_store, old_store), (new_tx, old_tx)):
        if new.exists():
            old.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(new, old)
    start()
    return previous


def svc_control(repo: Path, action: str) -> Callable[[], None]:
    """``services/svc <action> neo4j`` (the development servers, this checkout's launcher)."""

    def run() -> None:
        done = subprocess.run(
            ["bash", str(repo / "services" / "svc"), action, "neo4j"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise StoreError(f"services/svc {action} neo4j failed: {done.stderr.strip()[-800:]}")

    return run


# -- reading what the live database holds beyond the log ---------------------------------------

LIVE_ALERTS: Final = """
MATCH (a:Alert)
RETURN a {.*} AS alert, a.queued_at IS NOT NULL AS queued
"""
LIVE_ACTIONS: Final = "MATCH (x:IncidentAction) RETURN x.json AS json"


def live_alerts(records: Iterable[Any]) -> dict[str, LiveAlert]:
    found: dict[str, LiveAlert] = {}
    for r in records:
        alert = alert_of(r["alert"])
        found[alert.alert_id] = LiveAlert(alert, bool(r["queued"]))
    return found
