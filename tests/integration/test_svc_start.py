"""``services/svc start`` never blocks on a live server (issue 8, newcomer fix).

Right after the fork, the child that becomes the server has not yet exec'd into the JVM: its
cmdline is still the script's. svc used to read that as "exited during startup" and then
blocked in ``wait`` on the live server, forever. A fake ``nohup`` on PATH widens that window
to seconds, so the race happens on every run. Each test uses a private services directory and
private ports; the shared broker is never touched, and the private one is stopped by its pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import without_lineage_settings

ROOT = Path(__file__).resolve().parents[2]
SVC = ROOT / "services" / "svc"
LIB = ROOT / "services" / "lib.sh"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def fake_nohup(directory: Path, body: str) -> Path:
    """A ``nohup`` that first runs as ``bash -c BODY`` (a cmdline without the server's
    marker), then, if BODY lets it, execs the real nohup with the original arguments."""
    real = shutil.which("nohup")
    assert real is not None
    directory.mkdir()
    script = directory / "nohup"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'args="{directory}/args.$$"\n'
        'printf "%s\\0" "$@" >"$args"\n'
        f'exec bash -c \'{body}; mapfile -d "" -t a <"$0"; exec {real} "${{a[@]}}"\' '
        '"$args"\n'
    )
    script.chmod(0o755)
    return directory


def require_installed_kafka() -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java: services/svc cannot run Kafka here")
    cache = Path(
        os.environ.get("LINEAGE_SERVICES_CACHE", Path.home() / ".cache" / "lineage-services")
    )
    if not (cache / "kafka" / ".installed").exists():
        pytest.skip("Kafka is not installed (run services/svc install kafka)")


def svc_env(state: Path, path_prefix: Path | None = None) -> dict[str, str]:
    broker, controller, bolt = free_ports(3)
    env = without_lineage_settings()
    if "LINEAGE_SERVICES_CACHE" in os.environ:
        env["LINEAGE_SERVICES_CACHE"] = os.environ["LINEAGE_SERVICES_CACHE"]
    env |= {
        "LINEAGE_SERVICES_DIR": str(state),
        "LINEAGE_KAFKA_PORT": str(broker),
        "LINEAGE_KAFKA_CONTROLLER_PORT": str(controller),
        "LINEAGE_NEO4J_BOLT_PORT": str(bolt),
        "LINEAGE_SERVICES_TIMEOUT": "150",
    }
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return env


def stop_private_kafka(state: Path) -> None:
    """SIGTERM the private broker by the pid in its own pid file (never ``svc stop``)."""
    pid_file = state / "kafka" / "kafka.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists() or str(state).encode() not in cmdline.read_bytes():
        return  # not our private broker (or gone)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_reap_child_never_waits_on_a_live_child() -> None:
    """The helper the start loops use: a live child (even one not exec'd yet) is running,
    and is never waited on; a finished one is reaped at once."""
    script = f"""
        source {LIB}
        sleep 30 & live=$!
        ( exit 3 ) & done_=$!
        sleep 0.5
        if reap_child "$live"; then echo live:gone; else echo live:running; fi
        if reap_child "$done_"; then echo done:gone; else echo done:running; fi
        kill "$live"
    """
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=20, check=True
    )
    assert result.stdout.split() == ["live:running", "done:gone"]
    assert time.monotonic() - started < 10


def test_start_waits_for_a_child_that_execs_late(tmp_path: Path) -> None:
    require_installed_kafka()
    state = tmp_path / "services"
    env = svc_env(state, fake_nohup(tmp_path / "bin", "sleep 3"))
    try:
        result = subprocess.run(
            ["bash", str(SVC), "start", "kafka"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,  # the bug was an endless wait: a timeout here is the failure
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "kafka: READY" in result.stderr
        status = subprocess.run(
            ["bash", str(SVC), "status", "kafka"], env=env, capture_output=True, text=True
        )
        assert status.returncode == 0, status.stdout
    finally:
        stop_private_kafka(state)


def test_start_reports_a_child_that_exits_before_exec(tmp_path: Path) -> None:
    require_installed_kafka()
    state = tmp_path / "services"
    env = svc_env(state, fake_nohup(tmp_path / "bin", "sleep 1; exit 7"))
    try:
        result = subprocess.run(
            ["bash", str(SVC), "start", "kafka"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        stop_private_kafka(state)
    assert result.returncode == 1
    assert "kafka: the broker exited during startup" in result.stderr
    assert not (state / "kafka" / "kafka.pid").exists()
