"""One error hierarchy: adapters translate driver errors into these, so callers catch one family."""

from __future__ import annotations


class LineageError(Exception):
    """Base of every error the tracker raises on purpose."""


class ConfigurationError(LineageError):
    """Settings are missing or contradictory; production must fail loudly instead of guessing."""


class InvalidEventError(LineageError):
    """An inbound record cannot become an event; ``reason`` is safe to log (no raw identifiers)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidIdentifierError(InvalidEventError):
    """A phone number or email that does not normalize."""


class UnknownPurposeError(InvalidEventError):
    """A purpose key missing from the taxonomy; the message names the closest known keys."""

    def __init__(self, key: str, suggestions: list[str]) -> None:
        hint = f"; closest known: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"unknown purpose {key!r}{hint}")
        self.key = key
        self.suggestions = suggestions


class PolicyError(LineageError):
    """A policy file that does not validate against the taxonomy."""


class StoreError(LineageError):
    """A graph store or event log failed; the driver's exception is chained as ``__cause__``."""


class NotFoundError(LineageError):
    """A lookup that found nothing (e.g. an identifier never seen)."""
