"""`trace -` and `emit -` read from stdin (raw identifiers stay out of shell history and `ps`);
arguments that are not UTF-8 are refused in one line, never with a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from tests.conftest import without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
PHONE = "+1 415 555 0100"
EMAIL = "Someone.Private@Example.com"
RECORD: dict[str, Any] = {
    "type": "IdentifierCollected",
    "event_time": "2015-01-01T00:00:00Z",
    "producer": "auth",
    "dataset": "auth:db",
    "purpose": "essential.service.security",
    "identifier": {"phone": PHONE},
}
UNSET = dict.fromkeys(
    [
        "LINEAGE_KEY",
        "LINEAGE_KEY_FILE",
        "LINEAGE_CONFIG",
        "LINEAGE_KAFKA_BOOTSTRAP",
        "LINEAGE_NEO4J_URI",
        "LINEAGE_STORE",
        "LINEAGE_LOG",
        "LINEAGE_DEFAULT_REGION",
    ]
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def cli(home: Path) -> CliRunner:
    return CliRunner(env={"LINEAGE_HOME": str(home), **UNSET})


def run(cli: CliRunner, *args: str, stdin: bytes | None = None) -> Result:
    return cli.invoke(app, list(args), input=stdin)


def one_line_error(result: Result) -> str:
    """The error as shown: one line, no traceback (typer exits via SystemExit, not a crash)."""
    assert isinstance(result.exception, SystemExit), result.exception
    text = result.stderr.strip()
    assert text.count("\n") == 0 and "Traceback" not in text, text
    return text


def test_emit_dash_reads_the_record_from_stdin_and_trace_dash_finds_it(cli: CliRunner) -> None:
    result = run(cli, "emit", "-", "--json", stdin=json.dumps(RECORD).encode() + b"\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sent"] is True
    result = run(cli, "trace", "-", "--json", stdin=f"{PHONE}\n".encode())
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["identifier"]["category"] == "phone" and trace["origins"]
    # the same answer as the identifier typed as arguments
    typed = run(cli, "trace", *PHONE.split(), "--json")
    assert typed.exit_code == 0 and json.loads(typed.stdout) == trace


def test_emit_without_argument_still_reads_stdin(cli: CliRunner) -> None:
    record = {**RECORD, "identifier": {"email": EMAIL}}
    result = run(cli, "emit", stdin=json.dumps(record).encode())
    assert result.exit_code == 0, result.output
    found = run(cli, "trace", "-", stdin=EMAIL.encode())
    assert found.exit_code == 0 and "collected into" in found.stdout


def test_trace_dash_unknown_and_invalid_identifiers(cli: CliRunner) -> None:
    result = run(cli, "trace", "-", stdin=b"  nobody@example.org\n")
    assert result.exit_code == 1
    assert "No lineage recorded for n***@example.org" in result.output
    result = run(cli, "trace", "-", stdin=b"not a phone\n")
    assert result.exit_code == 2 and "invalid phone" in one_line_error(result)


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"", "no identifier on stdin"),
        (b"  \n", "no identifier on stdin"),
        (b"\xff\xfe+1 415\n", "the identifier on stdin is not valid UTF-8"),
        (b"x" * 5_000, "the identifier on stdin is longer than 4096 bytes"),
    ],
)
def test_trace_dash_bad_stdin_is_one_line(cli: CliRunner, stdin: bytes, message: str) -> None:
    result = run(cli, "trace", "-", stdin=stdin)
    assert result.exit_code == 2
    assert one_line_error(result) == f"error: {message}"


def test_trace_argument_that_is_not_utf8_is_one_line(cli: CliRunner) -> None:
    # How Python hands over argv bytes that are not UTF-8: surrogate escapes.
    result = run(cli, "trace", "user\udcff@example.com")
    assert result.exit_code == 2
    assert one_line_error(result) == "error: the identifier is not valid UTF-8"


@pytest.mark.parametrize("argument", ['{"type": "\udcff"}', "\udcff\udcfe", '{"a": "\ud800"}'])
def test_emit_argument_that_is_not_utf8_is_dead_lettered_in_one_line(
    cli: CliRunner, argument: str
) -> None:
    result = run(cli, "emit", argument, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"sent": False, "reason": "not valid JSON: not UTF-8"}
    assert "rejected and dead-lettered: not valid JSON: not UTF-8" in one_line_error(result)
    letters = json.loads(run(cli, "dead-letters", "--json").stdout)
    assert [d["reason"] for d in letters] == ["not valid JSON: not UTF-8"]
    assert letters[0]["origin"].startswith("emit")


def test_emit_dash_rejects_a_2_mb_record_without_reading_it_all(cli: CliRunner) -> None:
    record = json.dumps({**RECORD, "reason": "x" * 2_000_000}).encode()
    result = run(cli, "emit", "-", stdin=record)
    assert result.exit_code == 1
    assert "rejected and dead-lettered: record too large" in one_line_error(result)


def test_emit_dash_rejects_a_deeply_nested_record(cli: CliRunner) -> None:
    result = run(cli, "emit", "-", stdin=b"[" * 1_100 + b"]" * 1_100)
    assert result.exit_code == 1
    assert "nested deeper than 32 levels" in one_line_error(result)


def test_real_process_with_non_utf8_argv_bytes(home: Path) -> None:
    """End to end: the bytes really come from argv, not from a str the test made up."""
    env = without_lineage_settings()
    env.update(LINEAGE_HOME=str(home), LC_ALL="C.UTF-8", PYTHONPATH=str(ROOT))
    for args, code, message in (
        ([b"emit", b'{"type": "\xff"}'], 1, b"not valid JSON: not UTF-8"),
        ([b"trace", b"\xffsomeone@example.com"], 2, b"the identifier is not valid UTF-8"),
    ):
        done = subprocess.run(
            [sys.executable.encode(), b"-m", b"cli.main", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == code, done.stderr
        assert message in done.stderr
        assert b"Traceback" not in done.stderr and done.stderr.strip().count(b"\n") == 0
