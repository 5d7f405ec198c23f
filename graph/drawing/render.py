"""Renderers of a ``Picture``: Graphviz ``dot``, Mermaid, SVG and a self-contained HTML page.

The SVG carries its own style, arrowhead and legend; the HTML page inlines it with its CSS, so
it opens offline (no script, font or stylesheet is fetched). An edge is drawn once per origin
purpose it carried, in that origin's colour, side by side (restricted origins get the warm
colours); a violating use has a red halo and a "violates" marker, flows that carried the
violating data a dashed red halo.
"""

from __future__ import annotations

from html import escape

from graph.drawing.layout import DETAIL_HEIGHT, MARGIN, Box, Layout, layout
from graph.drawing.picture import Edge, Node, Picture, edge_text

WARM = ("#d62728", "#ff7f0e", "#9467bd", "#e377c2", "#8c564b", "#bcbd22")
COOL = ("#1f77b4", "#2ca02c", "#17becf", "#7f7f7f", "#393b79", "#637939")
NO_ORIGIN = "#b0b0b0"
VIOLATION = "#d62728"
STRIPE = 3.0  # px between the parallel strokes of one edge
LEGEND_ROW = 20.0

FILL = {"dataset": "#eef3fb", "job": "#f2f2f2", "use": "#fff4e5", "identifier": "#fde8e8"}
STROKE = {"dataset": "#4a6fa5", "job": "#777777", "use": "#b36b00", "identifier": "#b22222"}

SVG_CSS = """
svg.lineage { max-width: 100%; height: auto;
              font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
svg.lineage .node text.label { font-size: 12px; fill: #1a1a1a; }
svg.lineage .node text.detail { font-size: 10px; fill: #555555; }
svg.lineage .node.focus > .shape { stroke-width: 3px; }
svg.lineage .edge path.stripe { fill: none; stroke-width: 2px; }
svg.lineage .edge path.halo { fill: none; stroke: #d62728; stroke-opacity: 0.28; }
svg.lineage .edge.violating path.halo { stroke-width: 12px; }
svg.lineage .edge.on-route path.halo { stroke-width: 8px; stroke-dasharray: 8 5; }
svg.lineage text.edge-label { font-size: 10px; fill: #555555; }
svg.lineage text.violation-marker { font-size: 11px; font-weight: bold; fill: #d62728; }
svg.lineage .legend text { font-size: 11px; fill: #1a1a1a; }
svg.lineage text.title { font-size: 15px; font-weight: bold; fill: #1a1a1a; }
"""


def colours(picture: Picture) -> dict[str, str]:
    """One colour per origin purpose: restricted origins warm, the others cool."""
    warm = [o for o in picture.origins() if o in picture.restricted]
    cool = [o for o in picture.origins() if o not in picture.restricted]
    found = {o: WARM[i % len(WARM)] for i, o in enumerate(warm)}
    found.update({o: COOL[i % len(COOL)] for i, o in enumerate(cool)})
    return found


# -- Graphviz ---------------------------------------------------------------------------------
def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


DOT_SHAPES = {"dataset": "box", "job": "oval", "use": "hexagon", "identifier": "ellipse"}


def to_dot(picture: Picture) -> str:
    palette = colours(picture)
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        f"  label={_dot_text(picture.title)}; labelloc=t;",
        '  node [fontname="Helvetica", fontsize=11, style="rounded,filled"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for n in picture.nodes:
        label = _dot_text("\n".join([n.label, *n.detail.splitlines()])).replace("\n", "\\n")
        width = ", penwidth=3" if n.id == picture.focus else ""
        lines.append(
            f"  {_dot_text(n.id)} [label={label}, shape={DOT_SHAPES[n.kind]}, "
            f'fillcolor="{FILL[n.kind]}", color="{STROKE[n.kind]}"{width}];'
        )
    for e in picture.edges:
        colour = ":".join(palette[o] for o in e.origins) or NO_ORIGIN
        attributes = [f'color="{colour}"']
        if e.violating:
            attributes += ["penwidth=3", f'fontcolor="{VIOLATION}"', 'style="bold"']
        elif e.on_route:
            attributes += ["penwidth=2", 'style="dashed"']
        if edge_text(e):
            attributes.append(f"label={_dot_text(edge_text(e))}")
        lines.append(f"  {_dot_text(e.source)} -> {_dot_text(e.target)} [{', '.join(attributes)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- Mermaid ----------------------------------------------------------------------------------
def _mermaid_escape(text: str) -> str:
    for raw, entity in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(raw, entity)
    return text


def _mermaid_text(text: str) -> str:
    return f'"{_mermaid_escape(text)}"'


MERMAID_SHAPES = {
    "dataset": ("[", "]"),
    "job": ("([", "])"),
    "use": ("{{", "}}"),
    "identifier": ("((", "))"),
}


def to_mermaid(picture: Picture) -> str:
    """A ``flowchart LR``; Mermaid strokes a link in one colour, so a link takes its first
    origin's (restricted origins first) and a comment lists them all."""
    palette = colours(picture)
    ids = {n.id: f"n{i}" for i, n in enumerate(picture.nodes)}
    lines = ["flowchart LR"]
    for n in picture.nodes:
        opening, closing = MERMAID_SHAPES[n.kind]
        detail = "".join(f"<br/>{_mermaid_escape(line)}" for line in n.detail.splitlines())
        text = f'"{_mermaid_escape(n.label)}{detail}"'
        lines.append(f"  {ids[n.id]}{opening}{text}{closing}")
    styles = []
    ordered = picture.origins()
    for index, e in enumerate(picture.edges):
        arrow = "==>" if e.violating else "-->"
        label = f"|{_mermaid_text(edge_text(e))}|" if edge_text(e) else ""
        first = next((o for o in ordered if o in e.origins), None)
        lines.append(f"  {ids[e.source]} {arrow}{label} {ids[e.target]}")
        if e.origins:
            lines.append(f"  %% origins: {', '.join(e.origins)}")
        colour = palette[first] if first else NO_ORIGIN
        width = "4px" if e.violating else "3px" if e.on_route else "2px"
        dash = ",stroke-dasharray:6 4" if e.on_route and not e.violating else ""
        styles.append(f"  linkStyle {index} stroke:{colour},stroke-width:{width}{dash}")
    lines += styles
    for kind in ("dataset", "job", "use", "identifier"):
        lines.append(f"  classDef {kind} fill:{FILL[kind]},stroke:{STROKE[kind]}")
    for n in picture.nodes:
        lines.append(f"  class {ids[n.id]} {n.kind}")
    return "\n".join(lines) + "\n"


# -- SVG --------------------------------------------------------------------------------------
def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _shape(node: Node, box: Box) -> str:
    style = f'class="shape" fill="{FILL[node.kind]}" stroke="{STROKE[node.kind]}"'
    x, y, w, h = box.x, box.y, box.w, box.h
    if node.kind == "use":
        d = 12.0
        points = [(x, box.cy), (x + d, y), (x + w - d, y), (x + w, box.cy),
                  (x + w - d, y + h), (x + d, y + h)]  # fmt: skip
        return f'<polygon {style} points="{" ".join(f"{_f(a)},{_f(b)}" for a, b in points)}"/>'
    radius = {"dataset": 4.0, "job": h / 2, "identifier": h / 2}[node.kind]
    return (
        f'<rect {style} x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" '
        f'rx="{_f(radius)}"/>'
    )


def _node_svg(node: Node, box: Box, focus: bool) -> str:
    classes = f"node {node.kind}" + (" focus" if focus else "")
    parts = [
        f'<g class="{classes}" data-id="{escape(node.id)}">',
        f"<title>{escape(node.kind)}: {escape(node.label)}</title>",
        _shape(node, box),
    ]
    lines = node.detail.splitlines()
    label_y = box.y + 21 if lines else box.cy + 4
    parts.append(
        f'<text class="label" x="{_f(box.cx)}" y="{_f(label_y)}" text-anchor="middle">'
        f"{escape(node.label)}</text>"
    )
    for index, line in enumerate(lines):
        y = box.y + 21 + DETAIL_HEIGHT * (index + 1)
        parts.append(
            f'<text class="detail" x="{_f(box.cx)}" y="{_f(y)}" text-anchor="middle">'
            f"{escape(line)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _curve(
    source: Box, target: Box, forward: bool, offset: float, floor: float
) -> tuple[str, tuple[float, float]]:
    """A cubic from the source's right to the target's left (forward), or an arc below both
    (an edge within a layer or backwards: a cycle); and the curve's midpoint."""
    if forward:
        x1, y1, x2, y2 = source.x + source.w, source.cy + offset, target.x, target.cy + offset
        mx = (x1 + x2) / 2
        controls = ((mx, y1), (mx, y2))
    else:
        x1, y1 = source.cx + offset, source.y + source.h
        x2, y2 = target.cx + offset, target.y + target.h
        controls = ((x1, floor + offset), (x2, floor + offset))
    (ax, ay), (bx, by) = controls
    path = f"M{_f(x1)},{_f(y1)} C{_f(ax)},{_f(ay)} {_f(bx)},{_f(by)} {_f(x2)},{_f(y2)}"
    middle = (
        0.125 * x1 + 0.375 * (ax + bx) + 0.125 * x2,
        0.125 * y1 + 0.375 * (ay + by) + 0.125 * y2,
    )
    return path, middle


def _edge_svg(edge: Edge, frame: Layout, palette: dict[str, str]) -> str:
    source, target = frame.boxes[edge.source], frame.boxes[edge.target]
    forward = frame.layers[edge.target] > frame.layers[edge.source]
    floor = max(source.y + source.h, target.y + target.h) + 40
    classes = "edge " + edge.kind
    classes += " violating" if edge.violating else " on-route" if edge.on_route else ""
    origins = edge.origins or ("",)
    title = f"{edge.source} -> {edge.target}"
    if edge.origins:
        title += "; origins: " + ", ".join(edge.origins)
    if edge.violating:
        title += "; violates " + ", ".join(edge.violating)
    parts = [
        f'<g class="{classes}" data-source="{escape(edge.source)}" '
        f'data-target="{escape(edge.target)}" data-origins="{escape(" ".join(edge.origins))}">',
        f"<title>{escape(title)}</title>",
    ]
    centre, middle = _curve(source, target, forward, 0.0, floor)
    if edge.violating or edge.on_route:
        parts.append(f'<path class="halo" d="{centre}"/>')
    for index, origin in enumerate(origins):
        offset = (index - (len(origins) - 1) / 2) * STRIPE
        path, _ = _curve(source, target, forward, offset, floor)
        colour = palette.get(origin, NO_ORIGIN)
        arrow = ' marker-end="url(#lineage-arrow)"' if index == len(origins) - 1 else ""
        parts.append(f'<path class="stripe" stroke="{colour}" d="{path}"{arrow}/>')
    x, y = middle
    if edge.violating and edge_text(edge):
        parts.append(
            f'<text class="violation-marker" x="{_f(x)}" y="{_f(y - 6)}" '
            f'text-anchor="middle">\u2716 {escape(edge_text(edge))}</text>'
        )
    elif edge_text(edge):
        parts.append(
            f'<text class="edge-label" x="{_f(x)}" y="{_f(y - 5)}" text-anchor="middle">'
            f"{escape(edge.label)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _legend(picture: Picture, palette: dict[str, str], top: float) -> tuple[str, float]:
    rows: list[tuple[str, str]] = [(palette[o], o) for o in picture.origins()]
    parts = ['<g class="legend">']
    y = top
    parts.append(f'<text x="{_f(MARGIN)}" y="{_f(y)}">Edge colour: origin purpose of the data '
                 "carried (warm: restricted by a rule)</text>")  # fmt: skip
    for colour, origin in rows:
        y += LEGEND_ROW
        restricted = " (restricted)" if origin in picture.restricted else ""
        parts.append(
            f'<rect x="{_f(MARGIN)}" y="{_f(y - 9)}" width="24" height="6" fill="{colour}"/>'
            f'<text x="{_f(MARGIN + 32)}" y="{_f(y)}">{escape(origin)}{restricted}</text>'
        )
    y += LEGEND_ROW
    parts.append(
        f'<rect x="{_f(MARGIN)}" y="{_f(y - 12)}" width="24" height="12" fill="{VIOLATION}" '
        f'fill-opacity="0.28"/><text x="{_f(MARGIN + 32)}" y="{_f(y)}">\u2716 a use that '
        "violated a rule (marked edge); dashed halo: a flow that carried the violating data"
        "</text>"
    )
    parts.append("</g>")
    return "".join(parts), y + MARGIN


def to_svg(picture: Picture) -> str:
    frame = layout(picture)
    palette = colours(picture)
    top = 30.0
    shifted = {k: Box(b.x, b.y + top, b.w, b.h) for k, b in frame.boxes.items()}
    frame = Layout(shifted, frame.layers, frame.width, frame.height + top)
    legend, bottom = _legend(picture, palette, frame.height + 10)
    width = max(frame.width, 640.0)
    body = [
        f'<text class="title" x="{_f(MARGIN)}" y="22">{escape(picture.title)}</text>',
        '<g class="edges">',
        *(_edge_svg(e, frame, palette) for e in picture.edges),
        "</g>",
        '<g class="nodes">',
        *(_node_svg(n, frame.boxes[n.id], n.id == picture.focus) for n in picture.nodes),
        "</g>",
        legend,
    ]
    if not picture.nodes:
        body.append(f'<text x="{_f(MARGIN)}" y="60">Nothing recorded to draw.</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" '
        f'width="{_f(width)}" height="{_f(bottom)}" viewBox="0 0 {_f(width)} {_f(bottom)}">'
        f"<title>{escape(picture.title)}</title><style>{SVG_CSS}</style>"
        '<defs><marker id="lineage-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="5" markerHeight="5" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#444444"/></marker></defs>' + "".join(body) + "</svg>\n"
    )


# -- HTML -------------------------------------------------------------------------------------
PAGE_CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 24px;
       color: #1a1a1a; background: #ffffff; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d0d0d0; padding: 4px 8px; text-align: left; font-size: 13px; }
th { background: #f4f6f8; }
code { font-size: 12px; }
figure.lineage-picture { margin: 0; overflow-x: auto; }
"""


def html_page(title: str, body: str) -> str:
    """A complete page with its CSS inline; nothing in it is fetched."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def to_html(picture: Picture) -> str:
    return html_page(
        picture.title,
        f'<figure class="lineage-picture">{to_svg(picture)}</figure>',
    )


FORMATS = {"dot": to_dot, "mermaid": to_mermaid, "svg": to_svg, "html": to_html}
