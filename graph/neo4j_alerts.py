"""An alert as the properties of its ``Alert`` node, and back: the lean graph model.

Why: the node used to carry the alert's JSON beside its queryable fields, about 1.3 KB per
alert with every field stored twice. Now every field is a property once, and the evidence
path is five parallel lists: per step its event id, time and dataset; per flowed step (the
steps between the collection and the use) its job and source. The collection's purpose and
the use's job and purpose are the alert's own ``origin_purpose``, ``use_job`` and
``use_purpose``. So officers' Cypher can read the path (``a.evidence_datasets``), and the
node still rebuilds the alert exactly.

A path that does not have that shape (no evidence is built so today) is kept whole as
``json`` instead, so nothing is ever rebuilt wrong; an ``Alert`` node written before this
model (a ``json`` property and no lists) is read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage.alerts import Alert, EvidenceStep
from lineage.events import from_micros, micros

#: The properties of the lean form, each ``None`` (absent) in the other form: a revision
#: written in one form over a node written in the other leaves nothing stale (``SET a +=``).
EVIDENCE_KEYS = (
    "evidence_event_ids",
    "evidence_at",
    "evidence_datasets",
    "evidence_jobs",
    "evidence_sources",
)


def alert_props(alert: Alert, lean: bool = True) -> dict[str, Any]:
    """The node's properties: every field once, the path as lists, or whole when ``lean`` is
    false (the bulk importer's CSV cannot hold a list element with its array delimiter)."""
    props: dict[str, Any] = {
        "alert_id": alert.alert_id,
        "revision": alert.revision,
        "status": alert.status,
        "schema_version": alert.schema_version,
        "rule": alert.rule,
        "severity": alert.severity,
        "identifier": alert.identifier,
        "category": alert.category,
        "display": alert.display,
        "subjects": alert.subjects,
        "origin_dataset": alert.origin_dataset,
        "origin_purpose": alert.origin_purpose,
        "use_dataset": alert.use_dataset,
        "use_job": alert.use_job,
        "use_purpose": alert.use_purpose,
        "occurred_at": micros(alert.occurred_at),
    }
    if lean and _lean_shape(alert):
        steps = alert.evidence
        flowed = steps[1:-1]
        props.update(
            evidence_event_ids=[s.event_id for s in steps],
            evidence_at=[micros(s.at) for s in steps],
            evidence_datasets=[s.dataset for s in steps],
            evidence_jobs=[s.job for s in flowed],
            evidence_sources=[s.source for s in flowed],
            json=None,
        )
    else:
        props.update(dict.fromkeys(EVIDENCE_KEYS), json=alert.model_dump_json())
    return props


def _lean_shape(alert: Alert) -> bool:
    """Collected, then flowed steps, then the use: what the lists can rebuild exactly."""
    steps = alert.evidence
    if len(steps) < 2:
        return False
    first, last = steps[0], steps[-1]
    return (
        first.kind == "collected"
        and first.source is None
        and first.job is None
        and first.purpose == alert.origin_purpose
        and last.kind == "used"
        and last.source is None
        and last.job == alert.use_job
        and last.purpose == alert.use_purpose
        and all(
            s.kind == "flowed" and s.source is not None and s.job is not None and s.purpose is None
            for s in steps[1:-1]
        )
    )


def alert_of(props: Mapping[str, Any]) -> Alert:
    """The alert an ``Alert`` node holds (``RETURN a {.*}``)."""
    if props.get("json") is not None:
        return Alert.model_validate_json(props["json"])
    return Alert(
        schema_version=props.get("schema_version", 1),
        alert_id=props["alert_id"],
        revision=props["revision"],
        status=props["status"],
        rule=props["rule"],
        severity=props["severity"],
        identifier=props["identifier"],
        category=props["category"],
        display=props.get("display"),
        subjects=list(props.get("subjects") or ()),
        origin_dataset=props["origin_dataset"],
        origin_purpose=props["origin_purpose"],
        use_dataset=props["use_dataset"],
        use_job=props["use_job"],
        use_purpose=props["use_purpose"],
        occurred_at=from_micros(props["occurred_at"]),
        evidence=_steps(props),
    )


def _steps(props: Mapping[str, Any]) -> list[EvidenceStep]:
    ids, times, datasets = (list(props.get(k) or ()) for k in EVIDENCE_KEYS[:3])
    jobs, sources = (list(props.get(k) or ()) for k in EVIDENCE_KEYS[3:])
    last = len(ids) - 1
    steps: list[EvidenceStep] = []
    for n, (event_id, at, dataset) in enumerate(zip(ids, times, datasets, strict=True)):
        when = from_micros(at)
        if n == 0:
            step = EvidenceStep(kind="collected", event_id=event_id, at=when, dataset=dataset,
                                purpose=props["origin_purpose"])  # fmt: skip
        elif n == last:
            step = EvidenceStep(kind="used", event_id=event_id, at=when, dataset=dataset,
                                job=props["use_job"], purpose=props["use_purpose"])  # fmt: skip
        else:
            step = EvidenceStep(kind="flowed", event_id=event_id, at=when, dataset=dataset,
                                source=sources[n - 1], job=jobs[n - 1])  # fmt: skip
        steps.append(step)
    return steps


def route_of(props: Mapping[str, Any]) -> tuple[tuple[str, str | None], ...]:
    """The path's (dataset, job) per step, what the report and the incidents group by, without
    building the alert."""
    if props.get("json") is not None:
        return tuple((s.dataset, s.job) for s in Alert.model_validate_json(props["json"]).evidence)
    datasets = list(props.get("evidence_datasets") or ())
    jobs: list[str | None] = [None, *(props.get("evidence_jobs") or ()), props["use_job"]]
    return tuple(zip(datasets, jobs, strict=True))
