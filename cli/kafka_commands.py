"""Kafka commands: ``worker`` (the projector) and ``emit`` (one record onto the log).

Registered on the main app with :func:`register`.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import errors, fail
from lineage.errors import ConfigurationError, InvalidEventError, LineageError

if TYPE_CHECKING:
    from runtime.metrics import WorkerMetrics
    from runtime.settings import Settings

# The drivers and the pydantic-heavy modules load inside the commands (a fast ``--help``).


MetricsPort = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        min=0,
        max=65535,
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0: off)",
    ),
]


def worker(
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="replay: empty the graph store and re-consume the events topic from offset 0",
        ),
    ] = False,
    loglevel: Annotated[
        str, typer.Option("--loglevel", help="log level: debug, info, warn, error")
    ] = "warn",
    metrics_port: MetricsPort = 0,
) -> None:
    """Run the projector: events topic -> graph store -> alerts topic (until Ctrl-C)."""
    from runtime.service import open_store
    from runtime.settings import load_settings
    from runtime.wiring import build_policy
    from streams.consumer_group import projector_group_id
    from streams.kafka_log import ensure_topics, rewind_group
    from streams.projector import run_worker

    try:
        settings = load_settings()
        settings.require_kafka()
        _require_durable_store(settings)
        policy = build_policy(settings)
        ensure_topics(settings)
        metrics = serve_metrics(metrics_port) if metrics_port else None
        store = open_store(settings)
    except LineageError as exc:
        raise fail(str(exc)) from None
    try:
        if from_beginning:
            rewind_group(settings, projector_group_id(settings))
            store.clear()
            errors.print("graph emptied; replaying the events topic from the beginning")
        run_worker(settings, store, policy, loglevel, metrics)
    except LineageError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()


def serve_metrics(port: int) -> WorkerMetrics:
    """Opt-in, and on localhost only: a port taken is a mistake to say before consuming."""
    from runtime.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    try:
        metrics.serve(port)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}"
        ) from None
    return metrics


def _require_durable_store(settings: Settings) -> None:
    """The worker commits offsets once the graph is written, so the graph must be the shared,
    durable one: the embedded SQLite home belongs to the process that ingests into it."""
    if settings.store_kind != "neo4j":
        raise ConfigurationError("the worker writes to Neo4j: set LINEAGE_NEO4J_URI")


def record_bytes(record: str | None) -> bytes:
    """The record as the bytes the producer gave: from stdin for ``-`` (or nothing), so raw
    identifiers stay out of shell history and ``ps``; an argument's original bytes otherwise
    (``os.fsencode`` undoes the surrogate escapes of non-UTF-8 arguments, which the parser
    then rejects as not UTF-8 in one line)."""
    if record is None or record == "-":
        from lineage.inbound import MAX_LINE_BYTES

        # A little over the parser's limit (room for a line ending): larger input is rejected
        # there without reading all of it.
        return sys.stdin.buffer.read(MAX_LINE_BYTES + 3)
    try:
        return os.fsencode(record)
    except UnicodeEncodeError:  # a lone surrogate not from surrogateescape: still not UTF-8
        return record.encode("utf-8", "surrogatepass")


def emit(
    record: Annotated[
        str | None,
        typer.Argument(help="one raw JSON record; - (or nothing) reads it from stdin"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Validate and pseudonymize ONE producer record, then append it to the configured log."""
    from lineage.inbound import InboundParser
    from lineage.tracker import check_purposes
    from runtime.settings import load_settings
    from runtime.wiring import build_policy, build_pseudonymizer

    raw = record_bytes(record)
    if not raw.strip():  # ingest skips blank lines; one record that is blank is a mistake
        if as_json:
            print(json.dumps({"sent": False, "reason": "no record: it is empty"}))
        raise fail("no record: the argument (or stdin) is empty or blank")
    try:
        settings = load_settings()
        if settings.log_kind == "local":
            _emit_local(settings, raw, as_json)
            return
        from streams.kafka_log import KafkaEventLog

        parser = InboundParser(build_pseudonymizer(settings))
        taxonomy = build_policy(settings).taxonomy
        log = KafkaEventLog.from_settings(settings)
    except LineageError as exc:
        raise fail(str(exc)) from None
    try:
        try:
            event = parser.parse_line(raw, datetime.now(UTC))
            check_purposes(event, taxonomy)
        except InvalidEventError as exc:
            log.dead_letter(raw, exc.reason, "emit")
            if as_json:
                print(json.dumps({"sent": False, "reason": exc.reason}))
            raise fail(f"rejected and dead-lettered: {exc.reason}", code=1) from None
        log.append([event])
    except LineageError as exc:
        raise fail(str(exc)) from None
    finally:
        log.close()
    if as_json:
        print(json.dumps({"sent": True, "event_id": event.event_id, "type": event.type}))
    else:
        print(f"sent {event.type} {event.event_id} to the {settings.log_kind} event log")


def _emit_local(settings: Settings, raw: bytes, as_json: bool) -> None:
    """Embedded: through the service, like ingest (the home's writer lock, one transaction
    for the append and its projection, alerts through the outbox)."""
    from runtime.service import LineageService
    from runtime.sinks import JsonlFileSink

    sinks = [JsonlFileSink(settings.home / "alerts.jsonl")]
    with LineageService.open(settings, sinks) as service:
        report = service.ingest([raw], origin="emit")
    if report.rejected:
        reason = report.rejected[0].reason
        if as_json:
            print(json.dumps({"sent": False, "reason": reason}))
        raise fail(f"rejected and dead-lettered: {reason}", code=1)
    raised = [a.alert_id for a in report.alerts]
    if as_json:
        print(json.dumps({"sent": True, "accepted": report.accepted, "alerts": raised}))
    else:
        print(f"recorded {report.accepted} event(s) in the local log; {len(raised)} alert(s)")


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(emit)
