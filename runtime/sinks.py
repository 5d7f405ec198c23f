"""Alert sinks: where new alerts go the moment they are raised (stdout, a JSONL file, Kafka),
and the incidents they make, bounded in rate (:class:`IncidentStreamSink`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from lineage.alerts import Alert
from lineage.identifiers import shown

if TYPE_CHECKING:
    from runtime.incident_publisher import IncidentMessage


class AlertSink(Protocol):
    def emit(self, alerts: Sequence[Alert]) -> None: ...

    def close(self) -> None: ...


def describe(alert: Alert) -> str:
    """One human line; identifiers appear masked only."""
    path = " -> ".join(
        step.dataset if step.kind != "used" else f"{step.job}[{step.purpose}]"
        for step in alert.evidence
    )
    return (
        f"ALERT {alert.rule} {shown(alert.display, alert.identifier)} "
        f"origin={alert.origin_purpose} at {alert.occurred_at.isoformat()}: {path}"
    )


class StreamSink:
    """Alerts on a text stream, as JSON lines or one readable line each."""

    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self._stream = stream
        self._as_json = as_json

    def emit(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            self._stream.write(
                (alert.model_dump_json() if self._as_json else describe(alert)) + "\n"
            )
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


def describe_incident(message: IncidentMessage) -> str:
    """One human line per incident message: counts, names and ids, never an identifier."""
    i = message.incident
    k = i.key
    return (
        f"INCIDENT {message.kind} {i.incident_id[:12]} {k.rule} "
        f"origin={k.origin_purpose}@{k.origin_dataset} -> {k.use_purpose} in {k.use_dataset} "
        f"({k.use_job}): {i.people} people, {i.identifiers} identifiers, {i.alerts} alerts, "
        f"from {i.first_violation.isoformat()}"
    )


class IncidentStreamSink:
    """Incident messages on a text stream, beside the alerts (embedded ``lineage ingest``).

    Each unit's alerts go through an :class:`IncidentPublisher`, as the worker's do: an
    incident's first message at once (with its unit), then at most one per ``interval`` seconds
    and per unit, never one per identifier; ``close`` sends what is pending. Give it after the
    alert sinks, so an incident message never runs ahead of its alerts."""

    def __init__(
        self,
        stream: TextIO,
        as_json: bool,
        interval: float,
        quiet_period: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from runtime.incident_publisher import IncidentPublisher  # only when incidents print

        self._stream = stream
        self._as_json = as_json
        self.publisher = IncidentPublisher(self._write, interval, quiet_period, clock)

    def emit(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self.publisher.observe(alerts)

    def _write(self, messages: Sequence[IncidentMessage]) -> None:
        for message in messages:
            line = message.body().decode() if self._as_json else describe_incident(message)
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        self.publisher.close()
        self._stream.flush()


class JsonlFileSink:
    """Durable local alert record for embedded mode (appended and fsync'd)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = path.open("a", encoding="utf-8")
        self.path = path

    def emit(self, alerts: Sequence[Alert]) -> None:
        if not alerts:
            return
        self._handle.writelines(alert.model_dump_json() + "\n" for alert in alerts)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()
