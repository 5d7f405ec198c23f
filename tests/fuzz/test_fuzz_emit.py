"""Fuzzing ``lineage emit`` through the real CLI in a subprocess: argv bytes that are not
UTF-8 (``os.fsencode``-style), blank records, huge and deep records, NUL and non-UTF-8 bytes
on stdin. Every bad record is refused in one stderr line with no traceback (and, when it is a
record at all, dead-lettered); a good record after them is still recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service, without_lineage_settings
from tests.fuzz.corpus import EMAIL, PHONE, check_reason, corpus, good_records, line

ROOT = Path(__file__).resolve().parents[2]
KEY = "fuzz-test-key-0123456789abcdef"

#: (name, argv record or None for stdin, stdin bytes): each must be dead-lettered (exit 1).
REJECTED: tuple[tuple[str, bytes | None, bytes], ...] = (
    ("argv not UTF-8", b'{"type": "\xff"}', b""),
    ("argv UTF-8-encoded surrogate", b"\xed\xa0\x80", b""),
    ("argv latin-1 email", "j\u00f6hn@example.com".encode("latin-1"), b""),
    ("argv 9999 date", dict(corpus())["IdentifierCollected.event_time=time0"], b""),
    ("argv 1,100 levels", dict(corpus())["nested-1100-arrays"], b""),
    ("argv 5,000-digit number", dict(corpus())["bigint-5000-digits"], b""),
    ("argv key with a newline", dict(corpus())["IdentifierCollected.extra-newline-key"], b""),
    ("argv type is an email", dict(corpus())["IdentifierCollected.type-is-email"], b""),
    ("stdin NUL", None, b"\x00"),
    ("stdin not UTF-8", None, b"\xff\xfe{}\n"),
    ("stdin 2 MB", None, dict(corpus())["two-mb-line"]),
    ("stdin two records", None, line(good_records("two")[0]) + b"\n" + line(good_records("x")[2])),
)
#: Blank records: refused in one line (exit 2), nothing recorded or dead-lettered.
BLANK: tuple[tuple[str, bytes | None, bytes], ...] = (
    ("argv empty", b"", b""),
    ("argv blank", b" \t ", b""),
    ("stdin empty", None, b""),
    ("stdin blank", None, b"  \r\n"),
)


def _env(**extra: str) -> dict[str, str]:
    env = without_lineage_settings()
    return env | {"LINEAGE_KEY": KEY} | extra


def _emit(
    env: dict[str, str], record: bytes | None, stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    argv: list[bytes] = [os.fsencode(sys.executable), b"-m", b"cli.main", b"emit", b"--json"]
    argv.append(b"-" if record is None else record)
    return subprocess.run(argv, cwd=ROOT, env=env, input=stdin, capture_output=True, timeout=120)


def _one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")[-2000:]
    text = result.stderr.decode()
    assert text.startswith("error: ") and text.count("\n") == 1, text
    check_reason(text.removeprefix("error: ").strip())
    for raw in (EMAIL, PHONE, "j\u00f6hn"):
        assert raw not in result.stdout.decode()
    return text


#: The subset run against Kafka (each emit there connects a producer: seconds, not tenths).
ON_KAFKA = ("argv not UTF-8", "argv 9999 date", "argv key with a newline", "stdin 2 MB")


def _check_rejections(env: dict[str, str], only: tuple[str, ...] | None = None) -> int:
    """Runs the hostile cases (``only`` those named); returns how many were dead-lettered."""
    cases = [case for case in REJECTED if only is None or case[0] in only]
    for name, record, stdin in cases:
        result = _emit(env, record, stdin)
        assert result.returncode == 1, (name, result.stderr.decode(errors="replace")[-2000:])
        _one_line_error(result)
        answer = json.loads(result.stdout)
        assert answer["sent"] is False, name
        check_reason(answer["reason"])
    for name, record, stdin in BLANK[: None if only is None else 1]:
        result = _emit(env, record, stdin)
        assert result.returncode == 2, (name, result.stderr)
        _one_line_error(result)
        assert json.loads(result.stdout)["sent"] is False
    return len(cases)


def test_emit_refuses_hostile_records_in_one_line_and_keeps_recording(tmp_path: Path) -> None:
    env = _env(LINEAGE_HOME=str(tmp_path / "home"))
    _check_rejections(env)
    good = _emit(env, line(good_records("emit-ok")[0]), b"")
    assert good.returncode == 0, good.stderr.decode(errors="replace")[-2000:]
    assert json.loads(good.stdout) == {"sent": True, "accepted": 1, "alerts": []}

    letters = subprocess.run(
        [sys.executable, "-m", "cli.main", "dead-letters", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert letters.returncode == 0 and b"Traceback" not in letters.stderr
    entries = json.loads(letters.stdout)
    assert len(entries) == len(REJECTED)
    assert all(entry["origin"].startswith("emit") for entry in entries)


@pytest.fixture
def kafka_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    bootstrap = require_service("LINEAGE_KAFKA_BOOTSTRAP")
    run = f"fuzz-{uuid.uuid4().hex[:10]}"
    yield _env(
        LINEAGE_HOME=str(tmp_path / "home"),
        LINEAGE_KAFKA_BOOTSTRAP=bootstrap,
        LINEAGE_EVENTS_TOPIC=f"{run}.events",
        LINEAGE_ALERTS_TOPIC=f"{run}.alerts",
        LINEAGE_DEADLETTER_TOPIC=f"{run}.deadletter",
    )


@pytest.mark.kafka
def test_emit_to_kafka_dead_letters_hostile_records_in_one_line(
    kafka_env: dict[str, str],
) -> None:
    """The Kafka producer side: the same records go to the dead-letter topic (the 2 MB one
    truncated under the broker's limit), and a good record is still sent."""
    from kafka import KafkaConsumer, TopicPartition

    rejected = _check_rejections(kafka_env, ON_KAFKA)
    good = _emit(kafka_env, line(good_records("emit-ok")[0]), b"")
    assert good.returncode == 0, good.stderr.decode(errors="replace")[-2000:]
    assert json.loads(good.stdout)["sent"] is True

    topic = kafka_env["LINEAGE_DEADLETTER_TOPIC"]
    consumer = KafkaConsumer(bootstrap_servers=kafka_env["LINEAGE_KAFKA_BOOTSTRAP"])
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        letters = []
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for batch in consumer.poll(timeout_ms=500).values():
                letters += batch
    finally:
        consumer.close()
    assert len(letters) == rejected
    for letter in letters:
        headers = dict(letter.headers)
        check_reason(headers["reason"].decode())
        assert headers["origin"] == b"emit"
        assert len(letter.value) < 1 << 20  # the 2 MB record: truncated under the limit
    assert any("truncated" in dict(letter.headers) for letter in letters)
