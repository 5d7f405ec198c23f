"""docker-compose.yml runs the whole pipeline from the project's image: ``docker-compose config``
(Debian's docker-compose; no daemon needed) accepts it and resolves what the pipeline needs.
Skipped only where docker-compose is absent (``make test`` installs it as root)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = shutil.which("docker-compose")


def _config(env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
         "config", *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed")
def test_compose_runs_the_whole_pipeline() -> None:
    env = without_lineage_settings() | {
        "LINEAGE_NEO4J_PASSWORD": "compose-test-password",
        "LINEAGE_KEY": "compose-test-key-0123456789",
    }
    done = _config(env, "--services")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == {
        "kafka",
        "neo4j",
        "processor",
        "sink",
        "incident-publisher",
    }

    done = _config(env)
    assert done.returncode == 0, done.stderr
    config = done.stdout
    # docker-compose 1.29 prints YAML; the checks read it as text, one service at a time
    services: dict[str, str] = {}
    current = None
    for line in config.splitlines():
        if not line.startswith(" "):  # a top-level key
            current = "" if line == "services:" else None
        elif current is not None and re.fullmatch(r"  [a-z0-9_-]+:", line):
            current = line.strip().rstrip(":")
            services[current] = ""
        elif current:
            services[current] += line + "\n"
    processor, sink = services["processor"], services["sink"]
    publisher = services["incident-publisher"]
    for body in (processor, sink, publisher):
        assert "context: " + str(ROOT) in body  # built from the project's Dockerfile
        assert "LINEAGE_KAFKA_BOOTSTRAP: kafka:29092" in body
        assert "LINEAGE_KEY: compose-test-key-0123456789" in body
    assert "replicas: 2" in processor and "- processor" in processor
    assert "- --state-dir" in processor
    assert "- sink" in sink and "LINEAGE_NEO4J_URI: bolt://neo4j:7687" in sink
    assert "- incident-publisher" in publisher and "replicas: 1" in publisher
    assert "DOCKER://kafka:29092" in services["kafka"]  # the containers' listener

    missing = _config({k: v for k, v in env.items() if k != "LINEAGE_KEY"})
    assert missing.returncode != 0 and "LINEAGE_KEY" in missing.stderr


def test_dockerfile_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM python:3.12-slim") == 1
    assert "pip install ." in text and 'ENTRYPOINT ["lineage"]' in text
    packages = json.dumps(sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()))
    for package in ("lineage", "graph", "streams", "runtime", "cli", "web"):
        assert f"COPY {package} {package}" in text, packages
