"""Crash anywhere in the embedded write path, recover, and get exactly the clean result.

Each trial generates a small, messy history (``tests/crash_histories.py``) and runs
``lineage ingest`` on it as a subprocess with a small ``LINEAGE_BATCH`` and
``LINEAGE_FAULT=<point>:<N>`` (``runtime/faults.py``: SIGKILL at the N-th pass through that
point), so the process dies before, inside or just after a batch's transaction, or between
delivering alerts and marking them published; a quarter of the trials crash twice in a row.
Then it ingests the same file again without a fault (event ids make re-sent records no-ops)
and checks that

* the alerts equal those of a fresh home that ingested the file once without a fault (whole
  content: every field but ``revision``; withdrawn alerts left out),
* every final alert reached ``alerts.jsonl`` with its final content (revision included) at
  least once, and nothing reached it that the final result neither holds nor withdrew,
* after ``lineage replay`` in the crashed home, both still hold.

``test_every_fault_point_is_reached`` makes sure each point really kills the process (else the
trials would prove nothing), and ``test_emit_while_ingest_runs`` runs ``lineage emit`` against
a home whose ingest is under way.

The trials are seeded: ``LINEAGE_CRASH_SEED`` (default below) picks the histories, batch sizes
and faults; a failure names the seed, the trial, and the commands to reproduce it. Trials run
two (up to four, with more cores) at a time; each is a chain of CLI processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.faults import POINTS
from tests import crash_histories as histories
from tests.conftest import without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
# Read at import: the unit-test autouse fixture removes LINEAGE_* variables before each test.
BASE_SEED = int(os.environ.get("LINEAGE_CRASH_SEED", "20240611"))
TRIALS = 50
KEY = "crash-anywhere-test-key-0123456789"
TIMEOUT = 120  # seconds, per CLI call
EMIT_JOB = "late-audience-matcher"

Alerts = list[dict[str, Any]]


# -- running the CLI --------------------------------------------------------------------------
def cli_env(home: Path, batch: int | None = None, fault: str | None = None) -> dict[str, str]:
    env = without_lineage_settings()
    env.update(
        LINEAGE_HOME=str(home),
        LINEAGE_KEY=KEY,  # the same refs in every home, so alerts compare across homes
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    if batch is not None:
        env["LINEAGE_BATCH"] = str(batch)
    if fault is not None:
        env["LINEAGE_FAULT"] = fault
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def lineage(
    home: Path, *args: str, batch: int | None = None, fault: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        env=cli_env(home, batch, fault),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def ok(result: subprocess.CompletedProcess[str], what: str) -> str:
    assert result.returncode == 0, (
        f"{what}: exit {result.returncode}\nstderr:\n{tail(result.stderr)}\n"
        f"stdout:\n{tail(result.stdout)}"
    )
    return result.stdout


def read_alerts(home: Path, batch: int | None = None) -> Alerts:
    listed = json.loads(
        ok(
            lineage(home, "alerts", "--json", "--all", batch=batch),
            f"lineage alerts in {home}",
        )
    )
    assert listed["truncated"] is False and listed["total"] == len(listed["alerts"])
    found: Alerts = listed["alerts"]
    return found


def ingest_clean(home: Path, source: Path, batch: int | None) -> Alerts:
    """A fresh home, the file ingested once, no fault: the reference result."""
    report = json.loads(
        ok(lineage(home, "ingest", str(source), "--json", batch=batch), "clean ingest")
    )
    assert report["rejected"] == [], f"the generated history has invalid records: {report}"
    return read_alerts(home, batch)


# -- comparing alerts -------------------------------------------------------------------------
def by_id(alerts: Alerts, where: str) -> dict[str, dict[str, Any]]:
    counts = Counter(a["alert_id"] for a in alerts)
    twice = sorted(i for i, n in counts.items() if n > 1)
    assert not twice, f"{where}: alert ids listed more than once: {twice[:5]}"
    return {a["alert_id"]: a for a in alerts}


def content(alerts: Alerts, where: str) -> dict[str, dict[str, Any]]:
    """What must not depend on crashes: active alerts, every field but ``revision``."""
    return {
        alert_id: {k: v for k, v in alert.items() if k != "revision"}
        for alert_id, alert in by_id(alerts, where).items()
        if alert.get("status", "active") != "withdrawn"
    }


def differences(
    expected: Mapping[str, Mapping[str, Any]], actual: Mapping[str, Mapping[str, Any]]
) -> str:
    """Empty when equal; otherwise which alerts are missing, extra, or differ, and how."""
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    changed = sorted(i for i in expected.keys() & actual.keys() if expected[i] != actual[i])
    if not (missing or extra or changed):
        return ""
    lines = [
        f"{len(expected)} expected active alerts, {len(actual)} found: {len(missing)} missing, "
        f"{len(extra)} unexpected, {len(changed)} with other content"
    ]
    for label, ids, source in (("missing", missing, expected), ("unexpected", extra, actual)):
        for alert_id in ids[:3]:
            alert = source[alert_id]
            lines.append(
                f"  {label} {alert_id}: {alert.get('display')} {alert.get('origin_purpose')}"
                f"@{alert.get('origin_dataset')} -> {alert.get('use_job')}"
                f"[{alert.get('use_purpose')}] at {alert.get('occurred_at')}"
            )
    for alert_id in changed[:3]:
        for field in sorted(expected[alert_id].keys() | actual[alert_id].keys()):
            want, got = expected[alert_id].get(field), actual[alert_id].get(field)
            if want == got:
                continue
            if isinstance(want, list) and isinstance(got, list):  # evidence: the steps that differ
                length = f" ({len(want)} steps expected, {len(got)} found)"
                lines.append(f"  {alert_id}.{field}{length if len(want) != len(got) else ''}:")
                for index in range(max(len(want), len(got))):
                    a = want[index] if index < len(want) else None
                    b = got[index] if index < len(got) else None
                    if a != b:
                        lines.append(f"    [{index}] expected {a!r}\n{' ' * 8}found {b!r}")
            else:
                lines.append(f"  {alert_id}.{field}: expected {want!r}, found {got!r}")
    return "\n".join(lines)


def delivery_problems(home: Path, final: Alerts) -> str:
    """Every final alert reached ``alerts.jsonl`` with its final content (at least once), and
    nothing reached it that the final result does not hold or withdrew (a rolled-back alert)."""
    path = home / "alerts.jsonl"
    delivered: dict[str, list[dict[str, Any]]] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for number, line in enumerate(lines, start=1):
        try:
            alert = json.loads(line)
        except json.JSONDecodeError:
            return f"alerts.jsonl line {number} is not JSON (a torn write?): {line[:120]!r}"
        delivered.setdefault(alert["alert_id"], []).append(alert)
    problems = []
    final_ids = by_id(final, "final alerts")
    for alert_id, alert in final_ids.items():
        copies = delivered.get(alert_id, [])
        if not copies:
            problems.append(f"  never delivered: {alert_id} (revision {alert.get('revision')})")
        elif alert not in copies:
            revisions = sorted(str(c.get("revision")) for c in copies)
            problems.append(
                f"  {alert_id}: final content (revision {alert.get('revision')}) never delivered;"
                f" delivered revisions {', '.join(revisions)}"
            )
    for alert_id in sorted(delivered.keys() - final_ids.keys()):
        # `lineage alerts` may leave withdrawn alerts out; their withdrawal was delivered too.
        if not any(copy.get("status") == "withdrawn" for copy in delivered[alert_id]):
            problems.append(f"  delivered, never withdrawn, not in the final result: {alert_id}")
    if not problems:
        return ""
    return (
        f"alerts.jsonl ({len(lines)} lines, {len(delivered)} ids) vs {len(final_ids)} final "
        f"alerts:\n" + "\n".join(problems[:8])
    )


# -- the trials -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trial:
    index: int
    seed: int  # of the history
    events: int
    batch: int
    faults: tuple[str, ...]  # LINEAGE_FAULT of each crashing run, in order

    @property
    def name(self) -> str:
        return f"t{self.index:02d}-" + "+".join(f.replace(":", "-") for f in self.faults)

    def describe(self, source: Path) -> str:
        runs = " ; ".join(
            f"LINEAGE_FAULT={fault} LINEAGE_BATCH={self.batch} lineage ingest {source.name}"
            for fault in self.faults
        )
        return (
            f"LINEAGE_CRASH_SEED={BASE_SEED} trial {self.index}: history seed {self.seed} "
            f"({self.events} events, batch {self.batch}, {source}), faults {self.faults}\n"
            f"  reproduce: LINEAGE_CRASH_SEED={BASE_SEED} .venv/bin/pytest "
            f"'tests/unit/test_crash_anywhere.py::test_crash_anywhere[{self.name}]'\n"
            f"  by hand (LINEAGE_KEY={KEY}): {runs} ; lineage ingest {source.name} ; "
            "lineage alerts --json --all"
        )


def plan(index: int) -> Trial:
    """Trial ``index`` of the base seed: every point gets its share, N and the rest vary."""
    rng = random.Random(f"{BASE_SEED}:{index}")
    events = rng.randint(40, 120)
    batch = rng.randint(4, 25)
    batches = -(-events // batch)
    faults = []
    for run in range(1 if rng.random() < 0.75 else 2):
        point = POINTS[index % len(POINTS)] if run == 0 else rng.choice(POINTS)
        # N beyond the passes a run makes is allowed: that run then simply finishes.
        most = max(1, batches // 2 if point == "publish" else batches)
        faults.append(f"{point}:{rng.randint(1, most)}")
    return Trial(index, rng.randrange(2**32), events, batch, tuple(faults))


PLANS = [plan(index) for index in range(TRIALS)]
#: Trials run this many at a time (each is a chain of CLI processes, mostly one at a time).
PARALLEL = max(1, min(4, os.cpu_count() or 2))


def run_trial(trial: Trial, tmp: Path) -> str:
    """Crash, recover, compare; raises AssertionError naming the trial, else returns what the
    faulted runs did."""
    source = histories.write(tmp / "history.jsonl", histories.generate(trial.seed, trial.events))
    crashed = tmp / "crashed"
    about = trial.describe(source)
    with ThreadPoolExecutor(max_workers=1) as pool:
        clean_run = pool.submit(ingest_clean, tmp / "clean", source, trial.batch)
        outcomes = []
        for fault in trial.faults:
            run = lineage(crashed, "ingest", str(source), "--json", batch=trial.batch, fault=fault)
            assert run.returncode in (0, -9), (
                f"{about}\nthe run with LINEAGE_FAULT={fault} neither finished nor was killed: "
                f"exit {run.returncode}\n{tail(run.stderr)}"
            )
            outcomes.append(f"{fault}: {'killed' if run.returncode == -9 else 'finished'}")
        about += "\n  runs: " + ", ".join(outcomes)
        recovery = lineage(crashed, "ingest", str(source), "--json", batch=trial.batch)
        assert recovery.returncode == 0, (
            f"{about}\nrecovery ingest: exit {recovery.returncode}\n{tail(recovery.stderr)}"
        )
        recovered = read_alerts(crashed, trial.batch)
        delivered_before_replay = delivery_problems(crashed, recovered)
        ok(lineage(crashed, "replay", "--json", batch=trial.batch), f"{about}\nreplay")
        replayed = read_alerts(crashed, trial.batch)
        clean = content(clean_run.result(), "clean run")
    assert clean, f"{about}\nthe clean run raised no alert: the history exercises nothing"
    diff = differences(clean, content(recovered, "after recovery"))
    assert not diff, f"{about}\nafter recovery, alerts differ from the clean run's:\n{diff}"
    assert not delivered_before_replay, (
        f"{about}\ndelivery to alerts.jsonl after recovery:\n{delivered_before_replay}"
    )
    diff = differences(clean, content(replayed, "after replay"))
    assert not diff, f"{about}\nafter `lineage replay`, alerts differ from the clean run's:\n{diff}"
    delivery = delivery_problems(crashed, replayed)
    assert not delivery, f"{about}\ndelivery to alerts.jsonl after replay:\n{delivery}"
    return f"{trial.name}: {', '.join(outcomes)}; {len(clean)} alerts"


@pytest.fixture(scope="module")
def trial_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[str]]]:
    """Start every selected trial (``-k`` works) on a small pool at once, so both cores stay
    busy; each test then waits for its own."""
    selected = [
        callspec.params["trial"]
        for item in request.session.items
        if (callspec := getattr(item, "callspec", None)) is not None
        and isinstance(callspec.params.get("trial"), Trial)
    ]
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        runs = {
            trial.name: pool.submit(run_trial, trial, tmp_path_factory.mktemp(trial.name))
            for trial in selected
        }
        yield runs
        for run in runs.values():  # left over when the session stops early (-x, Ctrl-C)
            run.cancel()


@pytest.mark.parametrize("trial", PLANS, ids=[trial.name for trial in PLANS])
def test_crash_anywhere(trial: Trial, trial_runs: dict[str, Future[str]]) -> None:
    print(trial_runs[trial.name].result(timeout=TIMEOUT * 10))


@pytest.mark.parametrize("point", POINTS)
def test_every_fault_point_is_reached(point: str, tmp_path: Path) -> None:
    """Without this the trials above could pass by never crashing: each point must fire."""
    seed = BASE_SEED + 1
    source = histories.write(tmp_path / "history.jsonl", histories.generate(seed, 80))
    run = lineage(tmp_path / "home", "ingest", str(source), "--json", batch=10, fault=f"{point}:1")
    assert run.returncode == -9, (
        f"LINEAGE_FAULT={point}:1 did not kill `lineage ingest` (exit {run.returncode}; history "
        f"seed {seed}): is runtime.faults.fault_point({point!r}) called in the embedded write "
        f"path?\n{tail(run.stderr)}"
    )


# -- a second writer while ingest runs ---------------------------------------------------------
def emitted_use(records: Sequence[dict[str, Any]], job: str) -> dict[str, Any]:
    """A use of the ads table by a job nothing else mentions, at the last event time: it
    raises alerts of its own (checked below)."""
    return {
        "type": "DataUsed",
        "event_id": f"emitted-{job}",
        "event_time": max(record["event_time"] for record in records),
        "producer": "ads-platform",
        "dataset": histories.ADS,
        "job": job,
        "purpose": histories.AD_USE,
    }


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting until {what}"
        time.sleep(0.02)


def opening_violation() -> list[dict[str, Any]]:
    """A violation in the first batch, so ``alerts.jsonl`` shows the ingest is under way."""
    email = {"email": "opening@example.com"}
    return [
        {
            "type": "IdentifierCollected",
            "event_id": "opening-collect",
            "event_time": "2015-03-01T00:00:00Z",
            "producer": "auth-service",
            "dataset": histories.AUTH,
            "purpose": "essential.service.authentication",
            "identifier": email,
            "subject": "acct-opening",
        },
        {
            "type": "DataFlowed",
            "event_id": "opening-sync",
            "event_time": "2015-03-01T01:00:00Z",
            "producer": "ads-platform",
            "source": histories.AUTH,
            "target": histories.ADS,
            "job": "ads-identity-sync",
            "identifiers": [email],
        },
        {
            "type": "DataUsed",
            "event_id": "opening-match",
            "event_time": "2015-03-01T02:00:00Z",
            "producer": "ads-platform",
            "dataset": histories.ADS,
            "job": "tailored-audiences-matcher",
            "purpose": histories.AD_USE,
            "identifiers": [email],
        },
    ]


def test_emit_while_ingest_runs(tmp_path: Path) -> None:
    """``lineage emit`` into a home whose ingest is running: it waits for the writer, or fails
    naming it (then it is retried once the ingest is done); nothing is lost either way. Two
    emits: one with the default patience, one with ``LINEAGE_LOCK_WAIT_SECONDS=0``."""
    seed = BASE_SEED + 2
    records = opening_violation() + histories.generate(seed, 3_000)
    lines = [json.dumps(record) + "\n" for record in records]
    emitted = {
        "patient": (emitted_use(records, EMIT_JOB), {}),
        "impatient": (
            emitted_use(records, "impatient-" + EMIT_JOB),
            {"LINEAGE_LOCK_WAIT_SECONDS": "0"},
        ),
    }
    home = tmp_path / "home"
    batch = 50
    # Fed through stdin in two parts, so the ingest is certainly running when the emits start.
    # The first part exceeds 1,000 lines: a batch is written even with the default batch size.
    half = 1_200
    ingest = subprocess.Popen(
        command("ingest", "-", "--json"),
        env=cli_env(home, batch),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    emits: dict[str, subprocess.Popen[str]] = {}
    said: dict[str, tuple[str, str]] = {}
    try:
        assert ingest.stdin is not None
        ingest.stdin.writelines(lines[:half])
        ingest.stdin.flush()
        delivered = home / "alerts.jsonl"
        wait_until(
            lambda: (
                (delivered.exists() and delivered.stat().st_size > 0) or ingest.poll() is not None
            ),
            60,
            "the ingest has written its first alerts",
        )
        assert ingest.poll() is None, "ingest ended before all its input was sent"
        for name, (record, extra) in emitted.items():
            emits[name] = subprocess.Popen(
                command("emit", json.dumps(record), "--json"),
                env={**cli_env(home, batch), **extra},
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for emit in emits.values():  # failing fast, or waiting for the writer lock
            with contextlib.suppress(subprocess.TimeoutExpired):
                emit.wait(timeout=3)
        assert ingest.poll() is None, "ingest ended before all its input was sent"
        out, err = ingest.communicate("".join(lines[half:]), timeout=TIMEOUT)
        assert ingest.returncode == 0, f"ingest: exit {ingest.returncode}\n{tail(err)}"
        assert json.loads(out)["rejected"] == []
        said = {name: emit.communicate(timeout=TIMEOUT) for name, emit in emits.items()}
    finally:
        for process in (ingest, *emits.values()):
            if process.poll() is None:
                process.kill()
                process.wait()
    outcomes = []
    for name, emit in emits.items():
        stdout, stderr = said[name]
        outcomes.append(f"{name} emit: exit {emit.returncode} {(stdout + stderr).strip()[:160]}")
        if emit.returncode != 0:
            assert str(ingest.pid) in stdout + stderr, (
                f"the {name} emit failed while ingest (pid {ingest.pid}) held the home, "
                f"without naming it: exit {emit.returncode}\n{tail(stderr)}"
            )
            record, extra = emitted[name]
            retried = subprocess.run(
                command("emit", json.dumps(record), "--json"),
                env={**cli_env(home, batch), **extra},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            ok(retried, f"the {name} emit, retried after the ingest")
    final = read_alerts(home, batch)

    source = tmp_path / "all.jsonl"
    source.write_text("".join(lines + [json.dumps(r) + "\n" for r, _ in emitted.values()]))
    clean = content(ingest_clean(tmp_path / "clean", source, batch), "clean run")
    for record, _ in emitted.values():
        assert any(alert["use_job"] == record["job"] for alert in clean.values()), (
            f"{record['job']} raises no alert in the clean run: the test would prove nothing"
        )
    diff = differences(clean, content(final, "after ingest + emits"))
    about = f"LINEAGE_CRASH_SEED={BASE_SEED} (history seed {seed}): " + "; ".join(outcomes)
    assert not diff, (
        f"{about}\nemits during an ingest left alerts that differ from a clean run over the "
        f"same records:\n{diff}"
    )
    delivery = delivery_problems(home, final)
    assert not delivery, f"{about}\nemits during an ingest, delivery to alerts.jsonl:\n{delivery}"
    print(about)
