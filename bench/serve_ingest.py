"""``lineage serve`` under a fleet of pipelines: 1 client posting RunEvents in order, then
``--clients`` posting the same RunEvents at once, each into a fresh embedded home.

Run: ``python -m bench.serve_ingest --events 3000 --clients 50`` (without the services'
variables: embedded mode). Each run starts the real ``lineage serve`` in a subprocess on
127.0.0.1 (port 0), and the clients are asyncio HTTP/1.1 keep-alive connections in this
process, each posting its share of the events one at a time. A ``503`` is waited out (a
random part of ``Retry-After``, at most 1 s, so that retries do not come as a herd) and the
same RunEvent posted again; a connection error (reset, refused, cut mid-answer) is counted,
and the RunEvent is posted again on a new connection. After both runs the homes' graphs
(``GraphStore.snapshot``) must be equal.

Reported per run: requests/s (RunEvents accepted over wall time from the first request to
the last answer), the answers by status, and connection errors. Bounded: ``--events`` at most
20,000 and ``--clients`` at most 200, and each run stops after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from graph.store import GraphSnapshot
from lineage.openlineage import DATASET_FACET_SCHEMA_URL, USE_FACET_SCHEMA_URL

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-serve-api-key"
ENDPOINT = "/api/v1/lineage"
MAX_EVENTS = 20_000
MAX_CLIENTS = 200
START_TIMEOUT_S = 60.0
AUTHN = "essential.service.authentication"
ADS = "marketing.advertising.third_party.targeted"
NAMESPACE = uuid.UUID("6b6b8f1e-5b7e-4f3c-9f0e-1a2b3c4d5e6f")


# -- the RunEvents ------------------------------------------------------------------------------
def run_events(count: int, systems: int = 20) -> list[bytes]:
    """``count`` distinct RunEvents, as a fleet of pipelines emits them: per system, a sync
    from its contact table (declared: phones collected for authentication) into a warehouse
    table, a copy on to an ads table, and an ad-matching job using it (a violation); the
    events cycle through the systems, each at its own minute."""
    start = datetime(2013, 5, 1, tzinfo=UTC)
    bodies: list[bytes] = []
    for index in range(count):
        system = index % systems
        step = (index // systems) % 3
        at = start + timedelta(minutes=index)
        contacts: dict[str, Any] = {
            "namespace": f"postgres://auth-{system}:5432",
            "name": "public.contact_points",
            "facets": {
                "personalData": {
                    "_producer": "https://example.com/bench",
                    "_schemaURL": DATASET_FACET_SCHEMA_URL,
                    "collectionPurpose": AUTHN,
                    "columns": {"phone": {"category": "user.contact.phone_number"}},
                }
            },
        }
        warehouse: dict[str, Any] = {"namespace": "warehouse", "name": f"contacts_{system}"}
        ads: dict[str, Any] = {"namespace": "ads", "name": f"audience_{system % 5}"}
        job: dict[str, Any] = {"namespace": "bench", "name": f"sync-{system}"}
        inputs, outputs = [contacts], [warehouse]
        if step == 1:
            job = {"namespace": "bench", "name": f"export-{system}"}
            inputs, outputs = [warehouse], [ads]
        elif step == 2:
            job = {
                "namespace": "bench",
                "name": f"matcher-{system % 5}",
                "facets": {
                    "personalDataUse": {
                        "_producer": "https://example.com/bench",
                        "_schemaURL": USE_FACET_SCHEMA_URL,
                        "purpose": ADS,
                    }
                },
            }
            inputs, outputs = [ads], []
        event = {
            "eventType": "COMPLETE",
            "eventTime": at.isoformat().replace("+00:00", "Z"),
            "run": {"runId": str(uuid.uuid5(NAMESPACE, str(index)))},
            "job": job,
            "inputs": inputs,
            "outputs": outputs,
            "producer": "https://example.com/bench",
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        }
        bodies.append(json.dumps(event).encode())
    return bodies


# -- the server ---------------------------------------------------------------------------------
def environment(home: Path, **extra: str) -> dict[str, str]:
    """Embedded mode in ``home``: none of the caller's LINEAGE_ variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LINEAGE_", "OPENLINEAGE_"))}
    return {**env, "LINEAGE_HOME": str(home), "LINEAGE_SERVE_API_KEY": API_KEY, **extra}


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    home: Path

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@contextmanager
def serving(
    home: Path, *args: str, tree: Path = ROOT, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """``lineage serve --port 0`` on ``home`` (the code of ``tree``), stopped (SIGTERM) on the
    way out."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", "0", "--json", *args],
        env={**environment(home, **(env or {})), "PYTHONPATH": str(tree)},
        cwd=tree,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if not first:
            raise RuntimeError(f"lineage serve exited {process.wait()} before listening")
        listening = json.loads(first)["listening"]
        stdout = process.stdout
        # alerts follow on stdout: read them, or a full pipe would stall the server's writer
        threading.Thread(target=lambda: sum(1 for _ in stdout), daemon=True).start()
        served = Served(process, listening.removesuffix(ENDPOINT), home)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- the clients --------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection (asyncio streams): what a pipeline's client holds."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}", "Content-Type: application/json"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("closed before the answer")
        status = int(status_line.split()[1])
        found: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        data = await reader.readexactly(int(found.get("content-length", "0")))
        keep = found.get("connection", "").lower()
        if keep == "close" or (status_line.startswith(b"HTTP/1.0") and keep != "keep-alive"):
            await self.close()
        return Answer(status, found, data)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


@dataclass
class Result:
    clients: int
    events: int
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    unanswered: int = 0  # RunEvents given up on (timeout): never accepted

    @property
    def per_second(self) -> float:
        return self.statuses[200] / self.seconds if self.seconds else 0.0


async def _post_all(url: str, bodies: list[bytes], clients: int, timeout: float) -> Result:
    result = Result(clients, len(bodies), 0.0)
    deadline = time.monotonic() + timeout
    auth = {"Authorization": f"Bearer {API_KEY}"}

    async def client(share: list[bytes]) -> None:
        connection = Connection(url)
        try:
            for body in share:
                while time.monotonic() < deadline:
                    try:
                        answer = await connection.post(ENDPOINT, body, auth)
                    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                        result.connection_errors += 1
                        await connection.close()
                        continue
                    result.statuses[answer.status] += 1
                    if answer.status != 503:
                        break
                    wait = min(float(answer.headers.get("retry-after", "1")), 1.0)
                    await asyncio.sleep(random.uniform(0.05, wait))  # jitter: no herd
                else:
                    result.unanswered += 1
        finally:
            await connection.close()

    started = time.monotonic()
    await asyncio.gather(*(client(bodies[c::clients]) for c in range(clients)))
    result.seconds = time.monotonic() - started
    return result


def post_all(url: str, bodies: list[bytes], clients: int, timeout: float = 600.0) -> Result:
    """``bodies`` split round-robin over ``clients`` concurrent connections (1: in order)."""
    return asyncio.run(_post_all(url, bodies, clients, timeout))


def slow_client_delay(
    served: Served, body: bytes, head_start: float = 2.5, limit: float = 20.0
) -> tuple[int, float, bool]:
    """A client sends ``body``'s headers, then one byte a second; after ``head_start`` seconds
    another POSTs ``body`` normally: its status, how long it waited (seconds), and whether the
    slow client had to be cut off (after ``limit`` seconds of waiting) for it to be answered."""
    parts = urlsplit(served.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    slow = socket.create_connection((host, port), timeout=30)
    stop = threading.Event()

    def trickle() -> None:
        with suppress(OSError):  # cut off: by the server, or by the limit
            head = (
                f"POST {ENDPOINT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {API_KEY}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            slow.sendall(head.encode())
            for byte in body:
                if stop.wait(1.0):
                    return
                slow.sendall(bytes([byte]))

    def cut() -> None:
        stop.set()
        with suppress(OSError):
            slow.shutdown(socket.SHUT_RDWR)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    cutter = threading.Timer(head_start + limit, cut)
    try:
        time.sleep(head_start)
        cutter.start()
        started = time.monotonic()
        answer = post_all(served.url, [body], 1, timeout=limit + 60.0)
        waited = time.monotonic() - started
    finally:
        cutter.cancel()
        was_cut = stop.is_set()
        stop.set()
        sender.join()
        slow.close()
    [status] = answer.statuses or {0: 1}
    return status, waited, was_cut


def snapshot(home: Path) -> GraphSnapshot:
    """The graph of an embedded home (no writer running), read as a reader does."""
    from runtime.service import LineageService
    from runtime.settings import load_settings

    settings = load_settings(home=home, kafka_bootstrap=None, neo4j_uri=None, store=None, log=None)
    with LineageService.open(settings, writer=False) as service:
        return service.store.snapshot()


# -- the run ------------------------------------------------------------------------------------
def run(
    events: int, clients: int, timeout: float, tree: Path = ROOT
) -> tuple[Result, Result, bool]:
    """1 client, then ``clients``, each into a fresh home served by the code of ``tree``."""
    bodies = run_events(events)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        results: list[Result] = []
        for count, name in ((1, "one"), (clients, "many")):
            home = Path(tmp) / name
            with serving(home, tree=tree) as served:
                results.append(post_all(served.url, bodies, count, timeout))
                served.stop()
        same = snapshot(Path(tmp) / "one") == snapshot(Path(tmp) / "many")
    return results[0], results[1], same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run at most")
    parser.add_argument(
        "--old",
        type=Path,
        help="also serve with the code of this tree (e.g. `git archive <commit> | tar -x -C "
        "DIR`), as the baseline, after this tree's runs",
    )
    args = parser.parse_args()
    if not (1 <= args.events <= MAX_EVENTS and 1 <= args.clients <= MAX_CLIENTS):
        parser.error(f"--events 1..{MAX_EVENTS}, --clients 1..{MAX_CLIENTS}")
    trees = [("this tree", ROOT)] + ([("old", args.old.resolve())] if args.old else [])
    print(f"{'server':>10} {'clients':>8} {'events':>7} {'seconds':>8} {'req/s':>8} "
          f"{'conn errors':>11} {'unanswered':>10}  answers")  # fmt: skip
    failed = False
    for label, tree in trees:
        one, many, same = run(args.events, args.clients, args.timeout, tree)
        for r in (one, many):
            answers = ", ".join(f"{status}: {n}" for status, n in sorted(r.statuses.items()))
            print(f"{label:>10} {r.clients:>8} {r.events:>7} {r.seconds:>8.2f} "
                  f"{r.per_second:>8.1f} {r.connection_errors:>11} {r.unanswered:>10}  "
                  f"{answers}")  # fmt: skip
        print(f"{label}: same graph as one client in order: {same}")
        with (
            tempfile.TemporaryDirectory(prefix="bench-serve-slow-") as tmp,
            serving(Path(tmp) / "home", tree=tree) as served,
        ):
            status, waited, was_cut = slow_client_delay(served, run_events(1)[0])
            served.stop()
        cut = " (only once the slow client was cut off)" if was_cut else ""
        print(
            f"{label}: a normal POST beside a 1 byte/s client: {status} after {waited:.3f} s{cut}"
        )
        if tree == ROOT:
            failed = not same or bool(many.connection_errors or many.unanswered or one.unanswered)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
