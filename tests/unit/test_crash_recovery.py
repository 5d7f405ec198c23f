"""A process killed right after ingest (no clean close) loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lineage.reference_case import generate
from runtime.service import LineageService
from runtime.settings import Settings

KEY = "crash-test-key-0123456789"
CHILD = """
import os, signal, sys
from pathlib import Path
from runtime.service import LineageService
from runtime.settings import Settings
service = LineageService.open(Settings(home=Path(sys.argv[1]), key=sys.argv[2]))
report = service.ingest(Path(sys.argv[3]).read_text().splitlines())
print(report.accepted, len(report.alerts), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_process_is_recovered_from_the_log(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in generate(users=100, seed=9).records]
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(lines))
    crashed = tmp_path / "crashed"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(crashed), KEY, str(source)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert child.returncode == -9, child.stderr
    accepted, raised = map(int, child.stdout.split())
    assert accepted == len(lines) and raised > 0
    assert not (crashed / "graph.pickle").exists()

    with LineageService.open(Settings(home=tmp_path / "clean", key=KEY)) as clean:
        clean.ingest(lines)
        expected = clean.store.snapshot()
    with LineageService.open(Settings(home=crashed, key=KEY)) as recovered:
        assert recovered.store.snapshot() == expected
        assert len(recovered.alerts()) == raised
