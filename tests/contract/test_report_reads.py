"""The audit report's reads (``tally_between``, ``route_examples``, ``carried_origins``): every
store gives what the reference functions in ``lineage.audit`` compute from its alerts and
copies."""

from __future__ import annotations

from datetime import timedelta

from graph.store import GraphStore
from lineage.audit import CarriedOrigin, carried_order, in_window, route_examples
from lineage.policy import Policy
from lineage.report import report_from, tally
from lineage.tracker import Tracker
from tests import factories as f

PROFILING = "marketing.advertising.profiling"
#: Half a second past hour 2: a stored time with a fraction, next to whole-second bounds.
HALF_SECOND = 2 + 0.5 / 3600
WHOLE = (("auth:db", None), ("ads:t", "copy-job"), ("ads:t", "use-job"))
IN_PLACE = (("auth:db", None), ("auth:db", "use-job"))


def history(store: GraphStore, policy: Policy) -> None:
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0, owner="ann"),
            f.collected("c2", "ann-phone", "auth:db", f.RECOVERY, 0, owner="ann"),
            f.collected("c3", "bob", "auth:db", f.SECURITY, 0),
            f.collected("c4", "cat", "news:list", f.NEWSLETTER, 0, owner="cat"),
            f.flowed("f1", "auth:db", "ads:t", 1),
            f.flowed("f2", "news:list", "ads:t", 1, job="news-sync"),
            f.used("u1", "ads:t", f.ADS, 24 * 400),
            f.used("u2", "auth:db", PROFILING, 2, who=["bob"]),
            f.used("u3", "auth:db", f.ADS, HALF_SECOND, who=["bob"]),
        ]
    )


def test_route_examples_group_by_route_and_purposes(store: GraphStore, policy: Policy) -> None:
    history(store, policy)
    alerts = store.alerts()
    assert len(alerts) == 5
    found = store.route_examples()
    assert found == route_examples(alerts)
    security_ads = sorted(
        (a.occurred_at, a.alert_id)
        for a in alerts
        if a.origin_purpose == f.SECURITY and a.use_dataset == "ads:t"
    )
    assert [(e.route, e.origin_purpose, e.use_purpose, e.alerts) for e in found] == [
        (WHOLE, f.SECURITY, f.ADS, 2),
        (WHOLE, f.RECOVERY, f.ADS, 1),
        (IN_PLACE, f.SECURITY, PROFILING, 1),
        (IN_PLACE, f.SECURITY, f.ADS, 1),
    ]
    example = found[0].example
    assert example.alert_id == security_ads[0][1]
    collection = {"a***@example.com": "c1", "b***@example.com": "c3"}[example.display or ""]
    assert [step.event_id for step in example.evidence] == [collection, "f1", "u1"]


def test_windows_include_since_and_exclude_until(store: GraphStore, policy: Policy) -> None:
    history(store, policy)
    alerts = store.alerts()
    (fraction,) = [a.occurred_at for a in alerts if a.evidence[-1].event_id == "u3"]
    assert fraction.microsecond == 500_000
    windows = [
        (None, f.at(3)),
        (f.at(3), None),
        (f.at(2), f.at(3)),
        (fraction, None),
        (None, fraction),
        (None, fraction + timedelta(microseconds=1)),
        (f.at(0), f.at(1)),
    ]
    for since, until in windows:
        inside = [a for a in alerts if in_window(a.occurred_at, since, until)]
        assert store.route_examples(since, until) == route_examples(inside), (since, until)
        assert report_from(store.tally_between(since, until)) == report_from(tally(inside))
    assert [e.use_purpose for e in store.route_examples(None, fraction)] == [PROFILING]
    assert store.route_examples(f.at(0), f.at(1)) == []
    assert store.tally_between(f.at(0), f.at(1)).alerts == 0
    assert report_from(store.tally_between(None, None)) == report_from(store.tally())
    summary = report_from(store.tally_between(f.at(3), None))
    assert (summary.alerts, summary.affected_identifiers, summary.affected_subjects) == (3, 3, 2)


def test_carried_origins_name_each_edge_and_origin_once(store: GraphStore, policy: Policy) -> None:
    history(store, policy)
    expected = [
        CarriedOrigin(None, "auth:db", None, "auth:db", f.SECURITY),
        CarriedOrigin(None, "auth:db", None, "auth:db", f.RECOVERY),
        CarriedOrigin(None, "news:list", None, "news:list", f.NEWSLETTER),
        CarriedOrigin("auth:db", "ads:t", "copy-job", "auth:db", f.SECURITY),
        CarriedOrigin("auth:db", "ads:t", "copy-job", "auth:db", f.RECOVERY),
        CarriedOrigin("news:list", "ads:t", "news-sync", "news:list", f.NEWSLETTER),
    ]
    assert store.carried_origins() == expected
    from_copies = {
        CarriedOrigin(c.source, c.dataset, c.job, c.origin.dataset, c.origin.purpose)
        for c in store.snapshot().copies
    }
    assert sorted(from_copies, key=carried_order) == expected
