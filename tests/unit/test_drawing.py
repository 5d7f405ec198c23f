"""Pictures of lineage: the model built from store reads, the layout, and each renderer's whole
output on a small picture."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from graph.drawing import (
    dataset_id,
    dataset_picture,
    neighbourhood,
    to_dot,
    to_html,
    to_mermaid,
    to_svg,
    trace_picture,
)
from graph.drawing.layout import layout
from graph.drawing.picture import Edge, Node, Picture, job_id, use_id
from graph.sqlite_store import SqliteStore
from lineage.audit import CarriedOrigin
from lineage.policy import Policy
from lineage.trace import build_trace
from lineage.tracker import Tracker
from tests import factories as f

SVG = "{http://www.w3.org/2000/svg}"
EDGES = [
    ("flow", "auth:db", "ads:t", "sync"),
    ("flow", "news:list", "ads:t", "news-sync"),
    ("use", "ads:t", f.ADS, "matcher"),
]
CARRIED = [
    CarriedOrigin(None, "auth:db", None, "auth:db", f.SECURITY),
    CarriedOrigin(None, "news:list", None, "news:list", f.NEWSLETTER),
    CarriedOrigin("auth:db", "ads:t", "sync", "auth:db", f.SECURITY),
    CarriedOrigin("news:list", "ads:t", "news-sync", "news:list", f.NEWSLETTER),
]


def small(policy: Policy) -> Picture:
    """auth:db (security) and news:list (newsletter) both synced into ads:t, which a matcher
    uses for ads: the security data's route is marked, from a real store's route examples."""
    store = SqliteStore(":memory:")
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0),
            f.collected("c2", "bob", "news:list", f.NEWSLETTER, 0),
            f.flowed("f1", "auth:db", "ads:t", 1, job="sync"),
            f.flowed("f2", "news:list", "ads:t", 1, job="news-sync"),
            f.used("u1", "ads:t", f.ADS, 2, job="matcher"),
        ]
    )
    assert sorted(store.edges()) == sorted(EDGES)
    assert store.carried_origins() == CARRIED
    return dataset_picture(
        store.edges(), store.carried_origins(), store.route_examples(), {f.SECURITY}, "t"
    )


def test_the_picture_colours_edges_by_carried_origin_and_marks_the_violation(
    policy: Policy,
) -> None:
    picture = small(policy)
    assert picture.nodes == (
        Node("dataset:ads:t", "dataset", "ads:t"),
        Node("dataset:auth:db", "dataset", "auth:db", f"collects for:\n{f.SECURITY}"),
        Node("dataset:news:list", "dataset", "news:list", f"collects for:\n{f.NEWSLETTER}"),
        Node("job:matcher", "job", "matcher"),
        Node("job:news-sync", "job", "news-sync"),
        Node("job:sync", "job", "sync"),
        Node(f"use:{f.ADS}", "use", f.ADS),
    )
    both = (f.SECURITY, f.NEWSLETTER)
    rule = ("security-origin-to-advertising",)
    assert picture.edges == (
        Edge("dataset:ads:t", "job:matcher", "use", both, rule),
        Edge("dataset:auth:db", "job:sync", "flow", (f.SECURITY,), on_route=True),
        Edge("dataset:news:list", "job:news-sync", "flow", (f.NEWSLETTER,)),
        Edge("job:matcher", f"use:{f.ADS}", "use", both, rule),
        Edge("job:news-sync", "dataset:ads:t", "flow", (f.NEWSLETTER,)),
        Edge("job:sync", "dataset:ads:t", "flow", (f.SECURITY,), on_route=True),
    )
    assert picture.origins() == [f.SECURITY, f.NEWSLETTER]


def test_dot_output(policy: Policy) -> None:
    assert to_dot(small(policy)) == (
        "digraph lineage {\n"
        "  rankdir=LR;\n"
        '  label="t"; labelloc=t;\n'
        '  node [fontname="Helvetica", fontsize=11, style="rounded,filled"];\n'
        '  edge [fontname="Helvetica", fontsize=9];\n'
        '  "dataset:ads:t" [label="ads:t", shape=box, fillcolor="#eef3fb", color="#4a6fa5"];\n'
        '  "dataset:auth:db" [label="auth:db\\ncollects for:\\nessential.service.authentication",'
        ' shape=box, fillcolor="#eef3fb", color="#4a6fa5"];\n'
        '  "dataset:news:list" [label="news:list\\ncollects for:\\nmarketing.communications.email",'
        ' shape=box, fillcolor="#eef3fb", color="#4a6fa5"];\n'
        '  "job:matcher" [label="matcher", shape=oval, fillcolor="#f2f2f2", color="#777777"];\n'
        '  "job:news-sync" [label="news-sync", shape=oval, fillcolor="#f2f2f2", color="#777777"];\n'
        '  "job:sync" [label="sync", shape=oval, fillcolor="#f2f2f2", color="#777777"];\n'
        '  "use:marketing.advertising.third_party.targeted" '
        '[label="marketing.advertising.third_party.targeted", shape=hexagon, '
        'fillcolor="#fff4e5", color="#b36b00"];\n'
        '  "dataset:ads:t" -> "job:matcher" [color="#d62728:#1f77b4", penwidth=3, '
        'fontcolor="#d62728", style="bold"];\n'
        '  "dataset:auth:db" -> "job:sync" [color="#d62728", penwidth=2, style="dashed"];\n'
        '  "dataset:news:list" -> "job:news-sync" [color="#1f77b4"];\n'
        '  "job:matcher" -> "use:marketing.advertising.third_party.targeted" '
        '[color="#d62728:#1f77b4", penwidth=3, fontcolor="#d62728", style="bold", '
        'label="violates security-origin-to-advertising"];\n'
        '  "job:news-sync" -> "dataset:ads:t" [color="#1f77b4"];\n'
        '  "job:sync" -> "dataset:ads:t" [color="#d62728", penwidth=2, style="dashed"];\n'
        "}\n"
    )


def test_mermaid_output(policy: Policy) -> None:
    assert to_mermaid(small(policy)) == "\n".join(
        [
            "flowchart LR",
            '  n0["ads:t"]',
            '  n1["auth:db<br/>collects for:<br/>essential.service.authentication"]',
            '  n2["news:list<br/>collects for:<br/>marketing.communications.email"]',
            '  n3(["matcher"])',
            '  n4(["news-sync"])',
            '  n5(["sync"])',
            '  n6{{"marketing.advertising.third_party.targeted"}}',
            "  n0 ==> n3",
            f"  %% origins: {f.SECURITY}, {f.NEWSLETTER}",
            "  n1 --> n5",
            f"  %% origins: {f.SECURITY}",
            "  n2 --> n4",
            f"  %% origins: {f.NEWSLETTER}",
            '  n3 ==>|"violates security-origin-to-advertising"| n6',
            f"  %% origins: {f.SECURITY}, {f.NEWSLETTER}",
            "  n4 --> n0",
            f"  %% origins: {f.NEWSLETTER}",
            "  n5 --> n0",
            f"  %% origins: {f.SECURITY}",
            "  linkStyle 0 stroke:#d62728,stroke-width:4px",
            "  linkStyle 1 stroke:#d62728,stroke-width:3px,stroke-dasharray:6 4",
            "  linkStyle 2 stroke:#1f77b4,stroke-width:2px",
            "  linkStyle 3 stroke:#d62728,stroke-width:4px",
            "  linkStyle 4 stroke:#1f77b4,stroke-width:2px",
            "  linkStyle 5 stroke:#d62728,stroke-width:3px,stroke-dasharray:6 4",
            "  classDef dataset fill:#eef3fb,stroke:#4a6fa5",
            "  classDef job fill:#f2f2f2,stroke:#777777",
            "  classDef use fill:#fff4e5,stroke:#b36b00",
            "  classDef identifier fill:#fde8e8,stroke:#b22222",
            "  class n0 dataset",
            "  class n1 dataset",
            "  class n2 dataset",
            "  class n3 job",
            "  class n4 job",
            "  class n5 job",
            "  class n6 use",
            "",
        ]
    )


def test_svg_output_draws_every_node_edge_stripe_and_marker(policy: Policy) -> None:
    picture = small(policy)
    root = ET.fromstring(to_svg(picture))
    assert root.tag == f"{SVG}svg" and root.get("class") == "lineage"
    nodes = {
        g.get("data-id"): (g.get("class"), [t.text for t in g.iter(f"{SVG}text")])
        for g in root.iter(f"{SVG}g")
        if (g.get("class") or "").startswith("node ")
    }
    assert nodes == {
        "dataset:ads:t": ("node dataset", ["ads:t"]),
        "dataset:auth:db": ("node dataset", ["auth:db", "collects for:", f.SECURITY]),
        "dataset:news:list": ("node dataset", ["news:list", "collects for:", f.NEWSLETTER]),
        "job:matcher": ("node job", ["matcher"]),
        "job:news-sync": ("node job", ["news-sync"]),
        "job:sync": ("node job", ["sync"]),
        f"use:{f.ADS}": ("node use", [f.ADS]),
    }
    edges = {
        (g.get("data-source"), g.get("data-target")): (
            g.get("class"),
            [p.get("stroke") for p in g.iter(f"{SVG}path") if p.get("class") == "stripe"],
            [p.get("class") for p in g.iter(f"{SVG}path") if p.get("class") == "halo"],
            [t.text for t in g.iter(f"{SVG}text")],
        )
        for g in root.iter(f"{SVG}g")
        if (g.get("class") or "").startswith("edge ")
    }
    red, blue = "#d62728", "#1f77b4"
    marker = "\u2716 violates security-origin-to-advertising"
    assert edges == {
        ("dataset:ads:t", "job:matcher"): ("edge use violating", [red, blue], ["halo"], []),
        ("dataset:auth:db", "job:sync"): ("edge flow on-route", [red], ["halo"], []),
        ("dataset:news:list", "job:news-sync"): ("edge flow", [blue], [], []),
        ("job:matcher", f"use:{f.ADS}"): ("edge use violating", [red, blue], ["halo"], [marker]),
        ("job:news-sync", "dataset:ads:t"): ("edge flow", [blue], [], []),
        ("job:sync", "dataset:ads:t"): ("edge flow on-route", [red], ["halo"], []),
    }
    legend = [t.text for g in root.iter(f"{SVG}g") if g.get("class") == "legend"
              for t in g.iter(f"{SVG}text")]  # fmt: skip
    assert legend[1:3] == [f"{f.SECURITY} (restricted)", f.NEWSLETTER]


def test_html_is_one_page_that_fetches_nothing(policy: Policy) -> None:
    page = to_html(small(policy))
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 1
    for needle in ("<script", "<link", "src=", "href=", "@import", "url(http"):
        assert needle not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_layout_points_every_edge_right_but_the_one_closing_a_cycle(policy: Policy) -> None:
    edges = [*EDGES, ("carried", "ads:t", "auth:db", "restore")]
    picture = dataset_picture(edges, CARRIED, [], {f.SECURITY})
    frame = layout(picture)
    backwards = [
        (e.source, e.target)
        for e in picture.edges
        if frame.boxes[e.target].x <= frame.boxes[e.source].x
    ]
    assert backwards == [("job:restore", "dataset:auth:db")]
    assert frame.layers["dataset:auth:db"] == 0 and frame.layers[f"use:{f.ADS}"] == 4
    boxes = list(frame.boxes.values())
    overlapping = [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h
    ]
    assert overlapping == []


def test_neighbourhood_counts_a_flow_through_a_job_as_one_step(policy: Policy) -> None:
    picture = small(policy)
    one = neighbourhood(picture, dataset_id("auth:db"), 1)
    assert [n.id for n in one.nodes] == ["dataset:ads:t", "dataset:auth:db", job_id("sync")]
    assert [(e.source, e.target) for e in one.edges] == [
        ("dataset:auth:db", "job:sync"),
        ("job:sync", "dataset:ads:t"),
    ]
    two = neighbourhood(picture, dataset_id("auth:db"), 2)
    assert {n.id for n in two.nodes} == {n.id for n in picture.nodes}
    assert neighbourhood(picture, dataset_id("nowhere:x"), 2).nodes == ()


def test_a_job_that_only_reads_is_drawn_at_the_end_of_a_read_edge(policy: Policy) -> None:
    """A job reading ads:t and writing nothing: a ``read`` edge coloured by what ads:t holds,
    kept in the dataset's neighbourhood, and a node in every rendering."""
    store = SqliteStore(":memory:")
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0),
            f.flowed("f1", "auth:db", "ads:t", 1, job="sync"),
            f.read("r1", "ads:t", 2, job="weekly-report"),
        ]
    )
    picture = dataset_picture(
        store.edges(), store.carried_origins(), store.route_examples(), {f.SECURITY}, "t"
    )
    report = job_id("weekly-report")
    assert Node(report, "job", "weekly-report") in picture.nodes
    assert [e for e in picture.edges if report in (e.source, e.target)] == [
        Edge("dataset:ads:t", report, "read", (f.SECURITY,))
    ]
    near = neighbourhood(picture, dataset_id("ads:t"), 1)
    assert report in {n.id for n in near.nodes}
    assert ("dataset:ads:t", report) in {(e.source, e.target) for e in near.edges}
    for text in (to_dot(picture), to_mermaid(picture), to_svg(picture)):
        assert "weekly-report" in text


def test_an_identifier_picture_shows_its_tree_masked(policy: Policy) -> None:
    store = SqliteStore(":memory:")
    Tracker(store, policy).apply(
        [
            f.collected("c1", "ann", "auth:db", f.SECURITY, 0),
            f.flowed("f1", "auth:db", "ads:t", 1, job="sync"),
            f.flowed("f2", "auth:db", "backup:b", 1, job="backup"),
            f.used("u1", "ads:t", f.ADS, 2, job="matcher"),
        ]
    )
    found = build_trace(store, policy, f.ref("ann").ref)
    assert found is not None
    picture = trace_picture(found, {f.SECURITY})
    me = f"identifier:{f.ref('ann').ref[:16]}"
    assert picture.focus == me and picture.node(me).label == "a***@example.com"
    rule = ("security-origin-to-advertising",)
    assert [(e.source, e.target, e.violating, e.on_route, e.label) for e in picture.edges] == [
        ("dataset:ads:t", "job:matcher", rule, False, ""),
        ("dataset:auth:db", "job:backup", (), False, ""),
        ("dataset:auth:db", "job:sync", (), True, ""),
        (me, "dataset:auth:db", (), False, "2015-01-01"),
        ("job:backup", "dataset:backup:b", (), False, "2015-01-01"),
        ("job:matcher", use_id(f.ADS), rule, False, "2015-01-01"),
        ("job:sync", "dataset:ads:t", (), True, "2015-01-01"),
    ]
    assert all(e.origins == (f.SECURITY,) for e in picture.edges)
    shallow = trace_picture(found, {f.SECURITY}, depth=2)
    assert {n.id for n in shallow.nodes} == {
        me,
        "dataset:auth:db",
        "job:sync",
        "job:backup",
        "dataset:ads:t",
        "dataset:backup:b",
    }
