"""What every command prints through: stdout and stderr consoles, the one-line error exit, and
the masked form of an identifier a human typed (the command modules share them)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from lineage.errors import LineageError

console = Console(stderr=False)
errors = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line however narrow the terminal, and reasons quoting patterns such as
    '^[a-z0-9_]+$' are text, not rich markup."""
    errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def shown_identifier(raw: str) -> str:
    """The masked form of a typed phone or email, or a one-line error exit. The region is the
    one the service's pseudonymizer uses (``LINEAGE_DEFAULT_REGION``), so a number typed
    without a country code is accepted here exactly when it can be found."""
    from lineage.identifiers import check_region, guess_category, mask, normalize
    from runtime.settings import load_settings

    category = guess_category(raw)
    try:
        region = check_region(load_settings().default_region)
        return mask(category, normalize(category, raw, region))
    except LineageError as exc:
        raise fail(str(exc)) from None
