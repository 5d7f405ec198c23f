"""Kafka commands: ``worker`` (the faust projector) and ``emit`` (one record onto the log).

Registered on the main app with :func:`register`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

from lineage.errors import ConfigurationError, InvalidEventError, LineageError
from lineage.inbound import InboundParser
from lineage.tracker import check_purposes
from runtime.service import open_log, open_store
from runtime.settings import Settings, load_settings
from runtime.wiring import build_policy, build_pseudonymizer

errors = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def worker(
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning",
            help="replay: empty the graph store and re-consume the events topic from offset 0",
        ),
    ] = False,
    loglevel: Annotated[
        str, typer.Option("--loglevel", help="faust log level: debug, info, warn, error")
    ] = "warn",
) -> None:
    """Run the projector: events topic -> graph store -> alerts topic (until Ctrl-C)."""
    from streams.faust_app import projector_group_id
    from streams.kafka_log import ensure_topics, rewind_group
    from streams.projector import run_worker

    try:
        settings = load_settings()
        settings.require_kafka()
        _require_durable_store(settings)
        policy = build_policy(settings)
        ensure_topics(settings)
        store = open_store(settings)
    except LineageError as exc:
        raise _fail(str(exc)) from None
    try:
        if from_beginning:
            rewind_group(settings, projector_group_id(settings))
            store.clear()
            errors.print("graph emptied; replaying the events topic from the beginning")
        run_worker(settings, store, policy, loglevel)
    except LineageError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()


def _require_durable_store(settings: Settings) -> None:
    """The worker commits offsets once the graph is written: into a graph that dies with the
    process those events would be gone for good, so in-memory must be asked for by name."""
    if settings.store_kind == "neo4j":
        return
    if settings.store is None:
        raise ConfigurationError(
            "the worker needs a durable graph store: set LINEAGE_NEO4J_URI (or, for "
            "development only, LINEAGE_STORE=networkx: an in-memory graph lost at exit)"
        )
    errors.print("[yellow]warning:[/] in-memory graph (LINEAGE_STORE=networkx): development only")


def emit(
    record: Annotated[
        str | None, typer.Argument(help="one raw JSON record; read from stdin when omitted")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Validate and pseudonymize ONE producer record, then append it to the configured log."""
    raw = record if record is not None else sys.stdin.read()
    try:
        settings = load_settings()
        parser = InboundParser(build_pseudonymizer(settings))
        taxonomy = build_policy(settings).taxonomy
        log = open_log(settings)
    except LineageError as exc:
        raise _fail(str(exc)) from None
    try:
        try:
            event = parser.parse_line(raw, datetime.now(UTC))
            check_purposes(event, taxonomy)
        except InvalidEventError as exc:
            log.dead_letter(raw.encode(), exc.reason, "emit")
            if as_json:
                print(json.dumps({"sent": False, "reason": exc.reason}))
            raise _fail(f"rejected and dead-lettered: {exc.reason}", code=1) from None
        log.append([event])
    except LineageError as exc:
        raise _fail(str(exc)) from None
    finally:
        log.close()
    if as_json:
        print(json.dumps({"sent": True, "event_id": event.event_id, "type": event.type}))
    else:
        print(f"sent {event.type} {event.event_id} to the {settings.log_kind} event log")


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(emit)
