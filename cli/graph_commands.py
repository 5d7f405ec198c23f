"""``lineage graph IDENTIFIER|DATASET``: draw the neighbourhood of one node.

A dataset key (``system:name``) draws what lies within ``--depth`` steps of it, upstream and
downstream; a phone number or email (``-`` reads it from stdin, like ``trace -``) draws its
downstream tree, the identifier shown masked. Formats: dot, mermaid, svg, html (one
self-contained page); ``--json`` gives the picture's nodes and edges.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from cli.output import errors, fail, shown_identifier

if TYPE_CHECKING:
    from graph.drawing import Picture

# graph.drawing (networkx), the settings and the service load inside the command.

FORMAT_NAMES = ("dot", "mermaid", "svg", "html")


def is_dataset_key(target: str) -> bool:
    """``system:name``: a colon and no '@' (no phone number or email has a colon)."""
    return ":" in target and "@" not in target


def graph(
    target: Annotated[
        list[str],
        typer.Argument(
            help="a dataset key system:name, or a phone number or email as typed (- reads it "
            "from stdin, out of shell history and ps)"
        ),
    ],
    form: Annotated[str, typer.Option("--format", help="dot, mermaid, svg or html")] = "html",
    depth: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="steps from the node, a flow or use being one (default: 2 around a dataset, "
            "an identifier's whole downstream tree)",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="the picture as JSON nodes and edges")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="write here instead of stdout")
    ] = None,
) -> None:
    """Draw the neighbourhood of one dataset or identifier (docs/report.md)."""
    from cli.main import _service, read_stdin_identifier, utf8_argument
    from graph.drawing import FORMATS

    if form not in FORMAT_NAMES:
        raise typer.BadParameter(f"one of {', '.join(FORMAT_NAMES)}", param_hint="--format")
    raw = read_stdin_identifier() if target == ["-"] else utf8_argument(" ".join(target), "node")
    if target != ["-"] and is_dataset_key(raw.strip()):
        key = raw.strip()
        from runtime.audit import dataset_neighbourhood

        with _service(False, writer=False) as service:
            picture = dataset_neighbourhood(service.store, service.policy, key, depth or 2)
        if picture is None:
            errors.print(escape(f"No lineage recorded for dataset {key}."))
            raise typer.Exit(1)
    else:
        from runtime.audit import identifier_picture

        shown = shown_identifier(raw)
        with _service(False, writer=False) as service:
            found = service.trace(raw)
            if found is None:
                errors.print(f"No lineage recorded for {escape(shown)}.")
                raise typer.Exit(1)
            picture = identifier_picture(found, service.policy, depth)
    drawn = _as_json(picture) if as_json else FORMATS[form](picture)
    if output is None:
        sys.stdout.write(drawn)
        return
    try:
        output.write_text(drawn, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc}") from None
    errors.print(escape(f"wrote {output} ({len(picture.nodes)} nodes, {len(picture.edges)} edges)"))


def _as_json(picture: Picture) -> str:
    import json
    from dataclasses import asdict

    document = {
        "title": picture.title,
        "focus": picture.focus,
        "restricted_origins": sorted(picture.restricted),
        "nodes": [asdict(n) for n in picture.nodes],
        "edges": [asdict(e) for e in picture.edges],
    }
    return json.dumps(document, indent=2) + "\n"


def register(app: typer.Typer) -> None:
    """Adds the graph command to ``app`` (heavy imports stay inside the command)."""
    app.command("graph")(graph)
