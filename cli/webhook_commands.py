"""``lineage webhook``: deliver alerts to an HTTP endpoint (filled in by the webhook work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds the webhook command to ``app`` (heavy imports stay inside the command)."""
