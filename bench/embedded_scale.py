"""Embedded mode at scale, old commit against this tree, the way a user runs it.

One run generates the reference case as producer JSON lines, then for each code tree (git
worktrees of ``--old`` and ``--new``, default HEAD, so editing the work tree meanwhile changes
nothing) runs ``lineage ingest`` on the same file in a fresh
home, then ``lineage trace`` and ``lineage report``, as subprocesses: wall time, events/s and
the child's peak RSS (``wait4``). Beside them, in the same run, a plain SQLite append + fsync
loop writes the same lines in the same batches (the floor any durable embedded log pays), and
the parse alone (parse + normalize + HMAC, one process, nothing stored) runs over them, and
after each ingest its whole database is written again with plain inserts (the ceiling of this
log and projection: ``same_home_plainly_events_per_s``).

    python -m bench.embedded_scale --users 850000 --old 0386860
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from graph.sqlite_store import PROJECTION_TABLES
from lineage.reference_case import generate
from streams.local_log import PRAGMAS, WRITER_PRAGMAS, LocalEventLog

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1_000
PROJECTION = frozenset(PROJECTION_TABLES)


def _write_input(users: int, path: Path) -> tuple[int, str, int]:
    case = generate(users=users, seed=7)
    with path.open("w") as handle:
        for record in case.records:
            handle.write(json.dumps(record) + "\n")
    email = next(
        r["identifier"]["email"]
        for r in case.records
        if r.get("type") == "IdentifierCollected" and "email" in r.get("identifier", {})
    )
    meta = len(case.records), email, len(case.truth.affected_subjects)
    Path(f"{path}.meta.json").write_text(json.dumps([users, *meta]))
    return meta


def _write_input_elsewhere(users: int, path: Path) -> tuple[int, str, int]:
    """``_write_input`` in a child process. Linux starts a child's peak RSS (``ru_maxrss``)
    from its parent's at fork and exec, so a bench process holding a million-user case in
    memory would add gigabytes to every measured ``lineage`` run."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.embedded_scale", "--users", str(users),
         "--write-input", str(path)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    events, email, truth = json.loads(done.stdout)
    return int(events), str(email), int(truth)


def _raw_sqlite(lines: Path, directory: Path) -> float:
    """Rows/s of a bare append of the same lines, one fsync'd transaction per batch."""
    db = sqlite3.connect(directory / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, body TEXT)")
    started = time.perf_counter()
    rows = 0
    with lines.open() as handle:
        batch: list[tuple[str, str]] = []
        for number, line in enumerate(handle):
            batch.append((f"e{number}", line))
            if len(batch) == BATCH:
                db.execute("BEGIN")
                db.executemany("INSERT INTO events (event_id, body) VALUES (?, ?)", batch)
                db.execute("COMMIT")
                rows += len(batch)
                batch = []
        if batch:
            db.execute("BEGIN")
            db.executemany("INSERT INTO events (event_id, body) VALUES (?, ?)", batch)
            db.execute("COMMIT")
            rows += len(batch)
    elapsed = time.perf_counter() - started
    db.close()
    return rows / elapsed


def _twin(home: Path, path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The home's database to read, and an empty one at ``path`` with the embedded log's own
    pragmas to write the same rows into."""
    target = sqlite3.connect(path, isolation_level=None)
    for pragma in (*WRITER_PRAGMAS, *PRAGMAS):
        target.execute(f"PRAGMA {pragma}")
    return sqlite3.connect(home / "events.db"), target


def _insert(target: sqlite3.Connection, rows: dict[str, list[Any]]) -> None:
    for table, found in rows.items():
        if found:
            marks = ", ".join("?" * len(found[0]))
            target.executemany(f"INSERT INTO {table} VALUES ({marks})", found)


def _same_home_plainly(home: Path, directory: Path, events: int) -> float:
    """Seconds to write an ingest's whole database again — the log and the projection, every
    row, under the same schema, indexes and pragmas — with plain ``executemany`` inserts in as
    many fsync'd transactions as the ingest committed units (one per ``BATCH`` events), each
    taking its share of every table: the fastest this log and projection can be written, with
    no reads and no core in between. Only the inserts and commits are timed, not reading the
    rows back from the ingest's database."""
    source, target = _twin(home, directory / "same.db")
    listed = source.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE"
        " 'sqlite_%' ORDER BY type = 'index'"
    ).fetchall()
    for _, _, sql in listed:
        target.execute(sql)
    tables = [name for kind, name, _ in listed if kind == "table"]
    counts = {t: source.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    cursors = {t: source.execute(f"SELECT * FROM {t}") for t in tables}
    units = max(1, -(-events // BATCH))
    spent = 0.0
    for _ in range(units):
        shares = {t: cursors[t].fetchmany(-(-counts[t] // units)) for t in tables}
        started = time.perf_counter()
        target.execute("BEGIN")
        _insert(target, shares)
        target.execute("COMMIT")
        spent += time.perf_counter() - started
    source.close()
    target.close()
    for leftover in directory.glob("same.db*"):
        leftover.unlink()
    return spent


def _projection_plainly(home: Path, directory: Path) -> float:
    """Seconds to write a home's projection again — only the projection's tables, every row,
    bulk-inserted in key order in one transaction, then the secondary indexes built — with no
    log, no reads and no core: what a rebuild from the log must at least pay to write."""
    source, target = _twin(home, directory / "projection.db")
    listed = source.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name"
        " NOT LIKE 'sqlite_%'"
    ).fetchall()
    tables = [name for kind, name, _, _ in listed if kind == "table" and name in PROJECTION]
    indexes = [sql for kind, _, table, sql in listed if kind == "index" and table in PROJECTION]
    for kind, name, _, sql in listed:
        if kind == "table" and name in PROJECTION:
            target.execute(sql)
    rows = {t: source.execute(f"SELECT * FROM {t}").fetchall() for t in tables}
    source.close()
    started = time.perf_counter()
    target.execute("BEGIN")
    _insert(target, rows)
    for sql in indexes:
        target.execute(sql)
    target.execute("COMMIT")
    spent = time.perf_counter() - started
    target.close()
    for leftover in directory.glob("projection.db*"):
        leftover.unlink()
    return spent


#: What a writer does on open with a big home, and the officers' two reads, timed inside one
#: process after its imports (the CLI's wall time adds the interpreter and imports).
_IN_PROCESS = """
import json, os, sqlite3, sys, time
from pathlib import Path
home, email = Path(sys.argv[1]), sys.argv[2]
found = {}
try:
    from graph.sqlite_store import SqliteStore
    db = sqlite3.connect(home / "events.db", isolation_level=None)
    store = SqliteStore(db, create=False, working_state=True)
    started = time.perf_counter()
    counts = store.working_state().counts()
    found["state_load_s"] = round(time.perf_counter() - started, 2)
    found["state_identifiers"] = counts.identifiers
    found["state_copies"] = counts.copies
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            found["state_load_vmhwm_mib"] = int(line.split()[1]) // 1024
    del store
    db.close()
except (ImportError, TypeError, AttributeError):
    pass  # a tree without a working state in memory
from runtime.service import LineageService
from runtime.settings import Settings
service = LineageService.open(Settings(home=home), writer=False)
started = time.perf_counter()
service.trace(email)
found["trace_answer_ms"] = round(1000 * (time.perf_counter() - started), 1)
started = time.perf_counter()
service.report()
found["report_answer_ms"] = round(1000 * (time.perf_counter() - started), 1)
service.close()
print(json.dumps(found))
"""


#: The core alone: every event of the home's log, parsed beforehand, applied by the tracker to
#: a working state in memory with nothing persisted, in the ingest's units. No code that runs
#: this core can ingest or replay faster: the ceiling beside the plain writes.
_CORE_ALONE = """
import sys, time
from pathlib import Path
from lineage.partition_state import PartitionState
from lineage.tracker import Tracker
from runtime.batching import batched, settle
from runtime.settings import Settings
from runtime.wiring import build_policy
from streams.local_log import LocalEventLog
log = LocalEventLog(Path(sys.argv[1]) / "events.db", read_only=True)
events = [event for _, event in log.read()]
log.close()
tracker = Tracker(PartitionState(), build_policy(Settings()))
started = time.perf_counter()
for unit in batched(events, int(sys.argv[2])):
    tracker.apply(unit)
    settle()  # as ingest and replay do after each unit
print(time.perf_counter() - started)
"""


def _core_alone(tree: Path, home: Path) -> float:
    env = {**os.environ, "LINEAGE_HOME": str(home), "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", _CORE_ALONE, str(home), str(BATCH)],
        cwd=tree, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(done.stdout)


def _in_process(tree: Path, home: Path, email: str) -> dict[str, Any]:
    env = {**os.environ, "LINEAGE_HOME": str(home), "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", _IN_PROCESS, str(home), email],
        cwd=tree, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _parse_floor(lines: Path) -> float:
    """Events/s of parse + normalize + HMAC alone (``InboundParser`` on every line, one
    process, nothing stored): what ingest would do with a free log and projection."""
    from datetime import UTC, datetime

    from lineage.identifiers import Pseudonymizer
    from lineage.inbound import InboundParser

    parser = InboundParser(Pseudonymizer(b"bench-parse-floor-key-0123456789"))
    observed = datetime.now(UTC)
    started = time.perf_counter()
    events = 0
    with lines.open("rb") as handle:
        for line in handle:
            parser.parse_line(line, observed)
            events += 1
    return events / (time.perf_counter() - started)


def _parse_floor_elsewhere(lines: Path) -> float:
    """In a child, like the input: it holds a memo of every identifier."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.embedded_scale", "--parse-floor", str(lines)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(done.stdout)


def _hwm_mib(pid: int) -> int | None:
    """The process's own resident high-water mark (``VmHWM``), None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def _run(tree: Path, home: Path, args: list[str]) -> tuple[float, int, str, int]:
    """Wall seconds, peak RSS (bytes, ``wait4``), stdout of ``lineage ARGS`` from ``tree``, and
    its ``VmHWM`` sampled every 0.2 s (MiB) plus that of its helper processes. The two disagreed
    once at 850k users (4.7 GiB vs 0.76 GiB, the latter matching ``/usr/bin/time``); both are
    reported until that is understood."""
    env = {**os.environ, "LINEAGE_HOME": str(home), "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/python"), "-m", "cli.main", *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    sampled = [0]
    helpers: dict[int, int] = {}  # the ingest's own children (runtime/parse_ahead): peak each
    exited = threading.Event()

    def watch() -> None:
        # Never poll() here: that would reap the child before wait4 reads its usage.
        while not exited.wait(0.2):
            hwm = _hwm_mib(process.pid)
            if hwm is not None:
                sampled[0] = max(sampled[0], hwm)
            for child in _children(process.pid):
                child_hwm = _hwm_mib(child)
                if child_hwm is not None:
                    helpers[child] = max(helpers.get(child, 0), child_hwm)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    exited.set()
    watcher.join()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(f"lineage {args[0]} failed in {tree}")
    # The main process's peak plus each helper's: an upper bound of what they held together.
    return elapsed, usage.ru_maxrss * 1024, out, sampled[0] + sum(helpers.values())


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def _size(home: Path) -> int:
    return sum(p.stat().st_size for p in home.iterdir() if p.is_file())


def _log_floor(home: Path) -> float:
    """Events/s of reading every event back from a home's log and parsing it, nothing applied:
    what a replay does before the tracker (``LocalEventLog.read``, as the replay reads it)."""
    log = LocalEventLog(home / "events.db", read_only=True)
    started = time.perf_counter()
    events = sum(1 for _ in log.read())
    elapsed = time.perf_counter() - started
    log.close()
    return events / elapsed


def _measure(
    tree: Path, lines: Path, events: int, email: str, work: Path, ceilings: bool
) -> dict[str, Any]:
    """``ceilings``: also this tree's plain-write and log-read floors (its home is one SQLite
    database holding the log and the projection)."""
    home = work / "home"
    ingest_s, ingest_rss, ingested, ingest_hwm = _run(tree, home, ["ingest", str(lines), "--json"])
    plain_s = _same_home_plainly(home, work, events) if ceilings else None
    trace_s = min(_run(tree, home, ["trace", email, "--json"])[0] for _ in range(3))
    report_s, _, report, _ = _run(tree, home, ["report", "--json"])
    answers = _in_process(tree, home, email)
    size = _size(home)
    replay_s, _, replayed, replay_hwm = _run(tree, home, ["replay", "--json"])
    log_floor = _log_floor(home) if ceilings else None
    projection_s = _projection_plainly(home, work) if ceilings else None
    core_s = _core_alone(tree, home) if ceilings else None
    replayed_size = _size(home)
    shutil.rmtree(home)
    affected = json.loads(report)["affected_subjects"]
    result: dict[str, Any] = {
        "ingest_s": round(ingest_s, 1),
        "events_per_s": round(events / ingest_s),
        "ingest_peak_rss_mib": round(ingest_rss / 2**20),
        "ingest_vmhwm_sampled_mib": ingest_hwm,  # main process + parse-ahead helper
        "trace_s": round(trace_s, 2),
        "report_s": round(report_s, 2),
        "replay_s": round(replay_s, 1),
        "replay_events_per_s": round(events / replay_s),
        "replay_vmhwm_sampled_mib": replay_hwm,
        "replay_same_people": json.loads(replayed)["affected_subjects"] == affected,
        **answers,
        "home_mib": round(size / 2**20),
        # SQLite keeps the pages of the tables the rebuild dropped, for reuse
        "home_after_replay_mib": round(replayed_size / 2**20),
        "rejected_lines": len(json.loads(ingested)["rejected"]),
        "affected_people": affected,
    }
    if plain_s is not None and log_floor is not None:
        # the same database written plainly (_same_home_plainly), as events/s
        result["same_home_plainly_events_per_s"] = round(events / plain_s)
        result["vs_same_home_plainly"] = round(plain_s / ingest_s, 3)
        result["log_read_and_parse_events_per_s"] = round(log_floor)
        result["replay_vs_log_floor"] = round(events / replay_s / log_floor, 2)
    if core_s is not None:
        result["core_alone_events_per_s"] = round(events / core_s)
        result["core_alone_vs_same_home_plainly"] = round(
            result["core_alone_events_per_s"] / result["same_home_plainly_events_per_s"], 3
        )
    if projection_s is not None and core_s is not None:
        result["core_alone_vs_projection_plainly"] = round(projection_s / core_s, 3)
    if projection_s is not None:
        result["projection_plainly_s"] = round(projection_s, 1)
        result["replay_vs_projection_plainly"] = round(projection_s / replay_s, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--old", default=None, help="a commit to compare with, e.g. 0386860")
    parser.add_argument("--new", default="HEAD", help="the commit measured as new")
    parser.add_argument("--write-input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--input", type=Path, help="a file written by --write-input for the same --users"
    )
    parser.add_argument("--parse-floor", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.parse_floor is not None:
        print(_parse_floor(args.parse_floor))
        return
    if args.write_input is not None:
        print(json.dumps(_write_input(args.users, args.write_input)))
        return
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as tmp:
        work = Path(tmp)
        if args.input is not None:
            lines = args.input
            users, events, email, truth = json.loads(Path(f"{lines}.meta.json").read_text())
            if users != args.users:
                parser.error(f"{lines} holds {users} users, not {args.users}")
        else:
            lines = work / "events.jsonl"
            events, email, truth = _write_input_elsewhere(args.users, lines)
        result: dict[str, Any] = {"users": args.users, "events": events, "truth_people": truth}
        result["raw_sqlite_rows_per_s"] = round(_raw_sqlite(lines, work))
        result["parse_floor_events_per_s"] = round(_parse_floor_elsewhere(lines))
        refs = {"old": args.old, "new": args.new} if args.old else {"new": args.new}
        trees: dict[str, Path] = {}
        try:
            for name, ref in refs.items():
                trees[name] = work / name
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees[name]), ref],
                    check=True,
                    capture_output=True,
                )
            for name, tree in trees.items():
                result[name] = _measure(tree, lines, events, email, work, name == "new")
                if name == "new" and not result[name]["replay_same_people"]:
                    raise SystemExit("replaying the log gave other people than the ingest")
                result[name]["vs_raw_sqlite"] = round(
                    result[name]["events_per_s"] / result["raw_sqlite_rows_per_s"], 3
                )
                result[name]["vs_parse_floor"] = round(
                    result[name]["events_per_s"] / result["parse_floor_events_per_s"], 2
                )
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
        if "old" in result:
            result["new_over_old_events_per_s"] = round(
                result["new"]["events_per_s"] / result["old"]["events_per_s"], 2
            )
            result["new_over_old_replay"] = round(
                result["old"]["replay_s"] / result["new"]["replay_s"], 2
            )
        # A child's wait4 peak can start from its parent's (Linux carries it over at exec):
        # this one's own, to rule that out.
        result["harness_vmhwm_mib"] = _hwm_mib(os.getpid())
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
