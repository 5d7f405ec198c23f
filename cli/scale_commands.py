"""The partitioned topology's commands: ``processor`` (events -> each partition's local state
-> alerts and changes topics), ``sink`` (changes topic -> Neo4j, the served view) and
``incident-publisher`` (alerts topic -> the incidents topic).

Registered on the main app with :func:`register`; see docs/scale.md.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from cli.kafka_commands import MetricsPort, serve_metrics
from cli.output import fail
from lineage.errors import ConfigurationError, LineageError


class Engine(StrEnum):
    kafka = "kafka"
    faust = "faust"


LogLevel = Annotated[str, typer.Option("--loglevel", help="log level: debug, info, warn, error")]


def processor(
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="where this processor keeps its partitions' state (LINEAGE_STATE_DIR)",
        ),
    ] = None,
    loglevel: LogLevel = "warn",
    metrics_port: MetricsPort = 0,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="the consumer that drives the partitions: kafka (a kafka-python loop) or "
            "faust (a faust-streaming agent); either way each partition's stored position "
            "decides what was applied",
        ),
    ] = Engine.kafka,
) -> None:
    """Run a partitioned processor: the events topic's partitions it is assigned, each with
    its state on local disk; publishes alerts and the view's changes (until Ctrl-C)."""
    from runtime.settings import load_settings
    from runtime.wiring import build_policy
    from streams.kafka_log import ensure_topics
    from streams.partition_worker import run_processor

    try:
        settings = load_settings()
        if state_dir is not None:
            settings = settings.model_copy(update={"state_dir": state_dir})
        settings.require_kafka()
        if settings.event_routing != "partitioned":
            raise ConfigurationError(
                "the processor needs the events split and broadcast per partition: set "
                "LINEAGE_EVENT_ROUTING=partitioned for it and for every producer (docs/scale.md)"
            )
        policy = build_policy(settings)
        ensure_topics(settings)
        metrics = serve_metrics(metrics_port) if metrics_port else None
        if engine is Engine.faust:
            from streams.faust_processor import run_faust_processor

            run_faust_processor(settings, policy, loglevel, metrics)
        else:
            run_processor(settings, policy, loglevel, metrics)
    except LineageError as exc:
        raise fail(str(exc)) from None


def sink(loglevel: LogLevel = "warn") -> None:
    """Run a sink: the changes topic -> Neo4j, the served view (until Ctrl-C)."""
    from graph.neo4j_store import Neo4jStore
    from runtime.service import open_store
    from runtime.settings import load_settings
    from streams.kafka_log import ensure_topics
    from streams.view_sink import run_sink

    try:
        settings = load_settings()
        settings.require_kafka()
        ensure_topics(settings)
        store = open_store(settings)
    except LineageError as exc:
        raise fail(str(exc)) from None
    try:
        assert isinstance(store, Neo4jStore)
        run_sink(settings, store, loglevel)
    except LineageError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()


def incident_publisher(loglevel: LogLevel = "warn") -> None:
    """Run the incident publisher: the alerts topic (every partition) -> incidents, bounded in
    rate -> the incidents topic; one per deployment (until Ctrl-C)."""
    from runtime.settings import load_settings
    from streams.incident_follow import run_incident_publisher
    from streams.kafka_log import ensure_topics

    try:
        settings = load_settings()
        settings.require_kafka()
        ensure_topics(settings)
        run_incident_publisher(settings, loglevel)
    except LineageError as exc:
        raise fail(str(exc)) from None


def register(app: typer.Typer) -> None:
    app.command()(processor)
    app.command()(sink)
    app.command("incident-publisher")(incident_publisher)
