"""Pictures of lineage: a backend-neutral model (``picture``), a pure-Python layered layout
(``layout``) and renderers to dot, Mermaid, SVG and self-contained HTML (``render``)."""

from graph.drawing.picture import (
    Edge,
    Node,
    Picture,
    dataset_id,
    dataset_picture,
    job_id,
    neighbourhood,
    trace_picture,
    use_id,
)
from graph.drawing.render import FORMATS, html_page, to_dot, to_html, to_mermaid, to_svg

__all__ = [
    "FORMATS",
    "Edge",
    "Node",
    "Picture",
    "dataset_id",
    "dataset_picture",
    "html_page",
    "job_id",
    "neighbourhood",
    "to_dot",
    "to_html",
    "to_mermaid",
    "to_svg",
    "trace_picture",
    "use_id",
]
