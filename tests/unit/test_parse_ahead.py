"""Normalizing identifiers ahead on another core saves work and changes nothing else."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.identifiers import Pseudonymizer
from lineage.inbound import raw_identifiers
from lineage.reference_case import generate
from runtime import parse_ahead as ahead
from runtime.service import LineageService
from runtime.settings import Settings
from tests.conftest import without_lineage_settings

KEY = "parse-ahead-test-key-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def case_lines() -> list[str]:
    return [json.dumps(r) for r in generate(users=400, seed=11).records]


def test_raw_identifiers_are_what_the_parse_pseudonymizes() -> None:
    line = json.dumps(
        {
            "type": "DataFlowed",
            "identifiers": [{"phone": "+1 415 555 0100"}, {"email": "A@x.org"}, {"ref": "f"}],
            "identifier": {"email": "b@y.org"},
        }
    )
    assert raw_identifiers(line) == [
        ("email", "b@y.org"),
        ("phone", "+1 415 555 0100"),
        ("email", "A@x.org"),
    ]
    assert raw_identifiers("{not json") == []
    assert raw_identifiers("[1, 2]") == []
    assert raw_identifiers(b"\xff\xfe") == []


def test_lines_come_out_unchanged_and_the_memo_learns_ahead(
    case_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "BLOCK_LINES", 40)
    main = Pseudonymizer(KEY.encode())
    reference = Pseudonymizer(KEY.encode())
    lines = case_lines[:800]
    out: list[str] = []
    learned_ahead = 0
    for line in ahead.parse_ahead(lines, main, enabled=True):
        index = len(out)
        out.append(line)
        if index % 40 == 0 and index >= 200:  # the first line of a later block
            named = raw_identifiers(line)
            if named and all(key in main._seen for key in named):
                learned_ahead += 1
                for category, raw in named:  # what the helper sent is what we would compute
                    assert main._seen[(category, raw)] == reference.identifier(category, raw)
        time.sleep(0.01)  # the parse's pace: the helper gets ahead of it
    assert out == lines
    assert learned_ahead >= 3


def test_ingest_with_and_without_it_stores_the_same(
    tmp_path: Path, case_lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "BLOCK_LINES", 100)
    results = []
    used: list[bool] = []
    real = ahead.parse_ahead

    def spy(lines: list[str], pseudonymizer: Pseudonymizer, on: bool) -> Iterator[str]:
        used.append(on)
        return real(lines, pseudonymizer, on)

    monkeypatch.setattr(ahead, "parse_ahead", spy)
    for complete in (True, False):
        with LineageService.open(Settings(home=tmp_path / str(complete), key=KEY)) as service:
            report = service.ingest(
                [*case_lines, "{bad", json.dumps({"type": "DataUsed"})], complete=complete
            )
            results.append(
                (
                    report.accepted,
                    [r.reason for r in report.rejected],
                    service.store.snapshot(),
                    [a.content() for a in service.alerts()],
                )
            )
    assert results[0][0] == len(case_lines) and len(results[0][1]) == 2
    assert results[0][2].alerts
    assert results[0] == results[1]
    assert used == [True, False]  # read ahead only when the input is all there


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_killed_ingest_leaves_no_helper_behind(tmp_path: Path, case_lines: list[str]) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(case_lines * 20) + "\n")  # many blocks: the helper starts
    env = without_lineage_settings()
    env |= {"LINEAGE_HOME": str(tmp_path / "home"), "LINEAGE_KEY": KEY}
    ingest = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "ingest", str(source), "--json"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        helpers: list[int] = []
        while not helpers and time.monotonic() < deadline and ingest.poll() is None:
            helpers = _children(ingest.pid)
            time.sleep(0.05)
        assert helpers, "the helper process never started"
        ingest.send_signal(signal.SIGKILL)
        ingest.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in helpers)
    finally:
        if ingest.poll() is None:
            ingest.kill()
