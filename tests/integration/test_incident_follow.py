"""``lineage incident-publisher`` in the partitioned topology, against real Kafka and Neo4j:
two ``lineage processor`` on four partitions, a ``lineage sink`` and the publisher, as
subprocesses (so ``kill -9`` means what it says).

- the incidents topic ends with the incidents the one-store reference (what ``lineage
  worker`` folds) and the sink's view (``lineage incidents``) give: ids, alerts,
  identifiers, people; in few messages, not one per alert;
- ``kill -9`` of the publisher with updates pending, then a restart: no incident is opened
  again, the pending update goes out (its sequence following on), the final state is the
  same; a restart with nothing new sends nothing;
- ``lineage webhook URL`` (incident mode, on Kafka: it follows the incidents topic) delivers
  the publisher's messages, one Alertmanager body per message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lineage.events import Event
from lineage.incidents import fold, member_of
from tests.integration.conftest import Reference, open_pipeline
from tests.integration.test_partitioned_pipeline import (
    PROCESSOR,
    SINK,
    ScaleOut,
    partitioned,
)
from tests.integration.test_webhook_delivery import SECRET, Receiver, receiver

pytestmark = [pytest.mark.kafka, pytest.mark.neo4j]
__all__ = ["receiver"]  # the webhook tests' fixture, used here

PUBLISHER = ["-m", "cli.main", "incident-publisher", "--loglevel", "warn"]
TIMEOUT_S = 90.0
Counts = dict[str, tuple[int, int, int]]  # incident id -> (alerts, identifiers, people)


@pytest.fixture
def scale(services: object, tmp_path: Path) -> Iterator[ScaleOut]:
    with open_pipeline(services, tmp_path) as pipe:  # type: ignore[arg-type]
        yield ScaleOut(partitioned(pipe))


def _publisher() -> list[str]:
    return [PROCESSOR[0], *PUBLISHER]


def expected(reference: Reference) -> Counts:
    members = [member_of(a) for a in reference.alerts if a.status == "active"]
    return {
        i.incident_id: (i.alerts, i.identifiers, i.people)
        for i in fold(members, [], timedelta(days=30), None)
    }


def messages(scale: ScaleOut) -> list[tuple[str, dict[str, Any]]]:
    pipe = scale.pipe
    records = pipe.read_topic(pipe.settings.incidents_topic)
    found = [(r.key.decode(), json.loads(r.value)) for r in records]
    assert all(key == body["incident"]["incident_id"] for key, body in found)
    return found


def latest(found: list[tuple[str, dict[str, Any]]]) -> Counts:
    last: dict[str, dict[str, Any]] = {}
    for key, body in found:
        last[key] = body["incident"]  # one partition per key: in order per incident
    return {k: (i["alerts"], i["identifiers"], i["people"]) for k, i in last.items()}


def wait_for(scale: ScaleOut, want: Counts) -> list[tuple[str, dict[str, Any]]]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        for name, process in scale.processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited:\n{scale.pipe.worker_output()}")
        found = messages(scale)
        if latest(found) == want:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"incidents {latest(found)} != {want}:\n{scale.pipe.worker_output()}")
        time.sleep(0.3)


def assert_numbered(found: list[tuple[str, dict[str, Any]]]) -> None:
    """One ``opened`` per incident, first; then its updates numbered on without a repeat."""
    per: dict[str, list[tuple[str, int]]] = {}
    for key, body in found:
        per.setdefault(key, []).append((body["kind"], body["sequence"]))
    for key, sent in per.items():
        assert sent[0] == ("opened", 0), (key, sent)
        assert [kind for kind, _ in sent[1:]] == ["updated"] * (len(sent) - 1), (key, sent)
        assert [n for _, n in sent] == list(range(len(sent))), (key, sent)


def test_the_publisher_gives_the_workers_incidents_in_few_messages(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    scale.pipe.env["LINEAGE_INCIDENT_INTERVAL_SECONDS"] = "1"  # updates show up while it runs
    want = expected(reference)
    began = time.monotonic()
    scale.start("publisher", _publisher())
    scale.start("processor-a", PROCESSOR)
    scale.start("processor-b", PROCESSOR)
    scale.start("sink", SINK)
    scale.pipe.produce(case_events)
    scale.wait_done()
    found = wait_for(scale, want)
    elapsed = time.monotonic() - began
    # the view (`lineage incidents` reads it) folds to the same incidents
    view = fold(scale.pipe.store.incident_members(None), [], timedelta(days=30), None)
    assert {i.incident_id: (i.alerts, i.identifiers, i.people) for i in view} == want
    assert len(want) == 2
    assert_numbered(found)
    active = sum(alerts for alerts, _, _ in want.values())
    per_incident = max(sum(1 for k, _ in found if k == key) for key in want)
    assert per_incident <= 2 + elapsed / 1.0  # opened + one per interval + the last
    assert len(found) < active / 4, (len(found), active)  # not one per alert
    opened = [body for _, body in found if body["kind"] == "opened"]
    assert all(body["evidence"] for body in opened)


def test_kill_9_of_the_publisher_then_a_restart_reopens_nothing_and_loses_nothing(
    scale: ScaleOut, case_events: list[Event], reference: Reference
) -> None:
    """Default interval (60 s): after the openings, every update of the run is pending when
    the publisher is killed; the restart reads both topics back and sends just those."""
    want = expected(reference)
    half = len(case_events) // 2
    scale.start("sink", SINK)
    scale.start("processor-a", PROCESSOR)
    scale.start("processor-b", PROCESSOR)
    scale.start("publisher", _publisher())
    scale.pipe.produce(case_events[:half])
    scale.wait_done()
    deadline = time.monotonic() + TIMEOUT_S
    while len({k for k, _ in messages(scale)}) < len(want):
        assert time.monotonic() < deadline, scale.pipe.worker_output()
        time.sleep(0.3)
    scale.pipe.produce(case_events[half:])
    scale.wait_done()
    time.sleep(2.0)  # the publisher has observed the rest: held back by the interval
    scale.kill("publisher")
    before = messages(scale)
    assert [body["kind"] for _, body in before] == ["opened"] * len(want)
    assert latest(before) != want  # updates were pending when it died

    scale.start("publisher", _publisher())
    found = wait_for(scale, want)
    assert_numbered(found)
    assert len(found) == 2 * len(want)  # the openings, then one catch-up update each

    scale.kill("publisher")  # again, with nothing new: the restart sends nothing
    scale.start("publisher", _publisher())
    log = scale.pipe.logs / "publisher.log"
    deadline = time.monotonic() + TIMEOUT_S
    while log.read_text().count("sent to catch up") < 3:
        assert time.monotonic() < deadline, scale.pipe.worker_output()
        time.sleep(0.3)
    restarts = [line for line in log.read_text().splitlines() if "sent to catch up" in line]
    assert restarts[-1].endswith(" 0 message(s) sent to catch up"), restarts
    assert messages(scale) == found


def test_the_webhook_in_incident_mode_delivers_the_publishers_messages(
    scale: ScaleOut, case_events: list[Event], reference: Reference, receiver: Receiver
) -> None:
    """Before the publisher, nothing published the incidents topic in this topology, so a
    webhook in incident mode had nothing to send."""
    from runtime.webhook import verify

    scale.pipe.env |= {"LINEAGE_INCIDENT_INTERVAL_SECONDS": "1", "HOOK_SECRET": SECRET,
                       "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
    want = expected(reference)
    url = f"http://127.0.0.1:{receiver.port}/hook"
    scale.start("webhook", [PROCESSOR[0], "-m", "cli.main", "webhook", url, "--secret-env",
                            "HOOK_SECRET", "--name", "it-incidents", "--json", "--poll", "0.2",
                            "--follow"])  # fmt: skip
    scale.start("publisher", _publisher())
    scale.start("processor-a", PROCESSOR)
    scale.start("processor-b", PROCESSOR)
    scale.start("sink", SINK)
    scale.pipe.produce(case_events)
    scale.wait_done()
    found = wait_for(scale, want)
    keys = {f"incident:{key}:{body['sequence']}" for key, body in found}
    deadline = time.monotonic() + TIMEOUT_S
    while receiver.accepted_keys() != keys:
        assert time.monotonic() < deadline, (receiver.accepted_keys(), keys)
        time.sleep(0.2)
    last: dict[str, dict[str, Any]] = {}
    for request in sorted(receiver.snapshot(), key=lambda r: int((r.key or "").split(":")[2])):
        assert verify(SECRET.encode(), request.timestamp, request.signature, request.body)
        (alert,) = json.loads(request.body)["alerts"]
        last[alert["labels"]["incident_id"]] = alert["annotations"]
    assert {k: int(a["alerts"]) for k, a in last.items()} == {k: c[0] for k, c in want.items()}
