"""The lean ``Alert`` node (graph.neo4j_alerts): every alert comes back exactly from its
properties, in the lean form when its path has the usual shape, whole otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from graph.neo4j_alerts import EVIDENCE_KEYS, alert_of, alert_props, route_of
from lineage.alerts import Alert, EvidenceStep

names = st.text(alphabet="abc:;-_.", min_size=1, max_size=6)
times = st.integers(0, 10**9).map(
    lambda s: datetime(2013, 1, 1, tzinfo=UTC) + timedelta(seconds=s, microseconds=s % 997)
)


def stored(props: dict[str, Any]) -> dict[str, Any]:
    """What Neo4j keeps after ``SET a += props``: a null removes the property."""
    return {k: v for k, v in props.items() if v is not None}


@st.composite
def alerts(draw: st.DrawFn, lean: bool) -> Alert:
    origin_purpose, use_job, use_purpose = draw(names), draw(names), draw(names)
    if lean:
        hops = draw(st.integers(0, 4))
        steps = [
            EvidenceStep(
                kind="collected",
                event_id=draw(names),
                at=draw(times),
                dataset=draw(names),
                purpose=origin_purpose,
            )
        ]
        steps += [
            EvidenceStep(
                kind="flowed",
                event_id=draw(names),
                at=draw(times),
                dataset=draw(names),
                source=draw(names),
                job=draw(names),
            )
            for _ in range(hops)
        ]
        steps.append(
            EvidenceStep(
                kind="used",
                event_id=draw(names),
                at=draw(times),
                dataset=draw(names),
                job=use_job,
                purpose=use_purpose,
            )
        )
    else:  # any path at all
        steps = draw(
            st.lists(
                st.builds(
                    EvidenceStep,
                    kind=st.sampled_from(["collected", "flowed", "used"]),
                    event_id=names,
                    at=times,
                    dataset=names,
                    source=st.none() | names,
                    job=st.none() | names,
                    purpose=st.none() | names,
                ),
                max_size=4,
            )
        )
    return Alert(
        alert_id=draw(names),
        revision=draw(st.integers(0, 5)),
        status=draw(st.sampled_from(["active", "withdrawn"])),
        rule=draw(names),
        severity=draw(names),
        identifier=draw(names),
        category=draw(st.sampled_from(["phone", "email"])),
        display=draw(st.none() | names),
        subjects=draw(st.lists(names, max_size=3)),
        origin_dataset=draw(names),
        origin_purpose=origin_purpose,
        use_dataset=draw(names),
        use_job=use_job,
        use_purpose=use_purpose,
        occurred_at=draw(times),
        evidence=steps,
    )


@given(alerts(lean=True))
def test_a_usual_path_is_stored_as_lists_and_rebuilt_exactly(alert: Alert) -> None:
    props = alert_props(alert)
    assert props["json"] is None
    assert all(isinstance(props[k], list) for k in EVIDENCE_KEYS)
    assert alert_of(stored(props)) == alert
    assert route_of(stored(props)) == tuple((s.dataset, s.job) for s in alert.evidence)


@given(st.one_of(alerts(lean=True), alerts(lean=False)), st.booleans())
def test_any_alert_comes_back_from_its_node(alert: Alert, lean: bool) -> None:
    props = alert_props(alert, lean=lean)
    assert alert_of(stored(props)) == alert
    assert route_of(stored(props)) == tuple((s.dataset, s.job) for s in alert.evidence)


@given(alerts(lean=True), alerts(lean=False))
def test_a_revision_in_the_other_form_leaves_nothing_stale(lean: Alert, whole: Alert) -> None:
    node: dict[str, Any] = {}
    for alert, form in ((lean, True), (whole, False), (lean, True)):
        node = stored({**node, **alert_props(alert, lean=form)})
        assert alert_of(node) == alert


def test_the_lean_node_is_smaller_than_the_json_it_replaces() -> None:
    step = {
        "event_id": "refcase:sync-auth:contact_points-1.4",
        "at": datetime(2013, 5, 1, tzinfo=UTC),
    }
    alert = Alert(
        alert_id="a" * 32,
        rule="security-origin-to-advertising",
        severity="critical",
        identifier="f" * 64,
        category="phone",
        display="+1 ***-***-0100",
        subjects=["s" * 64],
        origin_dataset="auth:contact_points",
        origin_purpose="essential.service.security",
        use_dataset="ads:audiences",
        use_job="matcher",
        use_purpose="marketing.advertising",
        occurred_at=datetime(2013, 5, 1, tzinfo=UTC),
        evidence=[
            EvidenceStep(
                kind="collected",
                dataset="auth:contact_points",
                purpose="essential.service.security",
                **step,
            ),
            EvidenceStep(
                kind="flowed",
                dataset="ads:audiences",
                source="auth:contact_points",
                job="sync",
                **step,
            ),
            EvidenceStep(
                kind="used",
                dataset="ads:audiences",
                job="matcher",
                purpose="marketing.advertising",
                **step,
            ),
        ],
    )

    def size(props: dict[str, Any]) -> int:
        values = [v for v in props.values() if v is not None]
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        return sum(len(x) if isinstance(x, str) else 8 for x in flat)

    assert size(alert_props(alert)) < 0.6 * size(alert_props(alert, lean=False))
