"""Every query of ``lineage.queries`` on every store, against exact expected rows.

One small hand-built history (times in hours after 2015-01-01): ann has two emails (one
account), bob one email and no account, cat a newsletter email. Security data flows
auth:db -> lake:raw (sync) -> ads:t (export), where an ad matcher uses it at 20; bob is erased
at 30; a profiler uses lake:raw at 40 (bob's copy there died at his erasure).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from graph.store import GraphStore
from lineage import queries as q
from lineage.events import micros
from lineage.policy import Policy
from lineage.report import report_from
from lineage.tracker import Tracker
from tests import factories as f

SEC = f.SECURITY
SEC_ORIGIN = f"{SEC}@auth:db"
NEWS_ORIGIN = f"{f.NEWSLETTER}@crm:news"
PROFILING = "marketing.advertising.profiling"
ADS_ROUTE = [("auth:db", None), ("lake:raw", "sync"), ("ads:t", "export"), ("ads:t", "matcher")]
LAKE_ROUTE = [("auth:db", None), ("lake:raw", "sync"), ("lake:raw", "profiler")]


def t(hours: float) -> datetime:
    return f.at(hours)


def us(hours: float) -> int:
    return micros(f.at(hours))


@pytest.fixture
def history(store: GraphStore, policy: Policy) -> GraphStore:
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", SEC, 0, owner="ann"),
            f.collected("c2", "ann2", "auth:db", SEC, 1, owner="ann"),
            f.collected("c3", "bob", "auth:db", SEC, 2),
            f.collected("c4", "cat", "crm:news", f.NEWSLETTER, 3, owner="cat"),
            f.flowed("f1", "auth:db", "lake:raw", 10, job="sync"),
            f.flowed("f2", "lake:raw", "ads:t", 11, job="export"),
            f.flowed("f3", "crm:news", "ads:t", 12, job="export"),
            f.used("u1", "ads:t", f.ADS, 20, job="matcher"),
            f.used("u2", "lake:raw", f.ANALYTICS, 21, job="bi"),
            f.erased("e1", "bob", 30),
            f.used("u3", "lake:raw", PROFILING, 40, job="profiler"),
        ]
    )
    return store


def test_paths_group_by_origin_route_and_use(history: GraphStore) -> None:
    page = q.paths(history)
    assert (page.query, page.as_of, page.total, page.truncated) == ("paths", None, 2, False)
    assert page.rows == [
        q.PathGroup("auth:db", SEC, ADS_ROUTE, "ads:t", "matcher", f.ADS, 3, 3, 2, t(20), t(20)),
        q.PathGroup("auth:db", SEC, LAKE_ROUTE, "lake:raw", "profiler", PROFILING, 2, 2, 1,
                    t(40), t(40)),
    ]  # fmt: skip


def test_paths_page_and_as_of(history: GraphStore) -> None:
    page = q.paths(history, limit=1)
    assert (page.total, page.truncated, len(page.rows)) == (2, True, 1)
    assert page.rows[0].use_job == "matcher"
    earlier = q.paths(history, as_of=us(25))
    assert earlier.as_of == t(25)
    assert [(r.use_job, r.alerts, r.people) for r in earlier.rows] == [("matcher", 3, 2)]
    assert q.paths(history, as_of=us(19)).rows == []
    assert q.paths(history, limit=0).rows == []


def test_affected_per_use_then_per_job(history: GraphStore) -> None:
    assert q.affected(history).rows == [
        q.AffectedRow("use", "matcher", "ads:t", f.ADS, 3, 3, 2, t(20), t(20)),
        q.AffectedRow("use", "profiler", "lake:raw", PROFILING, 2, 2, 1, t(40), t(40)),
        q.AffectedRow("job", "matcher", None, None, 3, 3, 2, t(20), t(20)),
        q.AffectedRow("job", "profiler", None, None, 2, 2, 1, t(40), t(40)),
    ]
    assert [r.use_job for r in q.affected(history, as_of=us(39)).rows] == ["matcher"] * 2


def test_collections_per_system_category_and_purpose(history: GraphStore) -> None:
    assert q.collections(history).rows == [
        q.CollectionRow("auth", "auth:db", "email", SEC, 3, 2, t(0), t(2)),
        q.CollectionRow("crm", "crm:news", "email", f.NEWSLETTER, 1, 1, t(3), t(3)),
    ]
    assert q.collections(history, as_of=us(1)).rows == [
        q.CollectionRow("auth", "auth:db", "email", SEC, 2, 1, t(0), t(1)),
    ]


def test_erasure_gaps_list_the_copies_left_downstream(history: GraphStore) -> None:
    bob = f.ref("bob").ref
    page = q.erasure_gaps(history)
    BOB = "b***@example.com"  # noqa: N806
    assert page.rows == [
        q.ErasureGap(bob, BOB, "email", t(30), "ads:t", "auth:db", SEC, t(11), "lake:raw",
                     "export", "f2"),
        q.ErasureGap(bob, BOB, "email", t(30), "lake:raw", "auth:db", SEC, t(10), "auth:db",
                     "sync", "f1"),
    ]  # fmt: skip
    assert q.erasure_gaps(history, as_of=us(29)).rows == []


def test_blast_radius_of_a_dataset(history: GraphStore) -> None:
    page = q.blast_radius(history, "auth:db")
    assert page is not None
    assert page.rows == [
        q.BlastRow("dataset", "ads:t", "ads:t", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("dataset", "ads:t", "ads:t", None, NEWS_ORIGIN, 1, 1),
        q.BlastRow("dataset", "auth:db", "auth:db", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("dataset", "lake:raw", "lake:raw", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("job", "export", "lake:raw", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("job", "sync", "auth:db", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("use", "bi", "lake:raw", f.ANALYTICS, SEC_ORIGIN, 3, 2),
        q.BlastRow("use", "matcher", "ads:t", f.ADS, SEC_ORIGIN, 3, 2),
        q.BlastRow("use", "matcher", "ads:t", f.ADS, NEWS_ORIGIN, 1, 1),
        q.BlastRow("use", "profiler", "lake:raw", PROFILING, SEC_ORIGIN, 3, 2),
    ]
    then = q.blast_radius(history, "auth:db", as_of=us(10.5))
    assert then is not None
    assert then.rows == [
        q.BlastRow("dataset", "auth:db", "auth:db", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("dataset", "lake:raw", "lake:raw", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("job", "sync", "auth:db", None, SEC_ORIGIN, 3, 2),
    ]


def test_blast_radius_of_a_job_and_of_nothing(history: GraphStore) -> None:
    page = q.blast_radius(history, "export", limit=3)
    assert page is not None
    assert (page.total, page.truncated) == (6, True)
    assert page.rows == [
        q.BlastRow("dataset", "ads:t", "ads:t", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("dataset", "ads:t", "ads:t", None, NEWS_ORIGIN, 1, 1),
        q.BlastRow("job", "export", "crm:news", None, NEWS_ORIGIN, 1, 1),
    ]
    assert q.blast_radius(history, "no-such-job") is None
    assert q.blast_radius(history, "sync", as_of=us(5)) is None


def test_blast_radius_lists_a_job_that_only_reads(history: GraphStore, policy: Policy) -> None:
    """A job reading ads:t and writing nothing (``DataRead``) is a job row downstream of
    auth:db, with what ads:t holds, from the read's time on; it is a start of its own."""
    Tracker(history, policy).apply([f.read("r1", "ads:t", 25, job="weekly-report")])
    report_rows = [
        q.BlastRow("job", "weekly-report", "ads:t", None, SEC_ORIGIN, 3, 2),
        q.BlastRow("job", "weekly-report", "ads:t", None, NEWS_ORIGIN, 1, 1),
    ]
    page = q.blast_radius(history, "auth:db")
    assert page is not None
    assert [r for r in page.rows if r.name == "weekly-report"] == report_rows
    own = q.blast_radius(history, "weekly-report")
    assert own is not None and own.rows == report_rows
    then = q.blast_radius(history, "auth:db", as_of=us(24))
    assert then is not None and all(r.name != "weekly-report" for r in then.rows)
    assert q.blast_radius(history, "weekly-report", as_of=us(24)) is None


def test_report_counts_people_per_violating_job(history: GraphStore) -> None:
    report = report_from(history.tally())
    assert report.people_by_job == {"matcher": 2, "profiler": 1}
    assert report.affected_subjects == 2
    earlier = report_from(history.tally(as_of=us(25)))
    assert (earlier.alerts, earlier.people_by_job) == (3, {"matcher": 2})
    assert report_from(history.tally(as_of=us(19))).alerts == 0
