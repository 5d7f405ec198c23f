"""Fuzzing ``ingest``: the parser, the embedded service and the real CLI.

Property: every non-blank input line ends accepted or dead-lettered with a one-line, bounded
reason that never quotes a raw email or phone number; nothing raises; good lines after bad
ones are still accepted. Deterministic (``derandomize=True``, a seeded corpus).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.errors import InvalidEventError
from lineage.identifiers import Pseudonymizer
from lineage.inbound import MAX_DEPTH, MAX_LINE_BYTES, InboundParser
from runtime.service import LineageService
from runtime.settings import Settings
from tests.conftest import without_lineage_settings
from tests.fuzz.corpus import (
    ANY_TEXT,
    BLANK_LINES,
    FUZZ,
    JSON_VALUES,
    MUST_REJECT,
    PHONE,
    check_reason,
    corpus,
    good_records,
    hostile_lines,
    line,
)

ROOT = Path(__file__).resolve().parents[2]
KEY = "fuzz-test-key-0123456789abcdef"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
PARSER = InboundParser(Pseudonymizer(KEY.encode()))
HOSTILE_LINES = hostile_lines(good_records("h"))


def embedded(home: Path) -> Settings:
    """Embedded whatever the environment says (the services' LINEAGE_* variables are set
    when the integration tests run): nothing here may reach the shared broker or graph."""
    return Settings(
        home=home, key=KEY, log="local", store="sqlite", kafka_bootstrap=None, neo4j_uri=None
    )


# -- the parser --------------------------------------------------------------------------------


def _outcome(parser: InboundParser, raw: str | bytes) -> str | None:
    """None when accepted, else the checked reason."""
    try:
        parser.parse_line(raw, NOW)
    except InvalidEventError as exc:
        check_reason(exc.reason)
        return exc.reason
    return None


def test_every_corpus_line_parses_or_is_rejected_with_a_one_line_reason(
    parser: InboundParser,
) -> None:
    rejected = set()
    for name, raw in corpus():
        if _outcome(parser, raw) is not None:
            rejected.add(name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        assert (_outcome(parser, text) is not None) == (name in rejected), name
    assert set(MUST_REJECT) <= rejected, set(MUST_REJECT) - rejected


@pytest.mark.parametrize("name", ["quadratic-escaped-quotes", "quadratic-open-quotes"])
def test_lines_of_quotes_and_backslashes_are_rejected_in_linear_time(name: str) -> None:
    """Not a benchmark: a generous bound (linear takes milliseconds; the quadratic depth
    check took 52 s for a sixth of this line, and would take most of an hour for all of it)."""
    raw = dict(corpus())[name]
    assert len(raw) <= MAX_LINE_BYTES
    started = time.monotonic()
    assert _outcome(PARSER, raw) == f"not valid JSON: nested deeper than {MAX_DEPTH} levels"
    assert time.monotonic() - started < 10


@FUZZ
@given(raw=HOSTILE_LINES)
def test_hostile_lines_parse_or_are_rejected_with_a_one_line_reason(raw: bytes) -> None:
    _outcome(PARSER, raw)


@FUZZ
@given(text=ANY_TEXT | st.text(max_size=300))
def test_hostile_text_lines_parse_or_are_rejected(text: str) -> None:
    """The in-process API takes ``str`` lines too: lone surrogates included."""
    _outcome(PARSER, text)


@FUZZ
@given(record=JSON_VALUES)
def test_hostile_records_parse_or_are_rejected(record: object) -> None:
    """``parse_record``: what the parser gets from an already-decoded source."""
    try:
        PARSER.parse_record(record, NOW)
    except InvalidEventError as exc:
        check_reason(exc.reason)


# -- the embedded service ----------------------------------------------------------------------


def test_the_service_dead_letters_each_bad_line_and_accepts_every_good_one_after_it(
    tmp_path: Path,
) -> None:
    lines: list[bytes] = []
    bad: dict[int, str] = {}
    good: set[int] = set()
    for n, (name, raw) in enumerate(corpus()):
        lines.append(raw + b"\n")
        bad[len(lines)] = name
        lines.append(BLANK_LINES[n % len(BLANK_LINES)])
        lines.append(line(good_records(f"g{n}")[n % 4]) + b"\n")
        good.add(len(lines))
    with LineageService.open(embedded(tmp_path)) as service:
        report = service.ingest(lines, keep_alerts=False)
        rejected = {r.line: r.reason for r in report.rejected}
        for reason in rejected.values():
            check_reason(reason)
        assert not good & rejected.keys(), [bad.get(n - 2) for n in good & rejected.keys()]
        assert report.lines == len(lines)
        assert report.accepted + report.duplicates + len(rejected) == len(bad) + len(good)
        assert {bad[n] for n in rejected} >= set(MUST_REJECT)
        letters = service.local_log.dead_letters() if service.local_log else []
        assert [letter.reason for letter in letters] == [r.reason for r in report.rejected]
        assert all(
            letter.origin == f"ingest:{r.line}"
            for letter, r in zip(letters, report.rejected, strict=True)
        )
        # and the home still answers: the 9999 date once made trace die with OverflowError
        assert service.trace(PHONE) is not None
        assert service.report().affected_identifiers >= 1
        assert service.alerts()


def test_hostile_batches_never_stop_the_service(tmp_path: Path) -> None:
    with LineageService.open(embedded(tmp_path)) as service:
        runs = itertools.count()

        @settings(FUZZ, max_examples=60)
        @given(st.lists(HOSTILE_LINES, min_size=1, max_size=4))
        def check(hostile: list[bytes]) -> None:
            run = next(runs)
            after = line(good_records(f"after{run}")[run % 4])
            report = service.ingest([*hostile, after])
            for rejection in report.rejected:
                check_reason(rejection.reason)
            assert report.lines == len(hostile) + 1
            assert report.lines not in {r.line for r in report.rejected}
            assert report.accepted >= 1

        check()


def test_a_str_line_with_a_lone_surrogate_is_rejected_by_the_service(tmp_path: Path) -> None:
    with LineageService.open(embedded(tmp_path)) as service:
        report = service.ingest(['{"type": "\ud800"}', json.dumps(good_records("ok")[0])])
    assert [r.line for r in report.rejected] == [1]
    assert report.accepted == 1


# -- the real CLI ------------------------------------------------------------------------------

CLI_CASES = (
    "IdentifierCollected.event_time=time0",
    "IdentifierCollected.observed_time=9999",
    "nested-1100-arrays",
    "nested-1100-in-field",
    "two-mb-line",
    "non-utf8-byte",
    "utf8-surrogate-bytes",
    "bigint-5000-digits",
    "duplicate-type",
    "IdentifierCollected.extra-newline-key",
    "surrogate0.subject",
    "raw-nul",
    "utf16",
    "quadratic-open-quotes",
)


def _cli(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = without_lineage_settings()
    env |= {"LINEAGE_HOME": str(home), "LINEAGE_KEY": KEY}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def test_the_cli_ingests_a_hostile_file_in_one_line_per_rejection(tmp_path: Path) -> None:
    chosen = dict(corpus())
    lines = []
    for n, name in enumerate(CLI_CASES):
        blank = BLANK_LINES[1 + n % (len(BLANK_LINES) - 1)]  # each a line of its own
        lines += [chosen[name] + b"\n", blank]
        lines.append(line(good_records(f"cli{n}")[n % 4]) + b"\r\n")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(lines))
    home = tmp_path / "home"

    result = _cli(home, "ingest", str(events), "--json")
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["accepted"] == len(CLI_CASES)
    assert len(report["rejected"]) == len(CLI_CASES)
    assert [r["line"] for r in report["rejected"]] == [3 * n + 1 for n in range(len(CLI_CASES))]
    for rejection in report["rejected"]:
        check_reason(rejection["reason"])

    # the text report: one stderr line per rejected line, nothing else
    again = _cli(tmp_path / "home2", "ingest", str(events))
    assert again.returncode == 0 and b"Traceback" not in again.stderr
    stderr = again.stderr.decode()
    assert len(stderr.splitlines()) == len(CLI_CASES), stderr
    assert all(text.startswith("line ") for text in stderr.splitlines())
    for text in stderr.splitlines():
        check_reason(text)

    # the home still answers (a 9999 date accepted once made trace die with OverflowError)
    trace = _cli(home, "trace", "-", "--json", stdin=PHONE.encode())
    assert trace.returncode == 0, trace.stderr.decode(errors="replace")[-2000:]
    letters = _cli(home, "dead-letters", "--json")
    assert letters.returncode == 0 and b"Traceback" not in letters.stderr
    assert len(json.loads(letters.stdout)) == len(CLI_CASES)
