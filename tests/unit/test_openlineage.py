"""OpenLineage input: the RunEvent mapping, its facets, and what the embedded service makes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from lineage.errors import InvalidEventError
from lineage.events import (
    EVENT_ID_PATTERN,
    DataFlowed,
    DataRead,
    DatasetRef,
    DataUsed,
    IdentifierCollected,
)
from lineage.identifiers import DATASET_LEVEL_SUBJECT
from lineage.openlineage import (
    DATASET_FACET_SCHEMA_URL,
    OpenLineageMapper,
    dataset_level_identifier,
    dataset_ref,
    facet_json_schema,
)
from lineage.report import report_from, tally
from runtime.service import LineageService
from runtime.settings import Settings
from runtime.sinks import describe
from runtime.wiring import default_taxonomy

ROOT = Path(__file__).resolve().parents[2]
KEY = "openlineage-test-key-0123456789"
OBSERVED = datetime(2026, 1, 1, tzinfo=UTC)
AUTHN = "essential.service.authentication"
ADS = "marketing.advertising.third_party.targeted"
RUN_SYNC = "0190b3c4-1111-7000-8000-000000000001"
RUN_MATCH = "0190b3c4-2222-7000-8000-000000000002"


def run_event(
    run_id: str,
    when: str,
    job: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    event_type: str = "COMPLETE",
    job_facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": when,
        "producer": "https://example.com/producer",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": {}},
        "job": {"namespace": "ads-platform", "name": job, "facets": job_facets or {}},
        "inputs": inputs,
        "outputs": outputs,
    }


def dataset(namespace: str, name: str, **facets: Any) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "facets": facets}


def personal(purpose: str | None = AUTHN, **extra: Any) -> dict[str, Any]:
    facet: dict[str, Any] = {
        "_producer": "https://example.com/producer",
        "_schemaURL": DATASET_FACET_SCHEMA_URL,
        "columns": {"phone": {"category": "user.contact.phone_number"}},
        **extra,
    }
    if purpose is not None:
        facet["collectionPurpose"] = purpose
    return facet


def use(purpose: str = ADS) -> dict[str, Any]:
    return {"personalDataUse": {"_producer": "https://example.com/producer", "purpose": purpose}}


AUTH = dataset("postgres://auth-db:5432", "public.contact_points", personalData=personal())
AUTH_KEY = "postgres/auth-db_5432:public.contact_points"
ADS_TABLE = dataset("ads", "matchable_identifiers")


def sync(event_type: str = "COMPLETE", when: str = "2013-05-03T00:00:00Z") -> dict[str, Any]:
    return run_event(RUN_SYNC, when, "identity-sync", [AUTH], [ADS_TABLE], event_type)


def match(facets: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_event(
        RUN_MATCH,
        "2013-05-04T00:00:00Z",
        "audiences-matcher",
        [dataset("ads", "matchable_identifiers")],
        [],
        job_facets=use() if facets is None else facets,
    )


@pytest.fixture(scope="module")
def mapper() -> OpenLineageMapper:
    return OpenLineageMapper(default_taxonomy())


@pytest.fixture
def service(tmp_path: Path) -> Any:
    with LineageService.open(Settings(home=tmp_path / "home", key=KEY)) as opened:
        yield opened


def lines(*events: dict[str, Any]) -> list[str]:
    return [json.dumps(e) for e in events]


# -- the mapping -------------------------------------------------------------------------
def test_a_run_event_becomes_collection_flow_and_use(mapper: OpenLineageMapper) -> None:
    auth = DatasetRef(system="postgres/auth-db_5432", name="public.contact_points")
    ads = DatasetRef(system="ads", name="matchable_identifiers")
    when = datetime(2013, 5, 3, tzinfo=UTC)
    events = mapper.map(
        run_event(RUN_SYNC, "2013-05-03T00:00:00Z", "sync", [AUTH], [ADS_TABLE],
                  job_facets=use()),
        OBSERVED,
    )  # fmt: skip
    stripped = [e.model_dump(exclude={"event_id", "observed_time"}) for e in events]
    envelope = {"schema_version": 1, "event_time": when, "producer": "ads-platform"}
    assert stripped == [
        IdentifierCollected(
            event_id="x",
            observed_time=OBSERVED,
            dataset=auth,
            purpose=AUTHN,
            identifier=dataset_level_identifier(auth, "phone"),
            subject=DATASET_LEVEL_SUBJECT,
            **envelope,
        ).model_dump(exclude={"event_id", "observed_time"}),
        DataFlowed(
            event_id="x",
            observed_time=OBSERVED,
            source=auth,
            target=ads,
            job="ads-platform/sync",
            **envelope,
        ).model_dump(exclude={"event_id", "observed_time"}),
        DataUsed(
            event_id="x",
            observed_time=OBSERVED,
            dataset=auth,
            job="ads-platform/sync",
            purpose=ADS,
            **envelope,
        ).model_dump(exclude={"event_id", "observed_time"}),
    ]
    assert dataset_level_identifier(auth, "phone").display == (
        "dataset-level: the phone numbers of postgres/auth-db_5432:public.contact_points"
    )
    longer = DatasetRef(system="postgres/auth-db_5432", name="public.contact_points_archive_2019")
    assert dataset_level_identifier(longer, "email").display == (
        "dataset-level: the emails of its origin"  # over 80 characters otherwise
    )
    assert all(re.fullmatch(EVENT_ID_PATTERN, e.event_id) for e in events)


def test_event_ids_depend_on_run_time_and_fact_not_on_arrival(mapper: OpenLineageMapper) -> None:
    first = mapper.map(sync(), OBSERVED)
    again = mapper.map(sync(), datetime(2027, 1, 1, tzinfo=UTC))
    assert [e.model_dump(exclude={"observed_time"}) for e in first] == [
        e.model_dump(exclude={"observed_time"}) for e in again
    ]
    later = mapper.map(sync(when="2013-05-03T01:00:00Z"), OBSERVED)
    assert {e.event_id for e in first}.isdisjoint(e.event_id for e in later)


def test_dataset_names_map_to_system_and_name() -> None:
    assert dataset_ref("postgres://db.example.com:5432", "public.users").key == (
        "postgres/db.example.com_5432:public.users"
    )
    assert dataset_ref("s3://bucket", "/raw/contacts 2019.csv").key == (
        "s3/bucket:/raw/contacts_2019.csv"
    )
    assert dataset_ref("auth", "contact_points").key == "auth:contact_points"
    with pytest.raises(InvalidEventError, match="dataset name: no letter or digit"):
        dataset_ref("auth", "::")


def test_without_the_facet_only_flows(mapper: OpenLineageMapper) -> None:
    inputs, outputs = [dataset("a", "x"), dataset("a", "y")], [dataset("b", "z"), dataset("a", "x")]
    plain = run_event(RUN_SYNC, "2013-05-03T00:00:00Z", "sync", inputs, outputs)
    events = mapper.map(plain, OBSERVED)
    assert all(isinstance(e, DataFlowed) for e in events)
    assert sorted((e.source.key, e.target.key) for e in events if isinstance(e, DataFlowed)) == [
        ("a:x", "b:z"),
        ("a:y", "a:x"),
        ("a:y", "b:z"),
    ]


@pytest.mark.parametrize(
    ("facet", "reason"),
    [
        (personal("essential.service.authenticate"),
         "personalData.collectionPurpose: unknown purpose 'essential.service.authenticate'; "
         "closest known: essential.service.authentication"),
        (personal(collectionPurpse=AUTHN), "<unknown field>: Extra inputs are not permitted"),
        ({"columns": {"john@example.com": {"category": "user.name"}}},
         "columns.<unknown field>.category: Input should be"),
        ({"columns": {"phone": {"category": "user.name"}}},
         "columns.<unknown field>.category: Input should be 'user.contact.phone_number' or "
         "'user.contact.email'"),
        ({"collectionPurpose": AUTHN}, "value: declare categories or columns"),
    ],
)  # fmt: skip
def test_a_bad_facet_is_an_error_with_its_reason(
    mapper: OpenLineageMapper, facet: dict[str, Any], reason: str
) -> None:
    auth = dataset("auth", "contact_points", personalData=facet)
    event = run_event(RUN_SYNC, "2013-05-03T00:00:00Z", "sync", [auth], [ADS_TABLE])
    with pytest.raises(InvalidEventError) as caught:
        mapper.map(event, OBSERVED)
    assert reason in caught.value.reason
    assert "john" not in caught.value.reason  # keys made up by the producer are not echoed
    assert caught.value.reason.startswith("auth:contact_points: personalData")


def test_an_unknown_use_purpose_names_the_closest(mapper: OpenLineageMapper) -> None:
    with pytest.raises(InvalidEventError) as caught:
        mapper.map(match(use("marketing.advertisin")), OBSERVED)
    assert caught.value.reason == (
        "job.personalDataUse.purpose: unknown purpose 'marketing.advertisin'; closest known: "
        "marketing.advertising, marketing.advertising.serving, marketing.advertising.profiling"
    )


def test_not_a_run_event(mapper: OpenLineageMapper) -> None:
    with pytest.raises(InvalidEventError, match="not a RunEvent"):
        mapper.map({"eventTime": "2013-05-03T00:00:00Z", "job": {}}, OBSERVED)
    with pytest.raises(InvalidEventError, match="eventTime"):
        mapper.map({**sync(), "eventTime": "2013-05-03T00:00:00"}, OBSERVED)
    with pytest.raises(InvalidEventError) as caught:
        mapper.map({**sync(), "eventTime": "1969-12-31T23:59:59Z"}, OBSERVED)
    assert caught.value.reason == (
        "event_time: must be from 1970-01-01T00:00:00Z and before 2100-01-01T00:00:00Z"
    )
    with pytest.raises(InvalidEventError, match="runId"):
        mapper.map({**sync(), "run": {"runId": "not-a-uuid"}}, OBSERVED)


names = st.sampled_from(["a:x", "a:y", "b:z", "c:w"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(names, max_size=4, unique=True),
    st.lists(names, max_size=4, unique=True),
    st.sampled_from(["START", "RUNNING", "COMPLETE"]),
)
def test_flows_are_inputs_times_outputs_with_stable_unique_ids(
    inputs: list[str], outputs: list[str], event_type: str
) -> None:
    mapper = OpenLineageMapper(default_taxonomy())

    def ds(key: str) -> dict[str, Any]:
        namespace, name = key.split(":")
        return dataset(namespace, name, personalData=personal())

    event = run_event(RUN_SYNC, "2013-05-03T00:00:00Z", "j", [ds(k) for k in inputs],
                      [ds(k) for k in outputs], event_type, use())  # fmt: skip
    events = mapper.map(event, OBSERVED)
    flows = {(e.source.key, e.target.key) for e in events if isinstance(e, DataFlowed)}
    assert flows == {(i, o) for i in inputs for o in outputs if i != o}
    assert {e.dataset.key for e in events if isinstance(e, DataUsed)} == set(inputs)
    assert {e.dataset.key for e in events if isinstance(e, IdentifierCollected)} == {
        *inputs,
        *outputs,
    }
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))
    # the event type is not part of a fact: START and COMPLETE at one time are the same facts
    other = mapper.map({**event, "eventType": "OTHER"}, OBSERVED)
    assert [e.event_id for e in other] == ids


def test_shipped_facet_schema_matches_the_models() -> None:
    shipped = json.loads((ROOT / "lineage/schema/openlineage-facets.schema.json").read_text())
    assert shipped == facet_json_schema()
    assert shipped["$defs"]["PersonalDataDatasetFacet"]["allOf"][0] == {
        "$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetFacet"
    }


# -- through the embedded service --------------------------------------------------------
def test_restricted_origin_reaching_an_advertising_use_alerts_with_the_dataset_path(
    service: LineageService,
) -> None:
    report = service.ingest(lines(sync(), match()), input_format="openlineage")
    assert (report.lines, report.accepted, report.rejected, report.alerts_raised) == (2, 3, [], 1)
    [alert] = service.alerts()
    auth = DatasetRef(system="postgres/auth-db_5432", name="public.contact_points")
    assert alert.identifier == dataset_level_identifier(auth, "phone").ref
    assert alert.subjects == [DATASET_LEVEL_SUBJECT]
    assert (alert.origin_dataset, alert.origin_purpose) == (AUTH_KEY, AUTHN)
    assert (alert.use_dataset, alert.use_job, alert.use_purpose) == (
        "ads:matchable_identifiers",
        "ads-platform/audiences-matcher",
        ADS,
    )
    assert alert.occurred_at == datetime(2013, 5, 4, tzinfo=UTC)
    assert [(s.kind, s.at, s.dataset, s.source, s.job, s.purpose) for s in alert.evidence] == [
        ("collected", datetime(2013, 5, 3, tzinfo=UTC), AUTH_KEY, None, None, AUTHN),
        ("flowed", datetime(2013, 5, 3, tzinfo=UTC), "ads:matchable_identifiers", AUTH_KEY,
         "ads-platform/identity-sync", None),
        ("used", datetime(2013, 5, 4, tzinfo=UTC), "ads:matchable_identifiers", None,
         "ads-platform/audiences-matcher", ADS),
    ]  # fmt: skip
    assert sorted(service.store.edges()) == [
        ("flow", AUTH_KEY, "ads:matchable_identifiers", "ads-platform/identity-sync"),
        ("use", "ads:matchable_identifiers", ADS, "ads-platform/audiences-matcher"),
    ]


def test_queries_count_a_dataset_level_origin_as_the_report_does(
    service: LineageService,
) -> None:
    service.ingest(lines(sync(), match()), input_format="openlineage")
    summary = service.report()
    assert (summary.alerts, summary.affected_subjects, summary.affected_identifiers) == (1, 0, 0)
    paths = service.query("paths")
    assert paths is not None
    [path] = paths.rows
    assert (path.alerts, path.identifiers, path.people) == (1, 0, 0)
    affected = service.query("affected")
    assert affected is not None
    assert [(r.kind, r.alerts, r.identifiers, r.people) for r in affected.rows] == [
        ("use", 1, 0, 0),
        ("job", 1, 0, 0),
    ]


def test_start_then_complete_of_one_run_and_redelivery_change_nothing(
    service: LineageService,
) -> None:
    first = service.ingest(lines(sync("START"), match()), input_format="openlineage")
    alerts, edges = service.alerts(), sorted(service.store.edges())
    assert first.alerts_raised == 1
    complete = service.ingest(
        lines(sync("COMPLETE", when="2013-05-03T00:05:00Z")), input_format="openlineage"
    )
    assert (complete.accepted, complete.alerts_raised, complete.rejected) == (2, 0, [])
    assert service.alerts() == alerts and sorted(service.store.edges()) == edges
    again = service.ingest(
        lines(sync("START"), match(), sync("COMPLETE", when="2013-05-03T00:05:00Z")),
        input_format="openlineage",
    )
    assert (again.accepted, again.duplicates, again.alerts_raised, again.rejected) == (0, 5, 0, [])
    assert service.alerts() == alerts and sorted(service.store.edges()) == edges


def test_without_the_facet_lineage_but_no_alert(service: LineageService) -> None:
    plain_sync = run_event(RUN_SYNC, "2013-05-03T00:00:00Z", "identity-sync",
                           [dataset("auth", "contact_points")], [ADS_TABLE])  # fmt: skip
    report = service.ingest(lines(plain_sync, match({})), input_format="openlineage")
    assert (report.accepted, report.alerts_raised, report.rejected) == (2, 0, [])
    assert service.alerts() == []
    matcher = "ads-platform/audiences-matcher"
    assert sorted(service.store.edges()) == [
        ("flow", "auth:contact_points", "ads:matchable_identifiers", "ads-platform/identity-sync"),
        ("read", "ads:matchable_identifiers", matcher, matcher),
    ]
    found = service.downstream("auth:contact_points")
    assert found.datasets == ["ads:matchable_identifiers"]
    assert found.jobs == [matcher, "ads-platform/identity-sync"]  # the reader is downstream
    again = service.ingest(lines(plain_sync, match({})), input_format="openlineage")
    assert (again.accepted, again.duplicates) == (0, 2)
    edges = sorted(service.store.edges())
    assert service.replay().events == 2  # rebuilt from the log: the read is in it
    assert sorted(service.store.edges()) == edges


def test_a_job_reading_and_writing_nothing_is_read_by_it(mapper: OpenLineageMapper) -> None:
    """No output and no purpose: one ``DataRead`` per input, its id stable across redelivery;
    an input that flows somewhere, or that the job uses for a purpose, is not also read."""
    inputs = [dataset("ads", "matchable_identifiers"), dataset("crm", "people")]
    report = run_event(RUN_MATCH, "2013-05-04T00:00:00Z", "weekly-report", inputs, [])
    events = mapper.map(report, OBSERVED)
    assert [(type(e), e.dataset.key, e.job) for e in events] == [  # type: ignore[union-attr]
        (DataRead, "ads:matchable_identifiers", "ads-platform/weekly-report"),
        (DataRead, "crm:people", "ads-platform/weekly-report"),
    ]
    assert [e.event_id for e in mapper.map(report, OBSERVED)] == [e.event_id for e in events]
    onto_itself = run_event(RUN_MATCH, "2013-05-04T00:00:00Z", "dedupe", inputs, inputs[:1])
    assert [(type(e), getattr(e, "dataset", None)) for e in mapper.map(onto_itself, OBSERVED)] == [
        (DataFlowed, None),  # crm:people -> ads:...: the ads table flowed nowhere but itself
        (DataRead, DatasetRef(system="ads", name="matchable_identifiers")),
    ]
    assert all(type(e) is DataUsed for e in mapper.map(match(), OBSERVED))
    assert all(type(e) is DataFlowed for e in mapper.map(sync(), OBSERVED)[1:])


def test_a_bad_line_is_rejected_whole_and_dead_lettered(service: LineageService) -> None:
    bad = match(use("marketing.advertisin"))
    report = service.ingest(lines(sync(), bad, {"eventTime": "x"}), input_format="openlineage")
    assert report.accepted == 2
    assert [(r.line, r.reason) for r in report.rejected] == [
        (2, "job.personalDataUse.purpose: unknown purpose 'marketing.advertisin'; closest "
            "known: marketing.advertising, marketing.advertising.serving, "
            "marketing.advertising.profiling"),
        (3, "not a RunEvent (no run): DatasetEvent and JobEvent carry no run to date a flow"),
    ]  # fmt: skip
    assert service.local_log is not None
    letters = service.local_log.dead_letters()
    assert [(d.origin, d.reason, json.loads(d.raw)) for d in letters] == [
        ("ingest:2", report.rejected[0].reason, bad),
        ("ingest:3", report.rejected[1].reason, {"eventTime": "x"}),
    ]
    assert service.alerts() == []


def test_identifier_events_refine_dataset_lineage(service: LineageService) -> None:
    """A phone collected (natively) into the dataset the OpenLineage job reads reaches the
    use too: the identifier gets its own alert, and only it counts as a person."""
    collected = {
        "type": "IdentifierCollected",
        "event_id": "c-1",
        "event_time": "2013-05-01T00:00:00Z",
        "producer": "auth-service",
        "dataset": AUTH_KEY,
        "purpose": AUTHN,
        "identifier": {"phone": "+1 415 555 0100"},
        "subject": "account-123",
    }
    assert service.ingest(lines(collected)).accepted == 1
    report = service.ingest(lines(sync(), match()), input_format="openlineage")
    assert report.alerts_raised == 2
    by_display = {a.display: a for a in service.alerts()}
    assert set(by_display) == {
        "+1 ***-***-0100",
        dataset_level_identifier(
            DatasetRef(system="postgres/auth-db_5432", name="public.contact_points"), "phone"
        ).display,
    }
    person = by_display["+1 ***-***-0100"]
    assert (person.evidence[0].kind, person.evidence[0].dataset, person.evidence[0].event_id) == (
        "collected",
        AUTH_KEY,
        "c-1",
    )
    assert [s.kind for s in person.evidence] == ["collected", "flowed", "used"]
    summary = service.report()
    assert (summary.alerts, summary.affected_subjects, summary.affected_identifiers) == (2, 1, 1)
    assert summary.by_category == {"phone": 1}
    assert report_from(tally(service.alerts())) == summary  # the Neo4j store's tally


def test_cli_ingest_format_openlineage(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text("\n".join(lines(sync(), match(), match(use("marketing.advertisin")))) + "\n")
    env = {"LINEAGE_HOME": str(tmp_path / "home")}
    runner = CliRunner(env=env)
    result = runner.invoke(app, ["ingest", str(path), "--format", "openlineage", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "lines": 3,
        "accepted": 3,
        "duplicates": 0,
        "rejected": [
            {
                "line": 3,
                "reason": "job.personalDataUse.purpose: unknown purpose 'marketing.advertisin'; "
                "closest known: marketing.advertising, marketing.advertising.serving, "
                "marketing.advertising.profiling",
            }
        ],
        "alerts": 1,
    }
    result = runner.invoke(app, ["alerts", "--json"])
    [alert] = json.loads(result.stdout)["alerts"]
    assert [(s["kind"], s["dataset"]) for s in alert["evidence"]] == [
        ("collected", AUTH_KEY),
        ("flowed", "ads:matchable_identifiers"),
        ("used", "ads:matchable_identifiers"),
    ]
    result = runner.invoke(app, ["ingest", str(path), "--format", "xml"])
    assert result.exit_code == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
PATHS = [
    ("eventTime",), ("run",), ("run", "runId"), ("job",), ("job", "namespace"), ("job", "facets"),
    ("job", "facets", "personalDataUse"), ("job", "facets", "personalDataUse", "purpose"),
    ("inputs",), ("outputs",),
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PATHS), json_values)
def test_any_damage_to_a_run_event_is_an_invalid_event_never_a_crash(
    path: tuple[str, ...], value: Any
) -> None:
    mapper = OpenLineageMapper(default_taxonomy())
    event = json.loads(json.dumps(run_event(RUN_SYNC, "2013-05-03T00:00:00Z", "j", [AUTH],
                                            [ADS_TABLE], job_facets=use())))  # fmt: skip
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    try:
        events = mapper.map(event, OBSERVED)
    except InvalidEventError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert all(re.fullmatch(EVENT_ID_PATTERN, e.event_id) for e in events)


def test_the_documented_example_gives_the_documented_alert(service: LineageService) -> None:
    doc = (ROOT / "docs/openlineage.md").read_text()
    block = doc.split("### Example\n\n```json\n")[1].split("```")[0].strip()
    decoder, records, at = json.JSONDecoder(), [], 0
    while at < len(block):
        record, at = decoder.raw_decode(block, at)
        records.append(record)
        at = len(block) - len(block[at:].lstrip())
    report = service.ingest(lines(*records), input_format="openlineage")
    assert (report.lines, report.accepted, report.rejected, report.alerts_raised) == (2, 3, [], 1)
    [alert] = service.alerts()
    shown = doc.split("this alert (one line, wrapped here):\n\n```\n")[1].split("```")[0]
    assert describe(alert) == " ".join(shown.split())
