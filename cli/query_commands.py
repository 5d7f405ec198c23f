"""``lineage query NAME [ARG]``: the privacy officer's questions (``lineage.queries``).

Every query pages without ever truncating silently: text says "showing N of M" and JSON
carries ``total`` and ``truncated``. ``--as-of`` answers from the lineage as it stood then.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from lineage.queries import Page

# lineage.queries, the service and the stores load inside the command: a fast --help.

console = Console()
DEFAULT_LIMIT = 20
QUERY_HELP = (
    "paths | blast-radius DATASET|JOB | affected | collections | erasure-gaps (docs/queries.md)"
)


def page_json(page: Page[Any], limit: int | None) -> str:
    """The page with ``total``, ``truncated`` and ``limit`` beside its rows."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"not JSON: {type(value).__name__}")

    body = {
        "query": page.query,
        "as_of": page.as_of,
        "total": page.total,
        "truncated": page.truncated,
        "limit": limit,
        "rows": [asdict(row) for row in page.rows],
    }
    return json.dumps(body, indent=2, default=plain)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list):  # a route: (dataset, job) steps
        return " > ".join(f"{d} ({j})" if j else d for d, j in value)
    return str(value)


def print_page(out: Console, page: Page[Any]) -> None:
    """One line per row (columns separated by " | "), whatever the terminal's width."""
    title = f"{page.query}" + (f" as of {page.as_of:%Y-%m-%d %H:%M}" if page.as_of else "")
    if not page.rows:
        out.print(escape(f"{title}: nothing found."), soft_wrap=True)
    else:
        names = list(asdict(page.rows[0]))
        out.print(f"[bold]{escape(title)}[/]", soft_wrap=True)
        out.print(f"[dim]{escape(' | '.join(n.replace('_', ' ') for n in names))}[/]",
                  soft_wrap=True)  # fmt: skip
        for row in page.rows:
            values = asdict(row)
            if "identifier" in values:  # a keyed hash: its start is enough to tell them apart
                values["identifier"] = str(values["identifier"])[:16]
            out.print(escape(" | ".join(_cell(values[n]) for n in names)), soft_wrap=True)
    if page.truncated:
        out.print(f"showing {len(page.rows)} of {page.total}, use --all (or --limit N)")
    elif page.rows:
        out.print(f"{page.total} row(s).")


def register(app: typer.Typer) -> None:
    @app.command()
    def query(
        name: Annotated[str, typer.Argument(help=QUERY_HELP)],
        target: Annotated[
            str | None, typer.Argument(help="blast-radius: a dataset (system:name) or a job")
        ] = None,
        as_of: Annotated[
            str | None,
            typer.Option(
                "--as-of",
                help="the lineage as it stood then, by event time (ISO 8601 date or time; "
                "without an offset it is UTC)",
            ),
        ] = None,
        limit: Annotated[
            int, typer.Option(help="show at most this many rows (0: all)")
        ] = DEFAULT_LIMIT,
        show_all: Annotated[bool, typer.Option("--all", help="show every row")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    ) -> None:
        """Privacy officers' questions: paths, blast-radius, affected, collections,
        erasure-gaps."""
        from cli.main import _service, utc_datetime
        from cli.output import fail

        when = utc_datetime(as_of, "--as-of") if as_of is not None else None
        if limit < 0:
            raise fail("--limit must be 0 (all) or more")
        rows = None if show_all or limit == 0 else limit
        with _service(as_json, writer=False) as service:
            page = service.query(name, target, when, rows)
        if page is None:
            raise fail(f"no dataset or job {target!r} is known", code=1)
        if as_json:
            print(page_json(page, rows))
        else:
            print_page(console, page)
