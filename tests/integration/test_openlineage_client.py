"""The official ``openlineage-python`` client emits, unchanged, to a ``lineage serve`` process.

Embedded mode (a temporary home, no service variables): the server is the real CLI command in a
subprocess; the client uses its own ``HttpTransport``; what was recorded is read back through the
CLI (readers take no lock, so they run while the server holds the home).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attr
import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
from openlineage.client.generated.base import DatasetFacet, EventType, JobFacet
from openlineage.client.transport.http import (
    ApiKeyTokenProvider,
    HttpCompression,
    HttpConfig,
    HttpTransport,
)
from openlineage.client.uuid import generate_new_uuid

from lineage.openlineage import DATASET_FACET_SCHEMA_URL, USE_FACET_SCHEMA_URL

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "openlineage-test-api-key"
PRODUCER = "https://example.com/lineage-tests"
AUTHN = "essential.service.authentication"
ADS = "marketing.advertising.third_party.targeted"
START_TIMEOUT_S = 60.0


# -- the custom facets, declared the way the client's documentation shows ---------------------
@attr.define
class ColumnPersonalData:
    category: str
    collectionPurpose: str | None = None  # noqa: N815 - the facet's field name


@attr.define
class PersonalDataDatasetFacet(DatasetFacet):
    columns: dict[str, ColumnPersonalData] = attr.field(factory=dict)
    collectionPurpose: str | None = attr.field(default=None)  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return DATASET_FACET_SCHEMA_URL


@attr.define
class PersonalDataUseFacet(JobFacet):
    purpose: str = attr.field(default="")

    @staticmethod
    def _get_schema() -> str:
        return USE_FACET_SCHEMA_URL


# -- the server -------------------------------------------------------------------------------
def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LINEAGE_", "OPENLINEAGE_"))}  # fmt: skip
    return {**env, "LINEAGE_HOME": str(home), "LINEAGE_SERVE_API_KEY": API_KEY}


def _cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Server:
    def __init__(self, home: Path) -> None:
        self.env = _environment(home)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", "0"],
            env=self.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout

        def read() -> None:  # the server's stdout (alerts follow the first line) never blocks it
            for line in stdout:
                self.lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        first = self.lines.get(timeout=START_TIMEOUT_S)
        assert first.startswith("listening on http://127.0.0.1:"), first
        assert first.rstrip().endswith("/api/v1/lineage (Bearer API key required)")
        self.endpoint = first.split()[2]
        self.url = self.endpoint.removesuffix("/api/v1/lineage")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def query(self, *args: str) -> Any:
        return _cli(self.env, *args)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "home")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def _client(url: str, gzip: bool = False) -> OpenLineageClient:
    config = HttpConfig(
        url=url,
        auth=ApiKeyTokenProvider({"apiKey": API_KEY}),
        compression=HttpCompression.GZIP if gzip else None,
    )
    return OpenLineageClient(transport=HttpTransport(config))


def _run(
    client: OpenLineageClient,
    job: str,
    inputs: list[InputDataset],
    outputs: list[OutputDataset],
    started: datetime,
    use: str | None = None,
) -> None:
    """A run as an integration emits it: START, then COMPLETE with the same datasets."""
    run = Run(runId=str(generate_new_uuid()))
    facets: dict[str, JobFacet] = (
        {"personalDataUse": PersonalDataUseFacet(purpose=use)} if use else {}
    )
    for event_type, moment in ((EventType.START, started),
                               (EventType.COMPLETE, started.replace(minute=30))):  # fmt: skip
        client.emit(
            RunEvent(
                eventType=event_type,
                eventTime=moment.isoformat(),
                run=run,
                job=Job(namespace="ads-platform", name=job, facets=facets),
                producer=PRODUCER,
                inputs=inputs,
                outputs=outputs,
            )
        )


def _auth_contacts(declared: bool) -> InputDataset:
    facet = PersonalDataDatasetFacet(
        columns={"phone": ColumnPersonalData("user.contact.phone_number")},
        collectionPurpose=AUTHN,
    )
    return InputDataset(
        namespace="postgres://auth-db:5432",
        name="public.contact_points",
        facets={"personalData": facet} if declared else {},
    )


AUTH_KEY = "postgres/auth-db_5432:public.contact_points"
SYNC = datetime(2013, 5, 3, 0, 0, tzinfo=UTC)
MATCH = datetime(2013, 5, 4, 0, 0, tzinfo=UTC)


def test_client_runs_with_the_facet_raise_the_alert_with_its_dataset_path(server: Server) -> None:
    client = _client(server.url, gzip=True)
    ads = "ads", "matchable_identifiers"
    _run(client, "identity-sync", [_auth_contacts(True)], [OutputDataset(*ads)], SYNC)
    _run(client, "audiences-matcher", [InputDataset(*ads)], [], MATCH, use=ADS)

    [alert] = server.query("alerts")["alerts"]
    fields = ("status", "category", "display", "origin_dataset", "origin_purpose",
              "use_dataset", "use_job", "use_purpose", "occurred_at")  # fmt: skip
    assert {k: alert[k] for k in fields} == {
        "status": "active",
        "category": "phone",
        "display": f"dataset-level: the phone numbers of {AUTH_KEY}",
        "origin_dataset": AUTH_KEY,
        "origin_purpose": AUTHN,
        "use_dataset": "ads:matchable_identifiers",
        "use_job": "ads-platform/audiences-matcher",
        "use_purpose": ADS,
        "occurred_at": "2013-05-04T00:00:00Z",
    }
    evidence = [
        {k: step.get(k) for k in ("kind", "at", "dataset", "source", "job", "purpose")}
        for step in alert["evidence"]
    ]
    assert evidence == [
        {"kind": "collected", "at": "2013-05-03T00:00:00Z", "dataset": AUTH_KEY,
         "source": None, "job": None, "purpose": AUTHN},
        {"kind": "flowed", "at": "2013-05-03T00:00:00Z", "dataset": "ads:matchable_identifiers",
         "source": AUTH_KEY, "job": "ads-platform/identity-sync", "purpose": None},
        {"kind": "used", "at": "2013-05-04T00:00:00Z", "dataset": "ads:matchable_identifiers",
         "source": None, "job": "ads-platform/audiences-matcher", "purpose": ADS},
    ]  # fmt: skip
    assert server.query("downstream", AUTH_KEY) == {
        "datasets": ["ads:matchable_identifiers"],
        "jobs": ["ads-platform/audiences-matcher", "ads-platform/identity-sync"],
        "uses": [["ads:matchable_identifiers", "ads-platform/audiences-matcher", ADS]],
    }
    report = server.query("report")
    assert (report["alerts"], report["affected_subjects"], report["affected_identifiers"]) == (
        1,
        0,
        0,
    )
    assert server.stop() == 0
    alerts_file = Path(server.env["LINEAGE_HOME"]) / "alerts.jsonl"
    assert [json.loads(x)["alert_id"] for x in alerts_file.read_text().splitlines()] == [
        alert["alert_id"]
    ]


def test_client_runs_without_the_facet_give_lineage_and_no_alert(server: Server) -> None:
    client = _client(server.url)
    ads = "ads", "matchable_identifiers"
    _run(client, "identity-sync", [_auth_contacts(False)], [OutputDataset(*ads)], SYNC)
    _run(client, "audiences-matcher", [InputDataset(*ads)], [], MATCH)

    assert server.query("alerts")["alerts"] == []
    assert server.query("downstream", AUTH_KEY) == {  # the matcher only read: still downstream
        "datasets": ["ads:matchable_identifiers"],
        "jobs": ["ads-platform/audiences-matcher", "ads-platform/identity-sync"],
        "uses": [],
    }
    assert server.stop() == 0


def test_bad_input_is_answered_4xx_with_its_reason_and_dead_lettered(server: Server) -> None:
    client = _client(server.url)
    with pytest.raises(requests.HTTPError) as caught:
        _run(client, "matcher", [InputDataset("ads", "t")], [], MATCH, use="marketing.advertisin")
    response = caught.value.response
    assert response is not None and response.status_code == 400
    reason = response.json()["error"]
    assert reason.startswith("job.personalDataUse.purpose: unknown purpose 'marketing.advertisin'")

    unauthorized = requests.post(server.endpoint, data="{}", timeout=10,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    assert (unauthorized.status_code, unauthorized.json()) == (
        401,
        {"error": "missing or wrong Authorization: Bearer <api key>"},
    )
    elsewhere = requests.post(f"{server.url}/api/v1/other", data="{}", timeout=10,
                              headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
    assert elsewhere.status_code == 404
    [letter] = server.query("dead-letters")
    assert (letter["origin"], letter["reason"]) == ("serve:1", reason)
    assert server.query("alerts")["alerts"] == []
    assert server.stop() == 0


def test_ingest_reads_the_json_lines_the_clients_file_transport_writes(tmp_path: Path) -> None:
    from openlineage.client.transport.file import FileConfig, FileTransport

    path = tmp_path / "events.jsonl"
    client = OpenLineageClient(
        transport=FileTransport(FileConfig(log_file_path=str(path), append=True))
    )
    ads = "ads", "matchable_identifiers"
    _run(client, "identity-sync", [_auth_contacts(True)], [OutputDataset(*ads)], SYNC)
    _run(client, "audiences-matcher", [InputDataset(*ads)], [], MATCH, use=ADS)
    assert len(path.read_text().splitlines()) == 4

    env = _environment(tmp_path / "home")
    report = _cli(env, "ingest", str(path), "--format", "openlineage")
    # START and COMPLETE: a collection and a flow each, then a use each
    assert report == {"lines": 4, "accepted": 6, "duplicates": 0, "rejected": [], "alerts": 1}
    [alert] = _cli(env, "alerts")["alerts"]
    assert [(s["kind"], s["dataset"], s["at"]) for s in alert["evidence"]] == [
        ("collected", AUTH_KEY, "2013-05-03T00:00:00Z"),
        ("flowed", "ads:matchable_identifiers", "2013-05-03T00:00:00Z"),
        ("used", "ads:matchable_identifiers", "2013-05-04T00:00:00Z"),
    ]
    again = _cli(env, "ingest", str(path), "--format", "openlineage")
    assert again == {"lines": 4, "accepted": 0, "duplicates": 6, "rejected": [], "alerts": 0}


def test_the_server_is_the_homes_one_writer(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    env = {**server.env, "LINEAGE_LOCK_WAIT_SECONDS": "0.2"}
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"is being written by another process (pid {server.process.pid}: main.py serve)" in (
        " ".join(done.stderr.split())
    )
    assert server.stop() == 0
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(path)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
