"""Alert sinks: where new alerts go the moment they are raised (stdout, a JSONL file, Kafka)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from lineage.alerts import Alert
from lineage.identifiers import shown


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
