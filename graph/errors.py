"""What a graph store failure means for the caller: retry, split, or stop.

A store translates its driver's errors into one of these (all are
:class:`lineage.errors.StoreError`, so callers that catch the family keep working):

- :class:`TransientStoreError`: the work was fine, the moment was not (a server away, a
  connection lost, a leader switch, a deadlock). The same work can succeed later: retry it
  with backoff, within a bound.
- :class:`PermanentStoreError`: the server refused *this* work (a constraint violation, a type
  error, a transaction too large for the server's memory limit). The same work fails again:
  split it and set the culprit aside. ``oversize`` says a smaller piece may succeed.
- :class:`FatalStoreError`: nothing will work until an operator acts (credentials, a missing
  database, an unsupported server). Neither retrying nor dead-lettering helps: stop.

``code`` is the server's status code (``Neo.ClientError.Schema.ConstraintValidationFailed``)
or the driver exception's name; it is safe to put in a dead letter's reason (it never carries
data values, unlike the server's message).
"""

from __future__ import annotations

from lineage.errors import StoreError


class ClassifiedStoreError(StoreError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class TransientStoreError(ClassifiedStoreError):
    """Retry the same work later."""


class PermanentStoreError(ClassifiedStoreError):
    """The server refused this work; retrying it as is fails again."""

    def __init__(self, message: str, code: str, oversize: bool = False) -> None:
        super().__init__(message, code)
        self.oversize = oversize


class FatalStoreError(ClassifiedStoreError):
    """Configuration or credentials: no retry and no dead letter helps."""


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: a transient store error, or an unclassified one (a store that does not
    classify, e.g. a plain ``StoreError`` from a lost connection, is given the benefit of the
    doubt: the retries are bounded)."""
    if isinstance(exc, TransientStoreError):
        return True
    return isinstance(exc, StoreError) and not isinstance(exc, ClassifiedStoreError)
